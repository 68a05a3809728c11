import WebSocket from "ws"
import { rmSync } from "node:fs"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { client, http, startBrokerProcess, tempHome, type BrokerProcess } from "./harness.js"
import { opened, record } from "./support.js"

// These run the built CLI as a child process on a SQLite file, so the broker can be restarted
// (cleanly and with SIGKILL) on the same database and home, as in production.
const homes: Array<string> = []
const children: Array<BrokerProcess> = []
afterAll(() => {
  for (const c of children) c.child.kill("SIGKILL")
  for (const h of homes) rmSync(h, { recursive: true, force: true })
})

const start = async (home: string, port?: number) => {
  const broker = await startBrokerProcess(home, port === undefined ? [] : ["--port", String(port)])
  children.push(broker)
  return broker
}
const stop = async (broker: BrokerProcess, signal: NodeJS.Signals = "SIGTERM") => {
  broker.child.kill(signal)
  await broker.exited
}
const adminToken = (home: string) => readFileSync(join(home, "broker.token"), "utf8").trim()

describe("durability on SQLite", () => {
  it("delivers messages sent while offline on connect, unacked ones again after a restart, acked ones never again, in order", async () => {
    const home = tempHome()
    homes.push(home)
    let broker = await start(home)
    const token = adminToken(home)
    let api = client(broker, token)
    const a = (await api.peers.register({ name: "dur-a" })).peer
    const b = (await api.peers.register({ name: "dur-b" })).peer

    // B is offline: nothing listens. Three messages wait in its inbox.
    const sent: Array<string> = []
    for (const body of ["one", "two", "three"]) sent.push((await api.messages.send({ from: a.id, to: b.id, body })).message.id)

    // B connects: replay in order. It acks only the first.
    let ch = api.connect(b.id)
    let seen = record(ch)
    const replay = await seen.count(3)
    expect(replay.map((m) => m.id)).toEqual(sent)
    expect(replay.map((m) => m.seq)).toEqual([1, 2, 3])
    await ch.ack(1)
    await api.close()

    // Restart the broker on the same database (clean stop).
    await stop(broker)
    broker = await start(home, broker.port)
    api = client(broker, token)
    sent.push((await api.messages.send({ from: a.id, to: b.id, body: "four" })).message.id)

    ch = api.connect(b.id)
    seen = record(ch)
    const afterRestart = await seen.count(3)
    expect(afterRestart.map((m) => m.id)).toEqual(sent.slice(1))
    expect(afterRestart.map((m) => m.seq)).toEqual([2, 3, 4])
    await ch.ack(4)
    await api.close()

    // Once everything is acked, a reconnect replays nothing; a new message gets seq 5.
    api = client(broker, token)
    ch = api.connect(b.id)
    seen = record(ch)
    await opened(ch)
    const five = await api.messages.send({ from: a.id, to: b.id, body: "five" })
    const next = await seen.message(() => true)
    expect(next.id).toBe(five.message.id)
    expect(next.seq).toBe(5)
    expect(seen.messages.length).toBe(1)
    await api.close()
    await stop(broker)
  })

  it("SIGKILL while 1,000 messages are sent and acked: every 201 is in the inbox or acked, order kept, nothing re-delivered below the cursor", async () => {
    const home = tempHome()
    homes.push(home)
    let broker = await start(home)
    const token = adminToken(home)
    const api = client(broker, token)
    const sender = (await api.peers.register({ name: "kill-sender" })).peer
    const receiver = (await api.peers.register({ name: "kill-receiver" })).peer
    await api.close()

    // The receiver acks every message it gets over a raw socket.
    const received: Array<{ id: string; seq: number }> = []
    const connect = (url: string) =>
      new Promise<WebSocket>((resolve) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}/ws/broker/peer/${receiver.id}`, { headers: { authorization: `Bearer ${token}` } })
        ws.on("message", (data) => {
          const frame = JSON.parse(String(data))
          if (frame.type === "hello") resolve(ws)
          if (frame.type === "message") {
            received.push({ id: frame.message.id, seq: frame.message.seq })
            ws.send(JSON.stringify({ type: "ack", upTo: frame.message.seq }))
          }
        })
        ws.on("error", () => undefined)
      })
    const ws = await connect(broker.url)

    // Send 1,000 messages, 8 in flight; kill -9 the broker after 400 have been accepted.
    const accepted: Array<string> = []
    let next = 0
    let killed = false
    const worker = async () => {
      while (next < 1000) {
        const i = next++
        try {
          const res = await http(broker, token, "POST", "/api/messages", { from: sender.id, to: receiver.id, body: `m${i}` })
          if (res.status === 201) accepted.push(res.json.message.id)
        } catch {
          // connection refused or reset: the broker is dead; this send did not get a 201
        }
        if (!killed && accepted.length >= 400) {
          killed = true
          broker.child.kill("SIGKILL")
        }
      }
    }
    await Promise.all(Array.from({ length: 8 }, worker))
    await broker.exited
    ws.terminate()
    expect(killed).toBe(true)
    expect(accepted.length).toBeGreaterThanOrEqual(400)
    expect(accepted.length).toBeLessThan(1000)

    const beforeKill = [...received]
    broker = await start(home, broker.port)
    const page = await http(broker, token, "GET", `/api/peers/${receiver.id}/inbox?limit=1000`)
    expect(page.status).toBe(200)
    const cursor: number = page.json.cursor
    const unacked: Array<{ id: string; seq: number }> = page.json.messages

    // Every accepted message is either acked (delivered with seq ≤ cursor) or still in the inbox.
    const ackedIds = new Set(beforeKill.filter((m) => m.seq <= cursor).map((m) => m.id))
    const pendingIds = new Set(unacked.map((m) => m.id))
    const lost = accepted.filter((id) => !ackedIds.has(id) && !pendingIds.has(id))
    expect(lost).toEqual([])
    // Nothing acked is pending again (no message acked twice), and seqs are gap-free and ordered.
    expect([...pendingIds].filter((id) => ackedIds.has(id))).toEqual([])
    expect(unacked.every((m) => m.seq > cursor)).toBe(true)
    const all = [...beforeKill.filter((m) => m.seq <= cursor), ...unacked].map((m) => m.seq)
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1))

    // The receiver reconnects and gets exactly the pending ones, in order, once.
    received.length = 0
    const again = await connect(broker.url)
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`only ${received.length}/${unacked.length} replayed`)), 10_000)
      const check = setInterval(() => {
        if (received.length >= unacked.length) {
          clearInterval(check)
          clearTimeout(deadline)
          resolve()
        }
      }, 5)
    })
    expect(received.map((m) => m.id)).toEqual(unacked.map((m) => m.id))
    again.close()
    await stop(broker)
  })
})
