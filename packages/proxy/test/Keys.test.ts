/**
 * Virtual keys: shown once and working at once; revoked, disabled and expired keys get an
 * Anthropic-shaped 401; a key not allowed a model gets 403; the key file holds only hashes
 * and has mode 0600; the control plane is admin-only and lists keys masked.
 */
import { VirtualKey } from "@mks/a2a"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { ADMIN, oneProvider, postMessages, startProxy } from "./helpers/proxy.js"

let fake: FakeUpstream
let proxy: Harness
const body = { model: "claude-text", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }

beforeAll(async () => {
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url, { routes: [{ match: "cheap-*", provider: "fake", model: "glm-4.5-air" }] }))
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
})

const expect401 = async (key: string | undefined, message: RegExp) => {
  const res = await postMessages(proxy.url, key, body)
  expect(res.status).toBe(401)
  expect(res.json).toMatchObject({ type: "error", error: { type: "authentication_error" } })
  expect(res.json.error.message).toMatch(message)
  expect(res.json.request_id).toMatch(/^req_/)
}

describe("keys", () => {
  it("a created key is shown once, works at once, and is listed masked", async () => {
    const created = await proxy.admin("POST", "/v1/keys", { name: "alice", tenant: "acme", tier: "tier2", limits: { requestsPerMinute: 10 } })
    expect(created.status).toBe(201)
    expect(created.json.key).toMatch(/^sk-mks-[0-9A-Za-z]{43}$/)
    expect(created.json.record).toMatchObject({ name: "alice", tenant: "acme", tier: "tier2", disabled: false, models: [], limits: { requestsPerMinute: 10 } })
    expect(created.json.record.prefix).toBe(created.json.key.slice(0, 13))
    expect((await postMessages(proxy.url, created.json.key, body)).status).toBe(200)

    const list = await proxy.admin("GET", "/v1/keys")
    expect(list.status).toBe(200)
    const listed = list.json.keys.find((k: any) => k.id === created.json.record.id)
    expect(listed).toMatchObject({ name: "alice", prefix: created.json.key.slice(0, 13) })
    expect(listed.lastUsedAt).toMatch(/Z$/)
    expect(JSON.stringify(list.json)).not.toContain(created.json.key)
  })

  it("no key, an unknown key: 401 authentication_error", async () => {
    await expect401(undefined, /x-api-key header is required/)
    await expect401("sk-mks-unknownunknownunknownunknownunknownunkno", /invalid x-api-key/)
  })

  it("revoked → 401; disabled → 401 and back", async () => {
    const { key, record } = await proxy.createKey({ name: "bob" })
    expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    expect((await proxy.admin("PATCH", `/v1/keys/${record.id}`, { disabled: true })).json.record.disabled).toBe(true)
    await expect401(key, /disabled/)
    expect((await proxy.admin("PATCH", `/v1/keys/${record.id}`, { disabled: false })).status).toBe(200)
    expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    expect((await proxy.admin("DELETE", `/v1/keys/${record.id}`)).status).toBe(204)
    await expect401(key, /invalid x-api-key/)
    expect((await proxy.admin("DELETE", `/v1/keys/${record.id}`)).status).toBe(404)
  })

  it("expired → 401", async () => {
    const past = await proxy.createKey({ name: "old", expiresAt: new Date(Date.now() - 1000).toISOString() })
    await expect401(past.key, /expired/)
    const later = await proxy.createKey({ name: "later", expiresAt: new Date(Date.now() + 3600_000).toISOString() })
    expect((await postMessages(proxy.url, later.key, body)).status).toBe(200)
    await proxy.admin("PATCH", `/v1/keys/${later.record.id}`, { expiresAt: new Date(Date.now() - 1).toISOString() })
    await expect401(later.key, /expired/)
  })

  it("a key not allowed a model → 403 permission_error; allowed by requested name or provider/model", async () => {
    const { key } = await proxy.createKey({ name: "narrow", models: ["claude-haiku-*", "fake/glm-*"] })
    const denied = await postMessages(proxy.url, key, body)
    expect(denied.status).toBe(403)
    expect(denied.json).toMatchObject({ type: "error", error: { type: "permission_error" } })
    expect((await postMessages(proxy.url, key, { ...body, model: "claude-haiku-5-5" })).status).toBe(200)
    // Routed to fake/glm-4.5-air: allowed by the canonical name.
    expect((await postMessages(proxy.url, key, { ...body, model: "cheap-x" })).status).toBe(200)
    const models = (await (await fetch(proxy.url + "/v1/models", { headers: { "x-api-key": key } })).json()) as any
    expect(models.data).toEqual([])
  })

  it("the key file holds no plaintext, only SHA-256 hashes, and has mode 0600", async () => {
    const keys = await Promise.all([proxy.createKey({ name: "h1" }), proxy.createKey({ name: "h2" })])
    const file = path.join(proxy.dir, "keys.json")
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    const text = fs.readFileSync(file, "utf8")
    for (const { key, record } of keys) {
      // Only the display prefix (`sk-mks-` + 6 characters) is kept to recognise a key.
      expect(text).toContain(`"prefix": "${key.slice(0, 13)}"`)
      expect(text).not.toContain(key.slice(0, 14))
      expect(text).not.toContain(key.slice(13))
      const entry = JSON.parse(text).keys.find((e: any) => e.record.id === record.id)
      expect(entry.hash).toBe(VirtualKey.hashSecret(key))
    }
  })

  it("the control plane wants the admin token (compared in constant time); usage/me wants the key", async () => {
    const wrong = await fetch(proxy.url + "/v1/keys", { headers: { authorization: "Bearer nope" } })
    expect(wrong.status).toBe(401)
    expect((await wrong.json()) as any).toMatchObject({ _tag: "Unauthorized" })
    const { key } = await proxy.createKey({ name: "self" })
    // A virtual key is not an admin token.
    expect((await fetch(proxy.url + "/v1/keys", { headers: { authorization: `Bearer ${key}` } })).status).toBe(401)
    const me = await fetch(proxy.url + "/v1/usage/me", { headers: { authorization: `Bearer ${key}` } })
    expect(me.status).toBe(200)
    expect((await me.json()) as any).toMatchObject({ record: { name: "self" }, window: { requests: 0 }, limits: {}, remaining: {} })
    expect((await fetch(proxy.url + "/v1/usage/me", { headers: { "x-api-key": "sk-mks-nope" } })).status).toBe(401)
    const all = await proxy.admin("GET", "/v1/usage")
    expect(all.json.usage.length).toBeGreaterThan(3)
    const bad = await proxy.admin("POST", "/v1/keys", { name: "" })
    expect(bad.status).toBe(400)
  })

  it("/health and /openapi.json are open, /metrics (admin token only: per-key ids of every tenant) counts requests and the overhead histogram", async () => {
    expect((await (await fetch(proxy.url + "/health")).json()) as any).toMatchObject({ status: "ok" })
    const openApi = (await (await fetch(proxy.url + "/openapi.json")).json()) as any
    expect(Object.keys(openApi.paths)).toEqual(expect.arrayContaining(["/v1/keys", "/v1/keys/{id}", "/v1/usage", "/v1/usage/me"]))
    // No token, a wrong one, a virtual key: refused, and nothing of the figures shows.
    const { key } = (await proxy.admin("POST", "/v1/keys", { name: "metrics-probe" })).json
    for (const authorization of [undefined, "Bearer nope", `Bearer ${key}`, `Bearer ${ADMIN}x`]) {
      const refused = await fetch(proxy.url + "/metrics", { headers: authorization === undefined ? {} : { authorization } })
      expect(refused.status).toBe(401)
      const body = await refused.text()
      expect(JSON.parse(body)._tag).toBe("Unauthorized")
      expect(body).not.toMatch(/a2a_proxy_/)
    }
    const text = await (await fetch(proxy.url + "/metrics", { headers: { authorization: `Bearer ${ADMIN}` } })).text()
    expect(text).toMatch(/a2a_proxy_requests_total\{provider="fake",model="claude-text",key="k_[^"]+",status="200"\} \d+/)
    expect(text).toMatch(/a2a_proxy_errors_total\{[^}]*type="authentication_error"\} \d+/)
    expect(text).toMatch(/a2a_proxy_overhead_ms_bucket\{le="\+Inf"\} [1-9]\d*/)
    expect(text).toMatch(/a2a_proxy_overhead_ms_count [1-9]\d*/)
  })
})
