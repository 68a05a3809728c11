/**
 * A runner id is one link per tenant. A second link with an id that is linked already closes
 * the older link with 4009 (`RunnerFrame.LinkCloseCode.replaced`) — no silent takeover with the
 * first link left open — and a real `a2a-runner` that is replaced says so and stays unlinked
 * instead of reconnecting (two runners with one id would evict each other for ever). Another
 * tenant's runner of the same id is not touched.
 */
import { RunnerFrame } from "@mks/a2a"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"
import { http, startBroker, type TestBroker } from "./harness.js"

/** A raw runner link that says hello as `id`; `closed` resolves with the close code. */
const link = (broker: TestBroker, token: string, id: string) =>
  new Promise<{ ws: WebSocket; closed: Promise<number> }>((resolve, reject) => {
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/${id}`, { headers: { authorization: `Bearer ${token}` } })
    const closed = new Promise<number>((done) => ws.once("close", (code) => done(code)))
    ws.once("unexpected-response", (_q, res) => reject(new Error(`link refused ${res.statusCode}`)))
    ws.once("open", () => {
      ws.send(JSON.stringify({ type: "hello", runner: { id, host: `raw-${id}`, labels: {}, capacity: 1, presets: ["command"], version: "t" }, agents: [] }))
      resolve({ ws, closed })
    })
  })

const runnersOf = async (broker: TestBroker, token: string) =>
  (await http(broker, token, "GET", "/api/runners")).json.runners as Array<{ id: string; status: string; host: string }>

describe("duplicate runner ids", () => {
  let broker: TestBroker
  let runnerToken: string
  let admin: string
  let runner: RunnerProcess | undefined

  beforeAll(async () => {
    broker = await startBroker()
    runnerToken = await broker.token("default", "runner")
    admin = broker.adminToken
  })
  afterAll(async () => {
    await runner?.stop()
    await broker?.close()
  })

  it("a second link with a linked id closes the older one with 4009; the newer one serves", async () => {
    const first = await link(broker, runnerToken, "dup-raw")
    await eventually(async () => ((await runnersOf(broker, admin)).find((r) => r.id === "dup-raw" && r.status === "online") ? true : undefined), "first link online", 30_000)
    const second = await link(broker, runnerToken, "dup-raw")
    expect(await first.closed).toBe(RunnerFrame.LinkCloseCode.replaced)
    // The newer link is the runner now: online, and still open.
    await eventually(async () => ((await runnersOf(broker, admin)).find((r) => r.id === "dup-raw" && r.status === "online") ? true : undefined), "runner online on the newer link", 30_000)
    expect(second.ws.readyState).toBe(WebSocket.OPEN)
    expect((await runnersOf(broker, admin)).filter((r) => r.id === "dup-raw")).toHaveLength(1)
    second.ws.close()
    await second.closed
  })

  it("the same id in another tenant is another runner: neither link is closed", async () => {
    const otherToken = await broker.token("other", "runner")
    const mine = await link(broker, runnerToken, "dup-tenants")
    const theirs = await link(broker, otherToken, "dup-tenants")
    await eventually(async () => ((await runnersOf(broker, admin)).find((r) => r.id === "dup-tenants" && r.status === "online") ? true : undefined), "runner online in default", 30_000)
    const otherAdmin = await broker.token("other", "admin")
    await eventually(async () => ((await runnersOf(broker, otherAdmin)).find((r) => r.id === "dup-tenants" && r.status === "online") ? true : undefined), "runner online in other", 30_000)
    expect(mine.ws.readyState).toBe(WebSocket.OPEN)
    expect(theirs.ws.readyState).toBe(WebSocket.OPEN)
    mine.ws.close()
    theirs.ws.close()
    await Promise.all([mine.closed, theirs.closed])
  })

  it("a real a2a-runner that is replaced says why and does not link again", async () => {
    runner = await startRunner(["--broker", broker.url, "--token", runnerToken, "--id", "dup-real"])
    await eventually(async () => ((await runnersOf(broker, admin)).find((r) => r.id === "dup-real" && r.status === "online") ? true : undefined), "the runner online", 60_000)
    const intruder = await link(broker, runnerToken, "dup-real")
    await eventually(() => (/took over; this runner stays unlinked/.test(runner!.stderr()) ? true : undefined), "the runner's error line", 60_000)
    // The runner did not come back to evict the newer link: it is the one the broker keeps.
    await eventually(async () => ((await runnersOf(broker, admin)).find((r) => r.id === "dup-real")?.host === "raw-dup-real" ? true : undefined), "the newer link's runner listed", 30_000)
    expect(intruder.ws.readyState).toBe(WebSocket.OPEN)
    expect(runner.child.exitCode).toBeNull()
    intruder.ws.close()
    await intruder.closed
  })
})
