/** The FastReader suite, unchanged, against the PostgreSQL store (acks and pipelined sends share its group commit). */
import { onPostgres } from "../harness.js"

await onPostgres("FastReader", () => import("../FastReader.test.js"))
