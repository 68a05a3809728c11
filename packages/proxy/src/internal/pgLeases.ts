/**
 * Quota leases for the PostgreSQL store (docs/scaling.md, "Quota leases"): instead of one
 * database round trip per quota check, each proxy instance leases a slice of a key's free token
 * budget and admits requests against it in memory.
 *
 * Budget accounting, all on the key's `a2a_proxy_usage` row (so every decision is taken under
 * that row's lock, by the exact path as well):
 *
 *   tokens (used) + reserved (exact-path holds) + leased (Σ live leases) ≤ quota
 *
 * - `a2a_proxy_leases (key_id, instance, tokens, expires_at)`: what each instance was granted and
 *   has not yet reported as used; `leased` on the usage row is their sum. `expires_at` is on the
 *   database's clock, so sweeps never depend on the proxies' clocks agreeing.
 * - An instance admits locally while `held + pending + bound ≤ lease` (held: bounds of its
 *   requests in flight; pending: usage settled here and not yet written). Settled usage goes into
 *   a local accumulator, written every `flushMs` (and on scope close) in one transaction that
 *   moves it from the lease to `tokens`, renews the lease and, when the lease runs low, takes a
 *   new slice (a quarter of the key's free budget).
 * - No slice is granted while the free budget (quota − used − held − all live leases) is below
 *   `minFree`: requests that do not fit the lease then take the exact per-request path, so small
 *   and nearly used-up quotas stay exact. A refusal on the exact path gives this instance's
 *   unused lease back and sweeps expired leases before it is final.
 * - Keys with request-count limits (`requestsPerMinute`, `requestsPer5h`) always take the exact path.
 * - Leases of an instance that died are swept once `expires_at` passed (every `ttlMs / 2`, and
 *   whenever the key's row is written); an instance stops admitting on its lease at
 *   0.9 × `ttlMs` after the transaction that renewed it started, before any sweep can take it.
 * - Lock order is always the usage row first, then lease rows, so these transactions and the
 *   exact path cannot deadlock.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Usage, type Ids, type UsageMeter, type VirtualKey } from "@mks/a2a"
import { Clock, Config, Effect, Runtime, Schedule, Schema } from "effect"

/** The lease settings (env names documented in docs/proxy.md and docs/scaling.md). */
export interface LeaseSettings {
  /** `A2A_PROXY_QUOTA_LEASES` (default off, see docs/scaling.md): admit token-quota keys against local leases. */
  readonly enabled: boolean
  /** `A2A_PROXY_QUOTA_FLUSH_MS` (default 200): how often settled usage is written and leases renewed. */
  readonly flushMs: number
  /** `A2A_PROXY_QUOTA_LEASE_TTL_MS` (default 30,000): a lease not renewed for this long is swept. */
  readonly ttlMs: number
  /** `A2A_PROXY_QUOTA_LEASE_MIN_FREE` (default 100,000): below this free budget, no new slices. */
  readonly minFree: number
}

export const defaultSettings: LeaseSettings = { enabled: false, flushMs: 200, ttlMs: 30_000, minFree: 100_000 }

export const settingsConfig: Config.Config<LeaseSettings> = Config.all({
  enabled: Config.boolean("A2A_PROXY_QUOTA_LEASES").pipe(Config.withDefault(defaultSettings.enabled)),
  flushMs: Config.integer("A2A_PROXY_QUOTA_FLUSH_MS").pipe(
    Config.validate({ message: "A2A_PROXY_QUOTA_FLUSH_MS must be between 10 and 10000", validation: (n) => n >= 10 && n <= 10_000 }),
    Config.withDefault(defaultSettings.flushMs)
  ),
  ttlMs: Config.integer("A2A_PROXY_QUOTA_LEASE_TTL_MS").pipe(
    Config.validate({ message: "A2A_PROXY_QUOTA_LEASE_TTL_MS must be between 1000 and 3600000", validation: (n) => n >= 1_000 && n <= 3_600_000 }),
    Config.withDefault(defaultSettings.ttlMs)
  ),
  minFree: Config.integer("A2A_PROXY_QUOTA_LEASE_MIN_FREE").pipe(
    Config.validate({ message: "A2A_PROXY_QUOTA_LEASE_MIN_FREE must be ≥ 0", validation: (n) => n >= 0 }),
    Config.withDefault(defaultSettings.minFree)
  )
}).pipe(
  Config.validate({ message: "A2A_PROXY_QUOTA_LEASE_TTL_MS must be at least 4 × A2A_PROXY_QUOTA_FLUSH_MS", validation: (s) => s.ttlMs >= 4 * s.flushMs })
)

export const LEASE_MIGRATIONS = [
  `ALTER TABLE a2a_proxy_usage ADD COLUMN IF NOT EXISTS leased BIGINT NOT NULL DEFAULT 0`,
  `CREATE TABLE IF NOT EXISTS a2a_proxy_leases (
    key_id TEXT NOT NULL, instance TEXT NOT NULL, tokens BIGINT NOT NULL, expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, instance))`,
  `CREATE INDEX IF NOT EXISTS a2a_proxy_leases_expires_at ON a2a_proxy_leases (expires_at)`
]

/** The share of the free budget one slice takes. */
const SLICE_SHARE = 4

// ---- rows, decoded at the boundary ----

const Num = Schema.Union(Schema.Number, Schema.NumberFromString)
const ModelCounts = Schema.Struct({ requests: Num, inputTokens: Num, outputTokens: Num, cacheCreationInputTokens: Num, cacheReadInputTokens: Num })
const LockedUsage = Schema.Struct({
  window_start: Num,
  requests: Num,
  input_tokens: Num,
  output_tokens: Num,
  cache_creation: Num,
  cache_read: Num,
  tokens: Num,
  by_model: Schema.Record({ key: Schema.String, value: ModelCounts }),
  reserved: Num,
  leased: Num,
  db_now: Num
})
const decodeLocked = Schema.decodeUnknown(LockedUsage)
const LeaseRow = Schema.Struct({ instance: Schema.String, tokens: Num })
const decodeLeases = Schema.decodeUnknown(Schema.Array(LeaseRow))
const KeyRows = Schema.Array(Schema.Struct({ key_id: Schema.String }))
const decodeKeyRows = Schema.decodeUnknown(KeyRows)

type Counts = { requests: number; inputTokens: number; outputTokens: number; cacheCreationInputTokens: number; cacheReadInputTokens: number }
const zeroCounts = (): Counts => ({ requests: 0, inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

interface Pending {
  requests: number
  tokens: number
  counts: Counts
  byModel: Map<string, Counts>
}
const emptyPending = (): Pending => ({ requests: 0, tokens: 0, counts: zeroCounts(), byModel: new Map() })
const copyPending = (p: Pending): Pending => ({ requests: p.requests, tokens: p.tokens, counts: { ...p.counts }, byModel: new Map(Array.from(p.byModel, ([m, c]) => [m, { ...c }])) })
const addCounts = (into: Counts, c: Counts, sign: 1 | -1) => {
  into.requests += sign * c.requests
  into.inputTokens += sign * c.inputTokens
  into.outputTokens += sign * c.outputTokens
  into.cacheCreationInputTokens += sign * c.cacheCreationInputTokens
  into.cacheReadInputTokens += sign * c.cacheReadInputTokens
}
const subtractPending = (from: Pending, p: Pending) => {
  from.requests -= p.requests
  from.tokens -= p.tokens
  addCounts(from.counts, p.counts, -1)
  for (const [m, c] of p.byModel) {
    const mine = from.byModel.get(m)
    if (mine === undefined) continue
    addCounts(mine, c, -1)
    if (mine.requests === 0 && mine.inputTokens === 0 && mine.outputTokens === 0 && mine.cacheCreationInputTokens === 0 && mine.cacheReadInputTokens === 0) from.byModel.delete(m)
  }
}

/** What this instance knows of one key. */
interface KeyState {
  readonly key: Ids.KeyId
  quota: number | undefined
  /** Tokens of this instance's lease row (granted, not yet reported as used). */
  lease: number
  /** Bounds of requests admitted here and not settled or released. */
  held: number
  readonly holds: Map<string, number>
  pending: Pending
  /** Local time after which the lease may no longer be used (until renewed). */
  deadline: number
  lastSlice: number
  lastActive: number
  /** No new slice is asked for before this (the last ask found the free budget too small). */
  noSliceUntil: number
  /** Set while a transaction may lower the lease below what is in use: no local admissions. */
  blocked: boolean
  /** A sync is queued or running. */
  syncing: number
  readonly lock: Effect.Semaphore
}

export interface LeaseStats {
  /** Requests admitted against a lease (no round trip). */
  readonly local: number
  /** Requests of lease-eligible keys that took the exact path. */
  readonly exact: number
  /** Transactions written (flushes, slices, returns). */
  readonly syncs: number
}

export interface Leases {
  readonly reserve: UsageMeter.UsageMeterService["reserve"]
  readonly settle: UsageMeter.UsageMeterService["settle"]
  readonly release: UsageMeter.UsageMeterService["release"]
  readonly snapshot: UsageMeter.UsageMeterService["snapshot"]
  readonly stats: () => LeaseStats
}

export interface LeaseDeps {
  readonly sql: SqlClient.SqlClient
  readonly settings: LeaseSettings
  readonly instance: string
  readonly exact: Pick<UsageMeter.UsageMeterService, "reserve" | "settle" | "release" | "snapshot">
  /** Fail closed: set while the database is known to be away. */
  readonly problem: () => string | undefined
  /** Marks the store down on a database failure (the probe clears it). */
  readonly down: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly sqlFailure: <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) => Effect.Effect<A, Exclude<E, SqlError> | Errors.ServiceUnavailable, R>
}

const badRow = (e: { message: string }) => new Errors.ServiceUnavailable({ message: `store unavailable: unexpected row: ${e.message}` })

/** Keys with request-count limits stay on the exact path (a lease carries tokens only). */
const eligible = (limits: VirtualKey.KeyLimits) => limits.requestsPerMinute === undefined && limits.requestsPer5h === undefined

/** The lease path in front of the exact one; a scoped resource (flush loop, sweep, final flush). */
export const make = (deps: LeaseDeps) =>
  Effect.gen(function* () {
    const { sql, settings, instance, exact } = deps
    const states = new Map<Ids.KeyId, KeyState>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    let counter = 0
    let local = 0
    let exactCount = 0
    let syncs = 0
    /** Set when the scope closes: no new slices from then on. */
    let closing = false
    const idleMs = Math.max(1_000, 5 * settings.flushMs)

    const stateOf = (key: Ids.KeyId, now: number): KeyState => {
      let st = states.get(key)
      if (st === undefined) {
        st = {
          key,
          quota: undefined,
          lease: 0,
          held: 0,
          holds: new Map(),
          pending: emptyPending(),
          deadline: 0,
          lastSlice: 0,
          lastActive: now,
          noSliceUntil: 0,
          blocked: false,
          syncing: 0,
          lock: Effect.unsafeMakeSemaphore(1)
        }
        states.set(key, st)
      }
      return st
    }

    const available = (st: KeyState) => st.lease - st.held - st.pending.tokens

    /** Admit here, without a round trip, if the lease covers the bound. */
    const tryLocal = (st: KeyState, bound: number, now: number): UsageMeter.Reservation | undefined => {
      if (st.blocked) return undefined
      // A state the flush loop no longer tracks is never flushed nor renewed, and `settle` would not
      // find it: nothing may be admitted on it (its lease row is the instance's, and the key's
      // current state takes it over at its next sync).
      if (states.get(st.key) !== st) return undefined
      if (st.quota !== undefined && (now >= st.deadline || available(st) < bound)) return undefined
      const id = `l_${instance}_${(counter++).toString(36)}`
      st.holds.set(id, bound)
      st.held += bound
      st.pending.requests += 1
      st.lastActive = now
      local++
      return { id, key: st.key, tokens: bound, at: now }
    }

    // ---- the one transaction per key: flush, renew, take a slice or give the lease back ----

    interface SyncMode {
      /** Ask for a new slice if the free budget allows. */
      readonly topUp: boolean
      /** Keep only what requests in flight here hold (`all`: nothing). */
      readonly giveBack?: "unused" | "all"
      /** A request of this bound is waiting: skip the round trip if the lease covers it by now. */
      readonly need?: number
    }

    const W = Usage.WINDOW_MS
    const syncTx = (st: KeyState, mode: SyncMode) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const snap = copyPending(st.pending)
        const heldSnap = mode.giveBack === "all" ? 0 : st.held
        const result = yield* sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`INSERT INTO a2a_proxy_usage (key_id, window_start, requests, input_tokens, output_tokens, cache_creation, cache_read, tokens, by_model, reserved, minute)
              VALUES (${st.key}, ${now}, 0, 0, 0, 0, 0, 0, '{}'::jsonb, 0, ARRAY[]::bigint[]) ON CONFLICT (key_id) DO NOTHING`
            const rows = yield* sql`SELECT window_start, requests, input_tokens, output_tokens, cache_creation, cache_read, tokens, by_model, reserved, leased,
                (extract(epoch from clock_timestamp()) * 1000)::bigint AS db_now
              FROM a2a_proxy_usage WHERE key_id = ${st.key} FOR UPDATE`
            const u = yield* Effect.mapError(decodeLocked(rows[0]), badRow)
            const swept = yield* Effect.mapError(
              decodeLeases(yield* sql`DELETE FROM a2a_proxy_leases WHERE key_id = ${st.key} AND expires_at < ${u.db_now} RETURNING instance, tokens`),
              badRow
            )
            const sweptTokens = swept.reduce((s, r) => s + r.tokens, 0)
            const own = yield* Effect.mapError(
              decodeLeases(yield* sql`SELECT instance, tokens FROM a2a_proxy_leases WHERE key_id = ${st.key} AND instance = ${instance}`),
              badRow
            )
            const L = own[0]?.tokens ?? 0
            const consumed = Math.min(snap.tokens, L)
            let newLease = L - consumed
            if (mode.giveBack !== undefined) newLease = Math.min(newLease, heldSnap)
            const open = now < u.window_start + W
            const base = open ? u : { ...u, window_start: now, requests: 0, input_tokens: 0, output_tokens: 0, cache_creation: 0, cache_read: 0, tokens: 0, by_model: {} }
            const used = base.tokens + snap.tokens
            let leased = Math.max(0, u.leased - sweptTokens - (L - newLease))
            let grant = 0
            if (mode.topUp && !closing && st.quota !== undefined) {
              const free = st.quota - used - u.reserved - leased
              if (free >= settings.minFree && free > 0) grant = Math.floor(free / SLICE_SHARE)
            }
            newLease += grant
            leased += grant
            const byModel: Record<string, Counts> = {}
            for (const [m, c] of Object.entries(base.by_model)) byModel[m] = { ...c }
            for (const [m, c] of snap.byModel) addCounts((byModel[m] ??= zeroCounts()), c, 1)
            yield* sql`UPDATE a2a_proxy_usage SET
                window_start = ${base.window_start},
                requests = ${base.requests + snap.requests},
                input_tokens = ${base.input_tokens + snap.counts.inputTokens},
                output_tokens = ${base.output_tokens + snap.counts.outputTokens},
                cache_creation = ${base.cache_creation + snap.counts.cacheCreationInputTokens},
                cache_read = ${base.cache_read + snap.counts.cacheReadInputTokens},
                tokens = ${used},
                by_model = ${JSON.stringify(byModel)}::jsonb,
                leased = ${leased}
              WHERE key_id = ${st.key}`
            if (newLease > 0) {
              yield* sql`INSERT INTO a2a_proxy_leases (key_id, instance, tokens, expires_at) VALUES (${st.key}, ${instance}, ${newLease}, ${u.db_now + settings.ttlMs})
                ON CONFLICT (key_id, instance) DO UPDATE SET tokens = EXCLUDED.tokens, expires_at = EXCLUDED.expires_at`
            } else if (own.length > 0) {
              yield* sql`DELETE FROM a2a_proxy_leases WHERE key_id = ${st.key} AND instance = ${instance}`
            }
            return { newLease, grant, sweptTokens }
          })
        )
        syncs++
        subtractPending(st.pending, snap)
        st.lease = result.newLease
        st.deadline = result.newLease > 0 ? now + Math.floor(settings.ttlMs * 0.9) : 0
        if (result.grant > 0) st.lastSlice = result.grant
        else if (mode.topUp) st.noSliceUntil = now + settings.flushMs
        return result
      })

    /** One sync of a key at a time; a give-back blocks local admissions while it runs. */
    const sync = (st: KeyState, mode: SyncMode) =>
      Effect.suspend(() => {
        st.syncing++
        return st.lock.withPermits(1)(
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            // Another request's sync may have done what this one came for.
            if (mode.need !== undefined && ((now < st.deadline && available(st) >= mode.need) || now < st.noSliceUntil)) return Effect.void
            if (mode.giveBack !== undefined) st.blocked = true
            return Effect.asVoid(syncTx(st, mode))
          }).pipe(Effect.ensuring(Effect.sync(() => void (st.blocked = false))))
        )
      }).pipe(
        Effect.ensuring(Effect.sync(() => void st.syncing--)),
        deps.sqlFailure,
        deps.down
      )

    /** Sweep one key's expired leases (any instance's), under the usage row's lock. */
    const sweepKey = (key: Ids.KeyId) =>
      deps.sqlFailure(
        sql.withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql`SELECT 1 FROM a2a_proxy_usage WHERE key_id = ${key} FOR UPDATE`
            if (rows.length === 0) return 0
            const swept = yield* Effect.mapError(
              decodeLeases(
                yield* sql`DELETE FROM a2a_proxy_leases WHERE key_id = ${key} AND expires_at < (extract(epoch from clock_timestamp()) * 1000)::bigint RETURNING instance, tokens`
              ),
              badRow
            )
            const total = swept.reduce((s, r) => s + r.tokens, 0)
            if (total > 0) yield* sql`UPDATE a2a_proxy_usage SET leased = GREATEST(leased - ${total}, 0) WHERE key_id = ${key}`
            return total
          })
        )
      )

    const exactReserve = (st: KeyState, limits: VirtualKey.KeyLimits, tokens: number) =>
      exact.reserve(st.key, limits, tokens).pipe(
        Effect.tap(() => Effect.sync(() => void exactCount++)),
        Effect.catchTag("RateLimited", (refused) =>
          refused.limit !== "tokens_per_5h"
            ? Effect.fail(refused)
            : // Before refusing: give this instance's unused lease back and sweep dead leases; retry once if that freed anything.
              Effect.gen(function* () {
                const before = st.lease
                const gaveBack = before > st.held ? (yield* sync(st, { topUp: false, giveBack: "unused" }), before - st.lease) : 0
                const swept = yield* sweepKey(st.key)
                if (gaveBack <= 0 && swept <= 0) return yield* Effect.fail(refused)
                const again = yield* exact.reserve(st.key, limits, tokens)
                exactCount++
                return again
              })
        )
      )

    const reserve: Leases["reserve"] = (key, limits, tokens) => {
      if (!eligible(limits)) return exact.reserve(key, limits, tokens)
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const problem = deps.problem()
        if (problem !== undefined) return Effect.fail(new Errors.ServiceUnavailable({ message: problem }))
        const bound = Number.isNaN(tokens) || tokens < 0 ? 0 : tokens
        const quota = limits.tokensPer5h
        // A bound above the whole quota (or unbounded) is refused by the exact path, with its reason.
        if (!Number.isFinite(bound) || (quota !== undefined && bound > quota)) return exact.reserve(key, limits, tokens)
        const held = Math.ceil(bound)
        const st = stateOf(key, now)
        st.quota = quota
        // Any request for the key is activity, admitted here or not (it may wait for a sync first).
        st.lastActive = now
        const admitted = tryLocal(st, held, now)
        if (admitted !== undefined) {
          // Running low: take the next slice in the background, before it runs out.
          if (!closing && st.quota !== undefined && st.syncing === 0 && available(st) < st.lastSlice / 2 && now >= st.noSliceUntil)
            runFork(Effect.ignore(sync(st, { topUp: true })))
          return Effect.succeed(admitted)
        }
        if (now < st.noSliceUntil) return exactReserve(st, limits, tokens)
        return sync(st, { topUp: true, need: held }).pipe(
          Effect.flatMap(() => Clock.currentTimeMillis),
          Effect.flatMap((later) => {
            const retried = tryLocal(st, held, later)
            return retried !== undefined ? Effect.succeed(retried) : exactReserve(st, limits, tokens)
          })
        )
      })
    }

    const isLocal = (r: UsageMeter.Reservation) => r.id.startsWith("l_")

    const settle: Leases["settle"] = (reservation, model, usage) => {
      if (!isLocal(reservation)) return exact.settle(reservation, model, usage)
      return Effect.sync(() => {
        const st = states.get(reservation.key)
        const bound = st?.holds.get(reservation.id)
        if (st === undefined || bound === undefined) return // settled or released already
        st.holds.delete(reservation.id)
        st.held -= bound
        const total = Usage.totalTokens(usage)
        const p = st.pending
        p.tokens += total
        const c = { requests: 1, ...pickCounts(usage) }
        addCounts(p.counts, { ...c, requests: 0 }, 1)
        let m = p.byModel.get(model)
        if (m === undefined) p.byModel.set(model, (m = zeroCounts()))
        addCounts(m, c, 1)
      })
    }

    const release: Leases["release"] = (reservation) => {
      if (!isLocal(reservation)) return exact.release(reservation)
      return Effect.sync(() => {
        const st = states.get(reservation.key)
        const bound = st?.holds.get(reservation.id)
        if (st === undefined || bound === undefined) return
        st.holds.delete(reservation.id)
        st.held -= bound
      })
    }

    /** The database's view plus what this instance has not written yet. */
    const snapshot: Leases["snapshot"] = (key) =>
      Effect.map(exact.snapshot(key), (s) => {
        const st = states.get(key)
        if (st === undefined) return s
        const p = st.pending
        const byModel: Record<string, Usage.Usage & { requests: number }> = { ...s.byModel }
        for (const [m, c] of p.byModel) {
          const b = byModel[m] ?? { requests: 0, inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }
          byModel[m] = {
            requests: b.requests + c.requests,
            inputTokens: b.inputTokens + c.inputTokens,
            outputTokens: b.outputTokens + c.outputTokens,
            cacheCreationInputTokens: b.cacheCreationInputTokens + c.cacheCreationInputTokens,
            cacheReadInputTokens: b.cacheReadInputTokens + c.cacheReadInputTokens
          }
        }
        return {
          ...s,
          window: {
            ...s.window,
            requests: s.window.requests + p.requests,
            inputTokens: s.window.inputTokens + p.counts.inputTokens,
            outputTokens: s.window.outputTokens + p.counts.outputTokens,
            cacheCreationInputTokens: s.window.cacheCreationInputTokens + p.counts.cacheCreationInputTokens,
            cacheReadInputTokens: s.window.cacheReadInputTokens + p.counts.cacheReadInputTokens
          },
          byModel,
          reservedTokens: s.reservedTokens + st.held
        }
      })

    // ---- the flush loop, the sweep of dead instances' leases, the final flush ----

    const tick = Effect.gen(function* () {
      if (closing) return
      const now = yield* Clock.currentTimeMillis
      const work: Array<Effect.Effect<unknown, unknown>> = []
      for (const st of states.values()) {
        const hasPending = st.pending.requests > 0 || st.pending.tokens > 0 || st.pending.byModel.size > 0
        // Never idle while a sync is queued or running: requests may be waiting for it (the first
        // slice: lease and holds are still 0), and dropping the state then would orphan it.
        const idle = st.held === 0 && st.syncing === 0 && now - st.lastActive > idleMs
        // Renew a lease well before an instance would stop using it (0.9 × TTL).
        const renew = st.lease > 0 && st.deadline - now < settings.ttlMs * 0.6
        const low = st.quota !== undefined && !idle && available(st) < st.lastSlice / 2 && now >= st.noSliceUntil
        if (idle && st.lease > 0) work.push(sync(st, { topUp: false, giveBack: "all" }))
        else if (hasPending || renew || low) work.push(sync(st, { topUp: low }))
        else if (idle && st.lease === 0 && st.holds.size === 0) states.delete(st.key)
      }
      yield* Effect.forEach(work, (w) => Effect.catchAllCause(w, (cause) => Effect.logWarning("quota lease flush failed (retried next interval)", cause)), {
        concurrency: 4,
        discard: true
      })
    })
    yield* tick.pipe(Effect.repeat(Schedule.spaced(settings.flushMs)), Effect.interruptible, Effect.forkScoped)

    const sweepAll = Effect.gen(function* () {
      const keys = yield* Effect.mapError(
        decodeKeyRows(yield* sql`SELECT DISTINCT key_id FROM a2a_proxy_leases WHERE expires_at < (extract(epoch from clock_timestamp()) * 1000)::bigint`),
        badRow
      )
      yield* Effect.forEach(keys, (k) => sweepKey(k.key_id as Ids.KeyId), { discard: true })
    })
    yield* Effect.sleep(Math.max(500, Math.floor(settings.ttlMs / 2))).pipe(
      Effect.zipRight(Effect.ignore(sweepAll)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    // On close: write what was settled here and give every lease back (bounded, so a database
    // that is away cannot hold the shutdown: its leases then lapse after `ttlMs`).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        return Effect.forEach(Array.from(states.values()), (st) => Effect.ignore(sync(st, { topUp: false, giveBack: "all" })), { concurrency: 4, discard: true })
      }).pipe(Effect.timeoutOption("5 seconds"), Effect.asVoid)
    )

    return { reserve, settle, release, snapshot, stats: () => ({ local, exact: exactCount, syncs }) } satisfies Leases
  })

const pickCounts = (u: Usage.Usage) => ({
  inputTokens: u.inputTokens,
  outputTokens: u.outputTokens,
  cacheCreationInputTokens: u.cacheCreationInputTokens,
  cacheReadInputTokens: u.cacheReadInputTokens
})
