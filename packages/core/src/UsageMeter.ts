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
import { Context, Effect, Layer } from "effect"
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

/** In-memory UsageMeter for one proxy process (counts are lost on restart). */
export const layerMemory: Layer.Layer<UsageMeter> = Layer.effect(UsageMeter, internal.make)
