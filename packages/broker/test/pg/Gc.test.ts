/** The Gc suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("Gc", () => import("../Gc.test.js"))
