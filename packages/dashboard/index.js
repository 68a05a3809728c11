// The built single-page app: the broker serves this directory at /ui (see docs/dashboard.md).
import { fileURLToPath } from "node:url"

/** Absolute path of the built dashboard (`dist/`, made by `npm run build -w packages/dashboard`). */
export const distDir = fileURLToPath(new URL("./dist", import.meta.url))
