/**
 * In-memory UsageMeter: plain synchronous steps, so each one is atomic on the event loop (no
 * lock needed), wrapped as Effects for the service and exposed as they are (`unsafe`) for hot
 * paths such as the proxy's data plane. Per key: a fixed 5-hour window, the admission times of
 * the trailing minute, and the bounds held by requests in flight.
 *
 * Holds are not tied to a window: a request admitted just before its window ends still holds
 * its bound against the next one and settles into whichever window is open when it finishes,
 * so no window can ever see more than `tokensPer5h` (given actual usage ≤ the bound).
 *
 * The state exports to `MeterData` (windows still open, the trailing minute per second) and a
 * meter can start from it, so a process can persist its counts across restarts.
 */
import { Clock, Effect } from "effect"
import { RateLimited } from "../Errors.js"
import type { KeyId } from "../Ids.js"
import { totalTokens, WINDOW_MS } from "../Usage.js"
import type { Usage } from "../Usage.js"
import type { MemoryMeter, MemoryOptions, MeterData, Reservation, UsageSnapshot } from "../UsageMeter.js"
import type { KeyLimits } from "../VirtualKey.js"

const MINUTE_MS = 60_000

interface Counts {
  requests: number
  inputTokens: number
  outputTokens: number
  cacheCreationInputTokens: number
  cacheReadInputTokens: number
}

interface Window extends Counts {
  readonly start: number
  /** Sum of the four token kinds: what `tokensPer5h` is counted against. */
  tokens: number
  readonly byModel: Map<string, Counts>
}

/**
 * Admission times, oldest first: a queue with a moving head, so pruning at 1,000 requests per
 * second costs O(1) amortised instead of copying a 60,000-entry array per request.
 */
class TimeLog {
  private times: Array<number> = []
  private head = 0

  get size(): number {
    return this.times.length - this.head
  }

  /**
   * Kept in order even after a restore (restored times sit at the end of their second, so an
   * admission made just after a restart can be earlier): such an admission is logged at the
   * latest time before it, leaving the minute up to a second late, never early.
   */
  push(time: number): void {
    const last = this.times.length > this.head ? this.times[this.times.length - 1]! : time
    this.times.push(time > last ? time : last)
  }

  /** The `i`-th oldest time. */
  at(i: number): number {
    return this.times[this.head + i]!
  }

  /** Drop times at or before `cutoff`. */
  prune(cutoff: number): void {
    const times = this.times
    while (this.head < times.length && times[this.head]! <= cutoff) this.head++
    if (this.head === times.length) {
      this.times = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > times.length) {
      this.times = times.slice(this.head)
      this.head = 0
    }
  }

  /** `[second, count]` pairs: what is persisted (at most 60 entries per key). */
  perSecond(): Array<readonly [number, number]> {
    const out: Array<[number, number]> = []
    for (let i = this.head; i < this.times.length; i++) {
      const second = Math.floor(this.times[i]! / 1000)
      const last = out[out.length - 1]
      if (last !== undefined && last[0] === second) last[1]++
      else out.push([second, 1])
    }
    return out
  }

  /** Each restored time is the end of its second: it leaves the minute late, never early. */
  static fromSeconds(seconds: ReadonlyArray<readonly [number, number]>): TimeLog {
    const log = new TimeLog()
    for (const [second, count] of seconds) for (let i = 0; i < count; i++) log.push(second * 1000 + 999)
    return log
  }
}

interface KeyState {
  window: Window | undefined
  /** Admission times of the trailing minute. */
  minute: TimeLog
  readonly holds: Map<string, number>
  reserved: number
}

const zero = (): Counts => ({ requests: 0, inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

const iso = (ms: number): string => new Date(ms).toISOString()

// Unique within the process: a random prefix per process and a counter, no random bytes per request.
const processPrefix = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, "0")
let counter = 0
const reservationId = (): string => `r_${processPrefix}_${(counter++).toString(36)}`

class MeterState {
  private readonly keys = new Map<string, KeyState>()
  constructor(private readonly onChange: () => void) {}

  private stateOf(key: string): KeyState {
    let state = this.keys.get(key)
    if (state === undefined) {
      state = { window: undefined, minute: new TimeLog(), holds: new Map(), reserved: 0 }
      this.keys.set(key, state)
    }
    return state
  }

  private static prune(state: KeyState, now: number): void {
    state.minute.prune(now - MINUTE_MS)
  }

  private static current(state: KeyState, now: number): Window | undefined {
    return state.window !== undefined && now < state.window.start + WINDOW_MS ? state.window : undefined
  }

  /** Admit and hold `tokens`, or the `RateLimited` error; check and hold are one synchronous step. */
  reserve(key: KeyId, limits: KeyLimits, tokens: number, now: number): Reservation | RateLimited {
    // A bound that is not a number must not slip past the comparisons below; an infinite one is
    // refused by any token quota and, without one, holds nothing (a hold must stay subtractable).
    const bound = Number.isNaN(tokens) || tokens < 0 ? 0 : tokens
    const state = this.stateOf(key)
    MeterState.prune(state, now)
    const window = MeterState.current(state, now)
    const windowEnd = window === undefined ? now + WINDOW_MS : window.start + WINDOW_MS
    const rpm = limits.requestsPerMinute
    if (rpm !== undefined && state.minute.size >= rpm) {
      const freeing = state.minute.at(state.minute.size - rpm)
      return new RateLimited({
        message: `rate limit: ${rpm} requests per minute`,
        retryAfter: seconds(freeing + MINUTE_MS - now),
        limit: "requests_per_minute"
      })
    }
    const per5h = limits.requestsPer5h
    if (per5h !== undefined && (window?.requests ?? 0) >= per5h) {
      return new RateLimited({
        message: `quota: ${per5h} requests per 5 hours`,
        retryAfter: seconds(windowEnd - now),
        limit: "requests_per_5h"
      })
    }
    const quota = limits.tokensPer5h
    const settled = window?.tokens ?? 0
    if (quota !== undefined && settled + state.reserved + bound > quota) {
      // Blocked only by requests in flight: their holds shrink to actual usage soon.
      const heldUp = settled + bound <= quota && state.reserved > 0
      return new RateLimited({
        message: `quota: ${quota} tokens per 5 hours (${settled} used, ${state.reserved} held, ${bound} requested)`,
        retryAfter: heldUp ? 1 : seconds(windowEnd - now),
        limit: "tokens_per_5h"
      })
    }
    const admitted = window ?? { start: now, tokens: 0, byModel: new Map(), ...zero() }
    state.window = admitted
    admitted.requests += 1
    state.minute.push(now)
    const id = reservationId()
    const held = Number.isFinite(bound) ? bound : 0
    state.holds.set(id, held)
    state.reserved += held
    this.onChange()
    return { id, key, tokens: held, at: now }
  }

  private unhold(state: KeyState | undefined, reservation: Reservation): boolean {
    const held = state?.holds.get(reservation.id)
    if (state === undefined || held === undefined) return false
    state.holds.delete(reservation.id)
    state.reserved -= held
    return true
  }

  /** Record reported usage into the window open now and free the hold (idempotent). */
  settle(reservation: Reservation, model: string, usage: Usage): void {
    const state = this.keys.get(reservation.key)
    if (!this.unhold(state, reservation) || state?.window === undefined) return
    const window = state.window
    const perModel = window.byModel.get(model) ?? zero()
    for (const counts of [window, perModel]) {
      counts.inputTokens += usage.inputTokens
      counts.outputTokens += usage.outputTokens
      counts.cacheCreationInputTokens += usage.cacheCreationInputTokens
      counts.cacheReadInputTokens += usage.cacheReadInputTokens
    }
    perModel.requests += 1
    window.tokens += totalTokens(usage)
    window.byModel.set(model, perModel)
    this.onChange()
  }

  /** Free the hold of a request that got no upstream answer; it still counts as a request. */
  release(reservation: Reservation): void {
    this.unhold(this.keys.get(reservation.key), reservation)
  }

  snapshot(key: string, now: number): UsageSnapshot {
    const state = this.keys.get(key)
    if (state !== undefined) MeterState.prune(state, now)
    const window = state === undefined ? undefined : MeterState.current(state, now)
    const start = window?.start ?? now
    return {
      window: {
        start: iso(start),
        end: iso(start + WINDOW_MS),
        requests: window?.requests ?? 0,
        inputTokens: window?.inputTokens ?? 0,
        outputTokens: window?.outputTokens ?? 0,
        cacheCreationInputTokens: window?.cacheCreationInputTokens ?? 0,
        cacheReadInputTokens: window?.cacheReadInputTokens ?? 0
      },
      byModel: Object.fromEntries([...(window?.byModel ?? [])].map(([model, c]) => [model, { ...c }])),
      requestsLastMinute: state?.minute.size ?? 0,
      reservedTokens: state?.reserved ?? 0
    }
  }

  /** Windows still open at `now` and minute logs still inside the trailing minute. */
  export(now: number): MeterData {
    const out: Record<string, MeterData[string]> = {}
    for (const [key, state] of this.keys) {
      MeterState.prune(state, now)
      const window = MeterState.current(state, now)
      if (window === undefined && state.minute.size === 0) continue
      out[key] = {
        ...(window === undefined
          ? {}
          : {
              window: {
                start: window.start,
                requests: window.requests,
                inputTokens: window.inputTokens,
                outputTokens: window.outputTokens,
                cacheCreationInputTokens: window.cacheCreationInputTokens,
                cacheReadInputTokens: window.cacheReadInputTokens,
                byModel: Object.fromEntries(window.byModel)
              }
            }),
        minute: state.minute.perSecond()
      }
    }
    return out
  }

  static import(data: MeterData, onChange: () => void): MeterState {
    const meter = new MeterState(onChange)
    for (const [key, saved] of Object.entries(data)) {
      const state = meter.stateOf(key)
      state.minute = TimeLog.fromSeconds(saved.minute)
      if (saved.window !== undefined) {
        const { byModel, start, ...counts } = saved.window
        state.window = {
          start,
          ...counts,
          tokens: counts.inputTokens + counts.outputTokens + counts.cacheCreationInputTokens + counts.cacheReadInputTokens,
          byModel: new Map(Object.entries(byModel).map(([model, c]) => [model, { ...c }]))
        }
      }
    }
    return meter
  }
}

export const makeMemory = (options: MemoryOptions = {}): Effect.Effect<MemoryMeter> =>
  Effect.sync(() => {
    const onChange = options.onChange ?? (() => {})
    const state = options.initial === undefined ? new MeterState(onChange) : MeterState.import(options.initial, onChange)
    return {
      reserve: (key, limits, tokens) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const result = state.reserve(key, limits, tokens, now)
          return result instanceof RateLimited ? Effect.fail(result) : Effect.succeed(result)
        }),
      settle: (reservation, model, usage) => Effect.sync(() => state.settle(reservation, model, usage)),
      release: (reservation) => Effect.sync(() => state.release(reservation)),
      snapshot: (key) => Effect.map(Clock.currentTimeMillis, (now) => state.snapshot(key, now)),
      unsafe: {
        reserve: (key, limits, tokens, now) => state.reserve(key, limits, tokens, now),
        settle: (reservation, model, usage) => state.settle(reservation, model, usage),
        release: (reservation) => state.release(reservation),
        snapshot: (key, now) => state.snapshot(key, now)
      },
      export: (now) => state.export(now)
    } satisfies MemoryMeter
  })
