import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { opened, record } from "./support.js"

/** A runner written against the frame schemas: it records orders and reports statuses. */
const fakeRunner = (broker: TestBroker, token: string, id: string, agents: ReadonlyArray<{ spawnId: string; status: string; pid?: number }> = []) =>
  new Promise<{ ws: WebSocket; frames: Array<any>; next: (type: string) => Promise<any>; send: (frame: unknown) => void }>((resolve, reject) => {
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/${id}`, { headers: { authorization: `Bearer ${token}` } })
    const frames: Array<any> = []
    const waiting: Array<{ type: string; resolve: (f: any) => void }> = []
    let taken = 0
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      frames.push(frame)
      const i = waiting.findIndex((w) => w.type === frame.type)
      if (i >= 0) {
        taken++
        waiting.splice(i, 1)[0]!.resolve(frame)
      }
    })
    ws.on("unexpected-response", (_req, res) => reject(new Error(`runner link refused: ${res.statusCode}`)))
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "hello", runner: { id, host: "test-host", labels: { zone: "a" }, capacity: 2, presets: ["command"], version: "test" }, agents }))
      resolve({
        ws,
        frames,
        send: (frame) => ws.send(JSON.stringify(frame)),
        next: (type) =>
          new Promise((res) => {
            const already = frames.slice(taken).find((f) => f.type === type)
            if (already !== undefined) {
              taken++
              res(already)
            } else waiting.push({ type, resolve: res })
          })
      })
    })
  })

describe("spawn plane round trip with a test runner", () => {
  let broker: TestBroker
  beforeAll(async () => {
    // A runner is stale 2 s after its last frame: short enough for the "vanishes" case, long
    // enough that a loaded machine does not find the heartbeating runner of the round trip stale.
    broker = await startBroker({ runnerStaleAfter: 2_000, gcInterval: 50 })
  })
  afterAll(() => broker.close())

  it("spawn → dispatched → running → registered → stop → exited, with spawn_status events to the requester", async () => {
    const runnerToken = await broker.token("default", "runner")
    const runner = await fakeRunner(broker, runnerToken, "rt-1")
    // Alive all along, as a real runner is (it heartbeats every 20 s against a 60 s timeout).
    const beat = setInterval(() => runner.send({ type: "heartbeat" }), 200)
    runner.ws.once("close", () => clearInterval(beat))
    const api = client(broker, broker.adminToken)
    const requester = (await api.peers.register({ name: "boss" })).peer
    const ch = api.connect(requester.id)
    const seen = record(ch)
    await opened(ch)
    // The runner is listed once its hello arrived.
    const runners = await api.runners.list()
    expect(runners.runners.find((r) => r.id === "rt-1")).toMatchObject({ status: "online", capacity: 2, host: "test-host" })

    const created = await http(broker, broker.adminToken, "POST", "/api/spawn", { command: "node", args: ["agent.js"], name: "helper-1", teams: ["crew"], requestedBy: requester.id })
    expect(created.status).toBe(202)
    const spawnId: string = created.json.spawn.id
    expect(created.json.spawn.runnerId).toBe("rt-1")

    const order = await runner.next("spawn")
    expect(order.spawn).toMatchObject({ id: spawnId, spec: { command: "node", name: "helper-1" } })
    expect(order.spawn.brokerUrl).toBe(broker.url)
    expect(order.spawn.token).toMatch(/^a2a_/)
    expect((await api.spawn.get(spawnId)).spawn.status).toBe("dispatched")

    runner.send({ type: "spawn_status", spawnId, status: "running", pid: 4242 })
    await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "running", "running")

    // The spawned agent registers with its spawn token: the spawn becomes `registered`.
    const agent = client(broker, order.spawn.token)
    const registered = await agent.peers.register({ name: "helper-1", teams: ["crew"] })
    expect(registered.peer.spawnId).toBe(spawnId)
    expect(registered.peer.runnerId).toBe("rt-1")
    const reg = await seen.event((e) => e.type === "spawn_status" && e.spawn.status === "registered", "registered")
    expect(reg.type === "spawn_status" && reg.spawn.peerId).toBe(registered.peer.id)

    // The spawn token is scoped: it cannot register a different spawn's peer.
    const other = await http(broker, order.spawn.token, "POST", "/api/peers", { name: "impostor", spawnId: "s_other000000000000000" })
    expect(other.status).toBe(403)

    // Stop by peer id: the runner gets a stop order; it reports the exit.
    const stopping = await http(broker, broker.adminToken, "POST", `/api/peers/${registered.peer.id}/stop`)
    expect(stopping.status).toBe(202)
    expect(stopping.json.spawn.status).toBe("stopping")
    const stop = await runner.next("stop")
    expect(stop.spawnId).toBe(spawnId)
    runner.send({ type: "spawn_status", spawnId, status: "exited", exitCode: 0 })
    const exited = await seen.event((e) => e.type === "spawn_status" && e.spawn.status === "exited", "exited")
    expect(exited.type === "spawn_status" && exited.spawn.exitCode).toBe(0)
    // The spawn token dies with the spawn.
    expect((await http(broker, order.spawn.token, "GET", "/api/peers")).status).toBe(401)
    // Stopping again is an illegal move.
    expect((await http(broker, broker.adminToken, "DELETE", `/api/spawn/${spawnId}`)).json._tag).toBe("IllegalTransition")

    runner.ws.close()
    await agent.close()
    await api.close()
  })

  it("a runner that vanishes marks its spawns lost, and reconciles them when it comes back", async () => {
    const runnerToken = await broker.token("default", "runner")
    let runner = await fakeRunner(broker, runnerToken, "rt-2")
    const api = client(broker, broker.adminToken)
    const watcher = (await api.peers.register({ name: "lost-watcher" })).peer
    const ch = api.connect(watcher.id)
    const seen = record(ch)
    await opened(ch)
    const created = await api.spawn.create({ runner: "rt-2", command: "sleep", args: ["100"], requestedBy: watcher.id })
    const spawnId = created.spawn.id
    await runner.next("spawn")
    runner.send({ type: "spawn_status", spawnId, status: "running", pid: 99 })
    await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "running", "running")

    // Silence: the runner disappears without a word. After the stale timeout its spawn is lost.
    runner.ws.terminate()
    await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "lost", "lost")
    expect((await api.runners.list()).runners.find((r) => r.id === "rt-2")?.status).not.toBe("online")

    // It comes back and says it still runs the agent: the spawn is running again, not duplicated.
    seen.events.length = 0
    runner = await fakeRunner(broker, runnerToken, "rt-2", [{ spawnId, status: "running", pid: 99 }])
    const back = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "running", "reconciled")
    if (back.type !== "spawn_status") throw new Error("unreachable")
    expect(back.spawn.pid).toBe(99)
    expect((await api.spawn.get(spawnId)).spawn.status).toBe("running")
    expect((await api.spawn.list()).spawns.filter((s) => s.id === spawnId)).toHaveLength(1)
    expect((await api.runners.list()).runners.filter((r) => r.id === "rt-2")).toHaveLength(1)
    runner.ws.close()
    await api.close()
  })

  it("refuses spawn orders clearly: unknown runner 404, no runner with free labels 503, runner link without the runner role 403", async () => {
    expect((await http(broker, broker.adminToken, "POST", "/api/spawn", { runner: "nope", command: "x" })).json._tag).toBe("RunnerNotFound")
    const none = await http(broker, broker.adminToken, "POST", "/api/spawn", { labels: { gpu: "h100" }, command: "x" })
    expect(none.status).toBe(503)
    expect(none.json._tag).toBe("NoRunnerAvailable")
    const peerToken = await broker.token("default", "peer")
    await expect(fakeRunner(broker, peerToken, "rt-bad")).rejects.toThrow(/403/)
  })
})
