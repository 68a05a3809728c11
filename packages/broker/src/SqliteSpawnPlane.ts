/**
 * The spawn plane of a SQLite broker, durable: core's memory plane with a journal in the
 * broker's database (`a2a_spawn_journal`, `a2a_runner_journal`), so spawns, their orders and
 * the runners they are on survive a broker restart (SIGTERM or SIGKILL), as on PostgreSQL.
 * Every change is written inside the plane's lock before it is published; at start the plane
 * is rebuilt from the tables (runners `offline` until they attach and reconcile).
 *
 * Spawn tokens are kept here too (`a2a_spawn_tokens`, SHA-256 hashes only, as on PostgreSQL),
 * so an agent that keeps running across a broker restart keeps its token and its peer.
 */
import { SqlClient } from "@effect/sql"
import { Codec, RunnerFrame, Runner, Spawn, SpawnPlane } from "@mks/a2a"
import { Effect, Layer, Schema } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { SharedSpawnTokens, type SharedSpawnTokensService, TokenRecord } from "./TokenStore.js"

const TABLES = [
  `CREATE TABLE IF NOT EXISTS a2a_spawn_journal (
    tenant TEXT NOT NULL, id TEXT NOT NULL, created_at BIGINT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (tenant, id))`,
  `CREATE TABLE IF NOT EXISTS a2a_runner_journal (tenant TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (tenant, id))`,
  `CREATE TABLE IF NOT EXISTS a2a_spawn_tokens (hash TEXT PRIMARY KEY, spawn_id TEXT NOT NULL, record TEXT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS a2a_spawn_tokens_spawn ON a2a_spawn_tokens (spawn_id)`
]

const Journaled = Schema.Struct({
  spawn: Spawn.Spawn,
  order: Schema.optional(RunnerFrame.SpawnOrder),
  stopRequested: Schema.Boolean,
  graceMs: Schema.optional(Schema.Int)
})
const encodeJournaled = Schema.encodeSync(Schema.parseJson(Journaled))
const decodeJournaled = Codec.decodeUnknown(Schema.parseJson(Journaled))
const encodeInfo = Schema.encodeSync(Schema.parseJson(Runner.RunnerInfo))
const decodeInfo = Codec.decodeUnknown(Schema.parseJson(Runner.RunnerInfo))
const decodeToken = Codec.decodeUnknown(Schema.parseJson(TokenRecord))

/** A journal write that fails is logged: the plane in memory stays right for this process. */
const logged = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.asVoid,
    Effect.catchAllCause((cause) => Effect.logWarning(`spawn journal: ${what} failed`, cause))
  )

const journal = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  for (const statement of TABLES) yield* sql.unsafe(statement)
  const service: SpawnPlane.SpawnJournal = {
    load: Effect.gen(function* () {
      const runners = yield* sql<{ tenant: string; data: string }>`SELECT tenant, data FROM a2a_runner_journal`
      const spawns = yield* sql<{ tenant: string; created_at: number; data: string }>`SELECT tenant, created_at, data FROM a2a_spawn_journal`
      const out: { runners: Array<SpawnPlane.JournaledRunner>; spawns: Array<SpawnPlane.JournaledSpawn> } = { runners: [], spawns: [] }
      for (const r of runners) {
        const info = yield* Effect.option(decodeInfo(r.data))
        if (info._tag === "Some") out.runners.push({ tenant: r.tenant, info: info.value, lastSeenAt: 0 })
      }
      for (const s of spawns) {
        const j = yield* Effect.option(decodeJournaled(s.data))
        if (j._tag === "None") {
          yield* Effect.logWarning(`spawn journal: skipping an undecodable spawn of tenant ${s.tenant}`)
          continue
        }
        out.spawns.push({ tenant: s.tenant, createdAt: Number(s.created_at), spawn: j.value.spawn, order: j.value.order, stopRequested: j.value.stopRequested, graceMs: j.value.graceMs })
      }
      return out
    }).pipe(Effect.orDie),
    saveSpawn: (r) =>
      logged(
        `writing spawn ${r.spawn.id}`,
        sql`INSERT INTO a2a_spawn_journal (tenant, id, created_at, status, data)
          VALUES (${r.tenant}, ${r.spawn.id}, ${r.createdAt}, ${r.spawn.status}, ${encodeJournaled({ spawn: r.spawn, order: r.order, stopRequested: r.stopRequested, graceMs: r.graceMs })})
          ON CONFLICT (tenant, id) DO UPDATE SET status = excluded.status, data = excluded.data`
      ),
    saveRunner: (r) =>
      logged(
        `writing runner ${r.info.id}`,
        sql`INSERT INTO a2a_runner_journal (tenant, id, data) VALUES (${r.tenant}, ${r.info.id}, ${encodeInfo(r.info)})
          ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data`
      )
  }
  const tokens: SharedSpawnTokensService = {
    put: (record) =>
      logged(`writing the token of spawn ${record.spawnId}`, sql`INSERT OR REPLACE INTO a2a_spawn_tokens (hash, spawn_id, record) VALUES (${record.hash}, ${record.spawnId ?? ""}, ${JSON.stringify(record)})`),
    find: (hash) =>
      sql<{ record: string }>`SELECT record FROM a2a_spawn_tokens WHERE hash = ${hash}`.pipe(
        Effect.flatMap((rows) => (rows[0] === undefined ? Effect.succeed(undefined) : decodeToken(rows[0].record))),
        Effect.orElseSucceed(() => undefined)
      ),
    revoke: (spawnId) => logged(`revoking the token of spawn ${spawnId}`, sql`DELETE FROM a2a_spawn_tokens WHERE spawn_id = ${spawnId}`)
  }
  return { service, tokens }
})

/** The durable spawn plane and spawn tokens over the SQLite client. */
export const layer: Layer.Layer<SpawnPlane.SpawnPlane | SharedSpawnTokens, never, SqlClient.SqlClient | BrokerConfig> = Layer.unwrapScoped(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const { service, tokens } = yield* journal.pipe(Effect.orDie)
    return Layer.merge(
      SpawnPlane.layerMemory({ staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout, journal: service }),
      Layer.succeed(SharedSpawnTokens, tokens)
    )
  })
)
