/**
 * Fail closed: a corrupt key file (at start or later) or usage file means 503 for every
 * request with one clear log line, never free use; an unreadable key store refuses the start.
 */
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ProxyConfig, ProxyServer } from "../src/index.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import { ADMIN, oneProvider, postMessages, PROVIDER_KEY, startProxy, tempDir } from "./helpers/proxy.js"

let fake: FakeUpstream
beforeAll(async () => {
  fake = await startFake()
})
afterAll(async () => {
  await fake?.close()
})

const body = { model: "claude-text", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }

const expectRefusingEverything = async (url: string, key: string, reason: RegExp) => {
  const before = fake.requests.length
  const res = await postMessages(url, key, body)
  expect(res.status).toBe(503)
  expect(res.json).toMatchObject({ type: "error", error: { type: "api_error" } })
  expect(res.json.error.message).toMatch(reason)
  const count = await fetch(url + "/v1/messages/count_tokens", { method: "POST", headers: { "x-api-key": key }, body: "{}" })
  expect(count.status).toBe(503)
  expect((await fetch(url + "/v1/models", { headers: { "x-api-key": key } })).status).toBe(503)
  expect((await fetch(url + "/v1/usage/me", { headers: { "x-api-key": key } })).status).toBe(503)
  const keys = await fetch(url + "/v1/keys", { headers: { authorization: `Bearer ${ADMIN}` } })
  expect(keys.status).toBe(503)
  expect((await keys.json()) as any).toMatchObject({ _tag: "ServiceUnavailable" })
  const health = await fetch(url + "/health")
  expect(health.status).toBe(503)
  expect(((await health.json()) as any).status).toBe("unavailable")
  expect(fake.requests.length).toBe(before)
}

describe("fail closed", () => {
  it("a corrupt key file at start: every request 503, one clear log line", async () => {
    const dir = tempDir()
    fs.writeFileSync(path.join(dir, "keys.json"), '{"version":1,"keys":[{"hash":"abc", ', { mode: 0o600 })
    const proxy = await startProxy(oneProvider(fake.url), { dir })
    try {
      const line = await proxy.logged("is corrupt")
      expect(line).toMatch(/^ERROR key store .*keys\.json is corrupt .*refusing every request/)
      await expectRefusingEverything(proxy.url, "sk-mks-anything", /keys\.json is corrupt/)
      // Nothing overwrote the evidence.
      expect(fs.readFileSync(path.join(dir, "keys.json"), "utf8")).toBe('{"version":1,"keys":[{"hash":"abc", ')
    } finally {
      await proxy.close()
    }
  })

  it("a key file corrupted while running: 503 from then on, and service again once it is repaired", async () => {
    const proxy = await startProxy(oneProvider(fake.url))
    try {
      const { key } = await proxy.createKey()
      expect((await postMessages(proxy.url, key, body)).status).toBe(200)
      const file = path.join(proxy.dir, "keys.json")
      const good = fs.readFileSync(file, "utf8")
      const broken = proxy.logged("is corrupt")
      fs.writeFileSync(file, good.replace('"version": 1', '"version": "one"'))
      expect(await broken).toMatch(/keys\.json is corrupt/)
      await expectRefusingEverything(proxy.url, key, /corrupt/)
      const repaired = proxy.logged("reloaded")
      fs.writeFileSync(file, good)
      await repaired
      expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    } finally {
      await proxy.close()
    }
  })

  it("a deleted key file: 503, never free use", async () => {
    const proxy = await startProxy(oneProvider(fake.url))
    try {
      const { key } = await proxy.createKey()
      const gone = proxy.logged("was deleted")
      fs.rmSync(path.join(proxy.dir, "keys.json"))
      await gone
      await expectRefusingEverything(proxy.url, key, /deleted/)
    } finally {
      await proxy.close()
    }
  })

  it("a corrupt usage file: every request 503, a clear log line, and the file is left as it was", async () => {
    const dir = tempDir()
    fs.writeFileSync(path.join(dir, "usage.json"), "garbage", { mode: 0o600 })
    const proxy = await startProxy(oneProvider(fake.url), { dir })
    try {
      expect(await proxy.logged("usage store")).toMatch(/^ERROR usage store .*usage\.json is corrupt/)
      await expectRefusingEverything(proxy.url, "sk-mks-anything", /usage\.json is corrupt/)
    } finally {
      await proxy.close()
    }
    expect(fs.readFileSync(path.join(dir, "usage.json"), "utf8")).toBe("garbage")
  })

  it("a usage store that cannot be written: 503 until a write succeeds again", async () => {
    const dir = tempDir()
    const sub = path.join(dir, "usage")
    const proxy = await startProxy(oneProvider(fake.url), { dir, input: { usageFile: path.join(sub, "usage.json") } })
    try {
      const { key } = await proxy.createKey()
      // Its directory becomes a file: the next flush fails.
      fs.rmSync(sub, { recursive: true, force: true })
      fs.writeFileSync(sub, "not a directory")
      const failing = proxy.logged("usage store unavailable")
      expect((await postMessages(proxy.url, key, body)).status).toBe(200)
      expect(await failing).toMatch(/^ERROR usage store unavailable: cannot write .*usage\.json/)
      await expectRefusingEverything(proxy.url, key, /usage store unavailable/)
      fs.rmSync(sub)
      fs.mkdirSync(sub)
      await proxy.logged("writable again")
      expect((await postMessages(proxy.url, key, body)).status).toBe(200)
    } finally {
      await proxy.close()
    }
  })

  it("a key store that cannot be read refuses the start with a clear message", async () => {
    const dir = tempDir()
    fs.mkdirSync(path.join(dir, "keys.json"))
    const config = await Effect.runPromise(
      ProxyConfig.make(
        { ...oneProvider(fake.url), port: 0, keyFile: path.join(dir, "keys.json"), usageFile: ":memory:" },
        { env: { PROVIDER_KEY } }
      )
    )
    const error = await Effect.runPromise(Effect.flip(Effect.scoped(Layer.build(ProxyServer.layer(config)))))
    expect(error).toMatchObject({ _tag: "ProxyStartError" })
    expect(error.message).toMatch(/cannot read .*keys\.json: EISDIR/)
  })
})
