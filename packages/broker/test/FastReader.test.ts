/**
 * A reader that acks every message keeps up with many senders: acks of one socket are coalesced
 * into one cursor move per commit (the broker) and into one frame per turn of the event loop
 * (the SDK), so the unacked gap never reaches the inbox cap. Before, each ack waited for its own
 * commit behind the socket's other frames; acks advanced at ~1 per commit while 16 senders
 * sharing commits went faster, and senders were refused with `InboxFull`.
 *
 * The inbox cap is lowered to 256 so a lagging ack path shows up within a few dozen commits of load, however slow the machine (16 senders with one send in flight each keep the gap of a reader that keeps up far below it).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { client, http, startBroker, store, tempHome, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"

const SENDERS = 16
const SEND_FOR_MS = 10_000

const register = async (broker: TestBroker, name: string) => {
  const res = await http(broker, broker.adminToken, "POST", "/api/peers", { name })
  expect(res.status, res.text).toBe(201)
  return res.json.peer.id as string
}

/** Polls `check` until it holds, failing after `timeoutMs` with `what`. */
const until = async (check: () => boolean, timeoutMs: number, what: () => string) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe("a fast reader is never refused", () => {
  let broker: TestBroker
  const home = tempHome()
  beforeAll(async () => {
    // SQLite in a file here; PostgreSQL (where a socket's sends are pipelined) via pg/FastReader.test.ts.
    broker = await startBroker({ home, ...(store() === "postgres" ? {} : { db: join(home, "broker.db") }), inboxCapacity: 256 })
  })
  afterAll(async () => {
    await broker.close()
    rmSync(home, { recursive: true, force: true })
  })

  it.each(["the SDK channel", "a raw socket sending one ack frame per message"])("one receiver (%s) acking every message, 16 senders (8 over HTTP, 8 over channels) flat out for 10 s: zero InboxFull, every message once", async (kind) => {
    const receiver = await register(broker, `fast-reader-${kind.length}`)
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => register(broker, `flood-${kind.length}-${i}`)))
    const sdk = client(broker, broker.adminToken)
    let raw: FrameSocket | undefined
    try {
      const received = new Map<string, number>()
      let lastSeq = 0
      let outOfOrder = 0
      const onMessage = (message: { body: string; seq: number }) => {
        received.set(message.body, (received.get(message.body) ?? 0) + 1)
        if (message.seq <= lastSeq) outOfOrder++
        lastSeq = message.seq
      }
      if (kind === "the SDK channel") {
        const inbox = sdk.connect(receiver)
        inbox.on("message", (message) => {
          onMessage(message)
          void inbox.ack(message.seq)
        })
        await new Promise<void>((resolve) => inbox.on("open", () => resolve()))
      } else {
        raw = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${receiver}`), { authorization: `Bearer ${broker.adminToken}` })
        const socket = raw
        socket.ws.on("message", (data) => {
          const frame = JSON.parse(String(data))
          if (frame.type !== "message") return
          onMessage(frame.message)
          socket.ws.send(JSON.stringify({ type: "ack", upTo: frame.message.seq }))
        })
        await socket.next((f) => f.type === "hello")
      }

      const channels = senders.slice(0, SENDERS / 2).map((id) => sdk.connect(id))
      const sent: Array<string> = []
      const refusals: Array<string> = []
      const end = Date.now() + SEND_FOR_MS
      await Promise.all(
        senders.map(async (from, i) => {
          const channel = i < SENDERS / 2 ? channels[i]! : undefined
          for (let n = 0; Date.now() < end; n++) {
            const body = `${i}-${n}`
            try {
              if (channel !== undefined) await channel.send({ to: receiver, body })
              else await sdk.messages.send({ from, to: receiver, body })
              sent.push(body)
            } catch (error) {
              refusals.push(`${body}: ${(error as Error).message}`)
            }
          }
        })
      )
      expect(refusals, refusals.slice(0, 5).join("\n")).toEqual([])
      expect(sent.length).toBeGreaterThan(SENDERS)

      // Every accepted message arrives exactly once, in seq order, and the broker's cursor reaches the last.
      await until(() => received.size >= sent.length, 60_000, () => `${received.size} of ${sent.length} received`)
      expect(received.size).toBe(sent.length)
      for (const body of sent) expect(received.get(body), body).toBe(1)
      expect(outOfOrder).toBe(0)
      let depth = -1
      const deadline = Date.now() + 30_000
      while (depth !== 0 && Date.now() < deadline) {
        const res = await http(broker, broker.adminToken, "GET", `/api/peers/${receiver}/inbox?limit=1`)
        depth = res.json.messages.length
        if (depth !== 0) await new Promise((r) => setTimeout(r, 50))
      }
      expect(depth, "the receiver's acks reached the broker").toBe(0)
    } finally {
      raw?.ws.close()
      await sdk.close()
    }
  }, 120_000)
})
