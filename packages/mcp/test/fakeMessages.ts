/**
 * A scripted fake of the Anthropic Messages API (streaming, as Claude Code always asks):
 * the first request that offers `tool` gets a `tool_use` of it; a request that carries the
 * `tool_result` gets a final text; anything else (title or summary calls) gets plain text.
 * Every request body is kept for the test to inspect.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

export interface FakeMessages {
  readonly url: string
  readonly requests: Array<any>
  readonly close: () => Promise<void>
}

const sse = (res: ServerResponse, events: ReadonlyArray<Record<string, unknown>>) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  for (const e of events) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)
  res.end()
}

const start = (model: string) => ({
  type: "message_start",
  message: { id: `msg_${Math.random().toString(36).slice(2)}`, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } }
})

const text = (res: ServerResponse, model: string, body: string) =>
  sse(res, [
    start(model),
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: body } },
    { type: "content_block_stop", index: 0 },
    { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 5 } },
    { type: "message_stop" }
  ])

const toolUse = (res: ServerResponse, model: string, name: string, input: unknown, id = "toolu_a2a_1") =>
  sse(res, [
    start(model),
    { type: "content_block_start", index: 0, content_block: { type: "tool_use", id, name, input: {} } },
    { type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: JSON.stringify(input) } },
    { type: "content_block_stop", index: 0 },
    { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 9 } },
    { type: "message_stop" }
  ])

const read = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = ""
    req.on("data", (c) => (body += c))
    req.on("end", () => resolve(body))
  })

export const startFakeMessages = (tool: string, input: unknown, final: (toolResult: string) => string): Promise<FakeMessages> =>
  new Promise((resolve) => {
    const requests: Array<any> = []
    const server = createServer(async (req, res) => {
      const raw = await read(req)
      if (req.method !== "POST" || !req.url?.startsWith("/v1/messages")) {
        res.writeHead(404, { "content-type": "application/json" })
        res.end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: "not here" } }))
        return
      }
      let body: any
      try {
        body = JSON.parse(raw)
      } catch {
        res.writeHead(400).end()
        return
      }
      requests.push(body)
      const model = String(body.model ?? "claude")
      const results = (body.messages ?? []).flatMap((m: any) =>
        Array.isArray(m.content) ? m.content.filter((c: any) => c.type === "tool_result" && c.tool_use_id === "toolu_a2a_1") : []
      )
      if (results.length > 0) {
        const content = results[0].content
        const resultText = typeof content === "string" ? content : (content ?? []).map((c: any) => c.text ?? "").join("\n")
        return text(res, model, final(resultText))
      }
      if ((body.tools ?? []).some((t: any) => t.name === tool)) return toolUse(res, model, tool, input)
      return text(res, model, "ok")
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () => new Promise((done) => server.close(() => done()))
      })
    })
  })

/** What a scripted turn answers: a `tool_use` (with its own id) or a final text. */
export type Reply = { readonly tool: string; readonly input: unknown; readonly id: string } | { readonly text: string }

/**
 * A fake whose every turn is decided by `script` from the request body (the whole conversation
 * so far, the tools offered); every request body is kept in `requests`.
 */
export const startScriptedMessages = (script: (body: any) => Reply): Promise<FakeMessages> =>
  new Promise((resolve) => {
    const requests: Array<any> = []
    const server = createServer(async (req, res) => {
      const raw = await read(req)
      if (req.method !== "POST" || !req.url?.startsWith("/v1/messages")) {
        res.writeHead(404, { "content-type": "application/json" })
        res.end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: "not here" } }))
        return
      }
      let body: any
      try {
        body = JSON.parse(raw)
      } catch {
        res.writeHead(400).end()
        return
      }
      requests.push(body)
      const model = String(body.model ?? "claude")
      const reply = script(body)
      if ("tool" in reply) return toolUse(res, model, reply.tool, reply.input, reply.id)
      return text(res, model, reply.text)
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () => new Promise((done) => server.close(() => done()))
      })
    })
  })

/** The last user message of a request, as one string (its text blocks and tool results), for scripts to match. */
export const lastTurn = (body: any): { readonly text: string; readonly toolResults: ReadonlyMap<string, string> } => {
  // (Claude Code may put a system message after the turn: the turn is the last user message.)
  const last = [...(body.messages ?? [])].reverse().find((m: any) => m.role === "user")
  const results = new Map<string, string>()
  if (last === undefined) return { text: "", toolResults: results }
  const blocks: Array<any> = typeof last.content === "string" ? [{ type: "text", text: last.content }] : (last.content ?? [])
  const texts: Array<string> = []
  for (const b of blocks) {
    if (b.type === "text") texts.push(String(b.text ?? ""))
    if (b.type === "tool_result") {
      const content = typeof b.content === "string" ? b.content : (b.content ?? []).map((c: any) => c.text ?? "").join("\n")
      results.set(String(b.tool_use_id), content)
    }
  }
  return { text: texts.join("\n"), toolResults: results }
}
