/**
 * Keys and usage in PostgreSQL: two proxy processes on one database enforce one quota; the
 * meter's rules are the same as the memory meter's; a database that goes away for 5 s makes
 * the proxy answer 503 (Anthropic-shaped, never unmetered) and it recovers by itself.
 */
import { describe as edescribe, expect as eexpect, it as eit } from "@effect/vitest"
import { Usage, UsageMeter } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { Context, Effect, Layer, TestClock, TestServices } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { PgStore } from "../src/index.js"
import { ensureBuilt, serve, type Running } from "./helpers/cli.js"
import type { FakeUpstream, Recorded, Reply } from "./helpers/fakeUpstream.js"
import { defaultScript, message, startFake, TEXT } from "./helpers/fakeUpstream.js"
import { ADMIN, oneProvider, postMessages, startProxy, tempDir, type Harness } from "./helpers/proxy.js"
import { forward, type Forwarder } from "../../../test-support/tcpForward.js"

const enabled = await pgEnabled("proxy PostgreSQL store")

/** `metadata.user_id = "out=N;delay=MS"`: that many output tokens (plus 50 others), after that delay. */
const scripted = (req: Recorded): Reply => {
  const match = /out=(\d+);delay=(\d+)/.exec(req.json?.metadata?.user_id ?? "")
  if (match === null) return defaultScript(req)
  return {
    kind: "json",
    delayMs: Number(match[2]),
    body: message(req.json.model, TEXT, { input_tokens: 40, output_tokens: Number(match[1]), cache_creation_input_tokens: 3, cache_read_input_tokens: 7 })
  }
}

const key = "k_pg" as Ids.KeyId
const u = (inputTokens: number, outputTokens = 0): Usage.Usage => ({ inputTokens, outputTokens, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

if (!enabled) {
  it("proxy PostgreSQL store: not run, no server (see the NOT RUN line)", () => {})
} else {
  edescribe("the PostgreSQL meter follows the memory meter's rules (TestClock)", () => {
    let db: TestDatabase
    beforeAll(async () => {
      db = await createDatabase("a2a_proxy")
    })
    afterAll(async () => {
      await db?.drop()
    })
    const withMeter = <A, E>(f: (m: UsageMeter.UsageMeterService) => Effect.Effect<A, E>) =>
      // The store's own loops (health probe, sweeps) run on the live clock; the meter reads the TestClock.
      Effect.scoped(Effect.flatMap(TestServices.provideLive(Layer.build(PgStore.layer(db.url))), (ctx) => f(Context.get(ctx, UsageMeter.UsageMeter))))

    eit.effect("a full token quota frees up when the 5-hour window rolls over; settle is idempotent", () =>
      withMeter((meter) =>
        Effect.gen(function* () {
          const limits = { tokensPer5h: 1000 }
          const r = yield* meter.reserve(key, limits, 600)
          yield* meter.settle(r, "fake/m", u(400, 500))
          yield* meter.settle(r, "fake/m", u(400, 500))
          eexpect((yield* meter.snapshot(key)).window).toMatchObject({ requests: 1, inputTokens: 400, outputTokens: 500 })
          yield* TestClock.adjust("1 hour")
          const refused = yield* Effect.flip(meter.reserve(key, limits, 200))
          eexpect(refused).toMatchObject({ _tag: "RateLimited", limit: "tokens_per_5h", retryAfter: 4 * 3600 })
          yield* TestClock.adjust("4 hours")
          const again = yield* meter.reserve(key, limits, 900)
          const snap = yield* meter.snapshot(key)
          eexpect(snap.window).toMatchObject({ requests: 1, inputTokens: 0, outputTokens: 0, start: new Date(5 * 3600_000).toISOString() })
          eexpect(snap.reservedTokens).toBe(900)
          eexpect(snap.byModel).toEqual({})
          yield* meter.settle(again, "fake/m", u(10))
          const after = yield* meter.snapshot(key)
          eexpect(after.window.inputTokens).toBe(10)
          eexpect(after.byModel["fake/m"]).toMatchObject({ requests: 1, inputTokens: 10 })
          eexpect(after.reservedTokens).toBe(0)
        })
      ))

    eit.effect("requests per minute roll over after 60 s; requests per 5 h with the window", () =>
      withMeter((meter) =>
        Effect.gen(function* () {
          const k = "k_rpm" as Ids.KeyId
          for (let i = 0; i < 5; i++) yield* meter.reserve(k, { requestsPerMinute: 5 }, 0)
          eexpect(yield* Effect.flip(meter.reserve(k, { requestsPerMinute: 5 }, 0))).toMatchObject({ limit: "requests_per_minute", retryAfter: 60 })
          yield* TestClock.adjust("60 seconds")
          yield* meter.reserve(k, { requestsPerMinute: 5 }, 0)
          eexpect(yield* Effect.flip(meter.reserve(k, { requestsPer5h: 6 }, 0))).toMatchObject({ limit: "requests_per_5h" })
          yield* TestClock.adjust("5 hours")
          yield* meter.reserve(k, { requestsPer5h: 6 }, 0)
        })
      ))
  })

  describe("two proxy processes, one database", () => {
    let fake: FakeUpstream
    let db: TestDatabase
    const running: Array<Running> = []
    beforeAll(async () => {
      ensureBuilt()
      fake = await startFake(scripted)
      db = await createDatabase("a2a_proxy")
    })
    afterAll(async () => {
      for (const r of running) r.child.kill("SIGTERM")
      await Promise.all(running.map((r) => r.exited))
      await fake?.close()
      await db?.drop()
    })

    it("100 concurrent requests split across both never exceed a token quota of N, and usage is exact", async () => {
      const home = tempDir()
      const config = path.join(home, "proxy.json")
      fs.writeFileSync(config, JSON.stringify(oneProvider(fake.url)))
      const env = { A2A_HOME: home, PROVIDER_KEY: "sk-real", A2A_PROXY_ADMIN_TOKEN: ADMIN, A2A_PROXY_STORE: db.url }
      const [a, b] = await Promise.all([serve(["--port", "0", "--config", config], env), serve(["--port", "0", "--config", config], env)])
      running.push(a!, b!)
      const created = await fetch(a!.url + "/v1/keys", {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "shared", limits: { tokensPer5h: 20_000 } })
      })
      expect(created.status).toBe(201)
      const { key: secret, record } = (await created.json()) as { key: string; record: { id: string } }
      // Each request may use up to ~1,100 tokens (its bound) and uses 50 + out: 100 of them want far more than 20,000.
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          postMessages((i % 2 === 0 ? a : b)!.url, secret, {
            model: "claude-q",
            max_tokens: 1000,
            metadata: { user_id: `out=${200 + ((i * 37) % 700)};delay=${i % 7}` },
            messages: []
          })
        )
      )
      const ok = results.filter((r) => r.status === 200)
      expect(ok.length + results.filter((r) => r.status === 429).length).toBe(100)
      expect(ok.length).toBeGreaterThan(0)
      expect(results.filter((r) => r.status === 429).length).toBeGreaterThan(0)
      // The key was created through A; B admitted requests with it: one key store.
      expect(results.filter((r, i) => i % 2 === 1 && r.status === 200).length).toBeGreaterThan(0)
      const reported = ok.reduce((sum, r) => sum + r.json.usage.input_tokens + r.json.usage.output_tokens + r.json.usage.cache_creation_input_tokens + r.json.usage.cache_read_input_tokens, 0)
      expect(reported).toBeLessThanOrEqual(20_000)
      // Both instances see the same window: what the upstream reported for the admitted requests.
      for (const p of [a!, b!]) {
        const usage = await fetch(`${p.url}/v1/usage?key=${record.id}`, { headers: { authorization: `Bearer ${ADMIN}` } })
        const window = ((await usage.json()) as any).usage[0].window
        expect(Usage.totalTokens(window)).toBe(reported)
        expect(window.requests).toBe(ok.length)
      }
    })
  })

  describe("the database away for 5 s", () => {
    let fake: FakeUpstream
    let db: TestDatabase
    let gate: Forwarder
    let proxy: Harness
    beforeAll(async () => {
      fake = await startFake(scripted)
      db = await createDatabase("a2a_proxy")
      gate = await forward("127.0.0.1", 5432)
      proxy = await startProxy(oneProvider(fake.url, { store: gate.url(db.name) }))
    })
    afterAll(async () => {
      await proxy?.close()
      await gate?.close()
      await fake?.close()
      await db?.drop()
    })

    it("answers 503 (Anthropic-shaped, the upstream never called) meanwhile, and recovers by itself", async () => {
      const { key: secret } = await proxy.createKey({ name: "outage", limits: { tokensPer5h: 1_000_000 } })
      const body = { model: "claude-q", max_tokens: 10, metadata: { user_id: "out=5;delay=0" }, messages: [] }
      expect((await postMessages(proxy.url, secret, body)).status).toBe(200)
      await gate.stop()
      const downAt = Date.now()
      const calls = fake.requests.length
      let refused = 0
      while (Date.now() - downAt < 5_000) {
        const res = await postMessages(proxy.url, secret, body)
        expect(res.status).toBe(503)
        expect(res.json).toMatchObject({ type: "error", error: { type: "api_error" } })
        expect(res.json.error.message).toMatch(/unavailable/)
        refused++
        await new Promise((r) => setTimeout(r, 250))
      }
      expect(refused).toBeGreaterThan(5)
      expect(fake.requests.length).toBe(calls)
      expect((await fetch(proxy.url + "/health")).status).toBe(503)
      await gate.start()
      // Recovery: poll with a deadline (nothing to await: the proxy finds out by its probe).
      const deadline = Date.now() + 10_000
      let status = 0
      while (Date.now() < deadline) {
        status = (await postMessages(proxy.url, secret, body)).status
        if (status === 200) break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(status).toBe(200)
      expect((await fetch(proxy.url + "/health")).status).toBe(200)
    })
  })
}
