/**
 * The durable store: PeerRegistry, TeamDirectory and Inbox over `@effect/sql`, in SQL that runs
 * unchanged on SQLite and PostgreSQL. Live channels (ChannelHub) and the spawn plane stay in
 * memory: sockets are per process, and runners re-announce their agents when they reconnect.
 *
 * An inbox is a row of `a2a_inbox_state` (last seq, acked cursor) and the rows of `a2a_inbox`.
 * Taking the next seq and checking capacity is one conditional `UPDATE … RETURNING`, so
 * concurrent appends can neither reuse a seq nor overfill an inbox.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Ids, Inbox, Message, Peer, PeerRegistry, TeamDirectory, Team } from "@mks/a2a"
import { Cause, Clock, Deferred, Effect, Layer, Option } from "effect"
import type { Statement } from "better-sqlite3"
import { SqliteDirect, type SqliteDirectService } from "./SqliteClient.js"
import * as WriteQueue from "./WriteQueue.js"
import type { PendingWrite } from "./WriteQueue.js"
import { keyOf } from "./TenantKey.js"

const MIGRATIONS: ReadonlyArray<ReadonlyArray<string>> = [
  [
    `CREATE TABLE IF NOT EXISTS a2a_peers (
      id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL,
      status TEXT NOT NULL, registered_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL, data TEXT NOT NULL,
      UNIQUE (tenant, name))`,
    `CREATE INDEX IF NOT EXISTS a2a_peers_seen ON a2a_peers (status, last_seen_at)`,
    `CREATE TABLE IF NOT EXISTS a2a_teams (
      tenant TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, created_at BIGINT NOT NULL,
      PRIMARY KEY (tenant, name))`,
    `CREATE TABLE IF NOT EXISTS a2a_team_members (
      tenant TEXT NOT NULL, team TEXT NOT NULL, peer_id TEXT NOT NULL, joined_at BIGINT NOT NULL,
      PRIMARY KEY (tenant, team, peer_id))`,
    `CREATE INDEX IF NOT EXISTS a2a_team_members_peer ON a2a_team_members (tenant, peer_id)`,
    `CREATE TABLE IF NOT EXISTS a2a_inbox_state (
      tenant TEXT NOT NULL, peer_id TEXT NOT NULL, last_seq BIGINT NOT NULL, cursor BIGINT NOT NULL,
      PRIMARY KEY (tenant, peer_id))`,
    `CREATE TABLE IF NOT EXISTS a2a_inbox (
      tenant TEXT NOT NULL, peer_id TEXT NOT NULL, seq BIGINT NOT NULL, message_id TEXT NOT NULL,
      appended_at BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (tenant, peer_id, seq))`,
    `CREATE INDEX IF NOT EXISTS a2a_inbox_message ON a2a_inbox (tenant, peer_id, message_id)`
  ],
  // GC prunes acked messages by age: without this index every run scanned the whole inbox table.
  [`CREATE INDEX IF NOT EXISTS a2a_inbox_appended ON a2a_inbox (appended_at)`],
  // `find` (a reply's thread) looks a message up by id. Indexed by (tenant, peer_id, message_id),
  // each append wrote a leaf of that index at its recipient's place: a batch of 20 messages to 20
  // inboxes dirtied ~20 more pages, and the index was half of SQLite's cost per message (35.7 ->
  // 21.4 us, 11.6 -> 6.8 KB of WAL per message, measured on the inbox's batch shape). Message ids
  // are time-ordered, so an index on the id alone grows at its end.
  [`CREATE INDEX IF NOT EXISTS a2a_inbox_message_id ON a2a_inbox (message_id)`, `DROP INDEX IF EXISTS a2a_inbox_message`]
]

/** Apply the migrations not yet recorded in `a2a_migrations`, each in a transaction. */
export const migrate = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS a2a_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`)
  const done = new Set((yield* sql<{ version: number }>`SELECT version FROM a2a_migrations`).map((r) => Number(r.version)))
  for (let i = 0; i < MIGRATIONS.length; i++) {
    const version = i + 1
    if (done.has(version)) continue
    yield* sql.withTransaction(
      Effect.gen(function* () {
        for (const statement of MIGRATIONS[i]!) yield* sql.unsafe(statement)
        yield* sql`INSERT INTO a2a_migrations (version, applied_at) VALUES (${version}, ${Date.now()})`
      })
    )
  }
})

const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
/** Store failures are defects of the request (answered 503 by the server's guard), never silent. */
const orDie = <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) =>
  self.pipe(Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.die(unavailable(e)))) as Effect.Effect<A, Exclude<E, SqlError>, R>

// ---- teams ------------------------------------------------------------------------------------

interface TeamRow {
  readonly name: string
  readonly description: string
  readonly created_at: number | string
}

/**
 * With `cache`, reads that every send makes (peer rows, a peer's teams) are served from memory
 * and every write of this process refreshes or drops the cached entry, and inbox writes are
 * group-committed from an in-memory mirror of the inbox counters (see `makeInbox`). Only valid
 * while this process is the only writer (SQLite); instances sharing a database run without it.
 */
export interface StoreOptions {
  readonly capacity: number
  readonly cache: boolean
  /**
   * Runs inside the transaction of every (non-group-committed) append, after its rows are
   * written: PostgreSQL's `pg_notify` there is delivered exactly when the rows commit.
   */
  readonly onAppend?: AppendHook | undefined
}

/** Called in an append's transaction with the seq each recipient got. */
export type AppendHook = (tenant: string, appended: ReadonlyArray<{ readonly peer: string; readonly seq: number }>) => Effect.Effect<void, SqlError>

/** A message row of `a2a_inbox` as a Message. */
export const messageOfRow = (row: { data: string; seq: number | string }) =>
  new Message.Message({ ...(JSON.parse(row.data) as object), seq: Number(row.seq) } as Message.Message, true)

export const makeTeamDirectory = (cache: boolean) => Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const teamsCache = new Map<string, ReadonlyArray<Ids.TeamName>>()
  const forget = (tenant: string, peer: string) => Effect.sync(() => teamsCache.delete(keyOf(tenant, peer)))

  const membersOf = (tenant: string, name: string) =>
    sql<{ peer_id: string }>`SELECT peer_id FROM a2a_team_members WHERE tenant = ${tenant} AND team = ${name} ORDER BY joined_at, peer_id`.pipe(
      Effect.map((rows) => rows.map((r) => r.peer_id as Ids.PeerId))
    )

  const toTeam = (tenant: string, row: TeamRow) =>
    membersOf(tenant, row.name).pipe(
      Effect.map((members) => new Team.Team({ name: row.name as Ids.TeamName, description: row.description, createdAt: Ids.nowIso(Number(row.created_at)), members }, true))
    )

  const find = (tenant: string, name: string) =>
    sql<TeamRow>`SELECT name, description, created_at FROM a2a_teams WHERE tenant = ${tenant} AND name = ${name}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

  const notFound = (name: string) => new Errors.TeamNotFound({ message: `no team ${name}`, team: name })

  const ensure = (tenant: string, name: string, description: string, now: number) =>
    sql`INSERT INTO a2a_teams (tenant, name, description, created_at) VALUES (${tenant}, ${name}, ${description}, ${now}) ON CONFLICT DO NOTHING`

  const service: TeamDirectory.TeamDirectoryService = {
    create: (tenant, input) =>
      orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const inserted = yield* sql<{ name: string }>`INSERT INTO a2a_teams (tenant, name, description, created_at) VALUES (${tenant}, ${input.name}, ${input.description ?? ""}, ${now}) ON CONFLICT DO NOTHING RETURNING name`
          if (inserted.length === 0) return yield* Effect.fail(new Errors.TeamExists({ message: `team ${input.name} exists`, team: input.name }))
          return new Team.Team({ name: input.name, description: input.description ?? "", createdAt: Ids.nowIso(now), members: [] }, true)
        })
      ),
    get: (tenant, name) =>
      orDie(
        Effect.gen(function* () {
          const row = yield* find(tenant, name)
          if (Option.isNone(row)) return yield* Effect.fail(notFound(name))
          return yield* toTeam(tenant, row.value)
        })
      ),
    list: (tenant) =>
      orDie(
        sql<TeamRow>`SELECT name, description, created_at FROM a2a_teams WHERE tenant = ${tenant} ORDER BY name`.pipe(
          Effect.flatMap((rows) => Effect.forEach(rows, (row) => toTeam(tenant, row)))
        )
      ),
    join: (tenant, name, peer) =>
      orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          yield* ensure(tenant, name, "", now)
          yield* sql`INSERT INTO a2a_team_members (tenant, team, peer_id, joined_at) VALUES (${tenant}, ${name}, ${peer}, ${now}) ON CONFLICT DO NOTHING`
          yield* forget(tenant, peer)
          const row = yield* find(tenant, name)
          return yield* toTeam(tenant, Option.getOrThrow(row))
        })
      ),
    leave: (tenant, name, peer) =>
      orDie(
        Effect.gen(function* () {
          const row = yield* find(tenant, name)
          if (Option.isNone(row)) return yield* Effect.fail(notFound(name))
          yield* sql`DELETE FROM a2a_team_members WHERE tenant = ${tenant} AND team = ${name} AND peer_id = ${peer}`
          yield* forget(tenant, peer)
          return yield* toTeam(tenant, row.value)
        })
      ),
    members: (tenant, name) =>
      orDie(
        Effect.gen(function* () {
          if (Option.isNone(yield* find(tenant, name))) return yield* Effect.fail(notFound(name))
          return yield* membersOf(tenant, name)
        })
      ),
    teamsOf: (tenant, peer) =>
      Effect.suspend(() => {
        const hit = cache ? teamsCache.get(keyOf(tenant, peer)) : undefined
        if (hit !== undefined) return Effect.succeed(hit)
        return orDie(
          sql<{ team: string }>`SELECT team FROM a2a_team_members WHERE tenant = ${tenant} AND peer_id = ${peer} ORDER BY team`.pipe(
            Effect.map((rows) => rows.map((r) => r.team as Ids.TeamName)),
            Effect.tap((teams) => Effect.sync(() => cache && teamsCache.set(keyOf(tenant, peer), teams)))
          )
        )
      }),
    removePeer: (tenant, peer) =>
      orDie(
        sql<{ team: string }>`DELETE FROM a2a_team_members WHERE tenant = ${tenant} AND peer_id = ${peer} RETURNING team`.pipe(
          Effect.tap(() => forget(tenant, peer)),
          Effect.map((rows) => rows.map((r) => r.team as Ids.TeamName).sort())
        )
      )
  }
  return service
})

// ---- peers ------------------------------------------------------------------------------------

export interface PeerRow {
  readonly id: string
  readonly tenant: string
  readonly name: string
  readonly owner: string
  readonly status: string
  readonly registered_at: number | string
  readonly last_seen_at: number | string
  readonly data: string
}

/** The JSON `data` column: every Peer field that is not a column or derived. */
type PeerData = Peer.PeerFields

/** A row of `a2a_peers` with its team names as a Peer (the PostgreSQL store builds them from batched reads too). */
export const peerOfRow = (row: PeerRow, teamNames: ReadonlyArray<Ids.TeamName>) => {
  const data = JSON.parse(row.data) as PeerData
  return new Peer.Peer(
    {
      id: row.id as Ids.PeerId,
      name: row.name,
      summary: data.summary,
      agent: data.agent,
      cwd: data.cwd,
      gitRoot: data.gitRoot,
      host: data.host,
      pid: data.pid,
      teams: teamNames,
      status: row.status as Peer.PeerStatus,
      registeredAt: Ids.nowIso(Number(row.registered_at)),
      lastSeenAt: Ids.nowIso(Number(row.last_seen_at)),
      ...(data.spawnId === undefined ? {} : { spawnId: data.spawnId as Ids.SpawnId }),
      ...(data.runnerId === undefined ? {} : { runnerId: data.runnerId as Ids.RunnerId }),
      meta: data.meta
    },
    true
  )
}

export const makePeerRegistry = (cache: boolean) => Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rowsById = new Map<string, PeerRow>()
  const idsByName = new Map<string, string>()
  const remember = (row: PeerRow) => {
    if (!cache) return row
    rowsById.set(row.id, row)
    idsByName.set(keyOf(row.tenant, row.name), row.id)
    return row
  }
  const forget = (id: string) => {
    const row = rowsById.get(id)
    if (row !== undefined) idsByName.delete(keyOf(row.tenant, row.name))
    rowsById.delete(id)
  }
  const teams = yield* TeamDirectory.TeamDirectory
  // One registration at a time per process: name lookups and inserts must not interleave.
  const lifecycle = yield* Effect.makeSemaphore(1)

  /**
   * A status change (`touch` when `seenAt` is set, else `setStatus`). With the cache (this
   * process is the only writer) the changes of one turn are written in one transaction, each
   * caller answered after its commit: a wave of thousands of reconnects (or disconnects) costs
   * one commit per batch instead of one each (measured ~40-86 µs per commit, ~8 µs batched).
   */
  interface StatusWrite {
    readonly tenant: string
    readonly id: string
    readonly status: Peer.PeerStatus
    readonly seenAt: number | undefined
    readonly done: WriteQueue.Answer<PeerRow | undefined, SqlError>
  }
  const statusNow = (tenant: string, id: string, status: Peer.PeerStatus, seenAt: number | undefined) =>
    Effect.map(
      seenAt === undefined
        ? sql<PeerRow>`UPDATE a2a_peers SET status = ${status} WHERE tenant = ${tenant} AND id = ${id} RETURNING *`
        : sql<PeerRow>`UPDATE a2a_peers SET status = ${status}, last_seen_at = ${seenAt} WHERE tenant = ${tenant} AND id = ${id} RETURNING *`,
      (rows) => rows[0]
    )
  const runtime = yield* Effect.runtime<never>()
  const enqueueStatus = WriteQueue.make<StatusWrite>(
    (batch) =>
      sql.withTransaction(Effect.forEach(batch, (w) => statusNow(w.tenant, w.id, w.status, w.seenAt))).pipe(
        Effect.matchCause({
          onSuccess: (rows) => batch.forEach((w, i) => w.done(Effect.succeed(rows[i]))),
          onFailure: (cause) => batch.forEach((w) => w.done(Effect.failCause(cause)))
        })
      ),
    runtime
  )
  /**
   * The row after the change (remembered), or `undefined` when there is no such peer. Not
   * interruptible once queued: a channel closed while its `touch` waits for the batch must see
   * the peer online when it then marks it offline, or the peer would stay online without a socket.
   */
  const writeStatus = (tenant: string, id: string, status: Peer.PeerStatus, seenAt: number | undefined) =>
    Effect.uninterruptible(
      Effect.tap(
        cache ? enqueueStatus<PeerRow | undefined, SqlError>((done) => ({ tenant, id, status, seenAt, done })) : statusNow(tenant, id, status, seenAt),
        (row) => Effect.sync(() => row !== undefined && remember(row))
      )
    )

  const toPeer = peerOfRow
  // With the cache, the record built from a cached row is kept with it (until the row or its teams change).
  const built = new WeakMap<PeerRow, { readonly teams: ReadonlyArray<Ids.TeamName>; readonly record: Peer.PeerRecord }>()
  const toRecord = (row: PeerRow) =>
    Effect.map(teams.teamsOf(row.tenant, row.id as Ids.PeerId), (names): Peer.PeerRecord => {
      const hit = cache ? built.get(row) : undefined
      if (hit !== undefined && hit.teams === names) return hit.record
      const record = { tenant: row.tenant, owner: row.owner, peer: toPeer(row, names) }
      if (cache) built.set(row, { teams: names, record })
      return record
    })

  const byId = (tenant: string, id: string) =>
    Effect.suspend(() => {
      const hit = rowsById.get(id)
      if (hit !== undefined) return Effect.succeed(hit.tenant === tenant ? Option.some(hit) : Option.none())
      return sql<PeerRow>`SELECT * FROM a2a_peers WHERE tenant = ${tenant} AND id = ${id}`.pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), remember)))
    })
  const byName = (tenant: string, name: string) =>
    Effect.suspend(() => {
      const id = idsByName.get(keyOf(tenant, name))
      const hit = id === undefined ? undefined : rowsById.get(id)
      if (hit !== undefined) return Effect.succeed(Option.some(hit))
      return sql<PeerRow>`SELECT * FROM a2a_peers WHERE tenant = ${tenant} AND name = ${name}`.pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), remember)))
    })

  const notFound = (peer: string) => new Errors.PeerNotFound({ message: `no peer ${peer}`, peer })
  const required = (tenant: string, id: string) =>
    Effect.flatMap(byId(tenant, id), Option.match({ onNone: () => Effect.fail(notFound(id)), onSome: Effect.succeed }))

  const service: PeerRegistry.PeerRegistryService = {
    register: ({ tenant, owner, registration: reg, runnerId }) =>
      orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const freshId = Ids.make.peer()
          const name = reg.name ?? `peer-${freshId.slice(-8)}`
          const existing = yield* byName(tenant, name)
          let id: string
          let resumed: boolean
          if (Option.isSome(existing)) {
            const previous = existing.value
            if (previous.owner !== owner) return yield* Effect.fail(new Errors.PeerNameTaken({ message: `the name ${name} is registered by another principal`, name }))
            const data: PeerData = Peer.registeredFields(reg, runnerId, JSON.parse(previous.data) as PeerData)
            yield* sql`UPDATE a2a_peers SET status = 'online', last_seen_at = ${now}, data = ${JSON.stringify(data)} WHERE id = ${previous.id}`
            forget(previous.id)
            id = previous.id
            resumed = true
          } else {
            const data: PeerData = Peer.registeredFields(reg, runnerId)
            yield* sql`INSERT INTO a2a_peers (id, tenant, name, owner, status, registered_at, last_seen_at, data)
              VALUES (${freshId}, ${tenant}, ${name}, ${owner}, 'online', ${now}, ${now}, ${JSON.stringify(data)})`
            id = freshId
            resumed = false
          }
          for (const team of reg.teams ?? []) yield* teams.join(tenant, team, id as Ids.PeerId)
          const record = yield* Effect.orDie(Effect.flatMap(required(tenant, id), toRecord))
          return { record, resumed }
        }).pipe(lifecycle.withPermits(1))
      ),
    get: (tenant, id) => orDie(Effect.flatMap(required(tenant, id), toRecord)),
    resolve: (tenant, idOrName) =>
      orDie(
        Effect.gen(function* () {
          const row = Option.orElse(yield* byId(tenant, idOrName), () => Option.none<PeerRow>())
          const found = Option.isSome(row) ? row : yield* byName(tenant, idOrName)
          if (Option.isNone(found)) return yield* Effect.fail(notFound(idOrName))
          return yield* toRecord(found.value)
        })
      ),
    list: (tenant, filter) =>
      orDie(
        sql<PeerRow>`SELECT * FROM a2a_peers WHERE tenant = ${tenant} ORDER BY registered_at, id`.pipe(
          Effect.flatMap((rows) => Effect.forEach(rows, (row) => Effect.map(toRecord(row), (r) => r.peer))),
          Effect.map((peers) => (filter === undefined ? peers : peers.filter((p) => Peer.matches(p, filter))))
        )
      ),
    update: (tenant, id, patch) =>
      orDie(
        Effect.gen(function* () {
          const row = yield* required(tenant, id)
          const old = JSON.parse(row.data) as PeerData
          const data: PeerData = { ...old, summary: patch.summary ?? old.summary, meta: patch.meta ?? old.meta }
          yield* sql`UPDATE a2a_peers SET data = ${JSON.stringify(data)} WHERE id = ${id}`
          forget(id)
          return (yield* toRecord({ ...row, data: JSON.stringify(data) })).peer
        })
      ),
    touch: (tenant, id) =>
      orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const row = yield* writeStatus(tenant, id, "online", now)
          if (row === undefined) return yield* Effect.fail(notFound(id))
          return (yield* toRecord(row)).peer
        })
      ),
    setStatus: (tenant, id, status) =>
      orDie(
        Effect.gen(function* () {
          const row = yield* writeStatus(tenant, id, status, undefined)
          if (row === undefined) return yield* Effect.fail(notFound(id))
          return (yield* toRecord(row)).peer
        })
      ),
    unregister: (tenant, id) =>
      orDie(
        Effect.gen(function* () {
          const rows = yield* sql<PeerRow>`DELETE FROM a2a_peers WHERE tenant = ${tenant} AND id = ${id} RETURNING *`
          forget(id)
          if (rows.length === 0) return yield* Effect.fail(notFound(id))
          const left = yield* teams.removePeer(tenant, id)
          return toPeer({ ...rows[0]!, status: "offline" }, left)
        }).pipe(lifecycle.withPermits(1))
      ),
    expire: (cutoff) =>
      orDie(
        sql<PeerRow>`UPDATE a2a_peers SET status = 'offline' WHERE status = 'online' AND last_seen_at < ${cutoff} RETURNING *`.pipe(
          Effect.tap((rows) => Effect.sync(() => rows.forEach(remember))),
          Effect.flatMap((rows) => Effect.forEach(rows, toRecord))
        )
      )
  }
  return service
})

// ---- inboxes ----------------------------------------------------------------------------------

/** In-process wake-ups for long-polls (keyed by `keyOf(tenant, peer)`); the database stays the source of truth. Also `PgStore`'s. */
export const makeWaiters = () => {
  const waiting = new Map<string, Set<Deferred.Deferred<void>>>()
  return {
    register: (key: string) =>
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
      ),
    wake: (key: string) =>
      Effect.suspend(() => {
        const set = waiting.get(key)
        return set === undefined ? Effect.void : Effect.forEach(set, (d) => Deferred.succeed(d, undefined), { discard: true })
      }),
    /** Wake the waiters of many keys at once, synchronously (after a group commit). */
    unsafeWakeAll: (keys: Iterable<string>) => {
      if (waiting.size === 0) return
      for (const key of keys) {
        const set = waiting.get(key)
        if (set !== undefined) for (const d of set) Deferred.unsafeDone(d, Effect.void)
      }
    },
    /** Wake the waiters of one key, synchronously. */
    unsafeWake: (key: string) => {
      const set = waiting.get(key)
      if (set !== undefined) for (const d of set) Deferred.unsafeDone(d, Effect.void)
    },
    /** Wake every waiter, synchronously (the database was away: anything may have changed). */
    unsafeWakeEvery: () => {
      for (const set of waiting.values()) for (const d of set) Deferred.unsafeDone(d, Effect.void)
    },
    /** The keys somebody waits on. */
    keys: () => waiting.keys()
  }
}

/** Rows per multi-row INSERT: few distinct statements to prepare, far below any bind-parameter limit. */
const ROWS_PER_STATEMENT = 50

/**
 * The group commit's multi-row statements (SQLite placeholders), their text built once per row
 * count: `sql.insert` compiled the same text again for every batch.
 */
const valuesText = (head: string, columns: number, tail = "") => {
  const texts: Array<string> = []
  const row = `(${Array.from({ length: columns }, () => "?").join(", ")})`
  return (rows: number): string => (texts[rows] ??= `${head} VALUES ${Array.from({ length: rows }, () => row).join(", ")}${tail}`)
}
const INBOX_COLUMNS = 6
const insertInboxText = valuesText("INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data)", INBOX_COLUMNS)
const STATE_COLUMNS = 4
const upsertStateText = valuesText(
  "INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)",
  STATE_COLUMNS,
  " ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = excluded.last_seq, cursor = excluded.cursor"
)

/** One inbox's counters, mirrored in memory by the group-commit writer (single-writer stores only). */
interface InboxState {
  lastSeq: number
  cursor: number
}

/**
 * The inbox over SQL. With `groupCommit` (only valid while this process is the only writer,
 * like the peer cache) appends, acks and drops are queued and written by one writer: every
 * write that arrives while the event loop is busy goes into the same transaction (a few
 * multi-row statements for the whole batch), and each caller is answered only once that
 * transaction has committed. Seqs and cursors are assigned from an in-memory mirror of
 * `a2a_inbox_state`, in queue order, so a batch keeps the order of its writes. Without it,
 * each write is its own transaction and the seq is taken with a conditional `UPDATE … RETURNING`
 * (safe for several writers on one database).
 */
export const makeInbox = (capacity: number, groupCommit = false, onAppend?: AppendHook) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const runtime = yield* Effect.runtime<never>()
    const waiters = makeWaiters()
    const known = new Set<string>()
    // The connection itself: the group commit runs on it (only the broker's SQLite client has one).
    const direct = Option.getOrUndefined(yield* Effect.serviceOption(SqliteDirect))
    if (groupCommit && direct === undefined) return yield* Effect.dieMessage("the inbox's group commit needs the broker's SQLite client (SqliteClient.layer)")

    const toMessage = messageOfRow
    // SQLite would look a message up by id by scanning the peer's inbox (its primary key's prefix).
    const byMessageId = sql.onDialectOrElse({ sqlite: () => sql.unsafe("INDEXED BY a2a_inbox_message_id"), orElse: () => sql.unsafe("") })

    const cursorOf = (tenant: string, peer: string) =>
      sql<{ cursor: number | string }>`SELECT cursor FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer}`.pipe(
        Effect.map((rows) => (rows[0] === undefined ? 0 : Number(rows[0].cursor)))
      )

    const read = (tenant: string, peer: Ids.PeerId, options?: Inbox.ReadOptions) =>
      Effect.gen(function* () {
        // The single writer knows the counters (read once into the mirror): an inbox with nothing
        // after `after` is not queried, so a wave of idle peers reconnecting costs no inbox reads.
        const state = groupCommit ? yield* stateOf(tenant, peer) : undefined
        const cursor = state === undefined ? yield* cursorOf(tenant, peer) : state.cursor
        const after = Math.max(options?.after ?? cursor, cursor)
        if (state !== undefined && state.lastSeq <= after) return { messages: [], cursor }
        const limit = options?.limit ?? 100
        const rows = yield* sql<{ data: string; seq: number }>`SELECT seq, data FROM a2a_inbox WHERE tenant = ${tenant} AND peer_id = ${peer} AND seq > ${after} ORDER BY seq LIMIT ${limit}`
        return { messages: rows.map(toMessage), cursor }
      })

    const wakeAll = (tenant: string, recipients: ReadonlyArray<string>) => Effect.forEach(recipients, (r) => waiters.wake(keyOf(tenant, r)), { discard: true })

    // ---- one transaction per write (several writers on one database) ----

    const appendNow = (tenant: string, recipients: ReadonlyArray<Ids.PeerId>, draft: Message.MessageDraft, data: string, now: number) =>
      Effect.gen(function* () {
        const deliveries = yield* sql.withTransaction(
          Effect.tap(Effect.forEach(recipients, (recipient) =>
            Effect.gen(function* () {
              // The state row exists once created; drop() forgets it again.
              if (!known.has(keyOf(tenant, recipient))) {
                yield* sql`INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor) VALUES (${tenant}, ${recipient}, 0, 0) ON CONFLICT DO NOTHING`
              }
              const taken = yield* sql<{ last_seq: number | string }>`UPDATE a2a_inbox_state SET last_seq = last_seq + 1
                WHERE tenant = ${tenant} AND peer_id = ${recipient} AND last_seq - cursor < ${capacity} RETURNING last_seq`
              if (taken.length === 0) {
                return yield* Effect.fail(new Errors.InboxFull({ message: `the inbox of ${recipient} holds ${capacity} unacked messages`, peer: recipient, capacity }))
              }
              const seq = Number(taken[0]!.last_seq)
              yield* sql`INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data) VALUES (${tenant}, ${recipient}, ${seq}, ${draft.id}, ${now}, ${data})`
              return { recipient, message: new Message.Message({ ...draft, seq }, true) }
            })
          ), (done) => (onAppend === undefined ? Effect.void : onAppend(tenant, done.map((d) => ({ peer: d.recipient, seq: d.message.seq })))))
        )
        for (const r of recipients) known.add(keyOf(tenant, r))
        yield* wakeAll(tenant, recipients)
        return deliveries
      })

    const ackNow = (tenant: string, peer: string, upTo: number) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ cursor: number | string }>`UPDATE a2a_inbox_state
          SET cursor = CASE WHEN ${upTo} > last_seq THEN last_seq ELSE ${upTo} END
          WHERE tenant = ${tenant} AND peer_id = ${peer} AND cursor < ${upTo} AND cursor < last_seq RETURNING cursor`
        return { cursor: rows[0] === undefined ? yield* cursorOf(tenant, peer) : Number(rows[0].cursor) }
      })

    const deleteInbox = (tenant: string, peer: string) =>
      Effect.zipRight(
        sql`DELETE FROM a2a_inbox WHERE tenant = ${tenant} AND peer_id = ${peer}`,
        sql`DELETE FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer}`
      )

    const dropNow = (tenant: string, peer: string) =>
      Effect.sync(() => known.delete(keyOf(tenant, peer))).pipe(Effect.zipRight(sql.withTransaction(deleteInbox(tenant, peer))), Effect.asVoid)

    // ---- group commit (this process is the only writer) ----

    type State = InboxState & { readonly tenant: string; readonly peer: string }
    const mirror = new Map<string, State>()
    // Only used with `groupCommit`, which requires the connection (checked above).
    const connection = direct as SqliteDirectService

    /** An inbox's counters: from the mirror, else read (on the connection, inside a transaction) into it. */
    const loadState = (prepare: (sql: string) => Statement, tenant: string, peer: string): State => {
      const key = keyOf(tenant, peer)
      let state = mirror.get(key)
      if (state === undefined) {
        const row = prepare("SELECT last_seq, cursor FROM a2a_inbox_state WHERE tenant = ? AND peer_id = ?").get(tenant, peer) as
          | { last_seq: number; cursor: number }
          | undefined
        state = { tenant, peer, lastSeq: Number(row?.last_seq ?? 0), cursor: Number(row?.cursor ?? 0) }
        mirror.set(key, state)
      }
      return state
    }
    const stateOf = (tenant: string, peer: string) =>
      Effect.suspend(() => {
        const hit = mirror.get(keyOf(tenant, peer))
        return hit !== undefined ? Effect.succeed(hit) : connection.transaction((prepare) => loadState(prepare, tenant, peer))
      })

    /**
     * A failed batch: nothing of it is durable, so forget what the mirror assumed for the inboxes
     * it touched, and fail every write.
     */
    const failBatch = (batch: ReadonlyArray<PendingWrite>, touched: ReadonlySet<string>, cause: Cause.Cause<unknown>) =>
      Effect.sync(() => {
        for (const key of touched) mirror.delete(key)
        const failure = Cause.squash(cause)
        const error = (failure as { _tag?: string })._tag === "SqlError" ? unavailable(failure as SqlError) : failure
        for (const op of batch) op.done(Effect.die(error))
      })

    /**
     * Write one batch in one transaction; answer every write once it committed. The batch runs
     * on SQLite's connection itself (`SqliteDirect`): one synchronous transaction, without an
     * Effect, a span or a cache lookup per statement (SqliteClient.ts says what that cost).
     * Counters the mirror lacks are read inside the transaction.
     */
    const commit = (batch: ReadonlyArray<PendingWrite>) => {
      const settle: Array<() => void> = []
      const woken = new Set<string>()
      const touched = new Set<string>()
      const work = connection.transaction((prepare) => {
        const stateOfNow = (tenant: string, peer: string) => loadState(prepare, tenant, peer)
        let rows: Array<unknown> = []
        let dirty = new Map<string, State>()
        const touch = (key: string, state: State) => {
          dirty.set(key, state)
          touched.add(key)
        }
        const chunked = (values: Array<unknown>, columns: number, text: (rows: number) => string) => {
          for (let i = 0; i < values.length; i += ROWS_PER_STATEMENT * columns) {
            const params = values.slice(i, i + ROWS_PER_STATEMENT * columns)
            prepare(text(params.length / columns)).run(...params)
          }
        }
        const writeOut = () => {
          const states: Array<unknown> = []
          for (const state of dirty.values()) states.push(state.tenant, state.peer, state.lastSeq, state.cursor)
          chunked(rows, INBOX_COLUMNS, insertInboxText)
          chunked(states, STATE_COLUMNS, upsertStateText)
          rows = []
          dirty = new Map()
        }
        for (const op of batch) {
          switch (op.kind) {
            case "append": {
              const states = op.recipients.map((recipient) => stateOfNow(op.tenant, recipient))
              const full = states.find((state) => state.lastSeq - state.cursor >= capacity)
              if (full !== undefined) {
                const error = new Errors.InboxFull({ message: `the inbox of ${full.peer} holds ${capacity} unacked messages`, peer: full.peer as Ids.PeerId, capacity })
                settle.push(() => op.done(Effect.fail(error)))
                break
              }
              const deliveries = states.map((state, i): Message.Delivery => {
                const seq = ++state.lastSeq
                const key = keyOf(op.tenant, state.peer)
                touch(key, state)
                rows.push(op.tenant, state.peer, seq, op.draft.id, op.now, op.data)
                woken.add(key)
                return { recipient: op.recipients[i]!, message: new Message.Message({ ...op.draft, seq }, true) }
              })
              settle.push(() => op.done(Effect.succeed(deliveries)))
              break
            }
            case "ack": {
              const state = stateOfNow(op.tenant, op.peer)
              if (op.upTo > state.cursor && state.cursor < state.lastSeq) {
                state.cursor = Math.min(op.upTo, state.lastSeq)
                touch(keyOf(op.tenant, op.peer), state)
              }
              const cursor = { cursor: state.cursor }
              settle.push(() => op.done(Effect.succeed(cursor)))
              break
            }
            case "drop": {
              // Earlier writes of this batch first, so the delete sees (and removes) them.
              writeOut()
              prepare("DELETE FROM a2a_inbox WHERE tenant = ? AND peer_id = ?").run(op.tenant, op.peer)
              prepare("DELETE FROM a2a_inbox_state WHERE tenant = ? AND peer_id = ?").run(op.tenant, op.peer)
              const key = keyOf(op.tenant, op.peer)
              mirror.set(key, { tenant: op.tenant, peer: op.peer, lastSeq: 0, cursor: 0 })
              touched.add(key)
              settle.push(() => op.done(Effect.void))
              break
            }
          }
        }
        writeOut()
      })
      return work.pipe(
        Effect.zipRight(
          Effect.sync(() => {
            for (const answer of settle) answer()
            waiters.unsafeWakeAll(woken)
          })
        ),
        Effect.catchAllCause((cause) => failBatch(batch, touched, cause))
      )
    }

    const enqueue = WriteQueue.make(commit, runtime)

    const service: Inbox.InboxService = {
      append: (tenant, recipients, draft) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const data = JSON.stringify(draft)
          if (!groupCommit) return yield* orDie(appendNow(tenant, recipients, draft, data, now))
          return yield* enqueue<ReadonlyArray<Message.Delivery>, Errors.InboxFull | Errors.PeerNotFound>((done) => ({ kind: "append", tenant, recipients, draft, data, now, done }))
        }),
      read: (tenant, peer, options) => orDie(read(tenant, peer, options)),
      wait: (tenant, peer, options) =>
        orDie(
          Effect.scoped(
            Effect.gen(function* () {
              // Register before reading so an append between the read and the wait still wakes us.
              const woken = yield* waiters.register(keyOf(tenant, peer))
              const first = yield* read(tenant, peer, options)
              if (first.messages.length > 0) return first
              const arrived = yield* Deferred.await(woken).pipe(Effect.timeoutOption(options.timeout))
              return Option.isSome(arrived) ? yield* read(tenant, peer, options) : first
            })
          )
        ),
      ack: (tenant, peer, upTo) =>
        groupCommit
          ? enqueue<Message.InboxCursor, never>((done) => ({ kind: "ack", tenant, peer, upTo, done }))
          : orDie(ackNow(tenant, peer, upTo)),
      cursor: (tenant, peer) => orDie(groupCommit ? Effect.map(stateOf(tenant, peer), (state) => state.cursor) : cursorOf(tenant, peer)),
      depth: (tenant, peer) =>
        orDie(
          sql<{ depth: number | string }>`SELECT last_seq - cursor AS depth FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer}`.pipe(
            Effect.map((rows) => (rows[0] === undefined ? 0 : Number(rows[0].depth)))
          )
        ),
      find: (tenant, peer, id) =>
        orDie(
          sql<{ data: string; seq: number }>`SELECT seq, data FROM a2a_inbox ${byMessageId} WHERE message_id = ${id} AND tenant = ${tenant} AND peer_id = ${peer}`.pipe(
            Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toMessage))
          )
        ),
      drop: (tenant, peer) =>
        groupCommit ? enqueue<void, never>((done) => ({ kind: "drop", tenant, peer, done })) : orDie(dropNow(tenant, peer)),
      prune: (cutoff) =>
        orDie(
          sql<{ seq: number }>`DELETE FROM a2a_inbox WHERE appended_at < ${cutoff} AND seq <= (
            SELECT s.cursor FROM a2a_inbox_state s WHERE s.tenant = a2a_inbox.tenant AND s.peer_id = a2a_inbox.peer_id) RETURNING seq`.pipe(
            Effect.map((rows) => rows.length)
          )
        )
    }
    return service
  })

/** Counts for `/metrics`, straight from the tables. */
export const gauges = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const count = (query: Effect.Effect<ReadonlyArray<{ n: number | string | null }>, SqlError>) =>
    query.pipe(
      Effect.map((rows) => Number(rows[0]?.n ?? 0)),
      Effect.orElseSucceed(() => Number.NaN)
    )
  return {
    peersOnline: count(sql<{ n: number }>`SELECT COUNT(*) AS n FROM a2a_peers WHERE status = 'online'`),
    inboxDepth: count(sql<{ n: number }>`SELECT SUM(last_seq - cursor) AS n FROM a2a_inbox_state`)
  }
})

/** The three durable services over the SqlClient in context, after migrating it. */
export const layer = (options: StoreOptions) =>
  Layer.effectDiscard(orDie(migrate)).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        Layer.effect(PeerRegistry.PeerRegistry, makePeerRegistry(options.cache)),
        Layer.effect(Inbox.Inbox, makeInbox(options.capacity, options.cache, options.onAppend))
      ).pipe(Layer.provideMerge(Layer.effect(TeamDirectory.TeamDirectory, makeTeamDirectory(options.cache))))
    )
  )
