/**
 * Wake-ups carry small messages (docs/scaling.md): the instance holding a recipient's socket
 * pushes a small message from the notification without reading the table, and reads the
 * large ones (announced only). Mixed sizes fired without waiting through another instance
 * arrive once, in seq order, across every switch between the two paths; with the reader's
 * catch-up only (no LISTEN) the same sends still arrive, all read.
 */
import { rmSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { http, startBroker, tempHome, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"
import { INLINE_MESSAGE_BYTES } from "../src/PgGroupCommit.js"

const enabled = await pgEnabled("wake-ups carrying messages across instances")

const register = async (broker: TestBroker, token: string, name: string) => {
  const res = await http(broker, token, "POST", "/api/peers", { name })
  expect(res.status, res.text).toBe(201)
  return res.json.peer.id as string
}

const open = async (broker: TestBroker, token: string, peer: string) => {
  const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer}`), { authorization: `Bearer ${token}` })
  await socket.next((f) => f.type === "hello")
  return socket
}

/** 300 bodies, small and large (past the inline limit) in runs of random length. */
const bodies = () => {
  const out: Array<string> = []
  let large = false
  while (out.length < 300) {
    const run = 1 + Math.floor(Math.random() * 6)
    for (let k = 0; k < run && out.length < 300; k++) out.push(large ? `L${out.length} ${"x".repeat(INLINE_MESSAGE_BYTES)}` : `s${out.length}`)
    large = !large
  }
  return out
}

if (!enabled) {
  it("wake-ups carrying messages across instances: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("two in-process instances on one database", () => {
    let db: TestDatabase
    const home = tempHome()
    let a: TestBroker
    let b: TestBroker
    beforeAll(async () => {
      db = await createDatabase("a2a_inline")
      // One home (the tokens file) and one database: one broker to clients.
      a = await startBroker({ home, db: db.url })
      b = await startBroker({ home, db: db.url })
    })
    afterAll(async () => {
      await a?.close()
      await b?.close()
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it("small messages are pushed from the wake-up, large ones read; mixed, they arrive once and in order", async () => {
      const token = a.adminToken
      const sender = await register(a, token, "inline-sender")
      const receiver = await register(a, token, "inline-receiver")
      const out = await open(a, token, sender)
      const inbox = await open(b, token, receiver)
      const before = (await b.pumps())!
      const sent = bodies()
      sent.forEach((body, i) => out.send({ type: "send", to: receiver, body, ref: `r${i}` }))
      const got: Array<{ seq: number; body: string }> = []
      while (got.length < sent.length) got.push((await inbox.next((f) => f.type === "message", 30_000)).message)
      expect(got.map((m) => m.body)).toEqual(sent)
      expect(got.map((m) => m.seq)).toEqual(sent.map((_, i) => i + 1))
      const after = (await b.pumps())!
      const inline = after.inline - before.inline
      const read = after.read - before.read
      // Every message was pushed once by instance B, by one path or the other.
      expect(inline + read).toBe(sent.length)
      const small = sent.filter((s) => s.startsWith("s")).length
      // A large message is never inline; most small ones are (a small one right behind a read
      // in flight is read with it).
      expect(inline).toBeLessThanOrEqual(small)
      expect(inline).toBeGreaterThan(0)
      expect(read).toBeGreaterThanOrEqual(sent.length - small)
      // Nothing more arrives: no duplicate from the two paths.
      out.send({ type: "send", to: receiver, body: "last", ref: "last" })
      expect((await inbox.next((f) => f.type === "message", 30_000)).message.body).toBe("last")
      await Promise.all([out.close(), inbox.close()])
    })
  })
}
