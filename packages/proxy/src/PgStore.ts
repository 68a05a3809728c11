/**
 * Keys and usage in PostgreSQL (`A2A_PROXY_STORE=postgres://…` or `store:` in the config), so
 * that several proxies behind a load balancer enforce one quota per key (docs/scaling.md).
 *
 * - `a2a_proxy_keys`: the record and the SHA-256 of the secret (never the secret), as the file does.
 * - `a2a_proxy_usage`: one row per key: the open 5-hour window's counts (per model in JSON),
 *   the tokens held by requests in flight (`reserved`) and the trailing minute's admission times.
 * - `a2a_proxy_holds`: one row per request in flight, so settle and release are idempotent and
 *   holds of a proxy that died are given back after `HOLD_TTL_MS`.
 *
 * Admission is ONE statement: an upsert of the key's usage row whose `DO UPDATE … WHERE` checks
 * every limit against the row as it is (rpm, requests and tokens per 5 h, with the window rolled
 * over when it ended) and adds the hold, feeding the hold's insert in the same statement.
 * PostgreSQL row locks serialise concurrent admissions of one key across all proxies, so the
 * quota can never be overshot. Settle and release are one statement each as well.
 *
 * Quota leases (`internal/pgLeases.ts`, off by default, `A2A_PROXY_QUOTA_*`): for keys with a token
 * quota and no request-count limit, each instance leases a slice of the free budget
 * (`a2a_proxy_leases`, summed in the usage row's `leased`) and admits against it in memory; the
 * statement above is then the exact path, taken below the minimum free budget, and it counts
 * `leased` like `reserved`, so the two paths together cannot overshoot either.
 *
 * Fail closed: every database error is a `ServiceUnavailable` (503, Anthropic-shaped), never an
 * unmetered request; a probe every `PROBE_MS` sets and clears `problem()` so `/health` and every
 * request answer 503 while the database is away, and it recovers by itself.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Errors, Ids, KeyStore, PostgresUrl, Usage, UsageMeter, VirtualKey } from "@mks/a2a"
import { Clock, Context, Effect, Layer, Redacted, Schedule, Schema } from "effect"
import { randomBytes } from "node:crypto"
import * as Leases from "./internal/pgLeases.js"
import { KeyFile } from "./KeyFile.js"
import { UsageFile } from "./UsageFile.js"

const MINUTE_MS = 60_000
/** Holds older than this belong to a request (or a proxy) that is gone: given back by the sweep. */
export const HOLD_TTL_MS = 15 * 60_000
const PROBE_MS = 500

const MIGRATION_LOCK = 0x0a2a0101

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS a2a_proxy_keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, record TEXT NOT NULL, last_used_at BIGINT)`,
  `CREATE TABLE IF NOT EXISTS a2a_proxy_usage (
    key_id TEXT PRIMARY KEY, window_start BIGINT NOT NULL, requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cache_creation BIGINT NOT NULL, cache_read BIGINT NOT NULL,
    tokens BIGINT NOT NULL, by_model JSONB NOT NULL, reserved BIGINT NOT NULL, minute BIGINT[] NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS a2a_proxy_holds (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, tokens BIGINT NOT NULL, at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS a2a_proxy_holds_at ON a2a_proxy_holds (at)`,
  ...Leases.LEASE_MIGRATIONS
]

const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
const sqlFailure = <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) =>
  self.pipe(Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.fail(unavailable(e)))) as Effect.Effect<
    A,
    Exclude<E, SqlError> | Errors.ServiceUnavailable,
    R
  >

const encodeKey = Schema.encodeSync(VirtualKey.VirtualKey)
const decodeKey = Schema.decodeUnknownSync(VirtualKey.VirtualKey)

interface KeyRow {
  readonly record: string
  readonly hash: string
  readonly last_used_at: number | string | null
}

const toKey = (row: KeyRow): VirtualKey.VirtualKey => {
  const record = decodeKey(JSON.parse(row.record))
  return row.last_used_at === null ? record : new VirtualKey.VirtualKey({ ...record, lastUsedAt: new Date(Number(row.last_used_at)).toISOString() })
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000))

interface UsageRow {
  readonly window_start: number | string
  readonly requests: number | string
  readonly input_tokens: number | string
  readonly output_tokens: number | string
  readonly cache_creation: number | string
  readonly cache_read: number | string
  readonly tokens: number | string
  readonly by_model: Record<string, { requests: number; inputTokens: number; outputTokens: number; cacheCreationInputTokens: number; cacheReadInputTokens: number }>
  readonly reserved: number | string
  readonly leased?: number | string
  readonly minute: ReadonlyArray<number | string>
}

export interface Options {
  /** Quota lease settings; unset fields come from the environment (`A2A_PROXY_QUOTA_*`), then the defaults. */
  readonly leases?: Partial<Leases.LeaseSettings>
}

export type LeaseSettings = Leases.LeaseSettings
export type LeaseStats = Leases.LeaseStats

/** Counters of the lease path of one store (tests, benchmarks). */
export class PgLeaseStats extends Context.Tag("@mks/a2a-proxy/PgLeaseStats")<PgLeaseStats, { readonly stats: () => Leases.LeaseStats; readonly settings: Leases.LeaseSettings }>() {}

export const makeWith = (options: Options = {}) => Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const settings: Leases.LeaseSettings = { ...(yield* Leases.settingsConfig), ...options.leases }
  yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
      for (const statement of MIGRATIONS) yield* sql.unsafe(statement)
    })
  )

  // ---- health: set while the database does not answer ----
  let problem: string | undefined
  const probe = sql`SELECT 1`.pipe(
    Effect.timeout("2 seconds"),
    Effect.matchCauseEffect({
      onSuccess: () =>
        Effect.suspend(() => {
          if (problem === undefined) return Effect.void
          problem = undefined
          return Effect.logInfo("usage store reachable again")
        }),
      onFailure: () =>
        Effect.suspend(() => {
          const first = problem === undefined
          problem = "usage store unavailable: the database does not answer"
          return first ? Effect.logError(problem) : Effect.void
        })
    })
  )
  yield* probe.pipe(Effect.repeat(Schedule.spaced(PROBE_MS)), Effect.interruptible, Effect.forkScoped)
  /** A request that hit a database error marks the store down at once (the probe clears it). */
  const down = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.tapError(self, (e) =>
      Effect.sync(() => {
        if ((e as { _tag?: string })._tag === "ServiceUnavailable") problem ??= (e as Errors.ServiceUnavailable).message
      })
    )

  // ---- keys ----
  const lastUsed = new Map<Ids.KeyId, number>()
  const notFound = (id: Ids.KeyId) => new Errors.KeyNotFound({ message: `no key ${id}`, key: id })
  const row = (id: Ids.KeyId) => sql<KeyRow>`SELECT record, hash, last_used_at FROM a2a_proxy_keys WHERE id = ${id}`

  const keys: KeyStore.KeyStoreService = {
    create: (input) =>
      down(
        sqlFailure(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const { secret, hash, record } = VirtualKey.mint(input, now)
            yield* sql`INSERT INTO a2a_proxy_keys (id, hash, tenant, record) VALUES (${record.id}, ${hash}, ${record.tenant}, ${JSON.stringify(encodeKey(record))})`
            return { key: secret, record }
          })
        )
      ),
    authenticate: (secret) =>
      down(
        sqlFailure(
          Effect.gen(function* () {
            const hash = VirtualKey.hashSecret(secret)
            const rows = yield* sql<KeyRow>`SELECT record, hash, last_used_at FROM a2a_proxy_keys WHERE hash = ${hash}`
            const found = rows[0]
            if (found === undefined || !VirtualKey.digestsEqual(found.hash, hash)) return yield* new Errors.Unauthorized({ message: "invalid x-api-key" })
            const record = toKey(found)
            if (record.disabled) return yield* new Errors.Unauthorized({ message: "API key is disabled" })
            if (record.expiresAt !== undefined && Date.parse(record.expiresAt) <= (yield* Clock.currentTimeMillis)) {
              return yield* new Errors.Unauthorized({ message: "API key has expired" })
            }
            return record
          })
        )
      ),
    get: (id) =>
      down(
        sqlFailure(
          Effect.flatMap(row(id), (rows) => (rows[0] === undefined ? Effect.fail(notFound(id)) : Effect.succeed(toKey(rows[0]))))
        )
      ),
    list: (tenant) =>
      down(
        sqlFailure(
          (tenant === undefined
            ? sql<KeyRow>`SELECT record, hash, last_used_at FROM a2a_proxy_keys ORDER BY id`
            : sql<KeyRow>`SELECT record, hash, last_used_at FROM a2a_proxy_keys WHERE tenant = ${tenant} ORDER BY id`
          ).pipe(Effect.map((rows) => rows.map(toKey)))
        )
      ),
    update: (id, patch) =>
      down(
        sqlFailure(
          sql.withTransaction(
            Effect.gen(function* () {
              const rows = yield* sql<KeyRow>`SELECT record, hash, last_used_at FROM a2a_proxy_keys WHERE id = ${id} FOR UPDATE`
              if (rows[0] === undefined) return yield* Effect.fail(notFound(id))
              const record = VirtualKey.applyUpdate(decodeKey(JSON.parse(rows[0].record)), patch)
              yield* sql`UPDATE a2a_proxy_keys SET record = ${JSON.stringify(encodeKey(record))} WHERE id = ${id}`
              return toKey({ ...rows[0], record: JSON.stringify(encodeKey(record)) })
            })
          )
        )
      ),
    revoke: (id) =>
      down(
        sqlFailure(
          Effect.gen(function* () {
            const rows = yield* sql<{ id: string }>`DELETE FROM a2a_proxy_keys WHERE id = ${id} RETURNING id`
            if (rows.length === 0) return yield* Effect.fail(notFound(id))
            lastUsed.delete(id)
          })
        )
      ),
    touch: (id, at) => Effect.sync(() => void lastUsed.set(id, at))
  }

  /** `lastUsedAt` is written in batches, like the file store does. */
  const flushLastUsed = Effect.suspend(() => {
    if (lastUsed.size === 0) return Effect.void
    const batch = Array.from(lastUsed)
    lastUsed.clear()
    return Effect.forEach(batch, ([id, at]) => sql`UPDATE a2a_proxy_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), ${at}) WHERE id = ${id}`, {
      discard: true
    }).pipe(Effect.catchAll(() => Effect.sync(() => batch.forEach(([id, at]) => lastUsed.set(id, Math.max(at, lastUsed.get(id) ?? 0))))))
  })
  yield* flushLastUsed.pipe(Effect.repeat(Schedule.spaced(5_000)), Effect.interruptible, Effect.forkScoped)
  yield* Effect.addFinalizer(() => Effect.ignore(flushLastUsed))

  // ---- usage ----
  const processTag = randomBytes(4).toString("hex")
  let counter = 0

  /** Why a refused reservation was refused, from the row as it is now (the decision itself was atomic). */
  const refusal = (key: Ids.KeyId, limits: VirtualKey.KeyLimits, bound: number, now: number) =>
    Effect.gen(function* () {
      const rows = yield* sql<UsageRow>`SELECT * FROM a2a_proxy_usage WHERE key_id = ${key}`
      const r = rows[0]
      const start = r === undefined ? now : Number(r.window_start)
      const open = r !== undefined && now < start + Usage.WINDOW_MS
      const windowEnd = open ? start + Usage.WINDOW_MS : now + Usage.WINDOW_MS
      const minute = (r?.minute ?? []).map(Number).filter((t) => t > now - MINUTE_MS).sort((a, b) => a - b)
      const rpm = limits.requestsPerMinute
      if (rpm !== undefined && minute.length >= rpm) {
        const freeing = rpm === 0 ? now : minute[minute.length - rpm]!
        return new Errors.RateLimited({ message: `rate limit: ${rpm} requests per minute`, retryAfter: seconds(freeing + MINUTE_MS - now), limit: "requests_per_minute" })
      }
      const requests = open ? Number(r!.requests) : 0
      if (limits.requestsPer5h !== undefined && requests >= limits.requestsPer5h) {
        return new Errors.RateLimited({ message: `quota: ${limits.requestsPer5h} requests per 5 hours`, retryAfter: seconds(windowEnd - now), limit: "requests_per_5h" })
      }
      const settled = open ? Number(r!.tokens) : 0
      const reserved = r === undefined ? 0 : Number(r.reserved) + Number(r.leased ?? 0)
      const quota = limits.tokensPer5h ?? Number.POSITIVE_INFINITY
      const heldUp = settled + bound <= quota && reserved > 0
      return new Errors.RateLimited({
        message: `quota: ${quota} tokens per 5 hours (${settled} used, ${reserved} held, ${bound} requested)`,
        retryAfter: heldUp ? 1 : seconds(windowEnd - now),
        limit: "tokens_per_5h"
      })
    })

  const reserve: UsageMeter.UsageMeterService["reserve"] = (key, limits, tokens) =>
    down(
      sqlFailure(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const bound = Number.isNaN(tokens) || tokens < 0 ? 0 : tokens
          const held = Number.isFinite(bound) ? Math.ceil(bound) : 0
          const rpm = limits.requestsPerMinute ?? null
          const per5h = limits.requestsPer5h ?? null
          const quota = limits.tokensPer5h ?? null
          // Refused whatever the counts are: no row is created for them.
          if (rpm === 0 || per5h === 0 || (quota !== null && bound > quota)) return yield* Effect.fail(yield* refusal(key, limits, bound, now))
          const id = `r_${processTag}_${(counter++).toString(36)}`
          const W = Usage.WINDOW_MS
          // One statement: check every limit against the row as it is and hold the bound.
          const rows = yield* sql<{ id: string }>`WITH admitted AS (
            INSERT INTO a2a_proxy_usage AS u (key_id, window_start, requests, input_tokens, output_tokens, cache_creation, cache_read, tokens, by_model, reserved, minute)
            VALUES (${key}, ${now}, 1, 0, 0, 0, 0, 0, '{}'::jsonb, ${held}, ARRAY[${now}::bigint])
            ON CONFLICT (key_id) DO UPDATE SET
              window_start = CASE WHEN ${now} >= u.window_start + ${W} THEN ${now} ELSE u.window_start END,
              requests = CASE WHEN ${now} >= u.window_start + ${W} THEN 1 ELSE u.requests + 1 END,
              input_tokens = CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.input_tokens END,
              output_tokens = CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.output_tokens END,
              cache_creation = CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.cache_creation END,
              cache_read = CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.cache_read END,
              tokens = CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.tokens END,
              by_model = CASE WHEN ${now} >= u.window_start + ${W} THEN '{}'::jsonb ELSE u.by_model END,
              reserved = u.reserved + ${held},
              minute = ARRAY(SELECT t FROM unnest(u.minute) AS t WHERE t > ${now - MINUTE_MS} ORDER BY t) || ${now}::bigint
            WHERE (${rpm}::bigint IS NULL OR (SELECT count(*) FROM unnest(u.minute) AS t WHERE t > ${now - MINUTE_MS}) < ${rpm}::bigint)
              AND (${per5h}::bigint IS NULL OR (CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.requests END) < ${per5h}::bigint)
              AND (${quota}::bigint IS NULL OR (CASE WHEN ${now} >= u.window_start + ${W} THEN 0 ELSE u.tokens END) + u.reserved + u.leased + ${held} <= ${quota}::bigint)
            RETURNING u.key_id)
          INSERT INTO a2a_proxy_holds (id, key_id, tokens, at) SELECT ${id}, key_id, ${held}, ${now} FROM admitted RETURNING id`
          if (rows.length === 0) return yield* Effect.fail(yield* refusal(key, limits, bound, now))
          return { id, key, tokens: held, at: now } satisfies UsageMeter.Reservation
        })
      )
    )

  const settle: UsageMeter.UsageMeterService["settle"] = (reservation, model, usage) =>
    down(
      sqlFailure(
        Effect.asVoid(
          sql`WITH h AS (DELETE FROM a2a_proxy_holds WHERE id = ${reservation.id} RETURNING key_id, tokens)
          UPDATE a2a_proxy_usage AS u SET
            reserved = u.reserved - h.tokens,
            input_tokens = u.input_tokens + ${usage.inputTokens},
            output_tokens = u.output_tokens + ${usage.outputTokens},
            cache_creation = u.cache_creation + ${usage.cacheCreationInputTokens},
            cache_read = u.cache_read + ${usage.cacheReadInputTokens},
            tokens = u.tokens + ${Usage.totalTokens(usage)},
            by_model = jsonb_set(u.by_model, ARRAY[${model}::text], jsonb_build_object(
              'requests', COALESCE((u.by_model -> ${model}::text ->> 'requests')::bigint, 0) + 1,
              'inputTokens', COALESCE((u.by_model -> ${model}::text ->> 'inputTokens')::bigint, 0) + ${usage.inputTokens},
              'outputTokens', COALESCE((u.by_model -> ${model}::text ->> 'outputTokens')::bigint, 0) + ${usage.outputTokens},
              'cacheCreationInputTokens', COALESCE((u.by_model -> ${model}::text ->> 'cacheCreationInputTokens')::bigint, 0) + ${usage.cacheCreationInputTokens},
              'cacheReadInputTokens', COALESCE((u.by_model -> ${model}::text ->> 'cacheReadInputTokens')::bigint, 0) + ${usage.cacheReadInputTokens}))
          FROM h WHERE u.key_id = h.key_id`
        )
      )
    )

  const release: UsageMeter.UsageMeterService["release"] = (reservation) =>
    sql`WITH h AS (DELETE FROM a2a_proxy_holds WHERE id = ${reservation.id} RETURNING key_id, tokens)
      UPDATE a2a_proxy_usage AS u SET reserved = u.reserved - h.tokens FROM h WHERE u.key_id = h.key_id`.pipe(
      Effect.asVoid,
      // A release that cannot be written is given back by the hold sweep later.
      Effect.catchAll((e) => Effect.logWarning(`could not release a hold: ${e.message}`))
    )

  const snapshot: UsageMeter.UsageMeterService["snapshot"] = (key) =>
    down(
      sqlFailure(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const rows = yield* sql<UsageRow>`SELECT * FROM a2a_proxy_usage WHERE key_id = ${key}`
          const r = rows[0]
          const open = r !== undefined && now < Number(r.window_start) + Usage.WINDOW_MS
          const start = open ? Number(r!.window_start) : now
          return {
            window: {
              start: new Date(start).toISOString(),
              end: new Date(start + Usage.WINDOW_MS).toISOString(),
              requests: open ? Number(r!.requests) : 0,
              inputTokens: open ? Number(r!.input_tokens) : 0,
              outputTokens: open ? Number(r!.output_tokens) : 0,
              cacheCreationInputTokens: open ? Number(r!.cache_creation) : 0,
              cacheReadInputTokens: open ? Number(r!.cache_read) : 0
            },
            byModel: open ? Object.fromEntries(Object.entries(r!.by_model).map(([m, c]) => [m, { requests: Number(c.requests), inputTokens: Number(c.inputTokens), outputTokens: Number(c.outputTokens), cacheCreationInputTokens: Number(c.cacheCreationInputTokens), cacheReadInputTokens: Number(c.cacheReadInputTokens) }])) : {},
            requestsLastMinute: (r?.minute ?? []).filter((t) => Number(t) > now - MINUTE_MS).length,
            reservedTokens: r === undefined ? 0 : Number(r.reserved)
          } satisfies UsageMeter.UsageSnapshot
        })
      )
    )

  /** Give back holds of requests that never settled (their proxy died). */
  const sweepHolds = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const cutoff = now - HOLD_TTL_MS
    return sql`WITH h AS (DELETE FROM a2a_proxy_holds WHERE at < ${cutoff} RETURNING key_id, tokens),
        s AS (SELECT key_id, SUM(tokens) AS tokens FROM h GROUP BY key_id)
      UPDATE a2a_proxy_usage AS u SET reserved = u.reserved - s.tokens FROM s WHERE u.key_id = s.key_id`
  })
  yield* Effect.sleep(60_000).pipe(Effect.zipRight(Effect.ignore(sweepHolds)), Effect.forever, Effect.interruptible, Effect.forkScoped)

  const exact: UsageMeter.UsageMeterService = { reserve, settle, release, snapshot }
  const leases = settings.enabled
    ? yield* Leases.make({ sql, settings, instance: `${processTag}${randomBytes(2).toString("hex")}`, exact, problem: () => problem, down, sqlFailure })
    : undefined
  const meter: UsageMeter.UsageMeterService = leases === undefined ? exact : { reserve: leases.reserve, settle: leases.settle, release: leases.release, snapshot: leases.snapshot }
  const health = { problem: () => problem, flush: Effect.asVoid(Effect.ignore(flushLastUsed)) }
  return Context.make(KeyStore.KeyStore, keys).pipe(
    Context.add(UsageMeter.UsageMeter, meter),
    Context.add(KeyFile, health),
    Context.add(UsageFile, { problem: () => problem, flush: Effect.void }),
    Context.add(PgLeaseStats, { stats: () => leases?.stats() ?? { local: 0, exact: 0, syncs: 0 }, settings })
  )
})

export const make = makeWith()

/** Keys and usage in PostgreSQL at `url` (tables created on first start). */
export const layer = (url: string, options: Options = {}): Layer.Layer<KeyStore.KeyStore | UsageMeter.UsageMeter | KeyFile | UsageFile | PgLeaseStats, Errors.ServiceUnavailable> =>
  Layer.scopedContext(sqlFailure(makeWith(options))).pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(PostgresUrl.withSessionDefaults(url)), connectTimeout: "2 seconds", maxConnections: 20, idleTimeout: "30 seconds", applicationName: "a2a-proxy" })),
    Layer.mapError((e) => new Errors.ServiceUnavailable({ message: `cannot open the proxy store: ${(e as { message?: string }).message ?? String(e)}` }))
  )
