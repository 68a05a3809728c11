/**
 * The official client through the proxy gets exactly what it gets from the upstream directly
 * (text, tool use, thinking; streaming and not), and the upstream sees the provider's key,
 * never the virtual key; body and `anthropic-*` headers arrive unchanged.
 */
import Anthropic from "@anthropic-ai/sdk"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, PROVIDER_KEY, startProxy } from "./helpers/proxy.js"

let fake: FakeUpstream
let proxy: Harness
let virtualKey: string
let direct: Anthropic
let viaProxy: Anthropic

beforeAll(async () => {
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url, { routes: [{ match: "mapped-*", provider: "fake", model: "claude-text-upstream" }] }))
  virtualKey = (await proxy.createKey({ name: "sdk" })).key
  direct = new Anthropic({ baseURL: fake.url, apiKey: PROVIDER_KEY, maxRetries: 0 })
  viaProxy = new Anthropic({ baseURL: proxy.url, apiKey: virtualKey, maxRetries: 0 })
})

afterAll(async () => {
  await proxy?.close()
  await fake?.close()
})

const params = (model: string) => ({
  model,
  max_tokens: 1024,
  messages: [{ role: "user" as const, content: "Hello — what's the weather in Zürich?" }]
})

const collect = async (client: Anthropic, model: string) => {
  const stream = client.messages.stream(params(model))
  const events: Array<unknown> = []
  for await (const event of stream) events.push(event)
  return { events, final: await stream.finalMessage() }
}

describe("official @anthropic-ai/sdk through the proxy", () => {
  for (const model of ["claude-text-1", "claude-tool-1", "claude-thinking-1"]) {
    it(`non-streaming ${model}: same message as direct`, async () => {
      const a = await direct.messages.create(params(model))
      const b = await viaProxy.messages.create(params(model))
      expect(b).toEqual(a)
      expect(b.content.length).toBeGreaterThan(0)
    })

    it(`streaming ${model}: same events and final message as direct`, async () => {
      const a = await collect(direct, model)
      const b = await collect(viaProxy, model)
      expect(b.events).toEqual(a.events)
      expect(b.final).toEqual(a.final)
      expect(b.events.length).toBeGreaterThan(5)
    })
  }

  it("the upstream sees the provider key and never the virtual key", async () => {
    const before = fake.requests.length
    await viaProxy.messages.create(params("claude-text-1"))
    await collect(viaProxy, "claude-tool-1")
    const seen = fake.requests.slice(before)
    expect(seen.length).toBe(2)
    for (const r of seen) {
      expect(r.headers["x-api-key"]).toBe(PROVIDER_KEY)
      expect(r.headers.authorization).toBeUndefined()
      expect(JSON.stringify(r.rawHeaders)).not.toContain("sk-mks-")
      expect(r.body.toString()).not.toContain(virtualKey)
    }
    // Across everything the fake ever saw in this file.
    expect(JSON.stringify(fake.requests.map((r) => r.rawHeaders))).not.toContain(virtualKey)
  })

  it("Authorization: Bearer with the virtual key works and is not forwarded either", async () => {
    const bearer = new Anthropic({ baseURL: proxy.url, authToken: virtualKey, apiKey: null, maxRetries: 0 })
    const before = fake.requests.length
    const m = await bearer.messages.create(params("claude-text-1"))
    expect(m.content[0]).toMatchObject({ type: "text" })
    const r = fake.requests[before]!
    expect(r.headers["x-api-key"]).toBe(PROVIDER_KEY)
    expect(r.headers.authorization).toBeUndefined()
  })

  it("body bytes and anthropic-* headers pass unchanged, except a mapped model", async () => {
    // Odd spacing, escapes and key order: a re-serialising proxy would change these bytes.
    const raw = '{ "max_tokens":16 ,"model" : "mapped-x",\n "messages":[{"role":"user","content":"caf\\u00e9 \\"q\\" 1.0e2 ✓"}], "metadata":{"model":"keep-me"}, "x_unknown": [1.50, {"model":"nested"}] }'
    const before = fake.requests.length
    const res = await fetch(proxy.url + "/v1/messages?beta=true", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": virtualKey,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27",
        "x-app": "cli"
      },
      body: raw
    })
    expect(res.status).toBe(200)
    const r = fake.requests[before]!
    expect(r.url).toBe("/v1/messages?beta=true")
    expect(r.body.toString("utf8")).toBe(raw.replace('"mapped-x"', '"claude-text-upstream"'))
    expect(r.headers["anthropic-version"]).toBe("2023-06-01")
    expect(r.headers["anthropic-beta"]).toBe("interleaved-thinking-2025-05-14,context-management-2025-06-27")
    expect(r.headers["x-app"]).toBe("cli")
    const overhead = Number(res.headers.get("x-a2a-proxy-overhead-ms"))
    expect(overhead).toBeGreaterThanOrEqual(0)
    expect(overhead).toBeLessThan(50)
  })
})
