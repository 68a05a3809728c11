/**
 * Routing by model: explicit `provider/model`, configured glob routes, providers' own model
 * patterns, aliases and the default, each reaching the right upstream under the right name.
 */
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ModelRouter, ProxyConfig } from "../src/index.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { postMessages, startProxy } from "./helpers/proxy.js"

const configFor = (a: string, b: string, c: string) => ({
  providers: [
    { name: "alpha", baseUrl: a, apiKeyEnv: "ALPHA_KEY" },
    { name: "beta", baseUrl: b + "/api/anthropic", apiKeyEnv: "BETA_KEY", auth: "bearer" },
    { name: "lab", baseUrl: c, apiKeyEnv: "LAB_KEY", models: ["lab-*", "lab-exact"] }
  ],
  routes: [
    { match: "claude-haiku-*", provider: "beta", model: "glm-4.5-air" },
    { match: "claude-sonnet-*", provider: "lab" }
  ],
  aliases: { fast: "beta/glm-4.5-air", smart: "alpha/claude-opus-5-5", local: "lab-7" },
  default: "alpha"
})

const env = { ALPHA_KEY: "key-alpha", BETA_KEY: "key-beta", LAB_KEY: "key-lab" }

describe("ModelRouter (unit)", () => {
  const config = Effect.runSync(ProxyConfig.make(configFor("http://a", "http://b", "http://c"), { env }))
  const router = ModelRouter.make(config)
  const at = (model: string) => {
    const r = router.resolve(model)
    return r === undefined ? undefined : [r.provider.name, r.model, r.via]
  }

  it("resolves in order: explicit, routes, provider patterns, aliases, default", () => {
    expect(at("beta/anything-1")).toEqual(["beta", "anything-1", "explicit"])
    expect(at("lab/with/slash")).toEqual(["lab", "with/slash", "explicit"])
    expect(at("claude-haiku-5-5")).toEqual(["beta", "glm-4.5-air", "route"])
    expect(at("claude-sonnet-5-5")).toEqual(["lab", "claude-sonnet-5-5", "route"])
    expect(at("lab-9000")).toEqual(["lab", "lab-9000", "provider"])
    expect(at("fast")).toEqual(["beta", "glm-4.5-air", "alias"])
    expect(at("local")).toEqual(["lab", "lab-7", "alias"])
    expect(at("claude-opus-5-5")).toEqual(["alpha", "claude-opus-5-5", "default"])
  })

  it("an unknown provider prefix is not sent to the default", () => {
    expect(at("nope/model")).toBeUndefined()
  })

  it("without a default, unmatched models resolve to nothing", () => {
    const { default: _d, ...rest } = configFor("http://a", "http://b", "http://c")
    const noDefault = ModelRouter.make(Effect.runSync(ProxyConfig.make(rest, { env })))
    expect(noDefault.resolve("claude-opus-5-5")).toBeUndefined()
    expect(noDefault.resolve("fast")?.provider.name).toBe("beta")
  })

  it("lists aliases and concrete provider models", () => {
    expect(router.listed).toEqual(["fast", "smart", "local", "lab/lab-exact"])
  })
})

describe("routing through a real proxy to three upstreams", () => {
  let a: FakeUpstream, b: FakeUpstream, c: FakeUpstream
  let proxy: Harness
  let key: string

  beforeAll(async () => {
    ;[a, b, c] = await Promise.all([startFake(), startFake(), startFake()])
    proxy = await startProxy(configFor(a.url, b.url, c.url), { env })
    key = (await proxy.createKey()).key
  })
  afterAll(async () => {
    await proxy?.close()
    await Promise.all([a?.close(), b?.close(), c?.close()])
  })

  const send = async (model: string) => {
    const counts = [a.requests.length, b.requests.length, c.requests.length]
    const res = await postMessages(proxy.url, key, { model, max_tokens: 10, messages: [{ role: "user", content: "hi" }] })
    expect(res.status).toBe(200)
    const hit = [a, b, c].flatMap((f, i) => f.requests.slice(counts[i]).map((r) => ({ upstream: ["alpha", "beta", "lab"][i], r })))
    expect(hit).toHaveLength(1)
    return { upstream: hit[0]!.upstream, model: hit[0]!.r.json.model as string, recorded: hit[0]!.r, res }
  }

  it("explicit provider/model", async () => {
    const r = await send("lab/lab-special")
    expect([r.upstream, r.model]).toEqual(["lab", "lab-special"])
    expect(r.recorded.headers["x-api-key"]).toBe("key-lab")
  })

  it("prefix route with a mapped model, on a base URL with a path, bearer auth", async () => {
    const r = await send("claude-haiku-5-5")
    expect([r.upstream, r.model]).toEqual(["beta", "glm-4.5-air"])
    expect(r.recorded.url).toBe("/api/anthropic/v1/messages")
    expect(r.recorded.headers.authorization).toBe("Bearer key-beta")
    expect(r.recorded.headers["x-api-key"]).toBeUndefined()
    // The client sees the upstream's answer, whose model is the upstream's name.
    expect(r.res.json.model).toBe("glm-4.5-air")
  })

  it("alias", async () => {
    const r = await send("fast")
    expect([r.upstream, r.model]).toEqual(["beta", "glm-4.5-air"])
  })

  it("provider model pattern", async () => {
    const r = await send("lab-42")
    expect([r.upstream, r.model]).toEqual(["lab", "lab-42"])
  })

  it("default", async () => {
    const r = await send("claude-opus-5-5")
    expect([r.upstream, r.model]).toEqual(["alpha", "claude-opus-5-5"])
    expect(r.recorded.headers["x-api-key"]).toBe("key-alpha")
  })

  it("GET /v1/models lists what the config offers", async () => {
    const res = await fetch(proxy.url + "/v1/models", { headers: { "x-api-key": key } })
    const body = (await res.json()) as any
    expect(body.data.map((m: { id: string }) => m.id)).toEqual(["fast", "smart", "local", "lab/lab-exact"])
    expect(body.data[0]).toMatchObject({ type: "model", display_name: "fast" })
    expect(body).toMatchObject({ has_more: false, first_id: "fast", last_id: "lab/lab-exact" })
  })

  it("POST /v1/messages/count_tokens is forwarded to the routed upstream", async () => {
    const before = b.requests.length
    const res = await fetch(proxy.url + "/v1/messages/count_tokens", {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01" },
      body: JSON.stringify({ model: "fast", messages: [{ role: "user", content: "hi" }] })
    })
    expect(res.status).toBe(200)
    expect((await res.json()) as any).toEqual({ input_tokens: 42 })
    expect(b.requests[before]).toMatchObject({ url: "/api/anthropic/v1/messages/count_tokens", json: { model: "glm-4.5-air" } })
  })
})

describe("config", () => {
  it("presets carry the documented base URLs", () => {
    const config = Effect.runSync(
      ProxyConfig.make(
        {
          providers: ["anthropic", "deepseek", "glm", "minimax", "moonshot"].map((p) => ({ name: p, preset: p, apiKeyEnv: "K" }))
        },
        { env: { K: "k" } }
      )
    )
    expect(config.providers.map((p) => [p.name, p.baseUrl.href, p.auth])).toEqual([
      ["anthropic", "https://api.anthropic.com/", "x-api-key"],
      ["deepseek", "https://api.deepseek.com/anthropic", "bearer"],
      ["glm", "https://api.z.ai/api/anthropic", "bearer"],
      ["minimax", "https://api.minimax.io/anthropic", "bearer"],
      ["moonshot", "https://api.moonshot.ai/anthropic", "bearer"]
    ])
  })

  it("refuses: no providers, a missing key variable, unknown route provider, unknown field", () => {
    const error = (input: unknown, e: Record<string, string> = {}) =>
      Effect.runSync(Effect.flip(ProxyConfig.make(input, { env: e }))).message
    expect(error({})).toMatch(/no providers configured/)
    expect(error({ providers: [{ name: "glm", preset: "glm" }] })).toMatch(/GLM_API_KEY/)
    expect(error({ providers: [{ name: "x", baseUrl: "http://x" }], routes: [{ match: "*", provider: "y" }] })).toMatch(/unknown provider y/)
    expect(error({ providers: [{ name: "x", baseUrl: "http://x", bogus: 1 }] })).toMatch(/bogus/)
  })

  it("reads YAML, and A2A_PROXY_PORT overrides the file", async () => {
    const fs = await import("node:fs")
    const os = await import("node:os")
    const path = await import("node:path")
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cfg-")), "proxy.yaml")
    fs.writeFileSync(file, "port: 4000\nproviders:\n  - name: lab\n    baseUrl: http://127.0.0.1:9000\n    apiKeyEnv: LAB_KEY\n    models: ['lab-*']\ndefault: lab\n")
    const config = await Effect.runPromise(ProxyConfig.load({ configPath: file, env: { LAB_KEY: "x", A2A_PROXY_PORT: "4100" } }))
    expect(config.port).toBe(4100)
    expect(config.providers[0]!.models).toEqual(["lab-*"])
    expect(config.host).toBe("127.0.0.1")
  })
})
