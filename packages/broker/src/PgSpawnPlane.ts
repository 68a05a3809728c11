/**
 * The spawn plane in PostgreSQL, for brokers sharing one database: runners and spawns are rows
 * (`a2a_runners`, `a2a_spawns`), so any instance can list them, choose a runner and order a
 * spawn; only the control link (the runner's socket) is local to the instance holding it
 * (`a2a_runners.instance`/`link`).
 *
 * An order made through an instance that does not hold the runner's link is stored `pending`
 * and the holder is woken with `NOTIFY a2a_runner` ({tenant, runner}); it reads the runner's
 * pending orders from the table, puts them on the link and marks them `dispatched`. Stops go
 * the same way. The status machine, the choice of a runner and the reconciliation of a
 * re-attaching runner are the memory plane's (core's `spawnPlaneMemory`), with each operation
 * one transaction under a per-tenant advisory lock (the memory plane's lock, cluster-wide).
 * Status changes are published on the instance that made them; the Bus there sends
 * `spawn_status` to the requester, through the cluster's event channel wherever it is connected.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Ids, Runner, RunnerFrame, Spawn, SpawnPlane } from "@mks/a2a"
import { Clock, Effect, Either, PubSub, Queue, Schema, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { keyOf } from "./TenantKey.js"

export const RUNNER_CHANNEL = "a2a_runner"

export const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS a2a_runners (
    tenant TEXT NOT NULL, id TEXT NOT NULL, info TEXT NOT NULL, status TEXT NOT NULL, connected_at BIGINT,
    last_seen_at BIGINT NOT NULL, instance TEXT, link TEXT, PRIMARY KEY (tenant, id))`,
  `CREATE TABLE IF NOT EXISTS a2a_spawns (
    tenant TEXT NOT NULL, id TEXT NOT NULL, n BIGSERIAL, runner_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL,
    order_data TEXT, stop_requested BOOLEAN NOT NULL DEFAULT FALSE, grace_ms BIGINT, created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id))`,
  `CREATE INDEX IF NOT EXISTS a2a_spawns_runner ON a2a_spawns (tenant, runner_id)`
]

const encodeSpawn = Schema.encodeSync(Spawn.Spawn)
const decodeSpawn = Schema.decodeUnknownSync(Spawn.Spawn)
const decodeInfo = Schema.decodeUnknownSync(Runner.RunnerInfo)
const decodeOrder = Schema.decodeUnknownSync(RunnerFrame.SpawnOrder)

interface Link {
  readonly id: string
  readonly queue: Queue.Queue<RunnerFrame.RunnerDownFrame>
}

interface RunnerRow {
  readonly id: string
  readonly info: string
  readonly status: Runner.RunnerStatus
  readonly connected_at: number | string | null
  readonly last_seen_at: number | string
  readonly instance: string | null
  readonly link: string | null
}

interface SpawnRow {
  readonly id: string
  readonly runner_id: string
  readonly status: Spawn.SpawnStatus
  readonly data: string
  readonly order_data: string | null
  readonly stop_requested: boolean
  readonly grace_ms: number | string | null
  readonly created_at: number | string
}

interface Entry {
  spawn: Spawn.Spawn
  readonly createdAt: number
  readonly order: RunnerFrame.SpawnOrder | undefined
  readonly stopRequested: boolean
  readonly graceMs: number | undefined
}

/** What a transaction does once it committed: frames onto local links, changes to subscribers. */
interface Tx {
  readonly frames: Array<{ readonly link: Link; readonly frame: RunnerFrame.RunnerDownFrame }>
  readonly changes: Array<SpawnPlane.SpawnChange>
}

const opt = <K extends string, V>(key: K, value: V | undefined | null): { [P in K]?: V } =>
  (value === undefined || value === null ? {} : { [key]: value }) as { [P in K]?: V }

const toEntry = (row: SpawnRow): Entry => ({
  spawn: decodeSpawn(JSON.parse(row.data)),
  createdAt: Number(row.created_at),
  order: row.order_data === null ? undefined : decodeOrder(JSON.parse(row.order_data)),
  stopRequested: row.stop_requested,
  graceMs: row.grace_ms === null ? undefined : Number(row.grace_ms)
})

export interface Deps {
  readonly instance: string
  readonly staleAfter: number
  readonly pendingTimeout: number
}

export const make = (deps: Deps) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { instance, staleAfter, pendingTimeout } = deps
    const links = new Map<string, Link>()
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<SpawnPlane.SpawnChange>(), PubSub.shutdown)

    const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
    /** One transaction under the tenant's lock; frames and changes leave once it committed. */
    const inTx = <A, E>(tenant: string, body: (tx: Tx) => Effect.Effect<A, E | SqlError>): Effect.Effect<A, Exclude<E, SqlError>> =>
      Effect.gen(function* () {
        const tx: Tx = { frames: [], changes: [] }
        const result = yield* sql.withTransaction(
          Effect.zipRight(sql`SELECT pg_advisory_xact_lock(hashtext(${`a2a_spawn:${tenant}`}))`, body(tx))
        )
        for (const { link, frame } of tx.frames) yield* Queue.offer(link.queue, frame)
        for (const change of tx.changes) yield* PubSub.publish(pubsub, change)
        return result
      }).pipe(
        Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.die(unavailable(e as SqlError)))
      ) as Effect.Effect<A, Exclude<E, SqlError>>

    const spawnsOn = (tenant: string, runner: string) =>
      sql<SpawnRow>`SELECT * FROM a2a_spawns WHERE tenant = ${tenant} AND runner_id = ${runner} ORDER BY n`.pipe(Effect.map((rows) => rows.map(toEntry)))
    const activeOn = (tenant: string, runner: string) =>
      sql<{ status: Spawn.SpawnStatus }>`SELECT status FROM a2a_spawns WHERE tenant = ${tenant} AND runner_id = ${runner}`.pipe(
        Effect.map((rows) => rows.filter((r) => Spawn.isActive(r.status)).length)
      )
    const runnerRow = (tenant: string, runner: string) =>
      sql<RunnerRow>`SELECT * FROM a2a_runners WHERE tenant = ${tenant} AND id = ${runner}`.pipe(Effect.map((rows) => rows[0]))
    const findSpawn = (tenant: string, id: Ids.SpawnId) =>
      Effect.flatMap(sql<SpawnRow>`SELECT * FROM a2a_spawns WHERE tenant = ${tenant} AND id = ${id}`, (rows) =>
        rows[0] === undefined ? Effect.fail(new Errors.SpawnNotFound({ message: `no spawn ${id}`, spawn: id })) : Effect.succeed(toEntry(rows[0]))
      )
    const toRunner = (tenant: string, row: RunnerRow) =>
      Effect.map(activeOn(tenant, row.id), (active) => {
        const info = decodeInfo(JSON.parse(row.info))
        return new Runner.Runner({
          ...info,
          status: row.status,
          active,
          ...opt("connectedAt", row.connected_at === null ? undefined : Ids.nowIso(Number(row.connected_at))),
          lastSeenAt: Ids.nowIso(Number(row.last_seen_at))
        })
      })

    /** The local link of a runner, if this instance holds its current one. */
    const localLink = (tenant: string, row: RunnerRow | undefined) => {
      if (row === undefined || row.instance !== instance) return undefined
      const link = links.get(keyOf(tenant, row.id))
      return link !== undefined && link.id === row.link ? link : undefined
    }

    const move = (tx: Tx, tenant: string, entry: Entry, status: Spawn.SpawnStatus, fields: Spawn.StatusFields, now: number) =>
      Effect.gen(function* () {
        const s = entry.spawn
        const next = Spawn.advance(s, status, fields, now)
        // A finished spawn's order (it carries the spawn token) is no longer kept.
        yield* Spawn.isFinal(status)
          ? sql`UPDATE a2a_spawns SET status = ${status}, data = ${JSON.stringify(encodeSpawn(next))}, order_data = NULL WHERE tenant = ${tenant} AND id = ${s.id}`
          : sql`UPDATE a2a_spawns SET status = ${status}, data = ${JSON.stringify(encodeSpawn(next))} WHERE tenant = ${tenant} AND id = ${s.id}`
        entry.spawn = next
        tx.changes.push({ tenant, spawn: next, previous: s.status })
        return next
      })

    const stopFrame = (entry: Entry): RunnerFrame.RunnerDownFrame => ({ type: "stop", spawnId: entry.spawn.id, ...opt("graceMs", entry.graceMs) })

    /** Wake the instance holding `runner`'s link (delivered when this transaction commits). */
    const wakeHolder = (tenant: string, runner: string, extra: Record<string, unknown> = {}) =>
      sql`SELECT pg_notify(${RUNNER_CHANNEL}, ${JSON.stringify({ t: tenant, r: runner, ...extra })})`

    /** Put the runner's pending, issued orders on its link (it must be local), as `dispatched`. */
    const deliverPending = (tx: Tx, tenant: string, link: Link, runner: string, now: number) =>
      Effect.gen(function* () {
        for (const entry of yield* spawnsOn(tenant, runner)) {
          if (entry.order === undefined || entry.spawn.status !== "pending") continue
          tx.frames.push({ link, frame: { type: "spawn", spawn: entry.order } })
          yield* move(tx, tenant, entry, "dispatched", {}, now)
        }
      })

    /** After an order was issued: dispatch it here, or wake the instance holding the runner. */
    const dispatch = (tx: Tx, tenant: string, runner: string, now: number) =>
      Effect.gen(function* () {
        const row = yield* runnerRow(tenant, runner)
        const link = localLink(tenant, row)
        if (link !== undefined) return yield* deliverPending(tx, tenant, link, runner, now)
        if (row?.instance !== null && row?.instance !== undefined) yield* wakeHolder(tenant, runner)
      })

    const choose = (tenant: string, spec: Spawn.SpawnSpec) =>
      Effect.gen(function* () {
        const preset = Spawn.presetOf(spec)
        const rows = yield* sql<RunnerRow>`SELECT * FROM a2a_runners WHERE tenant = ${tenant}`
        if (spec.runner !== undefined) {
          const pinned = rows.find((r) => r.id === spec.runner)
          if (pinned === undefined) return yield* Effect.fail(new Errors.RunnerNotFound({ message: `no runner ${spec.runner}`, runner: spec.runner }))
          const info = decodeInfo(JSON.parse(pinned.info))
          if (!info.presets.includes(preset)) return yield* Effect.fail(new Errors.NoRunnerAvailable({ message: `runner ${spec.runner} does not run preset ${preset}` }))
          if (info.capacity - (yield* activeOn(tenant, pinned.id)) <= 0) {
            return yield* Effect.fail(new Errors.NoRunnerAvailable({ message: `runner ${spec.runner} is at capacity (${info.capacity})` }))
          }
          return info.id
        }
        const candidates: Array<{ id: Ids.RunnerId; free: number }> = []
        for (const row of rows) {
          if (row.status !== "online" || row.instance === null) continue
          const info = decodeInfo(JSON.parse(row.info))
          if (!Spawn.labelsMatch(spec.labels, info.labels) || !info.presets.includes(preset)) continue
          const free = info.capacity - (yield* activeOn(tenant, row.id))
          if (free > 0) candidates.push({ id: info.id, free })
        }
        candidates.sort((a, b) => b.free - a.free || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        if (candidates[0] !== undefined) return candidates[0].id
        const labels = Object.entries(spec.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(",")
        return yield* Effect.fail(
          new Errors.NoRunnerAvailable({ message: `no online runner with free capacity runs preset ${preset}${labels === "" ? "" : ` with labels ${labels}`}` })
        )
      })

    /** The memory plane's reconciliation of a (re)attached runner's `agents`, over rows. */
    const reconcile = (tx: Tx, tenant: string, runner: string, link: Link, agents: ReadonlyArray<RunnerFrame.RunnerAgent>, now: number) =>
      Effect.gen(function* () {
        const changed: Array<Spawn.Spawn> = []
        const reported = new Map(agents.map((a) => [a.spawnId, a]))
        for (const entry of yield* spawnsOn(tenant, runner)) {
          const current = entry.spawn.status
          const agent = reported.get(entry.spawn.id)
          if (agent === undefined) {
            if (current === "stopping" || (current === "lost" && entry.stopRequested)) {
              changed.push(yield* move(tx, tenant, entry, "exited", {}, now))
            } else if (Spawn.isActive(current) && current !== "pending") {
              changed.push(yield* move(tx, tenant, entry, "lost", { error: "runner restarted without it" }, now))
            }
            continue
          }
          if (Spawn.isFinal(current)) {
            if (Spawn.isActive(agent.status)) tx.frames.push({ link, frame: stopFrame(entry) })
            continue
          }
          const target: Spawn.SpawnStatus =
            entry.stopRequested && Spawn.isActive(agent.status) ? "stopping" : agent.status === "running" && entry.spawn.peerId !== undefined ? "registered" : agent.status
          if (target !== current && Spawn.canTransition(current, target)) {
            changed.push(yield* move(tx, tenant, entry, target, { pid: agent.pid, error: current === "lost" ? null : undefined }, now))
          }
          if (entry.spawn.status === "stopping") tx.frames.push({ link, frame: stopFrame(entry) })
        }
        return changed
      })

    const attach: SpawnPlane.SpawnPlaneService["attach"] = (tenant, info, agents) =>
      Effect.gen(function* () {
        const link: Link = { id: randomBytes(8).toString("hex"), queue: yield* Queue.unbounded<RunnerFrame.RunnerDownFrame>() }
        const key = keyOf(tenant, info.id)
        const reconciled = yield* Effect.acquireRelease(
          inTx(tenant, (tx) =>
            Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              // A runner that reconnects before its old socket closed supersedes the old link.
              const previous = links.get(key)
              if (previous !== undefined) yield* Queue.shutdown(previous.queue)
              links.set(key, link)
              yield* sql`INSERT INTO a2a_runners (tenant, id, info, status, connected_at, last_seen_at, instance, link)
                VALUES (${tenant}, ${info.id}, ${JSON.stringify(info)}, 'online', ${now}, ${now}, ${instance}, ${link.id})
                ON CONFLICT (tenant, id) DO UPDATE SET info = excluded.info, status = 'online', connected_at = excluded.connected_at,
                  last_seen_at = excluded.last_seen_at, instance = excluded.instance, link = excluded.link`
              const changed = yield* reconcile(tx, tenant, info.id, link, agents, now)
              yield* deliverPending(tx, tenant, link, info.id, now)
              return changed
            })
          ),
          () =>
            Effect.gen(function* () {
              if (links.get(key) === link) links.delete(key)
              yield* Queue.shutdown(link.queue)
              // lastSeenAt is left alone: a closing socket is not the runner speaking.
              yield* sql`UPDATE a2a_runners SET status = 'offline', instance = NULL, link = NULL WHERE tenant = ${tenant} AND id = ${info.id} AND link = ${link.id}`.pipe(
                Effect.catchAllCause((cause) => Effect.logWarning("could not mark a runner offline", cause))
              )
            })
        )
        return { orders: Stream.fromQueue(link.queue), reconciled }
      })

    const heartbeat: SpawnPlane.SpawnPlaneService["heartbeat"] = (tenant, id) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql<{ id: string }>`UPDATE a2a_runners SET last_seen_at = ${now},
          status = CASE WHEN status = 'stale' AND link IS NOT NULL THEN 'online' ELSE status END
          WHERE tenant = ${tenant} AND id = ${id} RETURNING id`
        if (rows.length === 0) return yield* Effect.fail(new Errors.RunnerNotFound({ message: `no runner ${id}`, runner: id }))
      }).pipe(Effect.catchTag("SqlError", (e) => Effect.die(unavailable(e))))

    const runners: SpawnPlane.SpawnPlaneService["runners"] = (tenant) =>
      sql<RunnerRow>`SELECT * FROM a2a_runners WHERE tenant = ${tenant} ORDER BY connected_at NULLS LAST, id`.pipe(
        Effect.flatMap((rows) => Effect.forEach(rows, (row) => toRunner(tenant, row))),
        Effect.catchTag("SqlError", (e) => Effect.die(unavailable(e)))
      )

    const create: SpawnPlane.SpawnPlaneService["create"] = (tenant, spec, options) =>
      Effect.gen(function* () {
        const id = Ids.make.spawn()
        // Choose and hold the slot first, so a refused order never mints a token.
        yield* inTx(tenant, (tx) =>
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const runnerId = yield* choose(tenant, spec)
            const requestedBy = options.requestedBy ?? spec.requestedBy
            const spawn = new Spawn.Spawn({
              id,
              spec,
              status: "pending",
              runnerId,
              ...opt("requestedBy", requestedBy),
              createdAt: Ids.nowIso(now),
              updatedAt: Ids.nowIso(now)
            })
            yield* sql`INSERT INTO a2a_spawns (tenant, id, runner_id, status, data, created_at)
              VALUES (${tenant}, ${id}, ${runnerId}, 'pending', ${JSON.stringify(encodeSpawn(spawn))}, ${now})`
            tx.changes.push({ tenant, spawn, previous: undefined })
          })
        )
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const issued = yield* restore(options.issue(id)).pipe(
              Effect.onError(() =>
                inTx(tenant, (tx) =>
                  Effect.gen(function* () {
                    const entry = yield* findSpawn(tenant, id).pipe(Effect.option)
                    if (entry._tag === "None" || Spawn.isFinal(entry.value.spawn.status)) return
                    yield* move(tx, tenant, entry.value, "failed", { error: "could not issue the spawn's broker token" }, yield* Clock.currentTimeMillis)
                  })
                ).pipe(Effect.orDie)
              )
            )
            return yield* inTx(tenant, (tx) =>
              Effect.gen(function* () {
                const order: RunnerFrame.SpawnOrder = { id, spec, brokerUrl: issued.brokerUrl, token: issued.token }
                yield* sql`UPDATE a2a_spawns SET order_data = ${JSON.stringify(order)} WHERE tenant = ${tenant} AND id = ${id}`
                const entry = yield* findSpawn(tenant, id)
                yield* dispatch(tx, tenant, entry.spawn.runnerId, yield* Clock.currentTimeMillis)
                return (yield* findSpawn(tenant, id)).spawn
              })
            ).pipe(Effect.orDie)
          })
        )
      })

    const get: SpawnPlane.SpawnPlaneService["get"] = (tenant, id) =>
      findSpawn(tenant, id).pipe(
        Effect.map((e) => e.spawn),
        Effect.catchTag("SqlError", (e) => Effect.die(unavailable(e)))
      )

    const list: SpawnPlane.SpawnPlaneService["list"] = (tenant) =>
      sql<SpawnRow>`SELECT * FROM a2a_spawns WHERE tenant = ${tenant} ORDER BY n DESC`.pipe(
        Effect.map((rows) => rows.map((row) => toEntry(row).spawn)),
        Effect.catchTag("SqlError", (e) => Effect.die(unavailable(e)))
      )

    const transition: SpawnPlane.SpawnPlaneService["transition"] = (tenant, id, status, patch) =>
      inTx(tenant, (tx) =>
        Effect.gen(function* () {
          const entry = yield* findSpawn(tenant, id)
          if (entry.spawn.status === status) return entry.spawn
          const moved = Spawn.transition(id, entry.spawn.status, status)
          if (Either.isLeft(moved)) return yield* Effect.fail(moved.left)
          return yield* move(tx, tenant, entry, status, patch ?? {}, yield* Clock.currentTimeMillis)
        })
      )

    const stop: SpawnPlane.SpawnPlaneService["stop"] = (tenant, id, graceMs) =>
      inTx(tenant, (tx) =>
        Effect.gen(function* () {
          const entry = yield* findSpawn(tenant, id)
          const now = yield* Clock.currentTimeMillis
          const current = entry.spawn.status
          // Never delivered: withdrawing it is the whole stop.
          if (current === "pending") return yield* move(tx, tenant, entry, "exited", { error: "cancelled" }, now)
          if (current !== "stopping") {
            const moved = Spawn.transition(id, current, "stopping")
            if (Either.isLeft(moved)) return yield* Effect.fail(moved.left)
          }
          const grace = graceMs ?? entry.graceMs
          yield* sql`UPDATE a2a_spawns SET stop_requested = TRUE, grace_ms = ${grace ?? null} WHERE tenant = ${tenant} AND id = ${id}`
          const stopping: Entry = { ...entry, stopRequested: true, graceMs: grace }
          const row = yield* runnerRow(tenant, entry.spawn.runnerId)
          const link = localLink(tenant, row)
          // Away: the stop is sent when the runner attaches and reports the agent (see reconcile).
          if (link !== undefined) tx.frames.push({ link, frame: stopFrame(stopping) })
          else if (row?.instance !== null && row?.instance !== undefined) yield* wakeHolder(tenant, entry.spawn.runnerId, { stop: id })
          return current === "stopping" ? entry.spawn : yield* move(tx, tenant, stopping, "stopping", {}, now)
        })
      )

    const expire: SpawnPlane.SpawnPlaneService["expire"] = (now) =>
      Effect.gen(function* () {
        const changed: Array<Spawn.Spawn> = []
        const tenants = yield* sql<{ tenant: string }>`SELECT tenant FROM a2a_runners UNION SELECT tenant FROM a2a_spawns WHERE status = 'pending'`.pipe(
          Effect.catchTag("SqlError", (e) => Effect.die(unavailable(e)))
        )
        for (const { tenant } of tenants) {
          const more = yield* inTx(tenant, (tx) =>
            Effect.gen(function* () {
              const out: Array<Spawn.Spawn> = []
              const stale = yield* sql<RunnerRow>`SELECT * FROM a2a_runners WHERE tenant = ${tenant} AND last_seen_at < ${now - staleAfter}`
              for (const runner of stale) {
                if (runner.status === "online") {
                  yield* sql`UPDATE a2a_runners SET status = ${runner.instance !== null ? "stale" : "offline"} WHERE tenant = ${tenant} AND id = ${runner.id}`
                }
                for (const entry of yield* spawnsOn(tenant, runner.id)) {
                  if (Spawn.isActive(entry.spawn.status) && entry.spawn.status !== "pending") {
                    const error = `runner ${runner.id} silent since ${Ids.nowIso(Number(runner.last_seen_at))}`
                    out.push(yield* move(tx, tenant, entry, "lost", { error }, now))
                  }
                }
              }
              const pending = yield* sql<SpawnRow>`SELECT * FROM a2a_spawns WHERE tenant = ${tenant} AND status = 'pending' AND created_at < ${now - pendingTimeout}`
              for (const row of pending) {
                const entry = toEntry(row)
                const error = `no runner took the order within ${Math.round(pendingTimeout / 1000)} s (runner ${entry.spawn.runnerId} is not attached)`
                out.push(yield* move(tx, tenant, entry, "failed", { error }, now))
              }
              return out
            })
          )
          changed.push(...more)
        }
        return changed
      })

    const changes: SpawnPlane.SpawnPlaneService["changes"] = PubSub.subscribe(pubsub).pipe(Effect.map((q) => Stream.fromQueue(q)))

    /** A `NOTIFY a2a_runner`: if this instance holds the runner's link, deliver its pending orders (or the stop). */
    const onNotification = (payload: { readonly t: string; readonly r: string; readonly stop?: string }) =>
      Effect.gen(function* () {
        if (!links.has(keyOf(payload.t, payload.r))) return
        yield* inTx(payload.t, (tx) =>
          Effect.gen(function* () {
            const row = yield* runnerRow(payload.t, payload.r)
            const link = localLink(payload.t, row)
            if (link === undefined) return
            if (payload.stop !== undefined) {
              const entry = yield* findSpawn(payload.t, payload.stop as Ids.SpawnId).pipe(Effect.option)
              if (entry._tag === "Some" && entry.value.spawn.status === "stopping") tx.frames.push({ link, frame: stopFrame(entry.value) })
              return
            }
            yield* deliverPending(tx, payload.t, link, payload.r, yield* Clock.currentTimeMillis)
          })
        )
      })

    /** After the LISTEN connection came back: orders made meanwhile for our runners go out now. */
    const catchUp = Effect.suspend(() =>
      Effect.forEach(
        Array.from(links.keys(), (key) => key.split("\u0000") as [string, string]),
        ([t, r]) => onNotification({ t, r }),
        { discard: true }
      )
    )

    const service: SpawnPlane.SpawnPlaneService = { attach, heartbeat, runners, create, get, list, transition, stop, expire, changes }
    return { service, onNotification, catchUp }
  })
