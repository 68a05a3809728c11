/** The SpawnPlane suite, unchanged, against the PostgreSQL store. */
import { onPostgres } from "../harness.js"

await onPostgres("SpawnPlane", () => import("../SpawnPlane.test.js"))
