import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Ref, TestClock } from "effect"
import fc from "fast-check"
import { Usage, UsageMeter } from "../src/index.js"
import type { KeyId } from "../src/Ids.js"
import type { KeyLimits } from "../src/VirtualKey.js"

const key = "k_alice" as KeyId
const other = "k_bob" as KeyId

const usage = (inputTokens: number, outputTokens = 0, cacheCreationInputTokens = 0, cacheReadInputTokens = 0): Usage.Usage => ({
  inputTokens,
  outputTokens,
  cacheCreationInputTokens,
  cacheReadInputTokens
})

const withMeter = <A, E>(f: (meter: UsageMeter.UsageMeterService) => Effect.Effect<A, E>) =>
  Effect.flatMap(UsageMeter.UsageMeter, f).pipe(Effect.provide(UsageMeter.layerMemory))

const rejected = (meter: UsageMeter.UsageMeterService, limits: KeyLimits, tokens = 0) =>
  Effect.flip(meter.reserve(key, limits, tokens))

const windowTotal = (s: UsageMeter.UsageSnapshot): number => Usage.totalTokens(s.window)

describe("UsageMeter.layerMemory: requests per minute", () => {
  it.effect("rpm=5: the 6th request within a minute is RateLimited until the oldest leaves", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { requestsPerMinute: 5 }
        // Requests at t = 0, 10, 20, 30, 40 s.
        for (let i = 0; i < 5; i++) {
          yield* meter.reserve(key, limits, 10)
          yield* TestClock.adjust("10 seconds")
        }
        // t = 50 s: the request of t = 0 leaves the minute in 10 s.
        const error = yield* rejected(meter, limits)
        expect(error).toMatchObject({ _tag: "RateLimited", limit: "requests_per_minute", retryAfter: 10 })
        expect((yield* meter.snapshot(key)).requestsLastMinute).toBe(5)

        yield* TestClock.adjust("9 seconds")
        expect(yield* rejected(meter, limits)).toMatchObject({ retryAfter: 1, limit: "requests_per_minute" })
        yield* TestClock.adjust("1 second")
        // t = 60 s: the first request is out of the trailing minute.
        yield* meter.reserve(key, limits, 10)
        expect((yield* meter.snapshot(key)).requestsLastMinute).toBe(5)
        // Another key has its own count.
        yield* meter.reserve(other, limits, 10)
      })
    ))

  it.effect("released and rejected requests: released ones still count, rejected ones do not", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { requestsPerMinute: 2 }
        const r = yield* meter.reserve(key, limits, 100)
        yield* meter.release(r)
        yield* meter.reserve(key, limits, 100)
        const error = yield* rejected(meter, limits)
        expect(error).toMatchObject({ limit: "requests_per_minute", retryAfter: 60 })
        yield* rejected(meter, limits)
        const snap = yield* meter.snapshot(key)
        expect(snap.requestsLastMinute).toBe(2)
        expect(snap.window.requests).toBe(2)
        expect(snap.reservedTokens).toBe(100)
      })
    ))
})

describe("UsageMeter.layerMemory: 5-hour windows", () => {
  it.effect("requestsPer5h counts admitted requests in the window; retryAfter is the time to its end", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { requestsPer5h: 3 }
        yield* meter.reserve(key, limits, 0)
        yield* TestClock.adjust("1 hour")
        yield* meter.reserve(key, limits, 0)
        yield* meter.reserve(key, limits, 0)
        const error = yield* rejected(meter, limits)
        expect(error).toMatchObject({ _tag: "RateLimited", limit: "requests_per_5h", retryAfter: 4 * 3600 })
        yield* TestClock.adjust("4 hours")
        yield* meter.reserve(key, limits, 0)
        expect((yield* meter.snapshot(key)).window.requests).toBe(1)
      })
    ))

  it.effect("a window opens with the first request after the previous one ended, and counts reset", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        // Nothing yet: an empty window from now.
        const empty = yield* meter.snapshot(key)
        expect(empty.window).toEqual({
          start: "1970-01-01T00:00:00.000Z",
          end: "1970-01-01T05:00:00.000Z",
          requests: 0,
          inputTokens: 0,
          outputTokens: 0,
          cacheCreationInputTokens: 0,
          cacheReadInputTokens: 0
        })

        yield* TestClock.adjust("30 minutes")
        const r = yield* meter.reserve(key, {}, 100)
        yield* meter.settle(r, "glm-4.6", usage(40, 20))
        yield* TestClock.adjust("2 hours")
        const inside = yield* meter.snapshot(key)
        expect(inside.window).toMatchObject({ start: "1970-01-01T00:30:00.000Z", end: "1970-01-01T05:30:00.000Z", requests: 1 })
        expect(windowTotal(inside)).toBe(60)

        yield* TestClock.adjust("5 hours")
        // t = 7:30: the window ended at 5:30 and no request came since.
        const after = yield* meter.snapshot(key)
        expect(after.window).toMatchObject({ start: "1970-01-01T07:30:00.000Z", end: "1970-01-01T12:30:00.000Z", requests: 0 })
        expect(windowTotal(after)).toBe(0)
        expect(after.byModel).toEqual({})

        yield* TestClock.adjust("10 minutes")
        yield* meter.reserve(key, {}, 1)
        yield* TestClock.adjust("1 hour")
        expect((yield* meter.snapshot(key)).window).toMatchObject({ start: "1970-01-01T07:40:00.000Z", requests: 1 })
      })
    ))

  it.effect("tokensPer5h: settled + held + this bound must fit; holds block only until they settle", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { tokensPer5h: 1000 }
        const a = yield* meter.reserve(key, limits, 600)
        // 600 held + 500 > 1000, but without the hold it would fit: retry soon.
        expect(yield* rejected(meter, limits, 500)).toMatchObject({ limit: "tokens_per_5h", retryAfter: 1 })
        yield* meter.settle(a, "m", usage(50, 50))
        const b = yield* meter.reserve(key, limits, 500)
        expect((yield* meter.snapshot(key)).reservedTokens).toBe(500)
        yield* meter.release(b)
        const c = yield* meter.reserve(key, limits, 900)
        yield* meter.settle(c, "m", usage(300, 600))
        // 1000 settled: nothing fits until the window ends, 5 h after it opened.
        yield* TestClock.adjust("1 hour")
        expect(yield* rejected(meter, limits, 1)).toMatchObject({ limit: "tokens_per_5h", retryAfter: 4 * 3600 })
        // A bound larger than the quota never fits this window.
        expect(yield* rejected(meter, limits, 1001)).toMatchObject({ limit: "tokens_per_5h" })
        // Zero-token requests still fit.
        yield* meter.reserve(key, limits, 0)
        yield* TestClock.adjust("4 hours")
        yield* meter.reserve(key, limits, 1000)
      })
    ))

  it.effect("a hold from the previous window still counts against the next one", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const limits = { tokensPer5h: 1000 }
        const late = yield* meter.reserve(key, limits, 800)
        yield* TestClock.adjust("5 hours")
        // New window, but 800 are still in flight.
        expect(yield* rejected(meter, limits, 300)).toMatchObject({ limit: "tokens_per_5h", retryAfter: 1 })
        const r = yield* meter.reserve(key, limits, 200)
        yield* meter.settle(late, "m", usage(800))
        expect(windowTotal(yield* meter.snapshot(key))).toBe(800)
        yield* meter.settle(r, "m", usage(200))
        expect(yield* rejected(meter, limits, 1)).toMatchObject({ limit: "tokens_per_5h" })
      })
    ))
})

describe("UsageMeter.layerMemory: settle", () => {
  it.effect("keeps the four token kinds apart, per window and per model", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const r1 = yield* meter.reserve(key, {}, 10_000)
        const r2 = yield* meter.reserve(key, {}, 10_000)
        const r3 = yield* meter.reserve(key, {}, 10_000)
        expect((yield* meter.snapshot(key)).reservedTokens).toBe(30_000)
        yield* meter.settle(r1, "glm-4.6", usage(100, 20, 300, 4000))
        yield* meter.settle(r2, "glm-4.6", usage(1, 2, 3, 4))
        yield* meter.settle(r3, "kimi-k2", usage(7, 0, 0, 9))
        const snap = yield* meter.snapshot(key)
        expect(snap.window).toMatchObject({
          requests: 3,
          inputTokens: 108,
          outputTokens: 22,
          cacheCreationInputTokens: 303,
          cacheReadInputTokens: 4013
        })
        expect(snap.byModel).toEqual({
          "glm-4.6": { requests: 2, inputTokens: 101, outputTokens: 22, cacheCreationInputTokens: 303, cacheReadInputTokens: 4004 },
          "kimi-k2": { requests: 1, inputTokens: 7, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 9 }
        })
        expect(snap.reservedTokens).toBe(0)
        expect(snap.requestsLastMinute).toBe(3)
        // The snapshot is a copy: later settles do not change it.
        const r4 = yield* meter.reserve(key, {}, 5)
        yield* meter.settle(r4, "glm-4.6", usage(5))
        expect(snap.byModel["glm-4.6"]!.inputTokens).toBe(101)
      })
    ))

  it.effect("settling or releasing twice counts once", () =>
    withMeter((meter) =>
      Effect.gen(function* () {
        const r = yield* meter.reserve(key, { tokensPer5h: 100 }, 50)
        yield* meter.settle(r, "m", usage(30))
        yield* meter.settle(r, "m", usage(30))
        yield* meter.release(r)
        const snap = yield* meter.snapshot(key)
        expect(snap.window.inputTokens).toBe(30)
        expect(snap.byModel["m"]!.requests).toBe(1)
        expect(snap.reservedTokens).toBe(0)
      })
    ))
})

describe("UsageMeter.layerMemory: concurrency", () => {
  const job = fc.record({
    bound: fc.integer({ min: 0, max: 2_000 }),
    /** Actual usage as a share of the bound (never more than the bound). */
    share: fc.double({ min: 0, max: 1, noNaN: true }),
    before: fc.nat(6),
    between: fc.nat(6),
    release: fc.boolean()
  })

  const yields = (n: number) => Effect.repeatN(Effect.yieldNow(), n)

  it("settled tokens never exceed tokensPer5h under random concurrent interleavings", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6_000 }), fc.array(job, { maxLength: 40 }), async (limit, jobs) => {
        const program = Effect.gen(function* () {
          const meter = yield* UsageMeter.UsageMeter
          const limits = { tokensPer5h: limit }
          const settled = yield* Ref.make(0)
          const rejections = yield* Ref.make(0)
          const overshoots = yield* Ref.make<Array<number>>([])
          const observe = Effect.gen(function* () {
            const snap = yield* meter.snapshot(key)
            const seen = windowTotal(snap) + snap.reservedTokens
            if (seen > limit) yield* Ref.update(overshoots, (o) => [...o, seen])
          })
          const run = (j: typeof job extends fc.Arbitrary<infer J> ? J : never) =>
            Effect.gen(function* () {
              // Random yields before and inside each request shuffle how the fibers interleave.
              yield* yields(j.before)
              const admitted = yield* Effect.either(meter.reserve(key, limits, j.bound))
              if (Either.isLeft(admitted)) {
                expect(admitted.left).toMatchObject({ _tag: "RateLimited", limit: "tokens_per_5h" })
                return yield* Ref.update(rejections, (n) => n + 1)
              }
              yield* observe
              yield* yields(j.between)
              const actual = Math.floor(j.bound * j.share)
              if (j.release) return yield* meter.release(admitted.right)
              const input = Math.floor(actual / 2)
              const output = Math.floor(actual / 4)
              const creation = Math.floor(actual / 8)
              yield* meter.settle(admitted.right, j.bound % 2 === 0 ? "even" : "odd", usage(input, output, creation, actual - input - output - creation))
              yield* Ref.update(settled, (n) => n + actual)
              yield* observe
            })
          yield* Effect.all(jobs.map(run), { concurrency: "unbounded", discard: true })

          const snap = yield* meter.snapshot(key)
          expect(yield* Ref.get(overshoots)).toEqual([])
          expect(windowTotal(snap)).toBe(yield* Ref.get(settled))
          expect(windowTotal(snap)).toBeLessThanOrEqual(limit)
          expect(snap.reservedTokens).toBe(0)
          expect(snap.window.requests).toBe(jobs.length - (yield* Ref.get(rejections)))
          const perModel = Object.values(snap.byModel).reduce((n, u) => n + Usage.totalTokens(u), 0)
          expect(perModel).toBe(windowTotal(snap))
          // When every bound fits together, nobody is refused.
          if (jobs.reduce((n, j) => n + j.bound, 0) <= limit) expect(yield* Ref.get(rejections)).toBe(0)
        })
        await Effect.runPromise(program.pipe(Effect.provide(UsageMeter.layerMemory)))
      }),
      { numRuns: 200 }
    )
  })

  it("a burst of concurrent reserves admits exactly as many as fit", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 100 }), async (fit, burst) => {
        const program = Effect.gen(function* () {
          const meter = yield* UsageMeter.UsageMeter
          const results = yield* Effect.all(
            Array.from({ length: burst }, () => Effect.either(meter.reserve(key, { tokensPer5h: fit * 10 }, 10))),
            { concurrency: "unbounded" }
          )
          expect(results.filter(Either.isRight)).toHaveLength(Math.min(fit, burst))
        })
        await Effect.runPromise(program.pipe(Effect.provide(UsageMeter.layerMemory)))
      }),
      { numRuns: 50 }
    )
  })
})
