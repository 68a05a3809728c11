/**
 * The broker's state: the core protocol services, from memory or from a SQL database.
 */
import { ChannelHub, Errors, Inbox, PeerRegistry, PostgresUrl, SpawnPlane, TaskBoard, TeamDirectory } from "@mks/a2a"
import { Effect, Layer, Schedule, Scope } from "effect"
import { SqlClient } from "@effect/sql"
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname } from "node:path"
import { Worker } from "node:worker_threads"
import { BrokerConfig } from "./BrokerConfig.js"
import * as AuditLog from "./AuditLog.js"
import type { SharedSpawnTokens } from "./TokenStore.js"
import * as SqliteClient from "./SqliteClient.js"
import * as SqliteSpawnPlane from "./SqliteSpawnPlane.js"
import * as SqlStore from "./SqlStore.js"
import * as SqlTaskBoard from "./SqlTaskBoard.js"
import { StoreGauges } from "./StoreGauges.js"

export type Stores =
  | StoreGauges
  | PeerRegistry.PeerRegistry
  | Inbox.Inbox
  | TeamDirectory.TeamDirectory
  | ChannelHub.ChannelHub
  | SpawnPlane.SpawnPlane
  | TaskBoard.TaskBoard

/** Store-level counts for `/metrics` (NaN where a store cannot count). */
export { StoreGauges }

const noGauges = Layer.succeed(StoreGauges, { peersOnline: Effect.succeed(Number.NaN), inboxDepth: Effect.succeed(Number.NaN) })

/** Everything in memory: for tests and throwaway runs. Nothing survives a restart. */
export const layerMemory: Layer.Layer<Stores, never, BrokerConfig> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    return Layer.mergeAll(
      noGauges,
      PeerRegistry.layerMemory,
      Inbox.layerMemory({ capacity: config.inboxCapacity }),
      ChannelHub.layerMemory(),
      TaskBoard.layerMemory,
      SpawnPlane.layerMemory({ staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout })
    ).pipe(Layer.provideMerge(TeamDirectory.layerMemory))
  })
)

/**
 * WAL with `synchronous = NORMAL`: a commit is durable against a crash or SIGKILL of the broker
 * (it is in the WAL before the 201), only an OS crash or power loss can drop the last commits.
 * FULL would fsync every commit, which costs ~4 ms here and caps the broker at ~260 msg/s.
 *
 * Checkpoints (copying the WAL into the database, with an fsync) would run inside commits on
 * the event loop, costing ~40 % of the SQLite time and stalling it for milliseconds now and
 * then. A file database therefore gets a checkpointer thread (`walCheckpointer`); the event
 * loop checkpoints only if the WAL grows past 20,000 pages anyway (the thread is gone or
 * behind). The WAL file is truncated back to 64 MiB after a checkpoint.
 */
const sqliteTuning = Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe("PRAGMA synchronous = NORMAL")
    yield* sql.unsafe("PRAGMA busy_timeout = 5000")
    yield* sql.unsafe("PRAGMA wal_autocheckpoint = 20000")
    yield* sql.unsafe("PRAGMA journal_size_limit = 67108864")
  })
)

/**
 * How often the checkpointer thread checkpoints the WAL (and how often the event loop looks at the
 * WAL's size until the thread starts). Each checkpoint fsyncs what was written since the last one,
 * and on the 2-core benchmark VM a large fsync stalls the broker's event loop for tens of
 * milliseconds, so small, frequent checkpoints keep the tail short: send→push p99 at 1,000 msg/s
 * (`bench/broker.mjs --only latency`, runs of one session) was 60–70 ms with a checkpoint every
 * 5 s (3 runs), 5.2–40 ms (median 14, 10 runs) every 1 s, 5.6–15.8 ms (median 9, 10 runs) every
 * 250 ms, and 4.4–4.6 ms (3 runs) with the database on tmpfs, where an fsync writes nothing.
 * A checkpoint with nothing new to copy does no I/O.
 */
const CHECKPOINT_INTERVAL_MS = 250

/** The checkpointer thread: its own connection, a PASSIVE checkpoint (never blocks writers) at each tick. */
const CHECKPOINTER = `
const { parentPort, workerData } = require("node:worker_threads")
const Database = require(workerData.module)
const db = new Database(workerData.file, { fileMustExist: true })
db.pragma("busy_timeout = 1000")
const checkpoint = () => { try { db.pragma("wal_checkpoint(PASSIVE)") } catch {} }
const timer = setInterval(checkpoint, workerData.intervalMs)
parentPort.once("message", () => {
  clearInterval(timer)
  checkpoint()
  db.close()
  parentPort.close()
})
`

/** better-sqlite3 as the broker loads it (`SqliteClient.ts`), for the checkpointer thread (undefined if not found). */
const betterSqlite3Path = (): string | undefined => {
  try {
    return createRequire(import.meta.url).resolve("better-sqlite3")
  } catch {
    return undefined
  }
}

/**
 * The WAL size at which the checkpointer thread starts (a broker that writes little never needs
 * it; a fresh broker's WAL holds ~240 KB after its migrations). Starting the thread (a new
 * isolate, then a first checkpoint of everything so far) disturbs a busy broker for a few hundred
 * milliseconds once: at 4 MiB that fell about a second into a burst of 1,000 msg/s, inside the
 * latency benchmark's measured window in 3 of 4 traced runs, which then held 17–119 samples over
 * 5 ms in its first 300 ms (up to 2.4 % of the window, enough on its own for a p99 over 5 ms).
 * At 1 MiB it starts within the first ~0.3 s of such a burst, with a smaller first checkpoint.
 */
const CHECKPOINTER_START_BYTES = 1024 * 1024

/**
 * Checkpoint the WAL of `file` from a thread of its own, so the fsync and page copies of a
 * checkpoint never run on the event loop. The thread (an isolate of its own, ~10 MiB of RSS) starts
 * once the WAL first holds `CHECKPOINTER_START_BYTES`: until then the event loop looks at the WAL's
 * size once per interval (one `stat`), so an idle or lightly used broker does not carry it. Without
 * better-sqlite3 to load, the event loop keeps checkpointing (every 20,000 pages).
 */
const walCheckpointer = (file: string, startBytes = CHECKPOINTER_START_BYTES) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const module = betterSqlite3Path()
      if (module === undefined) return yield* Effect.logWarning("no checkpointer thread: better-sqlite3 not found")
      const walSize = Effect.sync(() => statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0)
      const startThread = Effect.acquireRelease(
        Effect.sync(() => {
          const worker = new Worker(CHECKPOINTER, { eval: true, workerData: { module, file, intervalMs: CHECKPOINT_INTERVAL_MS } })
          worker.on("error", (e) => process.stderr.write(`a2a-broker: the WAL checkpointer thread failed: ${String(e)}\n`))
          worker.unref()
          return worker
        }),
        (worker) =>
          Effect.async<void>((resume) => {
            const timer = setTimeout(() => void worker.terminate().finally(() => resume(Effect.void)), 2_000)
            worker.once("exit", () => {
              clearTimeout(timer)
              resume(Effect.void)
            })
            worker.postMessage("stop")
          })
      )
      const scope = yield* Effect.scope
      yield* walSize.pipe(
        Effect.repeat({ schedule: Schedule.spaced(CHECKPOINT_INTERVAL_MS), until: (size) => size >= startBytes }),
        Effect.zipRight(Scope.extend(startThread, scope)),
        Effect.forkIn(scope)
      )
    })
  )

/**
 * The database holds message bodies: readable by this user only (0600), whatever the mode of its
 * directory (an existing `A2A_HOME` is often 0755) and whatever an older version created. SQLite
 * gives the `-wal` and `-shm` files it creates the database file's mode; existing ones are set
 * here too. A file of another owner is left as it is (chmod is refused; SQLite opens it anyway).
 */
const restrictDatabaseFiles = (file: string) => {
  closeSync(openSync(file, "a", 0o600))
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      const mode = statSync(path, { throwIfNoEntry: false })?.mode
      if (mode !== undefined && (mode & 0o077) !== 0) chmodSync(path, 0o600)
    } catch {
      // Not ours to change.
    }
  }
}

/**
 * SQLite (WAL) at `file`: peers, teams, inboxes, spawns, runners and spawn tokens survive
 * restarts; live channels are in memory (runners re-announce their agents when they reconnect).
 */
export const layerSqlite = (file: string): Layer.Layer<Stores | SharedSpawnTokens | AuditLog.AuditLog, Errors.ServiceUnavailable, BrokerConfig> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const config = yield* BrokerConfig
      if (file !== ":memory:") {
        yield* Effect.try({
          try: () => {
            mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
            restrictDatabaseFiles(file)
          },
          catch: (e) => new Errors.ServiceUnavailable({ message: `cannot open database ${file}: ${String(e)}` })
        })
      }
      return Layer.mergeAll(
        SqlStore.layer({ capacity: config.inboxCapacity, cache: true }),
        Layer.effect(StoreGauges, SqlStore.gauges),
        ChannelHub.layerMemory(),
        // Spawns, runners and spawn tokens are in the database too (SqliteSpawnPlane.ts).
        SqliteSpawnPlane.layer,
        Layer.effect(TaskBoard.TaskBoard, SqlTaskBoard.make("sqlite")),
        AuditLog.layerSql,
        file === ":memory:" ? Layer.empty : walCheckpointer(file)
      ).pipe(
        Layer.provide(sqliteTuning),
        Layer.provide(SqliteClient.layer(file)),
        Layer.mapError((e) => new Errors.ServiceUnavailable({ message: `cannot open database ${file}: ${String(e)}` }))
      )
    })
  )

/**
 * PostgreSQL at `url` (`postgres://…`): the store of several broker instances sharing one
 * database (see `PgStore.ts` and docs/scaling.md).
 */
export const layerPostgres = (url: string): Layer.Layer<Stores, Errors.ServiceUnavailable, BrokerConfig> =>
  // Loaded on demand: the PostgreSQL store and its driver (`pg`, whose load also pulls in Node's
  // fetch implementation) are ~1/4 of the bin's code, parsed at every start of a SQLite broker.
  Layer.unwrapEffect(Effect.promise(() => import("./PgStore.js")).pipe(Effect.map((PgStore) => PgStore.layer(url))))

/**
 * The store for a `--db` value: `memory` for no persistence at all, a `postgres://` URL for a
 * shared PostgreSQL database, else a SQLite file (or `:memory:`).
 */
export const layerFor = (db: string): Layer.Layer<Stores, Errors.ServiceUnavailable, BrokerConfig> =>
  db === "memory" ? layerMemory : PostgresUrl.isPostgresUrl(db) ? layerPostgres(db) : layerSqlite(db)
