import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, store, type TestBroker } from "./harness.js"
import { opened, record } from "./support.js"

describe("messaging through a real broker", () => {
  let broker: TestBroker
  beforeAll(async () => {
    broker = await startBroker()
  })
  afterAll(() => broker.close())

  it("a message from A reaches B's open channel, and B's reply reaches A in the same thread", async () => {
    const api = client(broker, broker.adminToken)
    const a = (await api.peers.register({ name: "msg-a", agent: "claude-code", cwd: "/repo" })).peer
    const b = (await api.peers.register({ name: "msg-b" })).peer
    const chA = api.connect(a.id, { autoAck: true })
    const chB = api.connect(b.id, { autoAck: true })
    const atA = record(chA)
    const atB = record(chB)
    await Promise.all([opened(chA), opened(chB)])

    const sent = await api.messages.send({ from: a.id, to: "msg-b", body: "can you review parser.ts?" })
    expect(sent.recipients).toEqual([b.id])
    const got = await atB.message((m) => m.id === sent.message.id)
    expect(got).toMatchObject({ from: a.id, fromName: "msg-a", to: b.id, body: "can you review parser.ts?", threadId: sent.message.id, seq: 1 })

    // The reply goes over B's channel (`send` frame), sender implied by the channel.
    const reply = await chB.send({ to: a.id, body: "looks good", replyTo: got.id })
    const back = await atA.message((m) => m.id === reply.message.id)
    expect(back).toMatchObject({ from: b.id, to: a.id, body: "looks good", replyTo: got.id, threadId: sent.message.id })
    await api.close()
  })

  it("a team message reaches every member but the sender, and nobody else", async () => {
    const api = client(broker, broker.adminToken)
    const peers = await Promise.all(["t-1", "t-2", "t-3"].map((name) => api.peers.register({ name, teams: ["crew"] }).then((r) => r.peer)))
    const outsider = (await api.peers.register({ name: "t-out" })).peer
    const channels = [...peers, outsider].map((p) => api.connect(p.id, { autoAck: true }))
    const seen = channels.map(record)
    await Promise.all(channels.map(opened))

    const sent = await api.messages.send({ from: peers[0]!.id, team: "crew", body: "standup" })
    expect([...sent.recipients].sort()).toEqual([peers[1]!.id, peers[2]!.id].sort())
    const received = await Promise.all([seen[1]!, seen[2]!].map((s) => s.message((m) => m.id === sent.message.id)))
    for (const m of received) expect(m).toMatchObject({ team: "crew", from: peers[0]!.id, body: "standup" })
    // A later direct message to the sender and the outsider proves they were not skipped by accident.
    const probe = await api.messages.send({ from: peers[1]!.id, to: outsider.id, body: "probe" })
    await seen[3]!.message((m) => m.id === probe.message.id)
    expect(seen[0]!.messages.some((m) => m.id === sent.message.id)).toBe(false)
    expect(seen[3]!.messages.some((m) => m.id === sent.message.id)).toBe(false)
    await api.close()
  })

  it("re-registering the same name returns the same id and the same inbox", async () => {
    const api = client(broker, broker.adminToken)
    const first = await api.peers.register({ name: "resumer", summary: "v1" })
    const sender = (await api.peers.register({ name: "resumer-friend" })).peer
    await api.messages.send({ from: sender.id, to: first.peer.id, body: "kept" })
    const again = await http(broker, broker.adminToken, "POST", "/api/peers", { name: "resumer", summary: "v2" })
    expect(again.status).toBe(200)
    expect(again.json.resumed).toBe(true)
    expect(again.json.peer.id).toBe(first.peer.id)
    expect(again.json.peer.summary).toBe("v2")
    expect(again.json.peer.registeredAt).toBe(first.peer.registeredAt)
    const inbox = await api.inbox.read(first.peer.id)
    expect(inbox.messages.map((m) => m.body)).toEqual(["kept"])
    await api.close()
  })

  it("long-polls the inbox: a waiting GET returns as soon as a message is appended", async () => {
    const api = client(broker, broker.adminToken)
    const a = (await api.peers.register({ name: "poll-a" })).peer
    const b = (await api.peers.register({ name: "poll-b" })).peer
    const started = Date.now()
    const waiting = http(broker, broker.adminToken, "GET", `/api/peers/${b.id}/inbox?wait=30`)
    // Send once the long-poll is parked: the broker answers the GET only after the append.
    await new Promise((r) => setTimeout(r, 50))
    const sent = await api.messages.send({ from: a.id, to: b.id, body: "wake up" })
    const page = await waiting
    expect(page.status).toBe(200)
    expect(page.json.messages.map((m: { id: string }) => m.id)).toEqual([sent.message.id])
    expect(Date.now() - started).toBeLessThan(10_000)
    // Ack hides it; an empty long-poll with wait=0 returns at once.
    expect((await api.inbox.ack(b.id, page.json.messages[0].seq)).cursor).toBe(1)
    expect((await api.inbox.read(b.id)).messages).toEqual([])
    await api.close()
  })

  it("announces presence: peer_joined and peer_updated reach other peers of the tenant", async () => {
    const api = client(broker, broker.adminToken)
    const watcher = (await api.peers.register({ name: "watcher" })).peer
    const ch = api.connect(watcher.id)
    const seen = record(ch)
    await opened(ch)
    const newcomer = (await api.peers.register({ name: "newcomer" })).peer
    await seen.event((e) => e.type === "peer_joined" && e.peer.id === newcomer.id, "peer_joined")
    await api.peers.update(newcomer.id, { summary: "working on the lexer" })
    const updated = await seen.event((e) => e.type === "peer_updated" && e.peer.id === newcomer.id, "peer_updated")
    expect(updated.type === "peer_updated" && updated.peer.summary).toBe("working on the lexer")
    await api.peers.unregister(newcomer.id)
    await seen.event((e) => e.type === "peer_left" && e.peer.id === newcomer.id, "peer_left")
    expect((await http(broker, broker.adminToken, "GET", `/api/peers/${newcomer.id}`)).status).toBe(404)
    await api.close()
  })

  it("serves health and the OpenAPI document openly, and Prometheus metrics with a token", async () => {
    const health = await http(broker, undefined, "GET", "/healthz")
    expect(health.status).toBe(200)
    expect(health.json).toMatchObject({ status: "ok" })
    const doc = await http(broker, undefined, "GET", "/openapi.json")
    expect(doc.status).toBe(200)
    expect(Object.keys(doc.json.paths)).toEqual(expect.arrayContaining(["/api/peers", "/api/messages", "/ws/broker/peer/{id}"]))
    expect((await http(broker, undefined, "GET", "/metrics")).status).toBe(401)

    const api = client(broker, broker.adminToken)
    const a = (await api.peers.register({ name: "metrics-a" })).peer
    const b = (await api.peers.register({ name: "metrics-b" })).peer
    const ch = api.connect(b.id)
    const seen = record(ch)
    await opened(ch)
    const sent = await api.messages.send({ from: a.id, to: b.id, body: "count me" })
    await seen.message((m) => m.id === sent.message.id)
    const metrics = await http(broker, broker.adminToken, "GET", "/metrics")
    expect(metrics.status).toBe(200)
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics.text)?.[1])
    expect(value("a2a_messages_in_total")).toBeGreaterThanOrEqual(1)
    expect(value("a2a_messages_out_total")).toBeGreaterThanOrEqual(1)
    expect(value("a2a_delivery_latency_ms_count")).toBeGreaterThanOrEqual(1)
    expect(value("a2a_ws_connections")).toBeGreaterThanOrEqual(1)
    expect(value("a2a_peers_online")).toBeGreaterThanOrEqual(2)
    expect(value("a2a_inbox_depth")).toBeGreaterThanOrEqual(1)
    expect(metrics.text).toContain('a2a_http_requests_total{status="201"}')
    await api.close()
  })

  it("keeps the order of sends on one socket: 200 frames fired without waiting arrive in that order", async () => {
    const api = client(broker, broker.adminToken)
    const a = (await api.peers.register({ name: "order-a" })).peer
    const b = (await api.peers.register({ name: "order-b" })).peer
    const chA = api.connect(a.id)
    const chB = api.connect(b.id, { autoAck: true })
    const atB = record(chB)
    await Promise.all([opened(chA), opened(chB)])
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => chA.send({ to: b.id, body: `n${i}` })))
    const got = await atB.count(200)
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: 200 }, (_, i) => `n${i}`))
    expect(results.map((r) => r.message.seq)).toEqual(got.map((m) => m.seq))
    await api.close()
  })

  // `none`: the socket is not offered the tenant's presence, but still the change naming its own peer.
  it.each(["all", "none"])("closes the channel of an unregistered peer with 4001 (presence=%s)", async (presence) => {
    const { default: WebSocket } = await import("ws")
    const api = client(broker, broker.adminToken)
    const gone = (await api.peers.register({ name: `to-be-gone-${presence}` })).peer
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/broker/peer/${gone.id}?presence=${presence}`, { headers: { authorization: `Bearer ${broker.adminToken}` } })
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)))
    await new Promise<void>((resolve) => ws.on("message", (d) => JSON.parse(String(d)).type === "hello" && resolve()))
    await api.peers.unregister(gone.id)
    expect(await closed).toBe(4001)
    await api.close()
  })
  it("cuts off a client that stops reading at once (4008 queued, then the connection dropped) once 16 MiB are left unread; other sockets keep going and the inbox keeps everything", async () => {
    const { default: WebSocket } = await import("ws")
    const api = client(broker, broker.adminToken)
    const a = (await api.peers.register({ name: "slow-a" })).peer
    const slow = (await api.peers.register({ name: "slow-b" })).peer
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/broker/peer/${slow.id}`, { headers: { authorization: `Bearer ${broker.adminToken}` } })
    const socket = () => (ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)))
    let received = 0
    ws.on("message", () => received++)
    await new Promise<void>((resolve) => ws.once("message", () => resolve()))
    // Stop reading: what the broker writes from now on piles up in the kernel, then in its send buffer.
    socket().pause()
    const watcher = (await api.peers.register({ name: "slow-watcher" })).peer
    const chW = api.connect(watcher.id, { autoAck: true })
    const atW = record(chW)
    await opened(chW)

    const socketsOpen = (m: { text: string }) => Number(/^a2a_ws_connections (\S+)$/m.exec(m.text)?.[1])
    const openBefore = socketsOpen(await http(broker, broker.adminToken, "GET", "/metrics"))
    // 30 MB: more than the 16 MiB limit plus what the kernel's socket buffers hold.
    const SENDS = 120
    const body = "x".repeat(250_000)
    for (let i = 0; i < SENDS; i += 10) await Promise.all(Array.from({ length: 10 }, () => api.messages.send({ from: a.id, to: slow.id, body })))
    // Cut at once, while the client still reads nothing (no close handshake is awaited): the
    // broker's open channel sockets drop by one (on SQLite the peer is offline already; with a
    // shared PostgreSQL store GC decides that, as another instance may hold a socket of it).
    const deadline = Date.now() + 30_000
    while (socketsOpen(await http(broker, broker.adminToken, "GET", "/metrics")) !== openBefore - 1) {
      if (Date.now() > deadline) throw new Error("the slow socket was not cut while its client was not reading")
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    if (store() === "sqlite") expect((await api.peers.get(slow.id)).peer.status).toBe("offline")
    // Reading again drains what the kernel held, then the connection ends: the rest was never written.
    socket().resume()
    expect([4008, 1006]).toContain(await closed)
    expect(received - 1).toBeGreaterThan(0)
    expect(received - 1).toBeLessThan(SENDS)
    // Nothing was lost: the inbox holds every message, and another peer's channel still works.
    expect((await api.inbox.read(slow.id, { after: SENDS - 1 })).messages.map((m) => m.seq)).toEqual([SENDS])
    const probe = await api.messages.send({ from: a.id, to: watcher.id, body: "still here" })
    await atW.message((m) => m.id === probe.message.id)
    await api.close()
  }, 60_000)
})
