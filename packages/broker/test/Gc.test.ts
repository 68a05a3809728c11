/**
 * GC with short timeouts against a real broker: silent peers go offline (peer_left), peers
 * with an open channel stay online, heartbeats bring peers back (peer_joined); a silent
 * runner goes stale and its spawns become `lost`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { http, startBroker, type TestBroker } from "./harness.js"
import { FrameSocket, pollUntil, wsUrl } from "./probe.js"

// The keep-alive touches open sockets every third of this: an event-loop stall longer than two
// thirds of it (seen at 300 ms on a machine at load 12) would let GC expire a connected peer.
const PEER_TIMEOUT = 1_000
const RUNNER_STALE_AFTER = 300

describe("GC with short timeouts", () => {
  let broker: TestBroker
  let token: string
  let runnerToken: string
  let observer: { id: string }
  let watch: FrameSocket
  let watchOpenedAt: number

  const register = async (name: string) => {
    const res = await http(broker, token, "POST", "/api/peers", { name })
    expect(res.status, res.text).toBe(201)
    return res.json.peer as { id: string; status: string; lastSeenAt: string }
  }
  const statusOf = async (id: string) => (await http(broker, token, "GET", `/api/peers/${id}`)).json.peer.status as string
  const event = (type: string, peerId: string) => (f: any) => f.type === "event" && f.event.type === type && f.event.peer?.id === peerId

  beforeAll(async () => {
    broker = await startBroker({ peerTimeout: PEER_TIMEOUT, gcInterval: 50, runnerStaleAfter: RUNNER_STALE_AFTER })
    token = await broker.scopedToken("gc", ["peer"], ["spawn:command"])
    runnerToken = await broker.token("gc", "runner")
    observer = await register("observer")
    watch = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${observer.id}`), { authorization: `Bearer ${token}` })
    await watch.next((f) => f.type === "hello")
    watchOpenedAt = Date.now()
  })
  afterAll(async () => {
    await watch?.close()
    await broker?.close()
  })

  it("a peer with no socket and no heartbeat goes offline after the timeout: peer_left reaches the others", async () => {
    const silent = await register("silent")
    const registeredAt = Date.now()
    expect(silent.status).toBe("online")
    const left = await watch.next(event("peer_left", silent.id), 5_000)
    const after = Date.now() - registeredAt
    expect(after).toBeGreaterThanOrEqual(PEER_TIMEOUT - 50) // not before the timeout (clock granularity aside)
    expect(left.event.peer.status).toBe("offline")
    expect(await statusOf(silent.id)).toBe("offline")
    const offline = (await http(broker, token, "GET", "/api/peers?status=offline")).json.peers.map((p: any) => p.id)
    expect(offline).toContain(silent.id)
    // Offline is not gone: it can still be messaged, the message waits in its inbox.
    expect((await http(broker, token, "POST", "/api/messages", { from: observer.id, to: "silent", body: "later" })).status).toBe(201)
  })

  it("a peer with an open channel stays online well past the timeout", async () => {
    // Await two more GC expiries of other peers, so the observer's socket has lived through several timeouts.
    for (const name of ["short-lived-1", "short-lived-2"]) {
      const peer = await register(name)
      await watch.next(event("peer_left", peer.id), 5_000)
    }
    expect(Date.now() - watchOpenedAt).toBeGreaterThan(2 * PEER_TIMEOUT)
    expect(watch.all(event("peer_left", observer.id))).toEqual([])
    expect(await statusOf(observer.id)).toBe("online")
    expect(watch.ws.readyState).toBe(watch.ws.OPEN)
  })

  it("a heartbeat brings an offline peer back (peer_joined), and without more it goes offline again", async () => {
    const peer = await register("comes-back")
    await watch.next(event("peer_left", peer.id), 5_000)
    expect(await statusOf(peer.id)).toBe("offline")

    const beat = await http(broker, token, "POST", `/api/peers/${peer.id}/heartbeat`)
    expect(beat.status, beat.text).toBe(200)
    expect(beat.json.peer.status).toBe("online")
    const joined = await watch.next(event("peer_joined", peer.id), 5_000)
    expect(joined.event.peer.status).toBe("online")

    // Without further heartbeats, GC takes it offline again.
    await watch.next(event("peer_left", peer.id), 5_000)
    expect(await statusOf(peer.id)).toBe("offline")
  })

  it("opening a channel brings a peer online; once the channel closes it goes offline after the timeout", async () => {
    const peer = await register("socketed")
    await watch.next(event("peer_left", peer.id), 5_000)
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer.id}`), { authorization: `Bearer ${token}` })
    const hello = await socket.next((f) => f.type === "hello")
    expect(hello.peer.status).toBe("online")
    await watch.next(event("peer_joined", peer.id), 5_000)
    await socket.close()
    const closedAt = Date.now()
    await watch.next(event("peer_left", peer.id), 5_000)
    expect(Date.now() - closedAt).toBeLessThan(5_000)
    expect(await statusOf(peer.id)).toBe("offline")
  })

  it("a silent runner goes stale and its dispatched spawn becomes lost", async () => {
    const runner = await FrameSocket.open(wsUrl(broker, "/ws/runner/r-silent"), { authorization: `Bearer ${runnerToken}` })
    runner.send({
      type: "hello",
      runner: { id: "r-silent", host: "test-host", labels: { pool: "gc" }, capacity: 2, presets: ["command"], version: "test" },
      agents: []
    })
    const listRunner = async () => (await http(broker, token, "GET", "/api/runners")).json.runners.find((r: any) => r.id === "r-silent")
    // No frame answers a hello: poll the registry until the runner shows up.
    const online = await pollUntil(async () => ((await listRunner())?.status === "online" ? await listRunner() : undefined), "the runner to attach")
    expect(online).toMatchObject({ host: "test-host", capacity: 2, labels: { pool: "gc" } })

    const created = await http(broker, token, "POST", "/api/spawn", { runner: "r-silent", command: "sleep", args: ["60"], requestedBy: observer.id })
    expect(created.status, created.text).toBe(202)
    const spawnId = created.json.spawn.id as string
    const order = await runner.next((f) => f.type === "spawn")
    expect(order.spawn.id).toBe(spawnId)
    runner.send({ type: "spawn_status", spawnId, status: "running", pid: 4242 })
    runner.send({ type: "heartbeat" })
    const spawnEvent = (status: string) => (f: any) => f.type === "event" && f.event.type === "spawn_status" && f.event.spawn.id === spawnId && f.event.spawn.status === status
    await watch.next(spawnEvent("running"), 5_000)
    const lastBeat = Date.now()

    // From here the runner says nothing. The requester's channel hears the spawn is lost ...
    const lost = await watch.next(spawnEvent("lost"), 5_000)
    expect(Date.now() - lastBeat).toBeGreaterThanOrEqual(RUNNER_STALE_AFTER - 50)
    expect(lost.event.spawn).toMatchObject({ runnerId: "r-silent", pid: 4242 })
    expect(lost.event.spawn.error).toMatch(/r-silent/)
    // ... and the registry shows the runner stale (its socket is still open).
    const stale = await pollUntil(async () => ((await listRunner())?.status === "stale" ? await listRunner() : undefined), "the runner to go stale", 5_000)
    expect(stale.id).toBe("r-silent")
    expect(runner.ws.readyState).toBe(runner.ws.OPEN)
    expect((await http(broker, token, "GET", `/api/spawn/${spawnId}`)).json.spawn.status).toBe("lost")

    await runner.close()
  })
})
