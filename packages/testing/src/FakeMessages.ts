/**
 * A fake of the Anthropic Messages API on 127.0.0.1: scripted replies (text, tool calls,
 * errors), SSE when the request asks for `stream: true` (JSON otherwise), cumulative usage,
 * `count_tokens` and `/v1/models`, and a record of every request with a way to await one.
 *
 * ```ts
 * const fake = yield* FakeMessages.make({ script: (r) => FakeMessages.text(`echo: ${r.lastUserText}`) })
 * ```
 */
import { Context, Data, Effect, Exit, Layer, Scope } from "effect"
import { EventEmitter } from "node:events"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface Usage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cache_creation_input_tokens: number
  readonly cache_read_input_tokens: number
}

export const defaultUsage: Usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }

/** What the fake answers. */
export type Reply =
  | { readonly type: "text"; readonly text: string; readonly usage?: Partial<Usage> | undefined }
  | {
      readonly type: "tool_use"
      readonly name: string
      readonly input: unknown
      readonly id?: string | undefined
      /** A text block before the tool call. */
      readonly text?: string | undefined
      readonly usage?: Partial<Usage> | undefined
    }
  /** An error in Anthropic's shape (`{type:"error",error:{type,message}}`) with this status. */
  | { readonly type: "error"; readonly status: number; readonly errorType: string; readonly message: string }

export const text = (text: string, usage?: Partial<Usage>): Reply => ({ type: "text", text, usage })
export const toolUse = (name: string, input: unknown, options: { readonly id?: string; readonly text?: string; readonly usage?: Partial<Usage> } = {}): Reply => ({
  type: "tool_use",
  name,
  input,
  ...options
})
export const error = (status: number, errorType: string, message: string): Reply => ({ type: "error", status, errorType, message })

/** One request as the fake received it. */
export interface RecordedRequest {
  readonly method: string
  /** Path without the query (`/v1/messages`). */
  readonly path: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  /** The parsed JSON body, `undefined` when it was not JSON. */
  readonly body: any
  readonly model: string | undefined
  readonly stream: boolean
  /** Every text of the request's messages (user and assistant turns, tool results), joined by newlines. */
  readonly allText: string
  /** The text of the last user turn. */
  readonly lastUserText: string
  /** Names of the tools offered. */
  readonly tools: ReadonlyArray<string>
  /** The `tool_result` blocks of the request, with their text. */
  readonly toolResults: ReadonlyArray<{ readonly toolUseId: string; readonly text: string }>
  readonly at: number
}

/** `script(request)`: the reply to a `/v1/messages` request; `undefined` falls back to the default. */
export type Script = (request: RecordedRequest) => Reply | string | undefined

export interface Options {
  /** A function, or a list of replies used in order (then the default). Default: text `ok (<model>)`. */
  readonly script?: Script | ReadonlyArray<Reply | string> | undefined
  /** `input_tokens` answered by `count_tokens` (default 42). */
  readonly countTokens?: number | undefined
  /** Models listed by `GET /v1/models` (default `["claude-fake-1"]`). */
  readonly models?: ReadonlyArray<string> | undefined
}

export class FakeMessagesError extends Data.TaggedError("FakeMessagesError")<{ readonly message: string }> {}

export class TimeoutError extends Data.TaggedError("TimeoutError")<{ readonly message: string }> {}

export interface FakeMessagesService {
  /** `http://127.0.0.1:<port>`: a provider's `baseUrl`, or `ANTHROPIC_BASE_URL`. */
  readonly url: string
  /** Every request received, in order. */
  readonly requests: ReadonlyArray<RecordedRequest>
  /** Replace the script. */
  readonly setScript: (script: Options["script"]) => void
  /** The first request (already received or still to come) that matches. */
  readonly waitFor: (predicate: (r: RecordedRequest) => boolean, options?: { readonly timeoutMs?: number; readonly what?: string }) => Effect.Effect<RecordedRequest, TimeoutError>
}

export class FakeMessages extends Context.Tag("@mks/a2a-testing/FakeMessages")<FakeMessages, FakeMessagesService>() {}

const textsOf = (content: unknown): Array<string> => {
  if (typeof content === "string") return [content]
  if (!Array.isArray(content)) return []
  return content.flatMap((block: any) =>
    block?.type === "text" && typeof block.text === "string"
      ? [block.text]
      : block?.type === "tool_result"
        ? textsOf(block.content)
        : block?.type === "tool_use"
          ? [JSON.stringify(block.input ?? {})]
          : []
  )
}

const recordOf = (req: http.IncomingMessage, raw: string): RecordedRequest => {
  let body: any
  try {
    body = raw.length > 0 ? JSON.parse(raw) : undefined
  } catch {
    body = undefined
  }
  const url = req.url ?? "/"
  const messages: Array<any> = Array.isArray(body?.messages) ? body.messages : []
  const lastUser = [...messages].reverse().find((m) => m?.role === "user")
  return {
    method: req.method ?? "",
    path: url.split("?")[0]!,
    url,
    headers: req.headers,
    body,
    model: typeof body?.model === "string" ? body.model : undefined,
    stream: body?.stream === true,
    allText: messages.flatMap((m) => textsOf(m?.content)).join("\n"),
    lastUserText: lastUser === undefined ? "" : textsOf(lastUser.content).join("\n"),
    tools: Array.isArray(body?.tools) ? body.tools.map((t: any) => String(t?.name)) : [],
    toolResults: messages.flatMap((m) =>
      Array.isArray(m?.content)
        ? m.content.filter((b: any) => b?.type === "tool_result").map((b: any) => ({ toolUseId: String(b.tool_use_id), text: textsOf(b.content).join("\n") }))
        : []
    ),
    at: Date.now()
  }
}

let ids = 0
const nextId = (prefix: string) => `${prefix}_fake_${(++ids).toString(36)}_${Math.random().toString(36).slice(2, 8)}`

type Block = { type: "text"; text: string } | { type: "tool_use"; id: string; name: string; input: unknown }

const messageOf = (model: string, reply: Exclude<Reply, { type: "error" }>) => {
  const content: Array<Block> =
    reply.type === "text"
      ? [{ type: "text", text: reply.text }]
      : [...(reply.text === undefined ? [] : [{ type: "text" as const, text: reply.text }]), { type: "tool_use", id: reply.id ?? nextId("toolu"), name: reply.name, input: reply.input }]
  return {
    id: nextId("msg"),
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: reply.type === "tool_use" ? "tool_use" : "end_turn",
    stop_sequence: null,
    usage: { ...defaultUsage, ...reply.usage }
  }
}

/** The event sequence of the real API; the usage in `message_delta` is cumulative (final). */
export const eventsOf = (message: ReturnType<typeof messageOf>): Array<{ readonly type: string }> => {
  const events: Array<{ type: string; [k: string]: unknown }> = [
    { type: "message_start", message: { ...message, content: [], stop_reason: null, usage: { ...message.usage, output_tokens: 1 } } },
    { type: "ping" }
  ]
  message.content.forEach((block, index) => {
    if (block.type === "text") {
      events.push({ type: "content_block_start", index, content_block: { type: "text", text: "" } })
      events.push({ type: "content_block_delta", index, delta: { type: "text_delta", text: block.text } })
    } else {
      events.push({ type: "content_block_start", index, content_block: { ...block, input: {} } })
      events.push({ type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } })
    }
    events.push({ type: "content_block_stop", index })
  })
  events.push({ type: "message_delta", delta: { stop_reason: message.stop_reason, stop_sequence: null }, usage: message.usage })
  events.push({ type: "message_stop" })
  return events
}

const send = (res: http.ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), "request-id": nextId("req") })
  res.end(body)
}

/** Start a fake; it stops when the scope closes. */
export const make = (options: Options = {}): Effect.Effect<FakeMessagesService, FakeMessagesError, Scope.Scope> =>
  Effect.gen(function* () {
    const requests: Array<RecordedRequest> = []
    const arrivals = new EventEmitter()
    arrivals.setMaxListeners(0)
    let script: Options["script"] = options.script
    let scripted = 0

    const replyTo = (request: RecordedRequest): Reply => {
      const fallback = text(`ok (${request.model ?? "no model"})`)
      if (script === undefined) return fallback
      if (typeof script === "function") {
        const r = script(request)
        return r === undefined ? fallback : typeof r === "string" ? text(r) : r
      }
      const next = (script as ReadonlyArray<Reply | string>)[scripted++]
      return next === undefined ? fallback : typeof next === "string" ? text(next) : next
    }

    const handle = (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
      const request = recordOf(req, raw)
      requests.push(request)
      arrivals.emit("request", request)
      if (request.method === "POST" && request.path === "/v1/messages/count_tokens") return send(res, 200, { input_tokens: options.countTokens ?? 42 })
      if (request.method === "GET" && request.path === "/v1/models") {
        const data = (options.models ?? ["claude-fake-1"]).map((id) => ({ type: "model", id, display_name: id, created_at: "2026-01-01T00:00:00Z" }))
        return send(res, 200, { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null })
      }
      if (request.method !== "POST" || request.path !== "/v1/messages") {
        return send(res, 404, { type: "error", error: { type: "not_found_error", message: `${request.method} ${request.path} not found` } })
      }
      if (request.body === undefined || typeof request.body !== "object") {
        return send(res, 400, { type: "error", error: { type: "invalid_request_error", message: "the body is not a JSON object" } })
      }
      let reply: Reply
      try {
        reply = replyTo(request)
      } catch (e) {
        return send(res, 500, { type: "error", error: { type: "api_error", message: `the fake's script threw: ${String(e)}` } })
      }
      if (reply.type === "error") return send(res, reply.status, { type: "error", error: { type: reply.errorType, message: reply.message } })
      const message = messageOf(request.model ?? "claude-fake-1", reply)
      if (!request.stream) return send(res, 200, message)
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": nextId("req") })
      for (const event of eventsOf(message)) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
      res.end()
    }

    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")))
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number, FakeMessagesError>((resume) => {
        server.once("error", (e) => resume(Effect.fail(new FakeMessagesError({ message: `the fake Messages API cannot listen: ${e.message}` }))))
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )

    const waitFor: FakeMessagesService["waitFor"] = (predicate, { timeoutMs = 10_000, what = "a matching request" } = {}) =>
      Effect.async<RecordedRequest, TimeoutError>((resume) => {
        const found = requests.find(predicate)
        if (found !== undefined) return resume(Effect.succeed(found))
        const onRequest = (r: RecordedRequest) => {
          if (!predicate(r)) return
          cleanup()
          resume(Effect.succeed(r))
        }
        const timer = setTimeout(() => {
          cleanup()
          resume(Effect.fail(new TimeoutError({ message: `timed out after ${timeoutMs} ms waiting for ${what} at the fake Messages API (${requests.length} requests seen)` })))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          arrivals.off("request", onRequest)
        }
        arrivals.on("request", onRequest)
        return Effect.sync(cleanup)
      })

    return {
      url: `http://127.0.0.1:${port}`,
      requests,
      setScript: (next) => {
        script = next
        scripted = 0
      },
      waitFor
    } satisfies FakeMessagesService
  })

/** The fake as a layer. */
export const layer = (options: Options = {}): Layer.Layer<FakeMessages, FakeMessagesError> => Layer.scoped(FakeMessages, make(options))

/** The Promise face of a fake, for tests that do not use Effect. */
export interface FakeMessagesHandle {
  readonly url: string
  readonly requests: ReadonlyArray<RecordedRequest>
  readonly setScript: (script: Options["script"]) => void
  readonly waitFor: (predicate: (r: RecordedRequest) => boolean, options?: { readonly timeoutMs?: number; readonly what?: string }) => Promise<RecordedRequest>
}

export const toHandle = (fake: FakeMessagesService): FakeMessagesHandle => ({
  url: fake.url,
  requests: fake.requests,
  setScript: fake.setScript,
  waitFor: (predicate, options) => runPromise(fake.waitFor(predicate, options))
})

/** Run an Effect; a typed failure rejects with a plain `Error` carrying its message (and `_tag`). */
export const runPromise = <A, E extends { readonly message: string; readonly _tag: string }>(effect: Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromise(Effect.either(effect)).then((result) => {
    if (result._tag === "Right") return result.right
    throw Object.assign(new Error(result.left.message), { _tag: result.left._tag })
  })

/** Start a fake outside Effect; `close()` stops it. */
export const start = async (options: Options = {}): Promise<FakeMessagesHandle & { readonly close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const fake = await runPromise(make(options).pipe(Scope.extend(scope)))
  return { ...toHandle(fake), close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
