/**
 * Bad input and bad upstreams, all answered in Anthropic's error shape: malformed JSON, a
 * missing model, unknown providers and models, bodies over 32 MiB, a slow-loris upstream
 * (504 after the configured timeout), an unreachable one (502), a stalled stream; upstream
 * errors pass through unmodified.
 */
import { once } from "node:events"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake, startSlowLoris } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { postMessages, PROVIDER_KEY, startProxy } from "./helpers/proxy.js"

let fake: FakeUpstream
let loris: { url: string; close(): Promise<void> }
let deadUrl: string
let proxy: Harness
let key: string

beforeAll(async () => {
  fake = await startFake()
  loris = await startSlowLoris()
  // A port that was just free: connections are refused.
  const probe = http.createServer().listen(0, "127.0.0.1")
  await once(probe, "listening")
  deadUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
  await new Promise((r) => probe.close(r))
  proxy = await startProxy({
    providers: [
      { name: "fake", baseUrl: fake.url, apiKeyEnv: "PROVIDER_KEY", timeouts: { idleMs: 300 } },
      { name: "slow", baseUrl: loris.url, apiKeyEnv: "PROVIDER_KEY", timeouts: { headersMs: 400 } },
      { name: "dead", baseUrl: deadUrl, apiKeyEnv: "PROVIDER_KEY" }
    ],
    routes: [{ match: "claude-haiku-*", provider: "fake" }]
  })
  key = (await proxy.createKey({ limits: { tokensPer5h: 1_000_000 } })).key
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
  await loris?.close()
})

const expectError = (res: { status: number; json: any }, status: number, type: string, message?: RegExp) => {
  expect(res.status).toBe(status)
  expect(res.json).toMatchObject({ type: "error", error: { type } })
  expect(typeof res.json.error.message).toBe("string")
  expect(res.json.request_id).toMatch(/^req_/)
  if (message !== undefined) expect(res.json.error.message).toMatch(message)
}

describe("bad input", () => {
  it("malformed JSON → 400 invalid_request_error", async () => {
    expectError(await postMessages(proxy.url, key, '{"model": "claude-haiku-1", '), 400, "invalid_request_error", /invalid JSON/)
    expectError(await postMessages(proxy.url, key, "[1,2]"), 400, "invalid_request_error", /JSON object/)
  })

  it("missing model → 400 invalid_request_error", async () => {
    expectError(await postMessages(proxy.url, key, { max_tokens: 5, messages: [] }), 400, "invalid_request_error", /model: Field required/)
    expectError(await postMessages(proxy.url, key, { model: 42, max_tokens: 5, messages: [] }), 400, "invalid_request_error", /model/)
  })

  it("unknown provider or model → 404 not_found_error", async () => {
    expectError(await postMessages(proxy.url, key, { model: "nope/claude-1", max_tokens: 5, messages: [] }), 404, "not_found_error", /nope\/claude-1/)
    // No default is configured: a model no route matches is unknown.
    expectError(await postMessages(proxy.url, key, { model: "gpt-5", max_tokens: 5, messages: [] }), 404, "not_found_error", /gpt-5/)
    const res = await fetch(proxy.url + "/v2/whatever", { headers: { "x-api-key": key } })
    expect(res.status).toBe(404)
    expect(((await res.json()) as any).type).toBe("error")
  })

  it("a body over 32 MiB → 413 request_too_large (declared length and chunked)", async () => {
    const big = Buffer.alloc(32 * 1024 * 1024 + 1, 0x20)
    const before = fake.requests.length
    const declared = await fetch(proxy.url + "/v1/messages", { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: big })
    expectError({ status: declared.status, json: (await declared.json()) as any }, 413, "request_too_large")
    const chunks = [Buffer.from('{"model":"claude-haiku-1","x":"'), ...Array.from({ length: 33 }, () => Buffer.alloc(1024 * 1024, 0x61))]
    const streamed = await fetch(proxy.url + "/v1/messages", {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift()
          if (next === undefined) controller.close()
          else controller.enqueue(next)
        }
      }),
      duplex: "half"
    } as RequestInit)
    expectError({ status: streamed.status, json: (await streamed.json()) as any }, 413, "request_too_large")
    expect(fake.requests.length).toBe(before)
  })
})

describe("bad upstreams", () => {
  it("slow-loris upstream → 504 timeout_error after the configured headers timeout; the reservation is released", async () => {
    const started = Date.now()
    const res = await postMessages(proxy.url, key, { model: "slow/m", max_tokens: 5, messages: [] })
    const elapsed = Date.now() - started
    expectError(res, 504, "timeout_error", /did not answer within 400 ms/)
    expect(elapsed).toBeGreaterThanOrEqual(390)
    expect(elapsed).toBeLessThan(3000)
    const me = (await (await fetch(proxy.url + "/v1/usage/me", { headers: { "x-api-key": key } })).json()) as any
    expect(me.remaining.tokensPer5h).toBe(1_000_000 - (me.window.inputTokens + me.window.outputTokens + me.window.cacheCreationInputTokens + me.window.cacheReadInputTokens))
  })

  it("unreachable upstream → 502 api_error", async () => {
    expectError(await postMessages(proxy.url, key, { model: "dead/m", max_tokens: 5, messages: [] }), 502, "api_error", /unreachable \(ECONNREFUSED\)/)
  })

  it("a stream that stalls after its headers ends with an error event (timeout_error)", async () => {
    const res = await postMessages(proxy.url, key, { model: "claude-haiku-hold", max_tokens: 5, stream: true, messages: [] })
    expect(res.status).toBe(200)
    expect(res.text).toContain("event: message_start")
    expect(res.text.trimEnd().split("\n\n").at(-1)).toMatch(/^event: error\ndata: \{"type":"error","error":\{"type":"timeout_error","message":"upstream stalled for 300 ms"\}\}$/)
  })

  it("an upstream that dies mid-stream: the stream ends with an error event and the reported usage counts", async () => {
    const settled = proxy.settled((s) => s.requestedModel === "claude-haiku-drop")
    const res = await postMessages(proxy.url, key, { model: "claude-haiku-drop", max_tokens: 5, stream: true, messages: [] })
    expect(res.status).toBe(200)
    expect(res.text.trimEnd().split("\n\n").at(-1)).toBe('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"upstream connection lost"}}')
    const s = await settled
    expect(s.outcome).toBe("upstream_error")
    expect(s.usage).toEqual({ inputTokens: 25, outputTokens: 1, cacheCreationInputTokens: 300, cacheReadInputTokens: 4000 })
  })

  it("upstream errors pass through unmodified: status, body bytes, headers", async () => {
    for (const model of ["claude-haiku-error-400", "claude-haiku-overloaded"]) {
      const body = { model, max_tokens: 5, messages: [] }
      const direct = await postMessages(fake.url, PROVIDER_KEY, body)
      const res = await postMessages(proxy.url, key, body)
      expect(res.status).toBe(direct.status)
      expect(res.text).toBe(direct.text)
      expect(res.headers.get("retry-after")).toBe(direct.headers.get("retry-after"))
      expect(res.headers.get("request-id")).toBe(direct.headers.get("request-id"))
      expect(res.headers.get("x-should-retry")).toBe(direct.headers.get("x-should-retry"))
    }
  })
})
