/** The Messaging suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("Messaging", () => import("../Messaging.test.js"))
