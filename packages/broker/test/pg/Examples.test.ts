/** The Examples suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("Examples", () => import("../Examples.test.js"))
