/** The Auth suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("Auth", () => import("../Auth.test.js"))
