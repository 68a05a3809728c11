/**
 * Limits: requests per minute (429 with `retry-after` and `anthropic-ratelimit-*`), token
 * quotas that concurrency cannot overshoot (reserve → settle), rolling windows (TestClock),
 * and usage that survives a clean restart.
 */
import { describe as edescribe, expect as eexpect, it as eit } from "@effect/vitest"
import { Usage, UsageMeter } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { Effect, Either, TestClock } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { UsageFile } from "../src/index.js"
import type { FakeUpstream, Recorded, Reply } from "./helpers/fakeUpstream.js"
import { defaultScript, defaultUsage, message, startFake, TEXT } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, postMessages, startProxy, tempDir } from "./helpers/proxy.js"

const key = "k_test" as Ids.KeyId
const u = (inputTokens: number, outputTokens = 0): Usage.Usage => ({ inputTokens, outputTokens, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

edescribe("the proxy's meter (UsageFile.layerMemory), TestClock", () => {
  const withMeter = <A, E>(f: (m: UsageMeter.UsageMeterService) => Effect.Effect<A, E>) =>
    Effect.flatMap(UsageMeter.UsageMeter, f).pipe(Effect.provide(UsageFile.layerMemory))

  eit.effect("a full token quota frees up when the 5-hour window rolls over", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { tokensPer5h: 1000 }
        const r = yield* meter.reserve(key, limits, 600)
        yield* meter.settle(r, "fake/m", u(400, 500))
        yield* TestClock.adjust("1 hour")
        const refused = yield* Effect.flip(meter.reserve(key, limits, 200))
        eexpect(refused).toMatchObject({ _tag: "RateLimited", limit: "tokens_per_5h", retryAfter: 4 * 3600 })
        yield* TestClock.adjust("4 hours")
        // Exactly at the end of the window: a new one opens with nothing used.
        const again = yield* meter.reserve(key, limits, 900)
        const snap = yield* meter.snapshot(key)
        eexpect(snap.window).toMatchObject({ requests: 1, inputTokens: 0, outputTokens: 0, start: new Date(5 * 3600_000).toISOString() })
        eexpect(snap.reservedTokens).toBe(900)
        yield* meter.settle(again, "fake/m", u(10))
        eexpect((yield* meter.snapshot(key)).window.inputTokens).toBe(10)
      })
    ))

  eit.effect("requests per minute roll over after 60 s; requests per 5 h with the window", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        for (let i = 0; i < 5; i++) yield* meter.reserve(key, { requestsPerMinute: 5 }, 0)
        eexpect(yield* Effect.flip(meter.reserve(key, { requestsPerMinute: 5 }, 0))).toMatchObject({ limit: "requests_per_minute", retryAfter: 60 })
        yield* TestClock.adjust("60 seconds")
        yield* meter.reserve(key, { requestsPerMinute: 5 }, 0)
        eexpect(yield* Effect.flip(meter.reserve(key, { requestsPer5h: 6 }, 0))).toMatchObject({ limit: "requests_per_5h" })
        yield* TestClock.adjust("5 hours")
        yield* meter.reserve(key, { requestsPer5h: 6 }, 0)
      })
    ))

  eit.effect("property: over any arrival order of 50 requests, settled + held never exceeds the quota", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ bound: fc.integer({ min: 1, max: 3000 }), used: fc.double({ min: 0.5, max: 1, noNaN: true }) }), {
            minLength: 50,
            maxLength: 50
          }),
          fc.array(fc.nat(), { minLength: 100, maxLength: 100 }),
          fc.integer({ min: 1000, max: 20_000 }),
          async (requests, choices, quota) =>
            Effect.runPromise(
              withMeter((meter) =>
                Effect.gen(function* () {
                  const limits = { tokensPer5h: quota }
                  const inFlight: Array<{ r: UsageMeter.Reservation; used: number }> = []
                  let next = 0
                  let settled = 0
                  // Each choice either admits the next request or settles one in flight (the arrival order).
                  for (const choice of choices) {
                    if (next < requests.length && (choice % 3 !== 0 || inFlight.length === 0)) {
                      const req = requests[next++]!
                      const r = yield* Effect.either(meter.reserve(key, limits, req.bound))
                      if (Either.isRight(r)) inFlight.push({ r: r.right, used: Math.floor(req.bound * req.used) })
                    } else if (inFlight.length > 0) {
                      const [done] = inFlight.splice(Math.floor(choice / 3) % inFlight.length, 1)
                      yield* meter.settle(done!.r, "m", u(done!.used))
                      settled += done!.used
                    }
                    const snap = yield* meter.snapshot(key)
                    eexpect(Usage.totalTokens(snap.window)).toBe(settled)
                    eexpect(settled).toBeLessThanOrEqual(quota)
                    eexpect(snap.reservedTokens).toBe(inFlight.reduce((sum, f) => sum + f.r.tokens, 0))
                    eexpect(settled + snap.reservedTokens).toBeLessThanOrEqual(quota)
                  }
                })
              )
            )
        ),
        { numRuns: 100 }
      )
    ))
})

/** Usage and delay chosen by the request: `metadata.user_id = "out=N;delay=MS"`. */
const scripted = (req: Recorded): Reply => {
  const tag: string = req.json?.metadata?.user_id ?? ""
  const match = /out=(\d+);delay=(\d+)/.exec(tag)
  if (match === null) return defaultScript(req)
  return {
    kind: "json",
    delayMs: Number(match[2]),
    body: message(req.json.model, TEXT, { input_tokens: 40, output_tokens: Number(match[1]), cache_creation_input_tokens: 3, cache_read_input_tokens: 7 })
  }
}

describe("limits through a real proxy", () => {
  let fake: FakeUpstream
  let proxy: Harness

  beforeAll(async () => {
    fake = await startFake(scripted)
    proxy = await startProxy(oneProvider(fake.url))
  })
  afterAll(async () => {
    await proxy?.close()
    await fake?.close()
  })

  it("rpm = 5: the 6th request in the minute gets 429 in Anthropic's shape with retry-after and anthropic-ratelimit-* headers", async () => {
    const { key: k } = await proxy.createKey({ name: "rpm", limits: { requestsPerMinute: 5, tokensPer5h: 1_000_000 } })
    const before = fake.requests.length
    const body = { model: "claude-text", max_tokens: 100, messages: [{ role: "user", content: "hi" }] }
    for (let i = 0; i < 5; i++) expect((await postMessages(proxy.url, k, body)).status).toBe(200)
    const res = await postMessages(proxy.url, k, body)
    expect(res.status).toBe(429)
    expect(res.json).toMatchObject({ type: "error", error: { type: "rate_limit_error" } })
    expect(res.json.error.message).toMatch(/5 requests per minute/)
    expect(res.json.request_id).toMatch(/^req_/)
    const retryAfter = Number(res.headers.get("retry-after"))
    expect(retryAfter).toBeGreaterThanOrEqual(45)
    expect(retryAfter).toBeLessThanOrEqual(60)
    expect(res.headers.get("anthropic-ratelimit-requests-limit")).toBe("5")
    expect(res.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0")
    const reset = Date.parse(res.headers.get("anthropic-ratelimit-requests-reset")!)
    expect(reset - Date.now()).toBeGreaterThan(40_000)
    expect(res.headers.get("anthropic-ratelimit-requests-reset")).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    expect(res.headers.get("anthropic-ratelimit-tokens-limit")).toBe("1000000")
    const perRequest = defaultUsage.input_tokens + defaultUsage.output_tokens + defaultUsage.cache_creation_input_tokens + defaultUsage.cache_read_input_tokens
    expect(Number(res.headers.get("anthropic-ratelimit-tokens-remaining"))).toBe(1_000_000 - 5 * perRequest)
    expect(res.headers.get("anthropic-ratelimit-tokens-reset")).toMatch(/Z$/)
    // The refused request never reached the upstream.
    expect(fake.requests.length - before).toBe(5)
  })

  it("property: 50 concurrent requests against a token quota never overshoot it, whatever the arrival and completion order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ out: fc.integer({ min: 0, max: 1000 }), delay: fc.integer({ min: 0, max: 15 }), stagger: fc.integer({ min: 0, max: 3 }) }), {
          minLength: 50,
          maxLength: 50
        }),
        fc.integer({ min: 3_000, max: 20_000 }),
        async (requests, quota) => {
          const { key: k } = await proxy.createKey({ name: "quota", limits: { tokensPer5h: quota } })
          const results = await Promise.all(
            requests.map(async (r) => {
              // Stagger the sends over a few event-loop turns: a different arrival order each run.
              for (let i = 0; i < r.stagger; i++) await new Promise((resolve) => setImmediate(resolve))
              return postMessages(proxy.url, k, { model: "claude-q", max_tokens: 1000, metadata: { user_id: `out=${r.out};delay=${r.delay}` }, messages: [] })
            })
          )
          const ok = results.filter((r) => r.status === 200)
          expect(ok.length + results.filter((r) => r.status === 429).length).toBe(50)
          const total = (usage: any) => usage.input_tokens + usage.output_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
          const reported = ok.reduce((sum, r) => sum + total(r.json.usage), 0)
          const window = (await proxy.admin("GET", `/v1/usage?key=${(await proxy.admin("GET", "/v1/keys")).json.keys.find((x: any) => x.prefix === k.slice(0, 13)).id}`)).json.usage[0].window
          // Exact: what the upstream reported for the admitted requests, and within the quota.
          expect(Usage.totalTokens(window)).toBe(reported)
          expect(window.requests).toBe(ok.length)
          expect(reported).toBeLessThanOrEqual(quota)
          expect(ok.length).toBeGreaterThan(0)
        }
      ),
      // No shrinking: each run is 50 real requests.
      { numRuns: 4, endOnFailure: true }
    )
  })
})

describe("usage survives a clean restart", () => {
  it("flushed on close, reloaded at start: counts and quotas carry over; the file is 0600", async () => {
    const fake = await startFake(scripted)
    const dir = tempDir()
    try {
      const first = await startProxy(oneProvider(fake.url), { dir })
      const body = { model: "claude-p", max_tokens: 50, metadata: { user_id: "out=20;delay=0" }, messages: [] }
      // Each request uses 70 tokens and reserves body bytes + 50: two fit, a third does not.
      const bound = Buffer.byteLength(JSON.stringify(body)) + 50
      const quota = 140 + bound - 1
      const { key: k } = await first.createKey({ name: "persist", limits: { tokensPer5h: quota } })
      expect((await postMessages(first.url, k, body)).status).toBe(200)
      expect((await postMessages(first.url, k, body)).status).toBe(200)
      await first.close()
      const file = path.join(dir, "usage.json")
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)

      const second = await startProxy(oneProvider(fake.url), { dir })
      try {
        const me = (await (await fetch(second.url + "/v1/usage/me", { headers: { "x-api-key": k } })).json()) as any
        expect(me.window).toMatchObject({ requests: 2, inputTokens: 80, outputTokens: 40, cacheCreationInputTokens: 6, cacheReadInputTokens: 14 })
        expect(me.remaining).toEqual({ tokensPer5h: quota - 140 })
        // 140 used + this request's bound > quota: refused after the restart too.
        expect((await postMessages(second.url, k, body)).status).toBe(429)
      } finally {
        await second.close()
      }
    } finally {
      await fake.close()
    }
  })
})
