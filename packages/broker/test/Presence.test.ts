/**
 * Presence follows sockets (a real broker, a peer timeout far beyond the test): a peer with two
 * sockets stays online while one is open, goes offline the moment its last closes (one
 * `peers_changed` to a batched watcher, `peer_left` to a legacy one), and resumes its id by name.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { http, startBroker, store, tempHome, type TestBroker } from "./harness.js"
import { FrameSocket, pollUntil, wsRefusal, wsUrl } from "./probe.js"

describe("presence follows sockets", () => {
  let broker: TestBroker
  let token: string
  beforeAll(async () => {
    broker = await startBroker({ peerTimeout: 600_000 })
    token = await broker.token("ghosts", "peer")
  })
  afterAll(() => broker?.close())

  const open = async (id: string, query = "") => {
    const s = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${id}${query}`), { authorization: `Bearer ${token}` })
    await s.next((f) => f.type === "hello")
    return s
  }
  const status = async (id: string) => (await http(broker, token, "GET", `/api/peers/${id}`)).json.peer.status

  it("offline when the last socket closes, not before; events to both kinds of watcher; the name resumes the same peer", async () => {
    const reg = async (name: string) => (await http(broker, token, "POST", "/api/peers", { name })).json.peer
    const [batched, legacy, ghost] = [await reg("w-batched"), await reg("w-legacy"), await reg("ghost")]
    const wb = await open(batched.id, "?presence=batched")
    const wl = await open(legacy.id)
    const a = await open(ghost.id, "?presence=none")
    const b = await open(ghost.id, "?presence=none")
    await a.close()
    // Still online through its other socket (a round trip on that socket proves the close was handled).
    b.send({ type: "ack", upTo: 0 })
    await b.next((f) => f.type === "acked")
    expect(await status(ghost.id)).toBe("online")
    await b.close()
    await pollUntil(async () => ((await status(ghost.id)) === "offline" ? true : undefined), "the ghost offline", 10_000)
    const changed = await wb.next((f) => f.type === "event" && f.event.type === "peers_changed" && f.event.left.some((p: any) => p.id === ghost.id), 10_000)
    expect(changed.event.left.find((p: any) => p.id === ghost.id).status).toBe("offline")
    await wl.next((f) => f.type === "event" && f.event.type === "peer_left" && f.event.peer.id === ghost.id, 10_000)
    // A new session with the same name and credentials resumes the same peer (not ghost-2).
    const again = await http(broker, token, "POST", "/api/peers", { name: "ghost" })
    expect(again.json.peer).toMatchObject({ id: ghost.id, name: "ghost", status: "online" })
    await wb.close()
    await wl.close()
  }, 60_000)

  it("?presence= must be all, batched or none", async () => {
    const peer = (await http(broker, token, "POST", "/api/peers", { name: "picky" })).json.peer
    const res = await wsRefusal(wsUrl(broker, `/ws/broker/peer/${peer.id}?presence=sometimes`), { authorization: `Bearer ${token}` })
    expect(res.status).toBe(400)
    expect(res.body._tag).toBe("InvalidRequest")
  })
})

// With the SQLite store a peer goes offline when its last socket closes (docs/broker.md); with a
// shared (PostgreSQL) store the GC decides, so this case is SQLite's.
describe.runIf(store() === "sqlite")("sockets closing as the broker stops", () => {
  it("peers whose clients close their sockets just before the broker stops are offline after its restart", async () => {
    const home = tempHome()
    const db = join(home, "broker.db")
    try {
      const first = await startBroker({ home, db, peerTimeout: 600_000 })
      const token = await first.token("closing", "peer")
      const peers: Array<string> = []
      const sockets: Array<FrameSocket> = []
      for (let i = 0; i < 100; i++) {
        const peer = (await http(first, token, "POST", "/api/peers", { name: `closing-${i}` })).json.peer
        peers.push(peer.id)
        const socket = await FrameSocket.open(wsUrl(first, `/ws/broker/peer/${peer.id}?presence=none`), { authorization: `Bearer ${token}` })
        await socket.next((f) => f.type === "hello")
        sockets.push(socket)
      }
      // Every client closes; once the broker has answered the first close, it stops while the
      // others are being taken offline. A session ended by its client counts as much as one the
      // shutdown ends: the store closes after both.
      for (const socket of sockets) socket.ws.close(1000)
      await sockets[0]!.closed
      await first.close()
      const second = await startBroker({ home, db, peerTimeout: 600_000 })
      try {
        const listed = (await http(second, token, "GET", "/api/peers")).json.peers as Array<{ id: string; status: string }>
        const online = listed.filter((p) => peers.includes(p.id) && p.status !== "offline").map((p) => p.id)
        expect(listed.filter((p) => peers.includes(p.id))).toHaveLength(100)
        expect(online).toEqual([])
      } finally {
        await second.close()
      }
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  }, 60_000)
})
