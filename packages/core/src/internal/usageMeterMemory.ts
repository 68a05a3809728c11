/**
 * In-memory UsageMeter. One lock makes check-and-hold atomic; the state per key is a fixed
 * 5-hour window, a log of request times for the trailing minute, and the bounds in flight.
 *
 * Holds are not tied to a window: a request admitted just before its window ends still holds
 * its bound against the next one and settles into whichever window is open when it finishes,
 * so no window can ever see more than `tokensPer5h` (given actual usage ≤ the bound).
 */
import { Clock, Effect } from "effect"
import { RateLimited } from "../Errors.js"
import * as Ids from "../Ids.js"
import type { KeyId } from "../Ids.js"
import { totalTokens, WINDOW_MS } from "../Usage.js"
import type { Usage } from "../Usage.js"
import type { Reservation, UsageMeterService, UsageSnapshot } from "../UsageMeter.js"

const MINUTE_MS = 60_000

type ModelUsage = { -readonly [K in keyof Usage]: number } & { requests: number }

interface Window {
  readonly start: number
  requests: number
  inputTokens: number
  outputTokens: number
  cacheCreationInputTokens: number
  cacheReadInputTokens: number
  /** Sum of the four kinds: what `tokensPer5h` is counted against. */
  tokens: number
  readonly byModel: Map<string, ModelUsage>
}

interface KeyUsage {
  window: Window | undefined
  /** Times of admitted requests, oldest first, pruned to the trailing minute. */
  minute: Array<number>
  readonly holds: Map<string, number>
  reserved: number
}

const openWindow = (start: number): Window => ({
  start,
  requests: 0,
  inputTokens: 0,
  outputTokens: 0,
  cacheCreationInputTokens: 0,
  cacheReadInputTokens: 0,
  tokens: 0,
  byModel: new Map()
})

const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

/** Drop requests that left the trailing minute `(now - 60 s, now]`. */
const prune = (usage: KeyUsage, now: number): void => {
  let drop = 0
  while (drop < usage.minute.length && usage.minute[drop]! <= now - MINUTE_MS) drop++
  if (drop > 0) usage.minute = usage.minute.slice(drop)
}

/** The window `now` falls in, or undefined when the last one has ended (the next request opens one). */
const current = (usage: KeyUsage, now: number): Window | undefined =>
  usage.window !== undefined && now < usage.window.start + WINDOW_MS ? usage.window : undefined

export const make: Effect.Effect<UsageMeterService> = Effect.gen(function* () {
  const keys = new Map<KeyId, KeyUsage>()
  const lock = yield* Effect.makeSemaphore(1)
  const locked = lock.withPermits(1)

  const usageOf = (key: KeyId): KeyUsage => {
    let usage = keys.get(key)
    if (usage === undefined) {
      usage = { window: undefined, minute: [], holds: new Map(), reserved: 0 }
      keys.set(key, usage)
    }
    return usage
  }

  const reserve: UsageMeterService["reserve"] = (key, limits, tokens) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const id = Ids.randomToken()
      // A bound that is not a number must not slip past the comparisons below.
      const bound = Number.isNaN(tokens) || tokens < 0 ? 0 : tokens
      return yield* locked(
        Effect.suspend((): Effect.Effect<Reservation, RateLimited> => {
          const usage = usageOf(key)
          prune(usage, now)
          const window = current(usage, now)
          const windowEnd = window === undefined ? now + WINDOW_MS : window.start + WINDOW_MS
          const rpm = limits.requestsPerMinute
          if (rpm !== undefined && usage.minute.length >= rpm) {
            // The request that must leave the minute before one more fits.
            const freeing = usage.minute[usage.minute.length - rpm]!
            return Effect.fail(
              new RateLimited({
                message: `rate limit: ${rpm} requests per minute`,
                retryAfter: seconds(freeing + MINUTE_MS - now),
                limit: "requests_per_minute"
              })
            )
          }
          const per5h = limits.requestsPer5h
          if (per5h !== undefined && (window?.requests ?? 0) >= per5h) {
            return Effect.fail(
              new RateLimited({
                message: `quota: ${per5h} requests per 5 hours`,
                retryAfter: seconds(windowEnd - now),
                limit: "requests_per_5h"
              })
            )
          }
          const quota = limits.tokensPer5h
          const settled = window?.tokens ?? 0
          if (quota !== undefined && settled + usage.reserved + bound > quota) {
            // Blocked only by requests in flight: their holds shrink to actual usage soon.
            const heldUp = settled + bound <= quota && usage.reserved > 0
            return Effect.fail(
              new RateLimited({
                message: `quota: ${quota} tokens per 5 hours (${settled} used, ${usage.reserved} held, ${bound} requested)`,
                retryAfter: heldUp ? 1 : seconds(windowEnd - now),
                limit: "tokens_per_5h"
              })
            )
          }
          const admitted = window ?? openWindow(now)
          usage.window = admitted
          admitted.requests += 1
          usage.minute.push(now)
          usage.holds.set(id, bound)
          usage.reserved += bound
          return Effect.succeed({ id, key, tokens: bound, at: now })
        })
      )
    })

  /** Drop a hold; false when it was already settled or released (both are idempotent). */
  const unhold = (usage: KeyUsage | undefined, reservation: Reservation): boolean => {
    const held = usage?.holds.get(reservation.id)
    if (usage === undefined || held === undefined) return false
    usage.holds.delete(reservation.id)
    usage.reserved -= held
    return true
  }

  const settle: UsageMeterService["settle"] = (reservation, model, reported) =>
    locked(
      Effect.sync(() => {
        const usage = keys.get(reservation.key)
        if (!unhold(usage, reservation) || usage?.window === undefined) return
        // Into the window open now; if it has ended, the next request opens a fresh one anyway.
        const window = usage.window
        window.inputTokens += reported.inputTokens
        window.outputTokens += reported.outputTokens
        window.cacheCreationInputTokens += reported.cacheCreationInputTokens
        window.cacheReadInputTokens += reported.cacheReadInputTokens
        window.tokens += totalTokens(reported)
        const perModel = window.byModel.get(model) ?? {
          requests: 0,
          inputTokens: 0,
          outputTokens: 0,
          cacheCreationInputTokens: 0,
          cacheReadInputTokens: 0
        }
        perModel.requests += 1
        perModel.inputTokens += reported.inputTokens
        perModel.outputTokens += reported.outputTokens
        perModel.cacheCreationInputTokens += reported.cacheCreationInputTokens
        perModel.cacheReadInputTokens += reported.cacheReadInputTokens
        window.byModel.set(model, perModel)
      })
    )

  const release: UsageMeterService["release"] = (reservation) =>
    locked(Effect.sync(() => void unhold(keys.get(reservation.key), reservation)))

  const snapshot: UsageMeterService["snapshot"] = (key) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      return yield* locked(
        Effect.sync((): UsageSnapshot => {
          const usage = keys.get(key)
          if (usage !== undefined) prune(usage, now)
          const window = usage === undefined ? undefined : current(usage, now)
          const start = window?.start ?? now
          return {
            window: {
              start: Ids.nowIso(start),
              end: Ids.nowIso(start + WINDOW_MS),
              requests: window?.requests ?? 0,
              inputTokens: window?.inputTokens ?? 0,
              outputTokens: window?.outputTokens ?? 0,
              cacheCreationInputTokens: window?.cacheCreationInputTokens ?? 0,
              cacheReadInputTokens: window?.cacheReadInputTokens ?? 0
            },
            byModel: Object.fromEntries([...(window?.byModel ?? [])].map(([model, u]) => [model, { ...u }])),
            requestsLastMinute: usage?.minute.length ?? 0,
            reservedTokens: usage?.reserved ?? 0
          }
        })
      )
    })

  return { reserve, settle, release, snapshot } satisfies UsageMeterService
})
