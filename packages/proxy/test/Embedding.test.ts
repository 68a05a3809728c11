/**
 * Embedding over other stores: `ProxyServer.layerWith(config)` on core's in-memory `KeyStore`
 * and `UsageMeter` layers. This exercises the generic path, where every admission and
 * settlement goes through the services' Effects (the file stores use plain calls instead).
 */
import Anthropic from "@anthropic-ai/sdk"
import { KeyStore, UsageMeter } from "@mks/a2a"
import { Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ProxyServer } from "../src/index.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { defaultUsage, startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, postMessages, startProxy } from "./helpers/proxy.js"

let fake: FakeUpstream
let proxy: Harness

beforeAll(async () => {
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url), {
    layer: (config) => ProxyServer.layerWith(config).pipe(Layer.provide(Layer.merge(KeyStore.layerMemory, UsageMeter.layerMemory)))
  })
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
})

describe("ProxyServer.layerWith over core's in-memory layers", () => {
  it("streams through, and counts the cumulative usage once", async () => {
    const { key, record } = await proxy.createKey({ name: "embedded" })
    const client = new Anthropic({ baseURL: proxy.url, apiKey: key, maxRetries: 0 })
    const stream = client.messages.stream({ model: "claude-text", max_tokens: 100, messages: [{ role: "user", content: "hi" }] })
    const final = await stream.finalMessage()
    expect(final.content[0]).toMatchObject({ type: "text" })
    const usage = await proxy.admin("GET", `/v1/usage?key=${record.id}`)
    expect(usage.json.usage[0].window).toMatchObject({
      requests: 1,
      inputTokens: defaultUsage.input_tokens,
      outputTokens: defaultUsage.output_tokens,
      cacheCreationInputTokens: defaultUsage.cache_creation_input_tokens,
      cacheReadInputTokens: defaultUsage.cache_read_input_tokens
    })
  })

  it("rpm = 2: the 3rd request gets 429 with the rate-limit headers; a revoked key gets 401", async () => {
    const { key, record } = await proxy.createKey({ name: "limited", limits: { requestsPerMinute: 2 } })
    const body = { model: "claude-text", max_tokens: 10, messages: [] }
    expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    const limited = await postMessages(proxy.url, key, body)
    expect(limited.status).toBe(429)
    expect(limited.json.error.type).toBe("rate_limit_error")
    expect(limited.headers.get("retry-after")).toMatch(/^\d+$/)
    expect(limited.headers.get("anthropic-ratelimit-requests-limit")).toBe("2")
    expect(limited.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0")
    await proxy.admin("DELETE", `/v1/keys/${record.id}`)
    expect((await postMessages(proxy.url, key, body)).status).toBe(401)
  })

  it("concurrent requests never overshoot a token quota", async () => {
    const body = { model: "claude-text", max_tokens: 5000, messages: [] }
    const bound = Buffer.byteLength(JSON.stringify(body)) + 5000
    // Room for exactly two bounds at a time; each answer uses 4,342 tokens.
    const { key, record } = await proxy.createKey({ name: "quota", limits: { tokensPer5h: 2 * bound } })
    const results = await Promise.all(Array.from({ length: 10 }, () => postMessages(proxy.url, key, body)))
    const ok = results.filter((r) => r.status === 200).length
    expect(ok).toBeGreaterThan(0)
    const window = (await proxy.admin("GET", `/v1/usage?key=${record.id}`)).json.usage[0].window
    const total = window.inputTokens + window.outputTokens + window.cacheCreationInputTokens + window.cacheReadInputTokens
    expect(total).toBe(ok * 4342)
    expect(total).toBeLessThanOrEqual(2 * bound)
  })
})
