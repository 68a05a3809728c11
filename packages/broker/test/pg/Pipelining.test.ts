/** The Pipelining suite, unchanged, against the PostgreSQL store (where sends are pipelined). */
import { onPostgres } from "../harness.js"

await onPostgres("Pipelining", () => import("../Pipelining.test.js"))
