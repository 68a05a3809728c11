/**
 * Token usage of model calls, and the rolling windows quotas are counted in.
 *
 * Anthropic reports `input_tokens`, `output_tokens`, `cache_creation_input_tokens` and
 * `cache_read_input_tokens`; the four are kept apart. Total input is the sum of the three
 * input kinds.
 */
import { Schema } from "effect"
import { KeyId, Timestamp } from "./Ids.js"
import { KeyLimits, VirtualKey } from "./VirtualKey.js"

const Tokens = Schema.Int.pipe(Schema.nonNegative())

export const Usage = Schema.Struct({
  inputTokens: Tokens,
  outputTokens: Tokens,
  cacheCreationInputTokens: Tokens,
  cacheReadInputTokens: Tokens
})
export type Usage = typeof Usage.Type

export const emptyUsage: Usage = { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }

/** All tokens a call consumed, as counted against a `tokensPer5h` quota. */
export const totalTokens = (u: Usage): number =>
  u.inputTokens + u.outputTokens + u.cacheCreationInputTokens + u.cacheReadInputTokens

/** Length of the rolling usage window: five hours. */
export const WINDOW_MS = 5 * 60 * 60 * 1000

/** Usage of one key within `[start, end)`. */
export const UsageWindow = Schema.Struct({
  start: Timestamp,
  end: Timestamp,
  requests: Tokens,
  ...Usage.fields
})
export type UsageWindow = typeof UsageWindow.Type

/** What remains of each configured limit (absent limit: absent). */
export const Remaining = Schema.Struct({
  requestsPerMinute: Schema.optional(Schema.Int),
  requestsPer5h: Schema.optional(Schema.Int),
  tokensPer5h: Schema.optional(Schema.Int)
})
export type Remaining = typeof Remaining.Type

/** `GET /v1/usage/me`, and one entry of `GET /v1/usage`. */
export const UsageReport = Schema.Struct({
  record: VirtualKey,
  window: UsageWindow,
  limits: KeyLimits,
  remaining: Remaining
})
export type UsageReport = typeof UsageReport.Type

export const UsageList = Schema.Struct({ usage: Schema.Array(UsageReport) })

/** Query of `GET /v1/usage`: one key, or all keys of the admin's view. */
export const UsageQuery = Schema.Struct({ key: Schema.optional(KeyId) })

/** Anthropic's snake_case usage object as found in `message_start` / `message_delta` / responses. */
export const AnthropicUsage = Schema.Struct({
  input_tokens: Schema.optional(Schema.NullOr(Schema.Number)),
  output_tokens: Schema.optional(Schema.NullOr(Schema.Number)),
  cache_creation_input_tokens: Schema.optional(Schema.NullOr(Schema.Number)),
  cache_read_input_tokens: Schema.optional(Schema.NullOr(Schema.Number))
})
export type AnthropicUsage = typeof AnthropicUsage.Type

/**
 * Merge a later usage report over an earlier one. `message_delta.usage` is cumulative: each
 * field it carries replaces the earlier value; fields it omits keep theirs. Never a sum.
 */
export const mergeReported = (earlier: Usage, later: AnthropicUsage): Usage => ({
  inputTokens: later.input_tokens ?? earlier.inputTokens,
  outputTokens: later.output_tokens ?? earlier.outputTokens,
  cacheCreationInputTokens: later.cache_creation_input_tokens ?? earlier.cacheCreationInputTokens,
  cacheReadInputTokens: later.cache_read_input_tokens ?? earlier.cacheReadInputTokens
})
