/** The Tasks suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("Tasks", () => import("../Tasks.test.js"))
