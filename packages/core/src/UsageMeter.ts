/**
 * UsageMeter: counts requests and tokens per key (and model) in rolling 5-hour windows and
 * enforces a key's limits with reserve → settle, so concurrent requests cannot overshoot:
 *
 * - `reserve` admits a request only if used + outstanding reservations + this request's
 *   upper bound fit every limit, and holds that bound; checking and holding are one atomic step.
 * - `settle` replaces the held bound with what the upstream reported; `release` drops it.
 *
 * A window opens with the first request after the previous one ended and lasts 5 hours;
 * requests per minute are counted over the trailing 60 seconds.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { RateLimited, ServiceUnavailable } from "./Errors.js"
import type { KeyId } from "./Ids.js"
import * as internal from "./internal/usageMeterMemory.js"
import type { Usage, UsageWindow } from "./Usage.js"
import type { KeyLimits } from "./VirtualKey.js"

export interface Reservation {
  readonly id: string
  readonly key: KeyId
  /** Upper bound on the tokens the request may consume (input bytes + max_tokens). */
  readonly tokens: number
  readonly at: number
}

export interface UsageSnapshot {
  readonly window: UsageWindow
  /** Tokens and requests per model within the window. */
  readonly byModel: Readonly<Record<string, Usage & { readonly requests: number }>>
  /** Requests in the trailing minute. */
  readonly requestsLastMinute: number
  /** Bounds held by requests in flight. */
  readonly reservedTokens: number
}

export interface UsageMeterService {
  /** Admit and hold, or `RateLimited` with the seconds until the limit frees up. */
  readonly reserve: (key: KeyId, limits: KeyLimits, tokens: number) => Effect.Effect<Reservation, RateLimited | ServiceUnavailable>
  /** Record the reported usage of an admitted request and free its hold. */
  readonly settle: (reservation: Reservation, model: string, usage: Usage) => Effect.Effect<void, ServiceUnavailable>
  /** Free the hold of a request that never reached the upstream; the request still counts for rpm. */
  readonly release: (reservation: Reservation) => Effect.Effect<void>
  readonly snapshot: (key: KeyId) => Effect.Effect<UsageSnapshot, ServiceUnavailable>
}

export class UsageMeter extends Context.Tag("@mks/a2a/UsageMeter")<UsageMeter, UsageMeterService>() {}

const Counts = Schema.Struct({
  requests: Schema.NonNegativeInt,
  inputTokens: Schema.NonNegativeInt,
  outputTokens: Schema.NonNegativeInt,
  cacheCreationInputTokens: Schema.NonNegativeInt,
  cacheReadInputTokens: Schema.NonNegativeInt
})

/**
 * What a memory meter can carry over to a later one (e.g. through a file): per key, the window
 * still open (`start` in epoch ms, counts, per model) and the trailing minute's admissions as
 * `[unix second, count]` pairs (restored at the end of their second: they leave late, never
 * early). Holds of requests in flight are not part of it.
 */
export const MeterData = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({
    window: Schema.optional(Schema.Struct({ ...Counts.fields, start: Schema.Number, byModel: Schema.Record({ key: Schema.String, value: Counts }) })),
    minute: Schema.Array(Schema.Tuple(Schema.Number, Schema.NonNegativeInt))
  })
})
export type MeterData = typeof MeterData.Type

/** The memory meter: the service, its steps as plain synchronous calls, and its exportable state. */
export interface MemoryMeter extends UsageMeterService {
  /**
   * The same steps without an Effect, at the time `now` the caller passes: each call is atomic
   * on the event loop. For hot paths (the proxy's data plane); the results are the same.
   */
  readonly unsafe: {
    readonly reserve: (key: KeyId, limits: KeyLimits, tokens: number, now: number) => Reservation | RateLimited
    readonly settle: (reservation: Reservation, model: string, usage: Usage) => void
    readonly release: (reservation: Reservation) => void
    readonly snapshot: (key: KeyId, now: number) => UsageSnapshot
  }
  /** Windows still open at `now` and the trailing minute: `initial` for a later meter. */
  readonly export: (now: number) => MeterData
}

export interface MemoryOptions {
  /** Counts to start from (what `export` gave an earlier meter). */
  readonly initial?: MeterData
  /** Called after every change of the counts (e.g. to mark a file dirty); must not throw. */
  readonly onChange?: () => void
}

/** A memory meter, seeded with `initial` and telling `onChange` of every change. */
export const makeMemory: (options?: MemoryOptions) => Effect.Effect<MemoryMeter> = internal.makeMemory

/** In-memory UsageMeter for one process (counts are lost on restart; see `makeMemory` to keep them). */
export const layerMemory: Layer.Layer<UsageMeter> = Layer.effect(UsageMeter, internal.makeMemory())
