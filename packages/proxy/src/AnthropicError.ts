/**
 * Errors of the data plane in the Anthropic Messages API's shape:
 * `{"type":"error","error":{"type","message"},"request_id"}`, so clients such as Claude Code
 * and the official SDKs handle them like the real API's.
 */
import { Data } from "effect"
import { randomBytes } from "node:crypto"

export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "request_too_large"
  | "rate_limit_error"
  | "api_error"
  | "timeout_error"
  | "overloaded_error"

/** A refusal of the proxy itself (upstream errors are passed through, never rebuilt). */
export class AnthropicError extends Data.TaggedError("AnthropicError")<{
  readonly status: number
  readonly type: ErrorType
  readonly message: string
  readonly headers?: Readonly<Record<string, string>>
}> {}

const processPrefix = randomBytes(6).toString("hex")
let sequence = 0

/** `req_a2a_` + a random per-process prefix + a counter: unique, and no random syscall per request. */
export const requestId = (): string => `req_a2a_${processPrefix}${(sequence++).toString(16).padStart(8, "0")}`

export const body = (error: Pick<AnthropicError, "type" | "message">, id: string): string =>
  JSON.stringify({ type: "error", error: { type: error.type, message: error.message }, request_id: id })

/** The SSE frame that ends a stream the proxy can no longer complete (status 200 already sent). */
export const streamFrame = (error: Pick<AnthropicError, "type" | "message">): string =>
  `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: error.type, message: error.message } })}\n\n`
