/**
 * Abuse of the proxy's listening socket: a slow-loris and half-open flood (5× the pending cap)
 * while a real client keeps making model calls; the header timeout; 415 for non-JSON bodies on
 * the data and control planes.
 */
import { ServerLimits } from "@mks/a2a"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ProxyServer } from "../src/index.js"
import { effectiveBacklog, listenBacklog, startFlood, rawConnection } from "../../../test-support/flood.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { ADMIN, oneProvider, postMessages, startProxy } from "./helpers/proxy.js"

const body = { model: "claude-text", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }

const CAP = 50

describe("the proxy under a connection flood", () => {
  let upstream: FakeUpstream
  let proxy: Harness
  let key: string
  beforeAll(async () => {
    upstream = await startFake()
    proxy = await startProxy(oneProvider(upstream.url), {
      layer: (config) => ProxyServer.layer(config, { limits: { ...ServerLimits.defaults, maxPendingConnections: CAP, headersTimeout: 2_000, requestTimeout: 4_000 } })
    })
    key = (await proxy.createKey({ name: "flood" })).key
  })
  afterAll(async () => {
    await proxy?.close()
    await upstream?.close()
  })

  it("real clients are all served while the flood is trimmed to the cap with 503 + retry-after", async () => {
    const flood = await startFlood(Number(new URL(proxy.url).port), CAP * 5, "/v1/models")
    try {
      for (let i = 0; i < 10; i++) {
        const res = await postMessages(proxy.url, key, body)
        expect(res.status, res.text).toBe(200)
        await flood.more(CAP / 5)
      }
      await flood.trimmedTo(CAP + 1)
      expect(flood.refused().length).toBeGreaterThanOrEqual(CAP * 4)
      expect(flood.refused()[0]!.received()).toMatch(/retry-after: 1\r\n/i)
    } finally {
      flood.stop()
    }
  }, 60_000)

  it("listens with a backlog of 4,096 (capped by the kernel), not node's 511, so a reconnect wave waits in the queue instead of being dropped", async () => {
    expect(await listenBacklog(Number(new URL(proxy.url).port))).toBe(effectiveBacklog(4_096))
  })

  it("a request head that never ends is closed after the header timeout (408)", async () => {
    const slow = rawConnection(Number(new URL(proxy.url).port))
    await slow.opened
    slow.socket.write("POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
    await slow.closed
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408/)
  }, 30_000)

  it("non-JSON bodies are 415 on the data plane (Anthropic error shape) and the control plane (contract shape)", async () => {
    for (const type of ["application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"]) {
      const data = await fetch(`${proxy.url}/v1/messages`, {
        method: "POST",
        headers: { "x-api-key": key, "content-type": type, "anthropic-version": "2023-06-01" },
        body: "model=x",
        signal: AbortSignal.timeout(10_000)
      })
      expect(data.status, type).toBe(415)
      expect(await data.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
      const control = await fetch(`${proxy.url}/v1/keys`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": type },
        body: "name=x",
        signal: AbortSignal.timeout(10_000)
      })
      expect(control.status, type).toBe(415)
      expect(await control.json()).toMatchObject({ _tag: "UnsupportedMediaType" })
    }
    const ok = await postMessages(proxy.url, key, body, { "content-type": "application/json; charset=utf-8" })
    expect(ok.status).toBe(200)
  }, 30_000)
})
