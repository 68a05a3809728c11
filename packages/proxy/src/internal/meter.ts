/**
 * The metering state of one proxy process: the same reserve → settle semantics as core's
 * `UsageMeter.layerMemory`, in plain synchronous functions so one call is one atomic step on
 * the event loop, plus export/import so the state survives restarts.
 *
 * Per key: a fixed 5-hour window opened by the first request after the previous one ended, the
 * admission times of the trailing minute, and the bounds held by requests in flight. Holds are
 * not tied to a window, so no window ever sees more than `tokensPer5h` (given usage ≤ bound).
 */
import { Errors, Usage } from "@mks/a2a"
import type { Ids, UsageMeter, VirtualKey } from "@mks/a2a"
import { randomBytes } from "node:crypto"

const MINUTE_MS = 60_000

export interface Counts {
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

  push(time: number): void {
    this.times.push(time)
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

/** What is persisted: windows and minute logs; holds die with the process. */
export interface Exported {
  readonly [key: string]: {
    readonly window?: Counts & { readonly start: number; readonly byModel: Readonly<Record<string, Counts>> }
    /** Admissions of the trailing minute per second: `[unix second, count]`. */
    readonly minute: ReadonlyArray<readonly [number, number]>
  }
}

const zero = (): Counts => ({ requests: 0, inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

const iso = (ms: number): string => new Date(ms).toISOString()

// Unique within the process: a random prefix per process and a counter, no syscall per request.
const processPrefix = randomBytes(4).toString("hex")
let counter = 0
const reservationId = (): string => `r_${processPrefix}_${(counter++).toString(36)}`

export class MeterState {
  private readonly keys = new Map<string, KeyState>()
  /** Bumped on every change that must reach the file. */
  version = 0

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
    return state.window !== undefined && now < state.window.start + Usage.WINDOW_MS ? state.window : undefined
  }

  /** Admit and hold `tokens`, or the `RateLimited` error; check and hold are one synchronous step. */
  reserve(key: Ids.KeyId, limits: VirtualKey.KeyLimits, tokens: number, now: number): UsageMeter.Reservation | Errors.RateLimited {
    const bound = Number.isFinite(tokens) && tokens > 0 ? tokens : 0
    const state = this.stateOf(key)
    MeterState.prune(state, now)
    const window = MeterState.current(state, now)
    const windowEnd = window === undefined ? now + Usage.WINDOW_MS : window.start + Usage.WINDOW_MS
    const rpm = limits.requestsPerMinute
    if (rpm !== undefined && state.minute.size >= rpm) {
      const freeing = state.minute.at(state.minute.size - rpm)
      return new Errors.RateLimited({
        message: `rate limit: ${rpm} requests per minute`,
        retryAfter: seconds(freeing + MINUTE_MS - now),
        limit: "requests_per_minute"
      })
    }
    const per5h = limits.requestsPer5h
    if (per5h !== undefined && (window?.requests ?? 0) >= per5h) {
      return new Errors.RateLimited({
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
      return new Errors.RateLimited({
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
    state.holds.set(id, bound)
    state.reserved += bound
    this.version++
    return { id, key, tokens: bound, at: now }
  }

  private unhold(state: KeyState | undefined, reservation: UsageMeter.Reservation): boolean {
    const held = state?.holds.get(reservation.id)
    if (state === undefined || held === undefined) return false
    state.holds.delete(reservation.id)
    state.reserved -= held
    return true
  }

  /** Record reported usage into the window open now and free the hold (idempotent). */
  settle(reservation: UsageMeter.Reservation, model: string, usage: Usage.Usage): void {
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
    window.tokens += Usage.totalTokens(usage)
    window.byModel.set(model, perModel)
    this.version++
  }

  /** Free the hold of a request that got no upstream answer; it still counts as a request. */
  release(reservation: UsageMeter.Reservation): void {
    this.unhold(this.keys.get(reservation.key), reservation)
  }

  snapshot(key: string, now: number): UsageMeter.UsageSnapshot {
    const state = this.keys.get(key)
    if (state !== undefined) MeterState.prune(state, now)
    const window = state === undefined ? undefined : MeterState.current(state, now)
    const start = window?.start ?? now
    return {
      window: {
        start: iso(start),
        end: iso(start + Usage.WINDOW_MS),
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
  export(now: number): Exported {
    const out: Record<string, Exported[string]> = {}
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

  static import(data: Exported): MeterState {
    const meter = new MeterState()
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
