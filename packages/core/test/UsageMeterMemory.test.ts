/**
 * `UsageMeter.makeMemory`: seeded from what an earlier meter exported (windows and the trailing
 * minute survive, holds do not), `onChange` on every change of the counts, and the plain
 * synchronous steps (`unsafe`) sharing one state with the Effect service.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema, TestClock } from "effect"
import { Usage, UsageMeter } from "../src/index.js"
import type { KeyId } from "../src/Ids.js"

const key = "k_carol" as KeyId
const used = (inputTokens: number, outputTokens = 0): Usage.Usage => ({ inputTokens, outputTokens, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

describe("UsageMeter.makeMemory", () => {
  it.effect("export → initial: the window, per-model counts and the trailing minute carry over; holds do not", () =>
    Effect.gen(function* () {
      yield* TestClock.adjust("10 minutes")
      const first = yield* UsageMeter.makeMemory()
      const limits = { requestsPerMinute: 3, tokensPer5h: 1_000 }
      const a = yield* first.reserve(key, limits, 100)
      yield* first.settle(a, "glm/glm-4.5", used(40, 10))
      yield* first.reserve(key, limits, 500) // still in flight when exported
      const exported = first.export(600_000)
      // It is what a file would hold: it encodes and decodes with the schema.
      const data = Schema.decodeUnknownSync(UsageMeter.MeterData)(JSON.parse(JSON.stringify(Schema.encodeSync(UsageMeter.MeterData)(exported))))

      yield* TestClock.adjust("1 second") // the restart
      const second = yield* UsageMeter.makeMemory({ initial: data })
      const snapshot = yield* second.snapshot(key)
      expect(snapshot.window).toMatchObject({ requests: 2, inputTokens: 40, outputTokens: 10, start: "1970-01-01T00:10:00.000Z" })
      expect(snapshot.byModel["glm/glm-4.5"]).toEqual({ requests: 1, inputTokens: 40, outputTokens: 10, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })
      expect(snapshot.requestsLastMinute).toBe(2)
      expect(snapshot.reservedTokens).toBe(0)
      // rpm counts the restored admissions: one more fits, the next does not.
      yield* second.reserve(key, limits, 0)
      expect(yield* Effect.flip(second.reserve(key, limits, 0))).toMatchObject({ _tag: "RateLimited", limit: "requests_per_minute" })
      // Restored admissions (made at 600.000 s) leave the minute at the end of their second, never earlier;
      // the one made after the restart at 601.000 s leaves at 661.000 s.
      yield* TestClock.adjust("59998 millis")
      expect((yield* second.snapshot(key)).requestsLastMinute).toBe(3)
      yield* TestClock.adjust("1 millis")
      expect((yield* second.snapshot(key)).requestsLastMinute).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect((yield* second.snapshot(key)).requestsLastMinute).toBe(0)
    }))

  it.effect("onChange is called for every reserve and settle, not for reads", () =>
    Effect.gen(function* () {
      let changes = 0
      const meter = yield* UsageMeter.makeMemory({ onChange: () => void changes++ })
      const r = yield* meter.reserve(key, {}, 10)
      expect(changes).toBe(1)
      yield* meter.snapshot(key)
      meter.export(0)
      expect(changes).toBe(1)
      yield* meter.settle(r, "m", used(5))
      expect(changes).toBe(2)
      yield* meter.settle(r, "m", used(5)) // a second settle counts nothing and changes nothing
      expect(changes).toBe(2)
    }))

  it.effect("unsafe steps and the service share one state", () =>
    Effect.gen(function* () {
      const meter = yield* UsageMeter.makeMemory()
      const limits = { tokensPer5h: 100 }
      const held = meter.unsafe.reserve(key, limits, 60, 0)
      expect(held).not.toHaveProperty("_tag")
      // The service sees the hold: 60 held + 50 does not fit.
      expect(yield* Effect.flip(meter.reserve(key, limits, 50))).toMatchObject({ _tag: "RateLimited", limit: "tokens_per_5h", retryAfter: 1 })
      if ("_tag" in held) return
      meter.unsafe.settle(held, "m", used(20))
      expect((yield* meter.reserve(key, limits, 50)).tokens).toBe(50)
      expect(meter.unsafe.snapshot(key, 0)).toMatchObject({ window: { requests: 2, inputTokens: 20 }, reservedTokens: 50 })
    }))

  it.effect("a bound that is not a finite number: NaN holds nothing, Infinity is refused by a quota and holds nothing without one", () =>
    Effect.gen(function* () {
      const meter = yield* UsageMeter.makeMemory()
      expect((yield* meter.reserve(key, { tokensPer5h: 10 }, Number.NaN)).tokens).toBe(0)
      expect(yield* Effect.flip(meter.reserve(key, { tokensPer5h: 10 }, Number.POSITIVE_INFINITY))).toMatchObject({ limit: "tokens_per_5h" })
      expect((yield* meter.reserve(key, {}, Number.POSITIVE_INFINITY)).tokens).toBe(0)
      expect((yield* meter.snapshot(key)).reservedTokens).toBe(0)
    }))
})
