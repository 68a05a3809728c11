/**
 * Abuse of the runner's local API socket (a real runner process): a slow-loris and half-open
 * flood (5× the pending cap) while a real client keeps working, the header timeout, and 415
 * for non-JSON bodies.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { effectiveBacklog, listenBacklog, rawConnection, startFlood } from "../../../test-support/flood.js"
import { api, KEY, type RunnerProcess, startRunner } from "./helpers.js"

const CAP = 50

describe("the runner's API under a connection flood", () => {
  let runner: RunnerProcess
  beforeAll(async () => {
    runner = await startRunner([], { env: { A2A_RUNNER_MAX_PENDING_CONNECTIONS: String(CAP), A2A_RUNNER_HEADERS_TIMEOUT_MS: "2000", A2A_RUNNER_LISTEN_BACKLOG: "2000" } })
  })
  afterAll(() => runner?.stop())

  it("real clients are all served while the flood is trimmed to the cap with 503 + retry-after", async () => {
    const flood = await startFlood(runner.port, CAP * 5, "/agents")
    try {
      for (let i = 0; i < 10; i++) {
        expect((await api(runner, "GET", "/agents")).status).toBe(200)
        await flood.more(CAP / 5)
      }
      await flood.trimmedTo(CAP + 1)
      expect(flood.refused().length).toBeGreaterThanOrEqual(CAP * 4)
      expect(flood.refused()[0]!.received()).toMatch(/retry-after: 1\r\n/i)
    } finally {
      flood.stop()
    }
  }, 60_000)

  it("listens with the backlog A2A_RUNNER_LISTEN_BACKLOG asks for (capped by the kernel)", async () => {
    expect(await listenBacklog(runner.port)).toBe(effectiveBacklog(2_000))
  })

  it("a request head that never ends is closed after the header timeout (408)", async () => {
    const slow = rawConnection(runner.port)
    await slow.opened
    slow.socket.write("GET /agents HTTP/1.1\r\nhost: x\r\n")
    await slow.closed
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408/)
  }, 30_000)

  it("a non-JSON body is 415 in the contract's shape; nothing is created", async () => {
    for (const type of ["application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"]) {
      const res = await fetch(`${runner.url}/agents`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": type },
        body: "name=formed&command=sleep",
        signal: AbortSignal.timeout(10_000)
      })
      expect(res.status, type).toBe(415)
      expect(await res.json()).toMatchObject({ _tag: "UnsupportedMediaType", error: { type: "UnsupportedMediaType" } })
    }
    expect((await api(runner, "GET", "/agents")).json.agents).toEqual([])
  }, 30_000)
})
