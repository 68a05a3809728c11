/**
 * Usage accounting: `message_start` then the last cumulative `message_delta` (never summed),
 * cache fields kept apart; a stream cut by the client still records what the upstream
 * reported; an `error` event inside a 200 stream is passed through.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SseTap } from "../src/internal/usageTap.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { defaultUsage, eventsOf, message, startFake, TEXT } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { ADMIN, oneProvider, postMessages, PROVIDER_KEY, startProxy } from "./helpers/proxy.js"

const sse = (events: ReadonlyArray<readonly [string, unknown]>) => events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join("")

describe("SseTap (unit)", () => {
  it("any chunking, CRLF or LF, gives the same usage: the last cumulative report, field by field", () => {
    const m = message("m", TEXT, { input_tokens: 11, output_tokens: 99, cache_creation_input_tokens: 7, cache_read_input_tokens: 5 })
    const events = eventsOf(m)
    // A second, later message_delta carrying only output_tokens: it overrides that field alone.
    events.splice(events.length - 1, 0, ["message_delta", { type: "message_delta", delta: {}, usage: { output_tokens: 120 } }])
    const text = Buffer.from(sse(events), "utf8")
    const expected = { inputTokens: 11, outputTokens: 120, cacheCreationInputTokens: 7, cacheReadInputTokens: 5 }
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 40 }), fc.boolean(), (cuts, crlf) => {
        const bytes = crlf ? Buffer.from(text.toString("utf8").replace(/\n/g, "\r\n"), "utf8") : text
        const points = [...new Set(cuts.map((c) => Math.min(c, bytes.length - 1)))].sort((a, b) => a - b)
        const tap = new SseTap()
        let from = 0
        for (const p of [...points, bytes.length]) {
          tap.push(bytes.subarray(from, p))
          from = p
        }
        tap.end()
        expect(tap.usage).toEqual(expected)
        expect(tap.streamError).toBeUndefined()
      }),
      { numRuns: 200 }
    )
  })

  it("ignores malformed data and non-numeric fields", () => {
    const tap = new SseTap()
    tap.push(Buffer.from('event: message_start\ndata: {not json\n\nevent: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":"9","input_tokens":3}}\n\n'))
    tap.end()
    expect(tap.usage).toEqual({ inputTokens: 3, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 })
  })
})

describe("accounting through a real proxy", () => {
  let fake: FakeUpstream
  let proxy: Harness
  let drainProxy: Harness
  let key: string

  beforeAll(async () => {
    fake = await startFake()
    proxy = await startProxy(oneProvider(fake.url))
    drainProxy = await startProxy(oneProvider(fake.url, { onClientAbort: "drain" }))
  })
  afterAll(async () => {
    await proxy?.close()
    await drainProxy?.close()
    await fake?.close()
  })

  const me = async (h: Harness, k: string) => ((await (await fetch(h.url + "/v1/usage/me", { headers: { "x-api-key": k } })).json()) as any).window

  it("a stream with cumulative cache usage counts every field exactly once", async () => {
    key = (await proxy.createKey({ name: "acct" })).key
    // message_start says output 1; message_delta repeats input and cache fields cumulatively.
    const res = await postMessages(proxy.url, key, { model: "claude-text", max_tokens: 100, stream: true, messages: [] })
    expect(res.status).toBe(200)
    expect(res.text).toContain("event: message_delta")
    const w = await me(proxy, key)
    expect(w).toMatchObject({
      requests: 1,
      inputTokens: defaultUsage.input_tokens,
      outputTokens: defaultUsage.output_tokens,
      cacheCreationInputTokens: defaultUsage.cache_creation_input_tokens,
      cacheReadInputTokens: defaultUsage.cache_read_input_tokens
    })
    // A non-streaming answer adds its usage once more, nothing else.
    await postMessages(proxy.url, key, { model: "claude-text", max_tokens: 100, messages: [] })
    const w2 = await me(proxy, key)
    expect(w2).toMatchObject({
      requests: 2,
      inputTokens: 2 * defaultUsage.input_tokens,
      outputTokens: 2 * defaultUsage.output_tokens,
      cacheCreationInputTokens: 2 * defaultUsage.cache_creation_input_tokens,
      cacheReadInputTokens: 2 * defaultUsage.cache_read_input_tokens
    })
    const metrics = await (await fetch(proxy.url + "/metrics", { headers: { authorization: `Bearer ${ADMIN}` } })).text()
    expect(metrics).toMatch(new RegExp(`a2a_proxy_tokens_total\\{provider="fake",model="claude-text",key="k_[^"]+",kind="cache_read"\\} ${2 * defaultUsage.cache_read_input_tokens}`))
  })

  it("a stream the client cuts mid-way records what the upstream reported, and the upstream call is cancelled", async () => {
    const cut = (await proxy.createKey({ name: "cut" })).key
    const settled = proxy.settled((s) => s.requestedModel === "claude-hold")
    const closed = new Promise((resolve) => fake.events.once("closed", resolve))
    const abort = new AbortController()
    const res = await fetch(proxy.url + "/v1/messages", {
      method: "POST",
      headers: { "x-api-key": cut, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-hold", max_tokens: 100, stream: true, messages: [] }),
      signal: abort.signal
    })
    const reader = res.body!.getReader()
    let seen = ""
    while (!seen.includes("content_block_delta")) seen += new TextDecoder().decode((await reader.read()).value)
    abort.abort()
    const s = await settled
    await closed
    expect(s.outcome).toBe("client_closed")
    // message_start's report: input and cache fields, output 1.
    const expected = { inputTokens: 25, outputTokens: 1, cacheCreationInputTokens: 300, cacheReadInputTokens: 4000 }
    expect(s.usage).toEqual(expected)
    expect(await me(proxy, cut)).toMatchObject({ requests: 1, ...expected })
  })

  it("with onClientAbort=drain, a cut stream is read to its end and its final usage counted", async () => {
    const k = (await drainProxy.createKey({ name: "drain" })).key
    const slow = message("claude-slow", TEXT)
    fake.script = (req) =>
      req.json?.model === "claude-slow" ? { kind: "sse", events: eventsOf(slow), delayMs: 20 } : { kind: "json", body: message("x", TEXT) }
    try {
      const settled = drainProxy.settled((s) => s.requestedModel === "claude-slow")
      const abort = new AbortController()
      const res = await fetch(drainProxy.url + "/v1/messages", {
        method: "POST",
        headers: { "x-api-key": k, "content-type": "application/json" },
        body: JSON.stringify({ model: "claude-slow", max_tokens: 100, stream: true, messages: [] }),
        signal: abort.signal
      })
      const reader = res.body!.getReader()
      let seen = ""
      while (!seen.includes("message_start")) seen += new TextDecoder().decode((await reader.read()).value)
      abort.abort()
      const s = await settled
      expect(s.outcome).toBe("client_closed")
      expect(s.usage).toEqual({ inputTokens: 25, outputTokens: 17, cacheCreationInputTokens: 300, cacheReadInputTokens: 4000 })
    } finally {
      const { defaultScript } = await import("./helpers/fakeUpstream.js")
      fake.script = defaultScript
    }
  })

  it("a stream's headers reach the client before its first event, and events as they arrive", async () => {
    const k = (await proxy.createKey({ name: "live" })).key
    let release!: () => void
    const gate = new Promise((resolve) => (release = () => resolve(undefined)))
    const m = message("claude-live", TEXT)
    fake.script = (req) => (req.json?.model === "claude-live" ? { kind: "sse", events: eventsOf(m), after: gate } : { kind: "json", body: m })
    try {
      // fetch resolves on the response headers: the upstream has sent no event yet.
      const res = await fetch(proxy.url + "/v1/messages", {
        method: "POST",
        headers: { "x-api-key": k, "content-type": "application/json" },
        body: JSON.stringify({ model: "claude-live", max_tokens: 100, stream: true, messages: [] })
      })
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toBe("text/event-stream")
      release()
      const text = await res.text()
      expect(text).toBe(sse(eventsOf(m)))
    } finally {
      const { defaultScript } = await import("./helpers/fakeUpstream.js")
      fake.script = defaultScript
    }
  })

  it("an upstream that compresses anyway: bytes pass through, usage is still read (JSON and SSE)", async () => {
    const k = (await proxy.createKey({ name: "gzip" })).key
    const { gzipSync, brotliCompressSync } = await import("node:zlib")
    const m = message("claude-zip", TEXT, { input_tokens: 3, output_tokens: 5, cache_creation_input_tokens: 7, cache_read_input_tokens: 11 })
    fake.script = (req) =>
      req.json?.stream === true
        ? { kind: "raw", status: 200, text: brotliCompressSync(sse(eventsOf(m))), headers: { "content-type": "text/event-stream", "content-encoding": "br" } }
        : { kind: "raw", status: 200, text: gzipSync(JSON.stringify(m)), headers: { "content-type": "application/json", "content-encoding": "gzip" } }
    try {
      const expected = { inputTokens: 3, outputTokens: 5, cacheCreationInputTokens: 7, cacheReadInputTokens: 11 }
      for (const stream of [false, true]) {
        const settled = proxy.settled((s) => s.requestedModel === "claude-zip")
        const res = await postMessages(proxy.url, k, { model: "claude-zip", max_tokens: 100, stream, messages: [] })
        expect(res.status).toBe(200)
        // fetch decodes the relayed bytes: the client got the upstream's body.
        expect(res.text).toBe(stream ? sse(eventsOf(m)) : JSON.stringify(m))
        expect((await settled).usage).toEqual(expected)
      }
      // The upstream was asked for identity all the same.
      expect(fake.requests.at(-1)!.headers["accept-encoding"]).toBe("identity")
    } finally {
      const { defaultScript } = await import("./helpers/fakeUpstream.js")
      fake.script = defaultScript
    }
  })

  it("an error event inside a 200 stream is passed through byte for byte", async () => {
    const k = (await proxy.createKey({ name: "err" })).key
    const body = { model: "claude-stream-error", max_tokens: 100, stream: true, messages: [] }
    const directRes = await postMessages(fake.url, PROVIDER_KEY, body)
    const settled = proxy.settled((s) => s.requestedModel === "claude-stream-error")
    const res = await postMessages(proxy.url, k, body)
    expect(res.status).toBe(200)
    expect(res.text).toBe(directRes.text)
    expect(res.text).toContain('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    const s = await settled
    expect(s.streamError).toBe("overloaded_error")
    expect(s.usage).toEqual({ inputTokens: 25, outputTokens: 1, cacheCreationInputTokens: 300, cacheReadInputTokens: 4000 })
  })
})
