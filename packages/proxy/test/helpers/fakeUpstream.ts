/**
 * A local fake of the Anthropic Messages API on node:http: scripted JSON and SSE answers
 * (text, tool_use, thinking, cumulative usage with cache fields, an `error` event inside a
 * 200 stream, held streams, upstream errors), recording every request it receives.
 */
import { EventEmitter, once } from "node:events"
import * as http from "node:http"
import * as net from "node:net"
import type { AddressInfo } from "node:net"

export interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: Buffer
  readonly json: any
}

export type Reply =
  | { readonly kind: "json"; readonly status?: number; readonly body: unknown; readonly headers?: Record<string, string>; readonly delayMs?: number }
  | { readonly kind: "raw"; readonly status: number; readonly text: string | Buffer; readonly headers?: Record<string, string> }
  /** SSE events written one by one (each split in two writes), then the stream ends unless `hold`. */
  | {
      readonly kind: "sse"
      readonly events: ReadonlyArray<readonly [string, unknown]>
      readonly hold?: boolean
      /** Kill the connection after the events (an upstream that dies mid-stream). */
      readonly drop?: boolean
      /** Send the headers, then wait for this before the first event. */
      readonly after?: Promise<unknown>
      readonly delayMs?: number
    }

export interface Usage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cache_creation_input_tokens: number
  readonly cache_read_input_tokens: number
}

export const defaultUsage: Usage = { input_tokens: 25, output_tokens: 17, cache_creation_input_tokens: 300, cache_read_input_tokens: 4000 }

export type Block =
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> }
  | { type: "thinking"; thinking: string; signature: string }

export const message = (model: string, content: ReadonlyArray<Block>, usage: Usage = defaultUsage, stop = "end_turn") => ({
  id: `msg_fake_${model.replace(/[^a-z0-9]/gi, "")}`,
  type: "message",
  role: "assistant",
  model,
  content,
  stop_reason: content.some((b) => b.type === "tool_use") ? "tool_use" : stop,
  stop_sequence: null,
  usage
})

type Message = ReturnType<typeof message>

/** The event sequence of the real API for a message; usage in `message_delta` is cumulative. */
export const eventsOf = (m: Message, options: { readonly deltaUsage?: Partial<Usage> } = {}): Array<readonly [string, unknown]> => {
  const events: Array<readonly [string, unknown]> = []
  events.push([
    "message_start",
    { type: "message_start", message: { ...m, content: [], stop_reason: null, usage: { ...m.usage, output_tokens: 1 } } }
  ])
  events.push(["ping", { type: "ping" }])
  m.content.forEach((block, index) => {
    if (block.type === "text") {
      events.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } }])
      // Split mid-word and across a multi-byte character.
      const cut = Math.floor(block.text.length / 2)
      for (const part of [block.text.slice(0, cut), block.text.slice(cut)]) {
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text: part } }])
      }
    } else if (block.type === "tool_use") {
      events.push(["content_block_start", { type: "content_block_start", index, content_block: { ...block, input: {} } }])
      const json = JSON.stringify(block.input)
      const cut = Math.floor(json.length / 2)
      for (const part of [json.slice(0, cut), json.slice(cut)]) {
        events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: part } }])
      }
    } else {
      events.push(["content_block_start", { type: "content_block_start", index, content_block: { type: "thinking", thinking: "", signature: "" } }])
      events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "thinking_delta", thinking: block.thinking } }])
      events.push(["content_block_delta", { type: "content_block_delta", index, delta: { type: "signature_delta", signature: block.signature } }])
    }
    events.push(["content_block_stop", { type: "content_block_stop", index }])
  })
  events.push([
    "message_delta",
    { type: "message_delta", delta: { stop_reason: m.stop_reason, stop_sequence: null }, usage: { ...m.usage, ...options.deltaUsage } }
  ])
  events.push(["message_stop", { type: "message_stop" }])
  return events
}

export const TEXT: ReadonlyArray<Block> = [{ type: "text", text: "Hello from the fake upstream — ünïcødé ✓" }]
export const TOOL: ReadonlyArray<Block> = [
  { type: "text", text: "Let me check." },
  { type: "tool_use", id: "toolu_fake_1", name: "get_weather", input: { city: "Zürich", units: "metric", days: [1, 2, 3] } }
]
export const THINKING: ReadonlyArray<Block> = [
  { type: "thinking", thinking: "The user greets me; I answer briefly.", signature: "sig_fake_abc123==" },
  { type: "text", text: "Hi there." }
]

/** The default script: the (upstream) model name picks the answer. */
export const defaultScript = (req: Recorded): Reply => {
  const model: string = req.json?.model ?? ""
  if (req.url.includes("/v1/messages/count_tokens")) return { kind: "json", body: { input_tokens: 42 } }
  const content = model.includes("tool") ? TOOL : model.includes("thinking") ? THINKING : TEXT
  const m = message(model, content)
  if (model.includes("error-400")) {
    return {
      kind: "raw",
      status: 400,
      text: '{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"},"request_id":"req_upstream_1"}',
      headers: { "request-id": "req_upstream_1", "x-should-retry": "false" }
    }
  }
  if (model.includes("overloaded")) {
    return { kind: "raw", status: 529, text: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', headers: { "retry-after": "7" } }
  }
  if (req.json?.stream !== true) return { kind: "json", body: m }
  if (model.includes("stream-error")) {
    return {
      kind: "sse",
      events: [eventsOf(m)[0]!, ["error", { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }]]
    }
  }
  if (model.includes("hold")) return { kind: "sse", events: eventsOf(m).slice(0, 4), hold: true }
  if (model.includes("drop")) return { kind: "sse", events: eventsOf(m).slice(0, 4), drop: true }
  return { kind: "sse", events: eventsOf(m) }
}

export interface FakeUpstream {
  readonly url: string
  readonly requests: Array<Recorded>
  script: (req: Recorded) => Reply
  /** Emits `request` (Recorded) on arrival and `closed` (Recorded) when a held response's connection closes. */
  readonly events: EventEmitter
  close(): Promise<void>
}

const writeSse = async (res: http.ServerResponse, events: ReadonlyArray<readonly [string, unknown]>, delayMs: number) => {
  for (const [event, data] of events) {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    // Two writes per frame, cut inside the data, so the proxy must reassemble lines.
    const cut = Math.floor(frame.length * 0.6)
    res.write(frame.slice(0, cut))
    await new Promise((r) => setImmediate(r))
    res.write(frame.slice(cut))
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
  }
}

export const startFake = async (script: (req: Recorded) => Reply = defaultScript): Promise<FakeUpstream> => {
  const requests: Array<Recorded> = []
  const events = new EventEmitter()
  const fake: { script: (req: Recorded) => Reply } = { script }
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", async () => {
      const body = Buffer.concat(chunks)
      let json: unknown
      try {
        json = JSON.parse(body.toString("utf8"))
      } catch {
        json = undefined
      }
      const recorded: Recorded = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body, json }
      requests.push(recorded)
      events.emit("request", recorded)
      const reply = fake.script(recorded)
      if (reply.kind === "json") {
        if (reply.delayMs !== undefined) await new Promise((r) => setTimeout(r, reply.delayMs))
        const text = JSON.stringify(reply.body)
        res.writeHead(reply.status ?? 200, { "content-type": "application/json", "request-id": "req_fake", ...reply.headers })
        res.end(text)
      } else if (reply.kind === "raw") {
        res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers })
        res.end(reply.text)
      } else {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": "req_fake_stream" })
        res.on("close", () => events.emit("closed", recorded))
        if (reply.after !== undefined) {
          res.flushHeaders()
          await reply.after
        }
        await writeSse(res, reply.events, reply.delayMs ?? 0)
        if (reply.drop === true) res.socket?.destroy()
        else if (reply.hold !== true) res.end()
      }
    })
  })
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const port = (server.address() as AddressInfo).port
  return Object.assign(fake, {
    url: `http://127.0.0.1:${port}`,
    requests,
    events,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
}

/**
 * A slow-loris upstream: accepts the request and dribbles its status line one byte at a time,
 * so the response headers never complete.
 */
export const startSlowLoris = async (byteEveryMs = 50): Promise<{ url: string; close(): Promise<void> }> => {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    const text = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-slow: " + "z".repeat(100_000)
    let i = 0
    const timer = setInterval(() => {
      if (socket.destroyed || i >= text.length) return clearInterval(timer)
      socket.write(text[i++]!)
    }, byteEveryMs)
    socket.on("close", () => {
      clearInterval(timer)
      sockets.delete(socket)
    })
    socket.on("error", () => {})
  })
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    }
  }
}
