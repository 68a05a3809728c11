/**
 * Quota leases on the PostgreSQL store (docs/scaling.md, "Quota leases"): two store instances
 * on one database, each admitting against its own slice of a key's budget, never admit more
 * than the quota in total; a lease of an instance that vanished lapses after its TTL and its
 * budget is usable again; closing a store writes what it settled; a quota below the minimum
 * free budget takes the exact path and stops exactly at the quota.
 */
import type { Ids } from "@mks/a2a"
import { Errors, UsageMeter } from "@mks/a2a"
import { Cause, Context, Effect, Exit, Layer, Scope } from "effect"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { forward, type Forwarder } from "../../../test-support/tcpForward.js"
import { PgStore } from "../src/index.js"
import * as fs from "node:fs"
import * as path from "node:path"
import { ensureBuilt, serve, type Running } from "./helpers/cli.js"
import { startFake, type FakeUpstream } from "./helpers/fakeUpstream.js"
import { ADMIN, oneProvider, postMessages, tempDir } from "./helpers/proxy.js"

const enabled = await pgEnabled("proxy quota leases")


interface Store {
  readonly meter: UsageMeter.UsageMeterService
  readonly stats: () => PgStore.LeaseStats
  readonly close: () => Promise<void>
}

const open = async (url: string, leases: Partial<PgStore.LeaseSettings>): Promise<Store> => {
  const scope = Effect.runSync(Scope.make())
  const ctx = await run(Layer.buildWithScope(PgStore.layer(url, { leases: { enabled: true, ...leases } }), scope))
  return {
    meter: Context.get(ctx, UsageMeter.UsageMeter),
    stats: Context.get(ctx, PgStore.PgLeaseStats).stats,
    close: () => run(Scope.close(scope, Exit.void))
  }
}

/** Runs an effect; a failure is thrown with the database's own message (SqlError keeps it in `cause`). */
const run = async <A, E>(self: Effect.Effect<A, E>): Promise<A> => {
  const exit = await Effect.runPromiseExit(self)
  if (Exit.isSuccess(exit)) return exit.value
  const e = Cause.squash(exit.cause) as { message?: string; cause?: { message?: string } }
  throw new Error(`${e.message ?? String(e)}${e.cause?.message === undefined ? "" : `: ${e.cause.message}`}`)
}

const usage = (total: number) => ({ inputTokens: total - 30, outputTokens: 30, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

/**
 * `workers` loops per store, each: reserve `bound`, then settle it with exactly `bound` tokens
 * (the worst case: every admitted request uses its whole bound) — until the first refusal.
 */
const hammer = async (stores: ReadonlyArray<Store>, key: Ids.KeyId, quota: number, bound: number, workers: number) => {
  const admitted = stores.map(() => 0)
  const refusals: Array<unknown> = []
  await Promise.all(
    stores.flatMap((s, i) =>
      Array.from({ length: workers }, async () => {
        for (;;) {
          const r = await run(Effect.either(s.meter.reserve(key, { tokensPer5h: quota }, bound)))
          if (r._tag === "Left") {
            refusals.push(r.left)
            return
          }
          admitted[i]! += 1
          await run(s.meter.settle(r.right, "fake/m", usage(bound)))
        }
      })
    )
  )
  return { admitted, refusals }
}

const query = async (url: string, text: string, values: Array<unknown> = []) => {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query(text, values)).rows
  } finally {
    await c.end()
  }
}

const usageRow = async (url: string, key: string) => {
  const rows = await query(url, "SELECT tokens, requests, reserved, leased FROM a2a_proxy_usage WHERE key_id = $1", [key])
  const r = rows[0] ?? { tokens: 0, requests: 0, reserved: 0, leased: 0 }
  return { tokens: Number(r.tokens), requests: Number(r.requests), reserved: Number(r.reserved), leased: Number(r.leased) }
}
const leaseRows = async (url: string, key: string) =>
  (await query(url, "SELECT instance, tokens, expires_at, (extract(epoch from clock_timestamp()) * 1000)::bigint AS now FROM a2a_proxy_leases WHERE key_id = $1", [key])).map((r) => ({
    instance: String(r.instance),
    tokens: Number(r.tokens),
    msLeft: Number(r.expires_at) - Number(r.now)
  }))

/** Polls `check` until it returns a value, or fails after `ms` (generous: the CPU may be loaded). */
const eventually = async <A>(what: string, ms: number, check: () => Promise<A | undefined>): Promise<A> => {
  const until = Date.now() + ms
  for (;;) {
    const a = await check()
    if (a !== undefined) return a
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

if (!enabled) {
  it("proxy quota leases: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("quota leases on PostgreSQL", () => {
    let db: TestDatabase
    beforeAll(async () => {
      db = await createDatabase("a2a_proxy_leases")
    })
    afterAll(async () => {
      await db?.drop()
    })

    it("two instances hammering one key 25 at once each never admit more than the quota in total", async () => {
      const key = "k_hammer" as Ids.KeyId
      const quota = 1_000_000
      const bound = 100
      const settings = { flushMs: 50, ttlMs: 10_000, minFree: 100_000 }
      const [a, b] = await Promise.all([open(db.url, settings), open(db.url, settings)])
      let closed = false
      try {
        const { admitted, refusals } = await hammer([a!, b!], key, quota, bound, 25)
        const total = admitted[0]! + admitted[1]!
        // The promise: never above the quota, with every admitted request using its whole bound.
        expect(total * bound).toBeLessThanOrEqual(quota)
        // Both instances admitted against leases (no round trip), and the budget was used up
        // (what is left over is at most one bound per worker that stopped at its refusal).
        expect(a!.stats().local).toBeGreaterThan(0)
        expect(b!.stats().local).toBeGreaterThan(0)
        expect(total * bound).toBeGreaterThanOrEqual(quota - 50 * bound)
        expect(refusals.every((e) => e instanceof Errors.RateLimited && e.limit === "tokens_per_5h")).toBe(true)
        await Promise.all([a!.close(), b!.close()])
        closed = true
        const row = await usageRow(db.url, key)
        // Closing wrote every settled token and gave every lease back.
        expect(row).toEqual({ tokens: total * bound, requests: total, reserved: 0, leased: 0 })
        expect(await leaseRows(db.url, key)).toEqual([])
      } finally {
        if (!closed) await Promise.all([a!.close(), b!.close()])
      }
    }, 120_000)

    it("closing a store writes the usage it settled and gives its lease back", async () => {
      const key = "k_flush" as Ids.KeyId
      // A long flush interval: only the close can have written the usage.
      const s = await open(db.url, { flushMs: 5_000, ttlMs: 60_000, minFree: 1_000 })
      let n = 0
      try {
        for (let i = 0; i < 20; i++) {
          const r = await run(s.meter.reserve(key, { tokensPer5h: 1_000_000 }, 500))
          await run(s.meter.settle(r, "fake/m", usage(250)))
          n++
        }
        expect(s.stats().local).toBe(20)
        // The instance's own view includes what it has not written yet.
        const mine = await run(s.meter.snapshot(key))
        expect(mine.window).toMatchObject({ requests: 20, inputTokens: 20 * 220, outputTokens: 20 * 30 })
      } finally {
        await s.close()
      }
      expect(await usageRow(db.url, key)).toEqual({ tokens: n * 250, requests: n, reserved: 0, leased: 0 })
      expect(await leaseRows(db.url, key)).toEqual([])
      const other = await open(db.url, { enabled: false })
      try {
        const snap = await run(other.meter.snapshot(key))
        expect(snap.byModel["fake/m"]).toEqual({ requests: 20, inputTokens: 20 * 220, outputTokens: 20 * 30, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })
      } finally {
        await other.close()
      }
    }, 60_000)

    it("the lease of an instance cut off from the database lapses after its TTL and its budget is usable again", async () => {
      const key = "k_dead" as Ids.KeyId
      const quota = 400_000
      const ttlMs = 3_000
      const dbUrl = new URL(db.url)
      const gate: Forwarder = await forward(dbUrl.hostname, Number(dbUrl.port || 5432))
      const settings = { flushMs: 100, ttlMs, minFree: 100_000 }
      const a = await open(gate.url(db.name), settings)
      const b = await open(db.url, settings)
      try {
        const r = await run(a.meter.reserve(key, { tokensPer5h: quota }, 1_000))
        expect(r.id.startsWith("l_")).toBe(true)
        const [lease] = await leaseRows(db.url, key)
        expect(lease!.tokens).toBe(quota / 4)
        // A vanishes: its connections are cut, so it can neither renew nor give back its lease.
        await gate.stop()
        // Its close cannot reach the database either (whatever it reports, its lease stays behind).
        await a.close().catch(() => {})
        // A bound that fits only with A's slice given back.
        const big = quota - 50_000
        const left = (await leaseRows(db.url, key)).find((l) => l.instance === lease!.instance)
        const tried = await run(Effect.either(b.meter.reserve(key, { tokensPer5h: quota }, big)))
        const stillLive = (await leaseRows(db.url, key)).some((l) => l.instance === lease!.instance && l.msLeft > 0)
        // Refused while A's lease was live (unless the machine was so slow that it lapsed meanwhile).
        if (left !== undefined && stillLive) expect(tried._tag).toBe("Left")
        // Once it lapsed, the sweep gives its budget back and the same request is admitted.
        const admitted = await eventually("the dead lease to lapse", 60_000, async () => {
          const e = await run(Effect.either(b.meter.reserve(key, { tokensPer5h: quota }, big)))
          return e._tag === "Right" ? e.right : undefined
        })
        expect((await leaseRows(db.url, key)).some((l) => l.instance === lease!.instance)).toBe(false)
        await run(b.meter.settle(admitted, "fake/m", usage(big)))
        const snap = await run(b.meter.snapshot(key))
        expect(snap.window.inputTokens + snap.window.outputTokens).toBe(big)
      } finally {
        await b.close()
        await gate.close()
      }
      const row = await usageRow(db.url, key)
      // A's settled nothing; B's request is counted; no lease is left.
      expect(row).toMatchObject({ tokens: quota - 50_000, leased: 0 })
    }, 120_000)

    it("a quota below the minimum free budget takes the exact path on both instances and stops exactly at the quota", async () => {
      const key = "k_small" as Ids.KeyId
      const quota = 50_000
      const bound = 100
      const settings = { flushMs: 50, ttlMs: 10_000, minFree: 100_000 }
      const [a, b] = await Promise.all([open(db.url, settings), open(db.url, settings)])
      let total = 0
      try {
        const { admitted } = await hammer([a!, b!], key, quota, bound, 10)
        total = admitted[0]! + admitted[1]!
        expect(total * bound).toBe(quota)
        expect(a!.stats().local + b!.stats().local).toBe(0)
        expect(await leaseRows(db.url, key)).toEqual([])
        expect(await usageRow(db.url, key)).toEqual({ tokens: quota, requests: total, reserved: 0, leased: 0 })
      } finally {
        await Promise.all([a!.close(), b!.close()])
      }
    }, 120_000)

    it("a key nearly used up by leases falls back to the exact path and still stops at the quota", async () => {
      // 150,000 free: the first slice (37,500) is granted; after that the free budget is below
      // the minimum and the rest is admitted one round trip at a time.
      const key = "k_edge" as Ids.KeyId
      const quota = 150_000
      const bound = 100
      const settings = { flushMs: 50, ttlMs: 10_000, minFree: 100_000 }
      const [a, b] = await Promise.all([open(db.url, settings), open(db.url, settings)])
      try {
        const { admitted } = await hammer([a!, b!], key, quota, bound, 10)
        const total = admitted[0]! + admitted[1]!
        expect(total * bound).toBeLessThanOrEqual(quota)
        expect(total * bound).toBeGreaterThanOrEqual(quota - 20 * bound)
        expect(a!.stats().local + b!.stats().local).toBeGreaterThan(0)
        expect(a!.stats().exact + b!.stats().exact).toBeGreaterThan(0)
      } finally {
        await Promise.all([a!.close(), b!.close()])
      }
      const row = await usageRow(db.url, key)
      expect(row.tokens).toBeLessThanOrEqual(quota)
      expect(row).toMatchObject({ reserved: 0, leased: 0 })
    }, 120_000)

    it("a first slice that waits longer than the idle time for the usage row: what is admitted on it is still written by the flush loop", async () => {
      // Regression: the flush loop took a key whose first slice was still being taken (no lease,
      // no holds yet, last activity over a second ago) for idle and dropped its state; the
      // requests waiting for that slice were then admitted on the dropped state, whose usage was
      // never written and whose lease was never renewed (seen with two proxies under load).
      const key = "k_slow_slice" as Ids.KeyId
      const s = await open(db.url, { flushMs: 50, ttlMs: 10_000, minFree: 1_000 })
      const blocker = new pg.Client({ connectionString: db.url })
      await blocker.connect()
      try {
        await blocker.query("INSERT INTO a2a_proxy_usage (key_id, window_start, requests, input_tokens, output_tokens, cache_creation, cache_read, tokens, by_model, reserved, minute) VALUES ($1, $2, 0, 0, 0, 0, 0, 0, '{}'::jsonb, 0, ARRAY[]::bigint[])", [key, Date.now()])
        // Hold the key's usage row for longer than the idle time (1 s at this flush interval).
        await blocker.query("BEGIN")
        await blocker.query("SELECT 1 FROM a2a_proxy_usage WHERE key_id = $1 FOR UPDATE", [key])
        const waiting = Array.from({ length: 5 }, () => run(s.meter.reserve(key, { tokensPer5h: 1_000_000 }, 500)))
        await new Promise((r) => setTimeout(r, 1_800))
        await blocker.query("COMMIT")
        const reservations = await Promise.all(waiting)
        expect(reservations.every((r) => r.id.startsWith("l_"))).toBe(true)
        for (const r of reservations) await run(s.meter.settle(r, "fake/m", usage(250)))
        // The flush loop (not the close) writes them.
        const row = await eventually("the flush to write the settled usage", 10_000, async () => {
          const r = await usageRow(db.url, key)
          return r.tokens === 5 * 250 && r.requests === 5 ? r : undefined
        })
        expect(row).toMatchObject({ reserved: 0 })
      } finally {
        await blocker.end()
        await s.close()
      }
      expect(await usageRow(db.url, key)).toEqual({ tokens: 5 * 250, requests: 5, reserved: 0, leased: 0 })
    }, 60_000)

    it("keys with request-count limits stay on the exact path", async () => {
      const key = "k_rpm" as Ids.KeyId
      const s = await open(db.url, { flushMs: 50, ttlMs: 10_000, minFree: 1_000 })
      try {
        for (let i = 0; i < 3; i++) await run(s.meter.reserve(key, { tokensPer5h: 10_000_000, requestsPerMinute: 3 }, 100))
        const refused = await run(Effect.flip(s.meter.reserve(key, { tokensPer5h: 10_000_000, requestsPerMinute: 3 }, 100)))
        expect(refused).toMatchObject({ _tag: "RateLimited", limit: "requests_per_minute" })
        expect(s.stats().local).toBe(0)
        expect(await leaseRows(db.url, key)).toEqual([])
      } finally {
        await s.close()
      }
    }, 60_000)
  })

  describe("quota leases through two proxy processes", () => {
    let fake: FakeUpstream
    let db: TestDatabase
    const running: Array<Running> = []
    beforeAll(async () => {
      ensureBuilt()
      fake = await startFake()
      db = await createDatabase("a2a_proxy_leases_cli")
    })
    afterAll(async () => {
      for (const r of running) r.child.kill("SIGTERM")
      await Promise.all(running.map((r) => r.exited))
      await fake?.close()
      await db?.drop()
    })

    it("requests through both are admitted on leases; SIGTERM writes what one settled and gives its lease back; the other's flush writes its part", async () => {
      const home = tempDir()
      const config = path.join(home, "proxy.json")
      fs.writeFileSync(config, JSON.stringify(oneProvider(fake.url)))
      const env = { A2A_HOME: home, PROVIDER_KEY: "sk-real", A2A_PROXY_ADMIN_TOKEN: ADMIN, A2A_PROXY_STORE: db.url, A2A_PROXY_QUOTA_LEASES: "true", A2A_PROXY_QUOTA_FLUSH_MS: "100" }
      // B writes only every 10 s: its usage reaches the database through its SIGTERM.
      const [a, b] = await Promise.all([
        serve(["--port", "0", "--config", config], env),
        serve(["--port", "0", "--config", config], { ...env, A2A_PROXY_QUOTA_FLUSH_MS: "10000", A2A_PROXY_QUOTA_LEASE_TTL_MS: "60000" })
      ])
      running.push(a!, b!)
      const created = await fetch(a!.url + "/v1/keys", {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "leased", limits: { tokensPer5h: 50_000_000 } })
      })
      expect(created.status).toBe(201)
      const { key: secret, record } = (await created.json()) as { key: string; record: { id: string } }
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) => postMessages((i % 2 === 0 ? a : b)!.url, secret, { model: "claude-q", max_tokens: 100, messages: [{ role: "user", content: "hi" }] }))
      )
      expect(results.map((r) => r.status)).toEqual(results.map(() => 200))
      const reported = results.reduce(
        (sum, r) => sum + r.json.usage.input_tokens + r.json.usage.output_tokens + (r.json.usage.cache_creation_input_tokens ?? 0) + (r.json.usage.cache_read_input_tokens ?? 0),
        0
      )
      // Each instance took its own slice.
      expect((await leaseRows(db.url, record.id)).length).toBe(2)
      b!.child.kill("SIGTERM")
      await b!.exited
      // B gave its lease back on the way out; A's may remain (or be given back once idle).
      const leases = await leaseRows(db.url, record.id)
      expect(leases.length).toBeLessThanOrEqual(1)
      // A writes every 100 ms: the database, and A's report, then hold every request of both.
      const row = await eventually("both instances' usage to be written", 30_000, async () => {
        const r = await usageRow(db.url, record.id)
        return r.tokens === reported && r.requests === 60 ? r : undefined
      })
      expect(row.reserved).toBe(0)
      const res = await fetch(`${a!.url}/v1/usage?key=${record.id}`, { headers: { authorization: `Bearer ${ADMIN}` } })
      const w = ((await res.json()) as any).usage[0].window
      expect({ tokens: w.inputTokens + w.outputTokens + w.cacheCreationInputTokens + w.cacheReadInputTokens, requests: w.requests }).toEqual({ tokens: reported, requests: 60 })
    }, 120_000)

    it("a lease setting out of range stops the proxy at start with the setting's name", async () => {
      const home = tempDir()
      const config = path.join(home, "proxy.json")
      fs.writeFileSync(config, JSON.stringify(oneProvider(fake.url)))
      const env = { A2A_HOME: home, PROVIDER_KEY: "sk-real", A2A_PROXY_ADMIN_TOKEN: ADMIN, A2A_PROXY_STORE: db.url, A2A_PROXY_QUOTA_FLUSH_MS: "1" }
      await expect(serve(["--port", "0", "--config", config], env)).rejects.toThrow(/A2A_PROXY_QUOTA_FLUSH_MS/)
    }, 60_000)
  })
}
