/**
 * In-memory SpawnPlane: runners and spawns per tenant, one lock around every change so a
 * status change and its `changes` event happen in the same order for everyone.
 */
import { Clock, Effect, PubSub, Queue, Scope, Stream } from "effect"
import { NoRunnerAvailable, RunnerNotFound, SpawnNotFound } from "../Errors.js"
import * as Ids from "../Ids.js"
import type { RunnerId, SpawnId } from "../Ids.js"
import { Runner } from "../Runner.js"
import type { RunnerInfo, RunnerStatus } from "../Runner.js"
import type { RunnerAgent, RunnerDownFrame, SpawnOrder } from "../RunnerFrame.js"
import { advance, canTransition, isActive, isFinal, labelsMatch, presetOf, Spawn, transition as moveStatus } from "../Spawn.js"
import type { SpawnSpec, SpawnStatus, StatusFields } from "../Spawn.js"
import type { SpawnChange, SpawnPlaneOptions, SpawnPlaneService } from "../SpawnPlane.js"

const DEFAULT_STALE_AFTER = 120_000
const DEFAULT_PENDING_TIMEOUT = 60_000

/** An open control link; compared by identity so a superseded link cannot detach its successor. */
interface Link {
  readonly queue: Queue.Queue<RunnerDownFrame>
}

interface RunnerEntry {
  info: RunnerInfo
  status: RunnerStatus
  connectedAt: number | undefined
  lastSeenAt: number
  link: Link | undefined
}

interface SpawnEntry {
  spawn: Spawn
  readonly createdAt: number
  /** Set once the broker URL and token are issued; a pending spawn without it is not deliverable yet. */
  order: SpawnOrder | undefined
  /** Set by `stop`, so a stop that happened while the spawn was `lost` is recognised. */
  stopRequested: boolean
  graceMs: number | undefined
}

interface TenantState {
  readonly runners: Map<RunnerId, RunnerEntry>
  readonly spawns: Map<SpawnId, SpawnEntry>
}

const opt = <K extends string, V>(key: K, value: V | undefined | null): { [P in K]?: V } =>
  (value === undefined || value === null ? {} : { [key]: value }) as { [P in K]?: V }

export const make = (options?: SpawnPlaneOptions): Effect.Effect<SpawnPlaneService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const staleAfter = options?.staleAfter ?? DEFAULT_STALE_AFTER
    const pendingTimeout = options?.pendingTimeout ?? DEFAULT_PENDING_TIMEOUT
    const tenants = new Map<string, TenantState>()
    const lock = yield* Effect.makeSemaphore(1)
    const locked = lock.withPermits(1)
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<SpawnChange>(), PubSub.shutdown)
    const journal = options?.journal

    /** Write a spawn to the journal, if there is one (a final spawn's order, with its token, is not kept). */
    const persist = (tenant: string, entry: SpawnEntry) =>
      journal === undefined
        ? Effect.void
        : journal.saveSpawn({
            tenant,
            spawn: entry.spawn,
            createdAt: entry.createdAt,
            order: isFinal(entry.spawn.status) ? undefined : entry.order,
            stopRequested: entry.stopRequested,
            graceMs: entry.graceMs
          })

    const tenantOf = (tenant: string): TenantState => {
      let state = tenants.get(tenant)
      if (state === undefined) {
        state = { runners: new Map(), spawns: new Map() }
        tenants.set(tenant, state)
      }
      return state
    }

    const spawnsOn = (state: TenantState, runner: RunnerId): Array<SpawnEntry> =>
      [...state.spawns.values()].filter((e) => e.spawn.runnerId === runner)

    const activeOn = (state: TenantState, runner: RunnerId): number =>
      spawnsOn(state, runner).filter((e) => isActive(e.spawn.status)).length

    const toRunner = (state: TenantState, r: RunnerEntry): Runner =>
      new Runner({
        ...r.info,
        status: r.status,
        active: activeOn(state, r.info.id),
        ...opt("connectedAt", r.connectedAt === undefined ? undefined : Ids.nowIso(r.connectedAt)),
        lastSeenAt: Ids.nowIso(r.lastSeenAt)
      })

    const findSpawn = (tenant: string, id: SpawnId): Effect.Effect<SpawnEntry, SpawnNotFound> => {
      const entry = tenants.get(tenant)?.spawns.get(id)
      return entry === undefined
        ? Effect.fail(new SpawnNotFound({ message: `no spawn ${id}`, spawn: id }))
        : Effect.succeed(entry)
    }

    /** Write a status (already checked legal) and fields, and publish the change. */
    const move = (tenant: string, entry: SpawnEntry, status: SpawnStatus, fields: StatusFields, now: number) => {
      const s = entry.spawn
      const next = advance(s, status, fields, now)
      entry.spawn = next
      return persist(tenant, entry).pipe(Effect.zipRight(PubSub.publish(pubsub, { tenant, spawn: next, previous: s.status })), Effect.as(next))
    }

    const stopFrame = (entry: SpawnEntry): RunnerDownFrame => ({
      type: "stop",
      spawnId: entry.spawn.id,
      ...opt("graceMs", entry.graceMs)
    })

    /** Put a pending order on an open link: that is what makes it `dispatched`. */
    const deliver = (tenant: string, entry: SpawnEntry, link: Link, now: number) =>
      entry.order === undefined || entry.spawn.status !== "pending"
        ? Effect.void
        : Queue.offer(link.queue, { type: "spawn", spawn: entry.order }).pipe(
            Effect.zipRight(move(tenant, entry, "dispatched", {}, now))
          )

    /** The runner a new order goes to: the pinned one, or the online match with most free slots. */
    const choose = (state: TenantState, spec: SpawnSpec): Effect.Effect<RunnerEntry, RunnerNotFound | NoRunnerAvailable> => {
      const preset = presetOf(spec)
      if (spec.runner !== undefined) {
        const pinned = state.runners.get(spec.runner)
        if (pinned === undefined) {
          return Effect.fail(new RunnerNotFound({ message: `no runner ${spec.runner}`, runner: spec.runner }))
        }
        if (!pinned.info.presets.includes(preset)) {
          return Effect.fail(new NoRunnerAvailable({ message: `runner ${spec.runner} does not run preset ${preset}` }))
        }
        if (pinned.info.capacity - activeOn(state, pinned.info.id) <= 0) {
          return Effect.fail(new NoRunnerAvailable({ message: `runner ${spec.runner} is at capacity (${pinned.info.capacity})` }))
        }
        return Effect.succeed(pinned)
      }
      const candidates = [...state.runners.values()]
        .filter((r) => r.status === "online" && r.link !== undefined)
        .filter((r) => labelsMatch(spec.labels, r.info.labels) && r.info.presets.includes(preset))
        .map((r) => ({ r, free: r.info.capacity - activeOn(state, r.info.id) }))
        .filter((c) => c.free > 0)
        .sort((a, b) => b.free - a.free || (a.r.info.id < b.r.info.id ? -1 : a.r.info.id > b.r.info.id ? 1 : 0))
      const best = candidates[0]
      if (best !== undefined) return Effect.succeed(best.r)
      const labels = Object.entries(spec.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(",")
      return Effect.fail(
        new NoRunnerAvailable({
          message: `no online runner with free capacity runs preset ${preset}${labels === "" ? "" : ` with labels ${labels}`}`
        })
      )
    }

    /**
     * Correct spawns from the runner's `agents` list after it (re)attaches:
     * - reported and a legal forward move (e.g. `lost`/`dispatched`/`starting` → `running`): take
     *   the reported status; `running` with a known peer comes back as `registered`, and one we
     *   were asked to stop comes back as `stopping` (and the stop is sent);
     * - reported but behind what we know (e.g. `registered`, reported `running`): keep ours;
     * - reported but final here (withdrawn or timed out): send a stop so no untracked agent runs;
     * - ours and not reported: `stopping` (or `lost` after a stop was asked) → `exited`: the stop
     *   happened while away; other active states past `pending` → `lost` ("runner restarted
     *   without it"); `pending` is delivered next; other `lost` ones stay `lost`.
     */
    const reconcile = (
      tenant: string,
      state: TenantState,
      runner: RunnerId,
      link: Link,
      agents: ReadonlyArray<RunnerAgent>,
      now: number
    ) =>
      Effect.gen(function* () {
        const changed: Array<Spawn> = []
        const reported = new Map(agents.map((a) => [a.spawnId, a]))
        // An agent of a spawn this plane does not know (it was lost with a restart, or never
        // ordered here) is stopped, never adopted or relaunched.
        for (const agent of agents) {
          const unknown = state.spawns.get(agent.spawnId)?.spawn.runnerId !== runner
          if (unknown && (isActive(agent.status) || agent.status === "lost")) yield* Queue.offer(link.queue, { type: "stop", spawnId: agent.spawnId })
        }
        for (const entry of spawnsOn(state, runner)) {
          const current = entry.spawn.status
          const agent = reported.get(entry.spawn.id)
          if (agent === undefined) {
            if (current === "stopping" || (current === "lost" && entry.stopRequested)) {
              changed.push(yield* move(tenant, entry, "exited", {}, now))
            } else if (isActive(current) && current !== "pending") {
              changed.push(yield* move(tenant, entry, "lost", { error: "runner restarted without it" }, now))
            }
            continue
          }
          if (isFinal(current)) {
            if (isActive(agent.status) || agent.status === "lost") yield* Queue.offer(link.queue, stopFrame(entry))
            continue
          }
          // `lost` from the runner: it holds the order but its process is gone (the runner
          // restarted). Still wanted: the order again (the runner relaunches it, without re-sending
          // the prompt); a stop was asked: the stop.
          if (agent.status === "lost") {
            if (entry.stopRequested || entry.order === undefined || current === "pending") {
              yield* Queue.offer(link.queue, stopFrame(entry))
              if (current === "stopping" || current === "lost") changed.push(yield* move(tenant, entry, "exited", {}, now))
            } else {
              if (current !== "lost") changed.push(yield* move(tenant, entry, "lost", { error: "runner restarted: relaunching" }, now))
              yield* Queue.offer(link.queue, { type: "spawn", spawn: entry.order })
            }
            continue
          }
          const target: SpawnStatus =
            entry.stopRequested && isActive(agent.status)
              ? "stopping"
              : agent.status === "running" && entry.spawn.peerId !== undefined
                ? "registered"
                : agent.status
          if (target !== current && canTransition(current, target)) {
            const fields: StatusFields = { pid: agent.pid, error: current === "lost" ? null : undefined }
            changed.push(yield* move(tenant, entry, target, fields, now))
          }
          // A stop asked for while the runner was away (or lost with the old link) is sent again.
          if (entry.spawn.status === "stopping") yield* Queue.offer(link.queue, stopFrame(entry))
        }
        return changed
      })

    const detach = (tenant: string, id: RunnerId, link: Link) =>
      locked(
        Effect.suspend(() => {
          const runner = tenants.get(tenant)?.runners.get(id)
          // lastSeenAt is left alone: a closing socket is not the runner speaking.
          if (runner !== undefined && runner.link === link) {
            runner.link = undefined
            runner.status = "offline"
          }
          return Queue.shutdown(link.queue)
        })
      )

    const attach: SpawnPlaneService["attach"] = (tenant, info, agents) =>
      Effect.gen(function* () {
        const link: Link = { queue: yield* Queue.unbounded<RunnerDownFrame>() }
        const reconciled = yield* Effect.acquireRelease(
          locked(
            Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              const state = tenantOf(tenant)
              const previous = state.runners.get(info.id)
              // A runner that reconnects before its old socket closed supersedes the old link.
              if (previous?.link !== undefined) yield* Queue.shutdown(previous.link.queue)
              state.runners.set(info.id, { info, status: "online", connectedAt: now, lastSeenAt: now, link })
              if (journal !== undefined) yield* journal.saveRunner({ tenant, info, lastSeenAt: now })
              const changed = yield* reconcile(tenant, state, info.id, link, agents, now)
              for (const entry of spawnsOn(state, info.id)) yield* deliver(tenant, entry, link, now)
              return changed
            })
          ),
          () => detach(tenant, info.id, link)
        )
        return { orders: Stream.fromQueue(link.queue), reconciled }
      })

    const heartbeat: SpawnPlaneService["heartbeat"] = (tenant, id) =>
      locked(
        Effect.gen(function* () {
          const runner = tenants.get(tenant)?.runners.get(id)
          if (runner === undefined) return yield* new RunnerNotFound({ message: `no runner ${id}`, runner: id })
          runner.lastSeenAt = yield* Clock.currentTimeMillis
          if (runner.status === "stale" && runner.link !== undefined) runner.status = "online"
        })
      )

    const runners: SpawnPlaneService["runners"] = (tenant) =>
      locked(
        Effect.sync(() => {
          const state = tenants.get(tenant)
          return state === undefined ? [] : [...state.runners.values()].map((r) => toRunner(state, r))
        })
      )

    const create: SpawnPlaneService["create"] = (tenant, spec, options) =>
      Effect.gen(function* () {
        const id = Ids.make.spawn()
        // Choose and hold the slot first, so a refused order never mints a token.
        yield* locked(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const state = tenantOf(tenant)
            const runner = yield* choose(state, spec)
            const requestedBy = options.requestedBy ?? spec.requestedBy
            const spawn = new Spawn({
              id,
              spec,
              status: "pending",
              runnerId: runner.info.id,
              ...opt("requestedBy", requestedBy),
              createdAt: Ids.nowIso(now),
              updatedAt: Ids.nowIso(now)
            })
            const created: SpawnEntry = { spawn, createdAt: now, order: undefined, stopRequested: false, graceMs: undefined }
            state.spawns.set(id, created)
            yield* persist(tenant, created)
            yield* PubSub.publish(pubsub, { tenant, spawn, previous: undefined })
          })
        )
        // `issue` runs outside the lock: it may be slow or call other services.
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const issued = yield* restore(options.issue(id)).pipe(
              Effect.onError(() =>
                locked(
                  Effect.gen(function* () {
                    const entry = tenants.get(tenant)?.spawns.get(id)
                    if (entry === undefined || isFinal(entry.spawn.status)) return
                    const now = yield* Clock.currentTimeMillis
                    yield* move(tenant, entry, "failed", { error: "could not issue the spawn's broker token" }, now)
                  })
                )
              )
            )
            return yield* locked(
              Effect.gen(function* () {
                const state = tenantOf(tenant)
                const entry = state.spawns.get(id)!
                entry.order = { id, spec, brokerUrl: issued.brokerUrl, token: issued.token }
                yield* persist(tenant, entry)
                const link = state.runners.get(entry.spawn.runnerId)?.link
                if (link !== undefined) yield* deliver(tenant, entry, link, yield* Clock.currentTimeMillis)
                return entry.spawn
              })
            )
          })
        )
      })

    const get: SpawnPlaneService["get"] = (tenant, id) =>
      locked(findSpawn(tenant, id).pipe(Effect.map((e) => e.spawn)))

    const list: SpawnPlaneService["list"] = (tenant) =>
      locked(Effect.sync(() => [...(tenants.get(tenant)?.spawns.values() ?? [])].reverse().map((e) => e.spawn)))

    const transition: SpawnPlaneService["transition"] = (tenant, id, status, patch) =>
      locked(
        Effect.gen(function* () {
          const entry = yield* findSpawn(tenant, id)
          if (entry.spawn.status === status) return entry.spawn
          yield* moveStatus(id, entry.spawn.status, status)
          return yield* move(tenant, entry, status, patch ?? {}, yield* Clock.currentTimeMillis)
        })
      )

    const stop: SpawnPlaneService["stop"] = (tenant, id, graceMs) =>
      locked(
        Effect.gen(function* () {
          const entry = yield* findSpawn(tenant, id)
          const now = yield* Clock.currentTimeMillis
          const current = entry.spawn.status
          // Never delivered: withdrawing it is the whole stop.
          if (current === "pending") return yield* move(tenant, entry, "exited", { error: "cancelled" }, now)
          if (current !== "stopping") yield* moveStatus(id, current, "stopping")
          entry.stopRequested = true
          if (graceMs !== undefined) entry.graceMs = graceMs
          if (current === "stopping") yield* persist(tenant, entry)
          const link = tenants.get(tenant)?.runners.get(entry.spawn.runnerId)?.link
          // Away: the stop is sent when the runner attaches and reports the agent (see reconcile).
          if (link !== undefined) yield* Queue.offer(link.queue, stopFrame(entry))
          return current === "stopping" ? entry.spawn : yield* move(tenant, entry, "stopping", {}, now)
        })
      )

    const expire: SpawnPlaneService["expire"] = (now) =>
      locked(
        Effect.gen(function* () {
          const changed: Array<Spawn> = []
          for (const [tenant, state] of tenants) {
            for (const runner of state.runners.values()) {
              if (runner.lastSeenAt >= now - staleAfter) continue
              if (runner.status === "online") runner.status = runner.link !== undefined ? "stale" : "offline"
              for (const entry of spawnsOn(state, runner.info.id)) {
                if (isActive(entry.spawn.status) && entry.spawn.status !== "pending") {
                  const error = `runner ${runner.info.id} silent since ${Ids.nowIso(runner.lastSeenAt)}`
                  changed.push(yield* move(tenant, entry, "lost", { error }, now))
                }
              }
            }
            for (const entry of state.spawns.values()) {
              if (entry.spawn.status === "pending" && entry.createdAt < now - pendingTimeout) {
                const error = `no runner took the order within ${Math.round(pendingTimeout / 1000)} s (runner ${entry.spawn.runnerId} is not attached)`
                changed.push(yield* move(tenant, entry, "failed", { error }, now))
              }
            }
          }
          return changed
        })
      )

    // Start from the journal: runners offline (seen now, so they have the stale timeout to come back).
    if (journal !== undefined) {
      const loaded = yield* journal.load
      const now = yield* Clock.currentTimeMillis
      for (const r of loaded.runners) tenantOf(r.tenant).runners.set(r.info.id, { info: r.info, status: "offline", connectedAt: undefined, lastSeenAt: now, link: undefined })
      const ordered = [...loaded.spawns].sort((a, b) => a.createdAt - b.createdAt)
      for (const s of ordered) {
        tenantOf(s.tenant).spawns.set(s.spawn.id, { spawn: s.spawn, createdAt: s.createdAt, order: s.order, stopRequested: s.stopRequested, graceMs: s.graceMs })
      }
    }

    const changes: SpawnPlaneService["changes"] = PubSub.subscribe(pubsub).pipe(Effect.map((q) => Stream.fromQueue(q)))

    return { attach, heartbeat, runners, create, get, list, transition, stop, expire, changes } satisfies SpawnPlaneService
  })
