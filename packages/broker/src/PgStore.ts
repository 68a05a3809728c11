/**
 * The PostgreSQL store: several broker processes share one database and act as one broker
 * (see docs/scaling.md).
 *
 * - PeerRegistry, TeamDirectory and Inbox are the portable `SqlStore` (same migrations) with
 *   `cache: false`: every read goes to the database, each write is its own transaction. A
 *   direct message is appended by one statement of its own (seq, row and notification).
 * - The inbox table is the source of truth for delivery. Every append runs
 *   `pg_notify('a2a_inbox', {tenant, [[peer, seq]…]})` inside its transaction (delivered exactly
 *   when the rows commit). Every instance LISTENs; for a recipient with a socket on it, the
 *   instance's pump reads the rows after the last seq it pushed and pushes them in seq order.
 *   The payload only says "look": messages are always read from the table, so a notification
 *   lost or merged never leaves a gap. The sending instance goes through the same pump; only
 *   the very next seq of an idle pump is pushed as it is (it cannot leave a gap), so the order
 *   of one recipient's messages is the seq order whatever instance sent them.
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
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { ChannelFrame, ChannelHub, Errors, Inbox, Message as MessageModule, PeerRegistry, PostgresUrl, SpawnPlane, TeamDirectory } from "@mks/a2a"
import type { Ids, Message } from "@mks/a2a"
import { Context, Deferred, Effect, Layer, Option, Redacted, Runtime, Schema, Scope } from "effect"
import pg from "pg"
import { randomBytes } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import * as PgSpawnPlane from "./PgSpawnPlane.js"
import * as SqlStore from "./SqlStore.js"
import { StoreGauges, type Stores } from "./Store.js"
import { SharedSpawnTokens, type SharedSpawnTokensService, TokenRecord } from "./TokenStore.js"

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
/** Recipients per inbox notification (keeps a team fan-out's payload far below 8,000 bytes). */
const RECIPIENTS_PER_NOTIFY = 40
/** Rows a pump reads per query. */
const PUMP_PAGE = 500
/** Events kept in `a2a_events` for instances that read them late. */
const EVENT_RETENTION_MS = 60_000

const PG_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS a2a_events (id BIGSERIAL PRIMARY KEY, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
  // Spawn tokens of the cluster: the SHA-256 of the secret, never the secret.
  `CREATE TABLE IF NOT EXISTS a2a_spawn_tokens (hash TEXT PRIMARY KEY, spawn_id TEXT NOT NULL, record TEXT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS a2a_spawn_tokens_spawn ON a2a_spawn_tokens (spawn_id)`,
  ...PgSpawnPlane.MIGRATIONS
]

const MessageClass = MessageModule.Message

const keyOf = (tenant: string, peer: string) => `${tenant}\u0000${peer}`

const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
const orDie = <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) =>
  self.pipe(Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.die(unavailable(e)))) as Effect.Effect<A, Exclude<E, SqlError>, R>

interface InboxNotice {
  readonly i: string
  readonly t: string
  readonly d: ReadonlyArray<readonly [string, number]>
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

/** Cluster-wide state of one instance, for tests and metrics. */
export class PgCluster extends Context.Tag("@mks/a2a-broker/PgCluster")<PgCluster, { readonly instance: string; readonly listener: Listener }>() {}

const make = (url: string) =>
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const sql = yield* SqlClient.SqlClient
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runFork(runtime)
    const instance = randomBytes(6).toString("hex")

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

    const notifyAppended: SqlStore.AppendHook = (tenant, appended) =>
      Effect.forEach(
        chunk(appended, RECIPIENTS_PER_NOTIFY),
        (part) => {
          const notice: InboxNotice = { i: instance, t: tenant, d: part.map((a) => [a.peer, a.seq] as const) }
          return sql`SELECT pg_notify(${INBOX_CHANNEL}, ${JSON.stringify(notice)})`
        },
        { discard: true }
      )

    const teams = yield* SqlStore.makeTeamDirectory(false)
    const peersBase = yield* SqlStore.makePeerRegistry(false).pipe(Effect.provideService(TeamDirectory.TeamDirectory, teams))
    const inboxBase = yield* SqlStore.makeInbox(config.inboxCapacity, false, notifyAppended)
    const memory = yield* ChannelHub.makeMemory()
    const plane = yield* PgSpawnPlane.make({ instance, staleAfter: config.runnerStaleAfter, pendingTimeout: config.spawnPendingTimeout })

    // ---- long-poll waiters, woken by inbox notifications ----
    const waiting = new Map<string, Set<Deferred.Deferred<void>>>()
    const wake = (key: string) => {
      const set = waiting.get(key)
      if (set !== undefined) for (const d of set) Deferred.unsafeDone(d, Effect.void)
    }
    const wakeAll = () => {
      for (const set of waiting.values()) for (const d of set) Deferred.unsafeDone(d, Effect.void)
    }
    const register = (key: string) =>
      Effect.acquireRelease(
        Effect.flatMap(Deferred.make<void>(), (d) =>
          Effect.sync(() => {
            const set = waiting.get(key) ?? new Set()
            set.add(d)
            waiting.set(key, set)
            return d
          })
        ),
        (d) =>
          Effect.sync(() => {
            const set = waiting.get(key)
            set?.delete(d)
            if (set?.size === 0) waiting.delete(key)
          })
      )

    // ---- pumps: for each recipient with a socket here, push its rows in seq order ----
    interface Pump {
      readonly tenant: string
      readonly peer: Ids.PeerId
      pushed: number
      refs: number
      running: boolean
      again: boolean
    }
    const pumps = new Map<string, Pump>()

    const cycle = (pump: Pump): Effect.Effect<void> =>
      Effect.gen(function* () {
        const key = keyOf(pump.tenant, pump.peer)
        while (pumps.get(key) === pump) {
          pump.again = false
          const rows = yield* sql<{ seq: number | string; data: string }>`SELECT seq, data FROM a2a_inbox
            WHERE tenant = ${pump.tenant} AND peer_id = ${pump.peer} AND seq > ${pump.pushed} ORDER BY seq LIMIT ${PUMP_PAGE}`
          if (rows.length > 0) {
            const deliveries: Array<Message.Delivery> = rows.map((row) => ({ recipient: pump.peer, message: SqlStore.messageOfRow(row) }))
            pump.pushed = deliveries[deliveries.length - 1]!.message.seq
            yield* memory.publish(pump.tenant, deliveries)
          }
          if (rows.length < PUMP_PAGE && !pump.again) break
        }
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.zipRight(
            Effect.logWarning("inbox pump failed; retrying in 1 s", cause),
            Effect.sync(() => {
              setTimeout(() => kick(pump), 1_000).unref()
            })
          )
        ),
        Effect.ensuring(
          Effect.sync(() => {
            pump.running = false
            if (pump.again && pumps.get(keyOf(pump.tenant, pump.peer)) === pump) kick(pump)
          })
        )
      )

    function kick(pump: Pump) {
      if (pump.running) {
        pump.again = true
        return
      }
      pump.running = true
      run(cycle(pump))
    }

    const noticeOf = (key: string, seq: number) => {
      wake(key)
      const pump = pumps.get(key)
      if (pump !== undefined && seq > pump.pushed) kick(pump)
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
        for (const [peer, seq] of notice.d) noticeOf(keyOf(notice.t, peer), Number(seq))
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

    const listener = yield* listen(url, [INBOX_CHANNEL, EVENT_CHANNEL, PgSpawnPlane.RUNNER_CHANNEL], onNotification, () => {
      // Back after a gap (or first start): what was notified meanwhile is lost, so read again.
      for (const pump of pumps.values()) kick(pump)
      wakeAll()
      run(plane.catchUp.pipe(Effect.catchAllCause((cause) => Effect.logWarning("runner catch-up failed", cause))))
    })

    const hub: ChannelHub.ChannelHubService = {
      subscribe: memory.subscribe,
      attach: (tenant, peer, sink) =>
        Effect.gen(function* () {
          const key = keyOf(tenant, peer)
          let pump = pumps.get(key)
          if (pump === undefined) {
            // Everything up to the last seq now is the socket's replay; the pump pushes what follows.
            const rows = yield* orDie(sql<{ last_seq: number | string }>`SELECT last_seq FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer}`)
            pump = pumps.get(key) ?? { tenant, peer, pushed: Number(rows[0]?.last_seq ?? 0), refs: 0, running: false, again: false }
            pumps.set(key, pump)
          }
          const mine = pump
          mine.refs++
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (--mine.refs === 0 && pumps.get(key) === mine) pumps.delete(key)
            })
          )
          yield* memory.attach(tenant, peer, sink)
          // Catch up at once: a notification may have come before the pump was there.
          kick(mine)
        }),
      publish: (tenant, deliveries) =>
        Effect.gen(function* () {
          for (const d of deliveries) {
            const pump = pumps.get(keyOf(tenant, d.recipient))
            if (pump === undefined || d.message.seq <= pump.pushed) continue
            // The next seq of an idle pump cannot leave a gap: push it as it is, without a read.
            if (!pump.running && d.message.seq === pump.pushed + 1) {
              pump.pushed = d.message.seq
              yield* memory.publish(tenant, [d])
            } else kick(pump)
          }
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
    const asLeader = <A>(work: Effect.Effect<A>, otherwise: A) =>
      orDie(
        sql.withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(${GC_LOCK}) AS ok`
            return rows[0]?.ok === true ? yield* work : otherwise
          })
        )
      )

    const peers: PeerRegistry.PeerRegistryService = {
      ...peersBase,
      expire: (cutoff) => asLeader(peersBase.expire(cutoff), [])
    }

    /**
     * A direct message (one recipient) is one statement: take the seq if the inbox has room,
     * insert the row and notify, atomically (the notification leaves at commit). A team send
     * is the portable transaction (all or nothing across its recipients).
     */
    const knownInboxes = new Set<string>()
    const appendOne = (tenant: string, recipient: Ids.PeerId, draft: Message.MessageDraft, retried = false): Effect.Effect<ReadonlyArray<Message.Delivery>, Errors.InboxFull | SqlError> =>
      Effect.gen(function* () {
        const key = keyOf(tenant, recipient)
        if (!knownInboxes.has(key)) {
          yield* sql`INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor) VALUES (${tenant}, ${recipient}, 0, 0) ON CONFLICT DO NOTHING`
        }
        const now = Date.now()
        const rows = yield* sql<{ seq: number | string }>`WITH taken AS (
            UPDATE a2a_inbox_state SET last_seq = last_seq + 1
            WHERE tenant = ${tenant} AND peer_id = ${recipient} AND last_seq - cursor < ${config.inboxCapacity} RETURNING last_seq),
          inserted AS (
            INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data)
            SELECT ${tenant}, ${recipient}, last_seq, ${draft.id}, ${now}, ${JSON.stringify(draft)} FROM taken RETURNING seq)
          SELECT seq, pg_notify(${INBOX_CHANNEL}, json_build_object('i', ${instance}::text, 't', ${tenant}::text, 'd', json_build_array(json_build_array(${recipient}::text, seq)))::text) AS notified
          FROM inserted`
        if (rows[0] === undefined && knownInboxes.has(key) && !retried) {
          // Dropped meanwhile (by another instance): create the inbox again and retry once.
          knownInboxes.delete(key)
          return yield* appendOne(tenant, recipient, draft, true)
        }
        knownInboxes.add(key)
        if (rows[0] === undefined) {
          return yield* Effect.fail(
            new Errors.InboxFull({ message: `the inbox of ${recipient} holds ${config.inboxCapacity} unacked messages`, peer: recipient, capacity: config.inboxCapacity })
          )
        }
        return [{ recipient, message: new MessageClass({ ...draft, seq: Number(rows[0].seq) }, true) }] as ReadonlyArray<Message.Delivery>
      })

    const inbox: Inbox.InboxService = {
      ...inboxBase,
      append: (tenant, recipients, draft) =>
        recipients.length === 1 ? orDie(appendOne(tenant, recipients[0]!, draft)) : inboxBase.append(tenant, recipients, draft),
      drop: (tenant, peer) => Effect.zipRight(Effect.sync(() => knownInboxes.delete(keyOf(tenant, peer))), inboxBase.drop(tenant, peer)),
      wait: (tenant, peer, options) =>
        Effect.scoped(
          Effect.gen(function* () {
            // Register before reading, so an append between the read and the wait still wakes us.
            const woken = yield* register(keyOf(tenant, peer))
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
      Context.add(PgCluster, { instance, listener }),
      Context.add(SharedSpawnTokens, spawnTokens)
    )
  })

const chunk = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** How long a query waits for a connection before the request is answered 503. */
const CONNECT_TIMEOUT = "2 seconds"

/** PostgreSQL at `url`: the shared store of a cluster of brokers (spawn plane included). */
export const layer = (url: string): Layer.Layer<Stores | PgCluster | SharedSpawnTokens, Errors.ServiceUnavailable, BrokerConfig> =>
  Layer.scopedContext(make(url)).pipe(
    Layer.provide(
      PgClient.layer({ url: Redacted.make(PostgresUrl.withSessionDefaults(url)), connectTimeout: CONNECT_TIMEOUT, maxConnections: 10, idleTimeout: "30 seconds", applicationName: "a2a-broker" })
    ),
    Layer.mapError((e) => new Errors.ServiceUnavailable({ message: `cannot open database ${PostgresUrl.redact(url)}: ${(e as { message?: string }).message ?? String(e)}` }))
  )
