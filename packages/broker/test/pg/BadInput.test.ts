/** The BadInput suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("BadInput", () => import("../BadInput.test.js"))
