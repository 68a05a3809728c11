/**
 * The PostgreSQL store: several broker processes share one database and act as one broker
 * (see docs/scaling.md).
 *
 * - PeerRegistry, TeamDirectory and Inbox are the portable `SqlStore` (same migrations) with
 *   `cache: false`, except: inbox appends, acks and drops are group-committed
 *   (`PgGroupCommit.ts`: one transaction per batch, one notification per batch), and peer
 *   lookups by id or name are batched per tick (`PgPeerLookup.ts`).
 * - The inbox table is the source of truth for delivery. Every batch runs
 *   `pg_notify('a2a_inbox', {i, tenant, [[peer, seq]…]})` inside its transaction (delivered exactly
 *   when the rows commit). Every instance LISTENs; for a recipient with a socket on it, the
 *   instance's pump reads the rows after the last seq it pushed and pushes them in seq order
 *   (all the pumps due in one tick are read by one query). The payload only says "look":
 *   messages are always read from the table, so a notification lost or merged never leaves a
 *   gap, and a catch-up query every `A2A_BROKER_PG_CATCHUP_MS` finds pumps that are behind.
 *   The sending instance goes through the same pump; only the very next seq of an idle pump is
 *   pushed as it is (it cannot leave a gap), so the order of one recipient's messages is the
 *   seq order whatever instance sent them.
 * - Long-poll inbox reads wake on the same notifications.
 * - Events (peer_joined/left/updated, team_changed, spawn_status) are pushed to this
 *   instance's sockets and NOTIFYed on `a2a_event` (inline JSON; past 7,500 bytes the event is
 *   stored in `a2a_events` and the notification carries its id).
 * - GC runs once cluster-wide: `expire` and `prune` run in a transaction that first takes
 *   `pg_try_advisory_xact_lock`; an instance that does not get it skips the round. Live
 *   sockets are kept `online` by each instance's keep-alive (`Connections`), in the shared table.
 * - The LISTEN connection is the broker's own `pg` client: when it drops (or stops answering a
 *   ping) it is re-opened with backoff, and every local pump then catches up from the table,
 *   every long-poll re-reads and every local runner gets its pending orders, since PostgreSQL
 *   does not keep notifications for a listener that was away.
 * - Spawn tokens are in the database (`a2a_spawn_tokens`, hashes only), so a spawned agent can
 *   register through any instance, and a revocation holds everywhere.
 * - The spawn plane is in the database too (`PgSpawnPlane.ts`): an order made through any
 *   instance reaches the runner through the instance holding its link (`NOTIFY a2a_runner`).
 * - Each instance records the URL the others reach it at (`a2a_instances`, refreshed every 30 s,
 *   removed on shutdown, pruned an hour after it stopped being refreshed): a relay socket for a
 *   runner linked elsewhere is piped to the holder (`RelayForward.ts`).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { ChannelFrame, ChannelHub, Errors, Inbox, PeerRegistry, PostgresUrl, SpawnPlane, TaskBoard, TeamDirectory } from "@mks/a2a"
import type { Ids, Message } from "@mks/a2a"
import { Clock, Config, Context, Deferred, Duration, Effect, Layer, Option, Redacted, Runtime, Schedule, Schema, Scope } from "effect"
import pg from "pg"
import { randomBytes } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import * as PgGroupCommit from "./PgGroupCommit.js"
import * as PgPeerLookup from "./PgPeerLookup.js"
import * as PgSpawnPlane from "./PgSpawnPlane.js"
import * as RelayForward from "./RelayForward.js"
import * as SqlStore from "./SqlStore.js"
import * as SqlTaskBoard from "./SqlTaskBoard.js"
import type { Stores } from "./Store.js"
import { StoreGauges } from "./StoreGauges.js"
import { SharedSpawnTokens, type SharedSpawnTokensService, TokenRecord } from "./TokenStore.js"
import { keyOf } from "./TenantKey.js"

/** The LISTEN connection is a plain `pg.Client` of our own (the same `pg` that `@effect/sql-pg` uses), since we must see it drop. */
type PgClientRaw = pg.Client

/** Notification channels. */
export const INBOX_CHANNEL = "a2a_inbox"
export const EVENT_CHANNEL = "a2a_event"

/** Advisory lock keys (arbitrary constants, one per purpose). */
const MIGRATION_LOCK = 0x0a2a0001
const GC_LOCK = 0x0a2a0002

/** Inline event payloads up to this size; larger ones go through `a2a_events` (PG's limit is 8,000 bytes). */
const INLINE_EVENT_BYTES = 7_500
/** Peer ids an instance remembers for `resolveId` before it starts over (about 100 bytes each). */
const KNOWN_IDS_MAX = 100_000
/** Rows a pump reads per query. */
const PUMP_PAGE = 500
/** How often an instance refreshes its `a2a_instances` row, and how long an unrefreshed row is kept. */
const INSTANCE_REFRESH_MS = 30_000
const INSTANCE_RETENTION_MS = 60 * 60 * 1000
/** Events kept in `a2a_events` for instances that read them late. */
const EVENT_RETENTION_MS = 60_000

const PG_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS a2a_events (id BIGSERIAL PRIMARY KEY, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
  // Spawn tokens of the cluster: the SHA-256 of the secret, never the secret.
  `CREATE TABLE IF NOT EXISTS a2a_spawn_tokens (hash TEXT PRIMARY KEY, spawn_id TEXT NOT NULL, record TEXT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS a2a_spawn_tokens_spawn ON a2a_spawn_tokens (spawn_id)`,
  // The base URL each instance is reached at by the others (the relay of logs and terminals, RelayForward.ts).
  `CREATE TABLE IF NOT EXISTS a2a_instances (instance TEXT PRIMARY KEY, url TEXT NOT NULL, seen_at BIGINT NOT NULL)`,
  ...PgSpawnPlane.MIGRATIONS,
  // The batched peer lookup, planned once per connection (PgPeerLookup.ts).
  PgPeerLookup.LOOKUP_FUNCTION,
  // A group-commit batch in one round trip (PgGroupCommit.ts).
  PgGroupCommit.COMMIT_FUNCTION
]

const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
const orDie = <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) =>
  self.pipe(Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.die(unavailable(e)))) as Effect.Effect<A, Exclude<E, SqlError>, R>

interface InboxNotice {
  readonly i: string
  readonly t: string
  /** Each append: the recipient, its seq and, for small messages, the message's stored JSON. */
  readonly d: ReadonlyArray<readonly [string, number, string?]>
}
interface EventNotice {
  readonly i: string
  readonly t?: string
  readonly e?: unknown
  readonly to?: ReadonlyArray<string> | undefined
  readonly id?: number
}

const decodeTokenRecord = Schema.decodeUnknownSync(TokenRecord)
const encodeEvent = Schema.encodeSync(ChannelFrame.PeerEvent)
const decodeEvent = Schema.decodeUnknownOption(ChannelFrame.PeerEvent)

/** The LISTEN side: one `pg` connection of our own, re-opened whenever it drops. */
export interface Listener {
  /** Whether the LISTEN connection is up now. */
  readonly connected: () => boolean
}

const PING_INTERVAL_MS = 5_000
const PING_TIMEOUT_MS = 3_000
const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 2_000

/**
 * Open a LISTEN connection on `channels` for the scope. `onNotification` gets every payload;
 * `onConnected` runs after every (re)connection, once LISTEN is in force, so the caller can
 * catch up on what was sent while it was away.
 */
export const listen = (
  url: string,
  channels: ReadonlyArray<string>,
  onNotification: (channel: string, payload: string) => void,
  onConnected: () => void
): Effect.Effect<Listener, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let client: PgClientRaw | undefined
      let up = false
      let stopped = false
      let delay = RECONNECT_MIN_MS
      let timer: NodeJS.Timeout | undefined
      const retry = () => {
        if (stopped || timer !== undefined) return
        timer = setTimeout(() => {
          timer = undefined
          void open()
        }, delay)
        delay = Math.min(delay * 2, RECONNECT_MAX_MS)
      }
      const lost = (c: PgClientRaw) => {
        if (client !== c) return
        client = undefined
        up = false
        c.removeAllListeners("notification")
        void c.end().catch(() => {})
        retry()
      }
      /**
       * A connection cut without a reset (a partition) looks alive: ping it every few seconds,
       * and treat a ping that fails or takes too long as a lost connection.
       */
      const watch = (c: PgClientRaw) => {
        const ping = setInterval(() => {
          if (client !== c) return clearInterval(ping)
          const timeout = setTimeout(() => lost(c), PING_TIMEOUT_MS)
          c.query("SELECT 1").then(
            () => clearTimeout(timeout),
            () => {
              clearTimeout(timeout)
              lost(c)
            }
          )
        }, PING_INTERVAL_MS)
        ping.unref()
      }
      const open = async () => {
        if (stopped) return
        const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000, application_name: "a2a-broker-listen", keepAlive: true })
        client = c
        c.on("error", () => lost(c))
        c.on("end", () => lost(c))
        c.on("notification", (n) => {
          if (n.payload !== undefined) onNotification(n.channel, n.payload)
        })
        try {
          await c.connect()
          for (const channel of channels) await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
          if (client !== c || stopped) return
          up = true
          delay = RECONNECT_MIN_MS
          watch(c)
          onConnected()
        } catch {
          lost(c)
        }
      }
      void open()
      return {
        listener: { connected: () => up },
        stop: () => {
          stopped = true
          if (timer !== undefined) clearTimeout(timer)
          const c = client
          client = undefined
          return c === undefined ? Promise.resolve() : c.end().catch(() => {})
        }
      }
    }),
    (handle) => Effect.promise(() => handle.stop()).pipe(Effect.timeoutOption(1_000))
  ).pipe(Effect.map((handle) => handle.listener))

/**
 * The wake-up path (docs/scaling.md): `A2A_BROKER_PG_LISTEN=off` makes an instance rely on
 * catch-up reads alone (e.g. behind a pooler without LISTEN), and `A2A_BROKER_PG_CATCHUP_MS`
 * (default 1,000) is how often catch-up runs, with or without LISTEN.
 */
const wakeupConfig = Config.all({
  listen: Config.boolean("A2A_BROKER_PG_LISTEN").pipe(Config.withDefault(true)),
  catchUpMs: Config.integer("A2A_BROKER_PG_CATCHUP_MS").pipe(
    Config.validate({ message: "A2A_BROKER_PG_CATCHUP_MS must be between 10 and 60000", validation: (ms) => ms >= 10 && ms <= 60_000 }),
    Config.withDefault(1_000)
  )
})

/** Cluster-wide state of one instance, for tests and metrics. */
/** How this instance's pumps pushed messages: as carried in a wake-up or as read from the table (for tests and measurement). */
export interface PumpStats {
  /** Messages pushed from a notification's inline copy, without a read. */
  inline: number
  /** Messages pushed from pump reads, and the reads (queries) made. */
  read: number
  reads: number
}

export class PgCluster extends Context.Tag("@mks/a2a-broker/PgCluster")<
  PgCluster,
  { readonly instance: string; readonly listener: Listener; readonly commits: PgGroupCommit.Stats; readonly pumps: PumpStats }
>() {}

const make = (url: string) =>
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const sql = yield* SqlClient.SqlClient
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runFork(runtime)
    const instance = randomBytes(6).toString("hex")
    const wakeups = yield* wakeupConfig

    // Two instances starting together must not run the same CREATE TABLEs at once.
    yield* orDie(
      sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
          yield* SqlStore.migrate
          for (const statement of PG_MIGRATIONS) yield* sql.unsafe(statement)
        })
      )
    )

    const teams = yield* SqlStore.makeTeamDirectory(false)
    const peersBase = yield* SqlStore.makePeerRegistry(false).pipe(Effect.provideService(TeamDirectory.TeamDirectory, teams))
    const inboxBase = yield* SqlStore.makeInbox(config.inboxCapacity, false)
    const memory = yield* ChannelHub.makeMemory()
    const plane = yield* PgSpawnPlane.make({ instance, staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout })

    // ---- long-poll waiters, woken by inbox notifications ----
    const waiters = SqlStore.makeWaiters()
    const wake = waiters.unsafeWake

    // ---- pumps: for each recipient with a socket here, push its rows in seq order ----
    interface Pump {
      readonly tenant: string
      readonly peer: Ids.PeerId
      pushed: number
      refs: number
    }
    const pumps = new Map<string, Pump>()
    /**
     * Pumps to read, and pumps whose read is in flight. All the pumps kicked while the event
     * loop is busy are read by ONE query (each after its own last pushed seq), so a wake-up
     * for a batch of recipients costs one round trip, not one per recipient.
     */
    const due = new Set<Pump>()
    const reading = new Set<Pump>()
    let readScheduled = false
    const pumpStats: PumpStats = { inline: 0, read: 0, reads: 0 }

    type PumpRow = { n: number; seq: number | string; data: string }
    const readRound: Effect.Effect<void> = Effect.suspend(() => {
      readScheduled = false
      const batch: Array<Pump> = []
      for (const p of due) {
        if (pumps.get(keyOf(p.tenant, p.peer)) !== p) due.delete(p) // its last socket closed
        else if (!reading.has(p)) {
          due.delete(p)
          reading.add(p)
          batch.push(p)
        }
      }
      if (batch.length === 0) return Effect.void
      const wanted = JSON.stringify(batch.map((p, n) => ({ n, tenant: p.tenant, peer: p.peer, after: p.pushed })))
      pumpStats.reads++
      return sql<PumpRow>`SELECT x.n, i.seq, i.data FROM json_to_recordset(${wanted}::json) AS x(n int, tenant text, peer text, after bigint)
          CROSS JOIN LATERAL (SELECT seq, data FROM a2a_inbox WHERE tenant = x.tenant AND peer_id = x.peer AND seq > x.after ORDER BY seq LIMIT ${PUMP_PAGE}) i
          ORDER BY x.n, i.seq`.pipe(
        Effect.flatMap((rows) =>
          Effect.gen(function* () {
            const byN = new Map<number, Array<PumpRow>>()
            for (const row of rows) {
              const list = byN.get(Number(row.n)) ?? []
              list.push(row)
              byN.set(Number(row.n), list)
            }
            for (let n = 0; n < batch.length; n++) {
              const pump = batch[n]!
              const found = byN.get(n) ?? []
              // Rows the sending instance pushed meanwhile (fast path) are skipped.
              const fresh = found.filter((row) => Number(row.seq) > pump.pushed)
              if (fresh.length > 0) {
                const deliveries: Array<Message.Delivery> = fresh.map((row) => ({ recipient: pump.peer, message: SqlStore.messageOfRow(row) }))
                pump.pushed = deliveries[deliveries.length - 1]!.message.seq
                pumpStats.read += deliveries.length
                yield* memory.publish(pump.tenant, deliveries)
              }
              if (found.length === PUMP_PAGE) due.add(pump)
            }
          })
        ),
        Effect.catchAllCause((cause) =>
          Effect.zipRight(
            Effect.logWarning("inbox pump failed; retrying in 1 s", cause),
            Effect.sync(() => {
              setTimeout(() => batch.forEach(kick), 1_000).unref()
            })
          )
        ),
        Effect.ensuring(
          Effect.sync(() => {
            for (const p of batch) reading.delete(p)
            if (due.size > 0) scheduleRead()
          })
        )
      )
    })
    function scheduleRead() {
      if (readScheduled) return
      readScheduled = true
      setImmediate(() => run(readRound))
    }
    function kick(pump: Pump) {
      due.add(pump)
      scheduleRead()
    }
    /**
     * Whether `seq` is the very next seq of an idle pump (no read due or in flight): pushed as it
     * is, it cannot leave a gap. Anything else waits for the pump's read.
     */
    const isNext = (pump: Pump, seq: number) => seq === pump.pushed + 1 && !due.has(pump) && !reading.has(pump)

    const runSync = Runtime.runSync(runtime)
    /**
     * A notification's appends for this instance's pumps. A message carried in the notice
     * (`data`) that is the very next seq of an idle pump is pushed as it is, without a read: it
     * cannot leave a gap, and notifications arrive in commit order. Anything else is read.
     */
    const noticesOf = (tenant: string, entries: InboxNotice["d"]) => {
      let direct: Array<Message.Delivery> | undefined
      for (const entry of entries) {
        if (!Array.isArray(entry)) continue
        const [peer, rawSeq, data] = entry
        const key = keyOf(tenant, peer)
        const seq = Number(rawSeq)
        wake(key)
        const pump = pumps.get(key)
        if (pump === undefined || !(seq > pump.pushed)) continue
        if (typeof data === "string" && isNext(pump, seq)) {
          let message: Message.Message | undefined
          try {
            message = SqlStore.messageOfRow({ data, seq })
          } catch {
            message = undefined
          }
          if (message !== undefined) {
            pump.pushed = seq
            ;(direct ??= []).push({ recipient: pump.peer, message })
            continue
          }
        }
        kick(pump)
      }
      if (direct !== undefined) {
        pumpStats.inline += direct.length
        try {
          runSync(memory.publish(tenant, direct))
        } catch (e) {
          // Never out of the LISTEN connection's callback; the sockets' replay covers them.
          runSync(Effect.logWarning("could not push messages from a wake-up", e))
        }
      }
    }

    const onNotification = (channel: string, payload: string) => {
      let parsed: unknown
      try {
        parsed = JSON.parse(payload)
      } catch {
        return
      }
      if (channel === INBOX_CHANNEL) {
        const notice = parsed as InboxNotice
        if (typeof notice.t !== "string" || !Array.isArray(notice.d)) return
        noticesOf(notice.t, notice.d)
      } else if (channel === PgSpawnPlane.RUNNER_CHANNEL) {
        const notice = parsed as { t?: unknown; r?: unknown; stop?: unknown }
        if (typeof notice.t !== "string" || typeof notice.r !== "string") return
        const wake = { t: notice.t, r: notice.r, ...(typeof notice.stop === "string" ? { stop: notice.stop } : {}) }
        run(plane.onNotification(wake).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not deliver to a runner", cause))))
      } else if (channel === EVENT_CHANNEL) {
        const notice = parsed as EventNotice
        if (notice.i === instance) return
        run(receiveEvent(notice).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not read a cluster event", cause))))
      }
    }

    const receiveEvent = (notice: EventNotice) =>
      Effect.gen(function* () {
        let full = notice
        if (notice.id !== undefined) {
          const rows = yield* sql<{ data: string }>`SELECT data FROM a2a_events WHERE id = ${notice.id}`
          if (rows[0] === undefined) return
          full = JSON.parse(rows[0].data) as EventNotice
        }
        if (typeof full.t !== "string") return
        const event = decodeEvent(full.e)
        if (Option.isNone(event)) return
        yield* memory.publishEvent(full.t, event.value, full.to as ReadonlyArray<Ids.PeerId> | undefined)
      })

    const onConnected = () => {
      // Back after a gap (or first start): what was notified meanwhile is lost, so read again.
      for (const pump of pumps.values()) kick(pump)
      waiters.unsafeWakeEvery()
      run(plane.catchUp.pipe(Effect.catchAllCause((cause) => Effect.logWarning("runner catch-up failed", cause))))
    }
    const listener: Listener = wakeups.listen
      ? yield* listen(url, [INBOX_CHANNEL, EVENT_CHANNEL, PgSpawnPlane.RUNNER_CHANNEL], onNotification, onConnected)
      : { connected: () => false }

    /**
     * Catch-up, the safety net under the wake-ups: every `catchUpMs`, ONE query compares the
     * last seq of every inbox with a socket or a long-poll here with what was pushed; pumps that
     * are behind read, long-polls with unread messages wake. A lost wake-up (or none at all,
     * with `A2A_BROKER_PG_LISTEN=off`) therefore delays a push by at most `catchUpMs` plus a read.
     */
    const catchUpTick = Effect.suspend(() => {
      const keys = new Map<string, { tenant: string; peer: string }>()
      for (const pump of pumps.values()) keys.set(keyOf(pump.tenant, pump.peer), { tenant: pump.tenant, peer: pump.peer })
      for (const key of waiters.keys()) {
        const [tenant, peer] = key.split("\u0000") as [string, string]
        keys.set(key, { tenant, peer })
      }
      if (keys.size === 0) return Effect.void
      return sql<{ tenant: string; peer_id: string; last_seq: number | string; cursor: number | string }>`SELECT s.tenant, s.peer_id, s.last_seq, s.cursor
          FROM json_to_recordset(${JSON.stringify([...keys.values()])}::json) AS x(tenant text, peer text)
          JOIN a2a_inbox_state s ON s.tenant = x.tenant AND s.peer_id = x.peer`.pipe(
        Effect.map((rows) => {
          for (const row of rows) {
            const key = keyOf(row.tenant, row.peer_id)
            const last = Number(row.last_seq)
            const pump = pumps.get(key)
            if (pump !== undefined && last > pump.pushed) kick(pump)
            if (last > Number(row.cursor)) wake(key)
          }
        })
      )
    })
    yield* Effect.gen(function* () {
      yield* catchUpTick
      // Without LISTEN, runner orders made through other instances are caught up the same way.
      if (!wakeups.listen) yield* plane.catchUp
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("catch-up failed", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(wakeups.catchUpMs))),
      Effect.forkScoped
    )

    const hub: ChannelHub.ChannelHubService = {
      subscribe: memory.subscribe,
      attach: (tenant, peer, sink, options) =>
        Effect.gen(function* () {
          const key = keyOf(tenant, peer)
          let pump = pumps.get(key)
          if (pump === undefined) {
            // Everything up to the last seq now is the socket's replay; the pump pushes what follows.
            const rows = yield* orDie(sql<{ last_seq: number | string }>`SELECT last_seq FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer}`)
            pump = pumps.get(key) ?? { tenant, peer, pushed: Number(rows[0]?.last_seq ?? 0), refs: 0 }
            pumps.set(key, pump)
          }
          const mine = pump
          mine.refs++
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (--mine.refs === 0 && pumps.get(key) === mine) pumps.delete(key)
            })
          )
          yield* memory.attach(tenant, peer, sink, options)
          // Catch up at once: a notification may have come before the pump was there.
          kick(mine)
        }),
      publish: (tenant, deliveries) =>
        Effect.suspend(() => {
          const direct: Array<Message.Delivery> = []
          for (const d of deliveries) {
            const pump = pumps.get(keyOf(tenant, d.recipient))
            if (pump === undefined || d.message.seq <= pump.pushed) continue
            if (isNext(pump, d.message.seq)) {
              pump.pushed = d.message.seq
              direct.push(d)
            } else kick(pump)
          }
          return direct.length === 0 ? Effect.void : memory.publish(tenant, direct)
        }),
      publishEvent: (tenant, event, to) =>
        Effect.gen(function* () {
          yield* memory.publishEvent(tenant, event, to)
          const notice: EventNotice = { i: instance, t: tenant, e: encodeEvent(event), to }
          const text = JSON.stringify(notice)
          if (Buffer.byteLength(text) <= INLINE_EVENT_BYTES) {
            yield* sql`SELECT pg_notify(${EVENT_CHANNEL}, ${text})`
          } else {
            const now = Date.now()
            const rows = yield* sql<{ id: number | string }>`INSERT INTO a2a_events (created_at, data) VALUES (${now}, ${text}) RETURNING id`
            yield* sql`SELECT pg_notify(${EVENT_CHANNEL}, ${JSON.stringify({ i: instance, id: Number(rows[0]!.id) })})`
          }
        }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not notify an event to the other instances", cause))),
      isConnected: memory.isConnected,
      connections: memory.connections
    }

    const spawnTokens: SharedSpawnTokensService = {
      put: (record) => orDie(Effect.asVoid(sql`INSERT INTO a2a_spawn_tokens (hash, spawn_id, record) VALUES (${record.hash}, ${record.spawnId ?? ""}, ${JSON.stringify(record)})`)),
      find: (hash) =>
        orDie(
          sql<{ record: string }>`SELECT record FROM a2a_spawn_tokens WHERE hash = ${hash}`.pipe(
            Effect.map((rows) => (rows[0] === undefined ? undefined : decodeTokenRecord(JSON.parse(rows[0].record))))
          )
        ),
      revoke: (spawnId) => orDie(Effect.asVoid(sql`DELETE FROM a2a_spawn_tokens WHERE spawn_id = ${spawnId}`))
    }

    /** Run `work` only if this instance holds the cluster's GC lock for this transaction. */
    const asLeader = <A>(work: Effect.Effect<A, Errors.ServiceUnavailable>, otherwise: A) =>
      orDie(
        sql.withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(${GC_LOCK}) AS ok`
            return rows[0]?.ok === true ? yield* work : otherwise
          })
        )
      )

    // ---- the relay's directory: which instance holds a runner's link, and its URL ----
    let advertised: string | undefined
    const upsertInstance = Effect.suspend(() =>
      advertised === undefined
        ? Effect.void
        : sql`INSERT INTO a2a_instances (instance, url, seen_at) VALUES (${instance}, ${advertised}, ${Date.now()})
            ON CONFLICT (instance) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at`.pipe(Effect.asVoid)
    )
    yield* upsertInstance.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not refresh this instance's relay URL", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(INSTANCE_REFRESH_MS))),
      Effect.forkScoped
    )
    // A stopping instance takes its row away (a killed one's row ages out in prune).
    yield* Effect.addFinalizer(() =>
      sql`DELETE FROM a2a_instances WHERE instance = ${instance}`.pipe(Effect.timeoutOption(1_000), Effect.ignore)
    )
    const directory: RelayForward.RelayDirectoryService = {
      instance,
      advertise: (url) =>
        Effect.suspend(() => {
          advertised = url
          return upsertInstance
        }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not record this instance's relay URL", cause))),
      holderOf: (tenant, runner) =>
        sql<{ instance: string; url: string | null }>`SELECT r.instance, i.url FROM a2a_runners r LEFT JOIN a2a_instances i ON i.instance = r.instance
          WHERE r.tenant = ${tenant} AND r.id = ${runner} AND r.instance IS NOT NULL`.pipe(
          Effect.map((rows) => {
            const row = rows[0]
            return row === undefined || row.url === null ? undefined : { instance: row.instance, url: row.url }
          }),
          Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("could not look up the instance holding a runner", cause), undefined))
        )
    }

    const lookup = yield* PgPeerLookup.make
    /**
     * Peer ids this instance resolved (`resolveId`): a direct send to one of them skips the
     * lookup, a round trip and the database's most expensive statement per message, because
     * the group commit checks that recipient again in the same transaction as the append
     * (`PgGroupCommit`, `x`) and refuses it with `PeerNotFound` when it is gone. Ids never
     * change owner, so what is remembered is only "this id was a peer"; a peer unregistered on
     * any instance is found gone at the next send. Bounded: cleared when it reaches
     * `KNOWN_IDS_MAX` entries.
     */
    const knownIds = new Set<string>()
    const known = (tenant: string, id: string) => {
      if (knownIds.size >= KNOWN_IDS_MAX) knownIds.clear()
      knownIds.add(keyOf(tenant, id))
    }
    const peers: PeerRegistry.PeerRegistryService = {
      ...peersBase,
      get: lookup.get,
      resolve: lookup.resolve,
      resolveId: (tenant, idOrName) =>
        knownIds.has(keyOf(tenant, idOrName))
          ? Effect.succeed(idOrName as Ids.PeerId)
          : Effect.map(lookup.resolve(tenant, idOrName), (record) => {
              // Only ids are remembered: a name can pass to another peer.
              if (record.peer.id === idOrName) known(tenant, idOrName)
              return record.peer.id
            }),
      unregister: (tenant, id) => Effect.tap(peersBase.unregister(tenant, id), () => Effect.sync(() => knownIds.delete(keyOf(tenant, id)))),
      expire: (cutoff) => asLeader(peersBase.expire(cutoff), [])
    }

    /**
     * Appends, acks and drops are group-committed (`PgGroupCommit.ts`): what arrives together
     * is one transaction with multi-row statements and one wake-up notification.
     */
    const writer = yield* PgGroupCommit.make({
      url: PostgresUrl.withSessionDefaults(url),
      capacity: config.inboxCapacity,
      instance,
      channel: INBOX_CHANNEL,
      committed: (appended) => {
        for (const [tenant, peer] of appended) wake(keyOf(tenant, peer))
      },
      gone: (tenant, peer) => {
        knownIds.delete(keyOf(tenant, peer))
      }
    })

    const inbox: Inbox.InboxService = {
      ...inboxBase,
      append: (tenant, recipients, draft) => Effect.flatMap(Clock.currentTimeMillis, (now) => writer.append(tenant, recipients, draft, now)),
      appendStaged: (tenant, recipients, draft) => Effect.flatMap(Clock.currentTimeMillis, (now) => writer.appendStaged(tenant, recipients, draft, now)),
      ack: writer.ack,
      drop: writer.drop,
      wait: (tenant, peer, options) =>
        Effect.scoped(
          Effect.gen(function* () {
            // Register before reading, so an append between the read and the wait still wakes us.
            const woken = yield* waiters.register(keyOf(tenant, peer))
            const first = yield* inboxBase.read(tenant, peer, options)
            if (first.messages.length > 0) return first
            const arrived = yield* Deferred.await(woken).pipe(Effect.timeoutOption(options.timeout))
            return Option.isSome(arrived) ? yield* inboxBase.read(tenant, peer, options) : first
          })
        ),
      prune: (cutoff) =>
        asLeader(
          Effect.gen(function* () {
            yield* orDie(sql`DELETE FROM a2a_events WHERE created_at < ${Date.now() - EVENT_RETENTION_MS}`)
            yield* orDie(sql`DELETE FROM a2a_instances WHERE seen_at < ${Date.now() - INSTANCE_RETENTION_MS}`)
            return yield* inboxBase.prune(cutoff)
          }),
          0
        )
    }

    return Context.empty().pipe(
      Context.add(TeamDirectory.TeamDirectory, teams),
      Context.add(PeerRegistry.PeerRegistry, peers),
      Context.add(Inbox.Inbox, inbox),
      Context.add(ChannelHub.ChannelHub, hub),
      Context.add(SpawnPlane.SpawnPlane, { ...plane.service, expire: (now) => asLeader(plane.service.expire(now), []) }),
      Context.add(StoreGauges, yield* SqlStore.gauges),
      // Claims are atomic across instances (FOR UPDATE SKIP LOCKED, SqlTaskBoard.ts); the sweep may run on every instance.
      Context.add(TaskBoard.TaskBoard, yield* SqlTaskBoard.make("pg")),
      Context.add(PgCluster, { instance, listener, commits: writer.stats, pumps: pumpStats }),
      Context.add(RelayForward.RelayDirectory, directory),
      Context.add(SharedSpawnTokens, spawnTokens)
    )
  })

/** How long a query waits for a connection before the request is answered 503. */
const CONNECT_TIMEOUT = "2 seconds"

/** PostgreSQL at `url`: the shared store of a cluster of brokers (spawn plane included). */
export const layer = (url: string): Layer.Layer<Stores | PgCluster | SharedSpawnTokens | RelayForward.RelayDirectory, Errors.ServiceUnavailable, BrokerConfig> =>
  Layer.scopedContext(make(url)).pipe(
    Layer.provide(
      PgClient.layer({ url: Redacted.make(PostgresUrl.withSessionDefaults(url)), connectTimeout: CONNECT_TIMEOUT, maxConnections: 10, idleTimeout: "30 seconds", applicationName: "a2a-broker" })
    ),
    Layer.mapError((e) => new Errors.ServiceUnavailable({ message: `cannot open database ${PostgresUrl.redact(url)}: ${(e as { message?: string }).message ?? String(e)}` }))
  )
