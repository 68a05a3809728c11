/**
 * The broker's state: the core protocol services, from memory or from a SQL database.
 */
import { ChannelHub, Errors, Inbox, PeerRegistry, SpawnPlane, TeamDirectory } from "@mks/a2a"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { BrokerConfig } from "./BrokerConfig.js"
import * as SqlStore from "./SqlStore.js"

export type Stores =
  | StoreGauges
  | PeerRegistry.PeerRegistry
  | Inbox.Inbox
  | TeamDirectory.TeamDirectory
  | ChannelHub.ChannelHub
  | SpawnPlane.SpawnPlane

/** Store-level counts for `/metrics` (NaN where a store cannot count). */
export class StoreGauges extends Context.Tag("@mks/a2a-broker/StoreGauges")<
  StoreGauges,
  { readonly peersOnline: Effect.Effect<number>; readonly inboxDepth: Effect.Effect<number> }
>() {}

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
      SpawnPlane.layerMemory({ staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout })
    ).pipe(Layer.provideMerge(TeamDirectory.layerMemory))
  })
)

/**
 * WAL with `synchronous = NORMAL`: a commit is durable against a crash or SIGKILL of the broker
 * (it is in the WAL before the 201), only an OS crash or power loss can drop the last commits.
 * FULL would fsync every commit, which costs ~4 ms here and caps the broker at ~260 msg/s.
 */
const sqliteTuning = Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe("PRAGMA synchronous = NORMAL")
    yield* sql.unsafe("PRAGMA busy_timeout = 5000")
  })
)

/**
 * SQLite (WAL) at `file`: peers, teams and inboxes survive restarts; live channels and the
 * spawn plane are in memory (runners re-announce their agents when they reconnect).
 */
export const layerSqlite = (file: string): Layer.Layer<Stores, Errors.ServiceUnavailable, BrokerConfig> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const config = yield* BrokerConfig
      if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
      return Layer.mergeAll(
        SqlStore.layer({ capacity: config.inboxCapacity, cache: true }),
        Layer.effect(StoreGauges, SqlStore.gauges),
        ChannelHub.layerMemory(),
        SpawnPlane.layerMemory({ staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout })
      ).pipe(
        Layer.provide(sqliteTuning),
        Layer.provide(SqliteClient.layer({ filename: file })),
        Layer.mapError((e) => new Errors.ServiceUnavailable({ message: `cannot open database ${file}: ${String(e)}` }))
      )
    })
  )

/** The store for a `--db` value: `memory` for no persistence at all, else a SQLite file (or `:memory:`). */
export const layerFor = (db: string): Layer.Layer<Stores, Errors.ServiceUnavailable, BrokerConfig> =>
  db === "memory" ? layerMemory : layerSqlite(db)
