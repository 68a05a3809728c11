/**
 * Group commit of the SQLite store: appends and acks that arrive together are written in one
 * transaction. Nothing may be lost, duplicated or reordered by it: every accepted send (201 /
 * `sent`) is in the inbox under the seq it was answered with, seqs have no gaps, the sends of
 * one socket keep their order, a full inbox refuses exactly the sends past its capacity, and
 * acks only move the cursor forward.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { client, http, startBroker, tempHome, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"

const register = async (broker: TestBroker, name: string, teams?: Array<string>) => {
  const res = await http(broker, broker.adminToken, "POST", "/api/peers", { name, ...(teams ? { teams } : {}) })
  expect(res.status, res.text).toBe(201)
  return res.json.peer.id as string
}

/** Every message of a peer's inbox (unacked), paging through it. */
const inboxOf = async (broker: TestBroker, peer: string) => {
  const all: Array<{ id: string; seq: number; body: string; from: string }> = []
  while (true) {
    const after = all.length === 0 ? 0 : all[all.length - 1]!.seq
    const page = await http(broker, broker.adminToken, "GET", `/api/peers/${peer}/inbox?after=${after}&limit=500`)
    expect(page.status, page.text).toBe(200)
    all.push(...page.json.messages)
    if (page.json.messages.length < 500) return all
  }
}

describe("group commit (SQLite file)", () => {
  let broker: TestBroker
  const home = tempHome()
  beforeAll(async () => {
    broker = await startBroker({ home, db: join(home, "broker.db") })
  })
  afterAll(async () => {
    await broker.close()
    rmSync(home, { recursive: true, force: true })
  })

  it("many concurrent sends over sockets and HTTP: every answered message is in the inbox under its seq, no gaps, per-socket order kept", async () => {
    const target = await register(broker, "gc-target")
    const senders = await Promise.all(["gc-s1", "gc-s2", "gc-s3", "gc-s4"].map((name) => register(broker, name)))
    const httpSender = await register(broker, "gc-http")
    const sockets = await Promise.all(senders.map((id) => FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${id}`), { authorization: `Bearer ${broker.adminToken}` })))
    await Promise.all(sockets.map((s) => s.next((f) => f.type === "hello")))

    const PER_SOCKET = 150
    const HTTP_SENDS = 100
    // Fire everything at once: socket frames without waiting for answers, HTTP requests in parallel.
    for (let i = 0; i < PER_SOCKET; i++) sockets.forEach((s, k) => s.send({ type: "send", to: target, body: `s${k}-${i}`, ref: `${k}-${i}` }))
    const viaHttp = await Promise.all(
      Array.from({ length: HTTP_SENDS }, (_, i) => http(broker, broker.adminToken, "POST", "/api/messages", { from: httpSender, to: target, body: `h-${i}` }))
    )
    for (const res of viaHttp) expect(res.status, res.text).toBe(201)
    const answers = await Promise.all(
      sockets.map(async (s) => {
        const got: Array<any> = []
        for (let i = 0; i < PER_SOCKET; i++) got.push(await s.next((f) => f.type === "sent" || f.type === "error"))
        return got
      })
    )
    for (const got of answers) for (const frame of got) expect(frame.type, JSON.stringify(frame)).toBe("sent")

    const answered = [...answers.flat().map((f) => f.message), ...viaHttp.map((r) => r.json.message)] as Array<{ id: string; seq: number; body: string }>
    const total = sockets.length * PER_SOCKET + HTTP_SENDS
    expect(answered).toHaveLength(total)
    const inbox = await inboxOf(broker, target)
    // Exactly the answered messages, seqs 1..N without gaps or duplicates.
    expect(inbox.map((m) => m.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    const bySeq = new Map(inbox.map((m) => [m.seq, m]))
    for (const m of answered) expect(bySeq.get(m.seq)).toMatchObject({ id: m.id, body: m.body })
    // Each socket's sends are in the inbox in the order they were sent (and answered in that order).
    sockets.forEach((_, k) => {
      const mine = inbox.filter((m) => m.body.startsWith(`s${k}-`)).map((m) => m.body)
      expect(mine).toEqual(Array.from({ length: PER_SOCKET }, (_, i) => `s${k}-${i}`))
      expect(answers[k]!.map((f) => f.ref)).toEqual(Array.from({ length: PER_SOCKET }, (_, i) => `${k}-${i}`))
    })
    await Promise.all(sockets.map((s) => s.close()))
  }, 60_000)

  it("team messages fanned out in concurrent batches: every member has every message once, in one order per member", async () => {
    const members = await Promise.all(["gc-t1", "gc-t2", "gc-t3"].map((name) => register(broker, name, ["gc-crew"])))
    const sends = await Promise.all(
      Array.from({ length: 60 }, (_, i) => http(broker, broker.adminToken, "POST", "/api/messages", { from: members[i % 3], team: "gc-crew", body: `t-${i}` }))
    )
    for (const res of sends) expect(res.status, res.text).toBe(201)
    for (const member of members) {
      const inbox = await inboxOf(broker, member)
      expect(inbox.map((m) => m.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
      const expected = sends.filter((r) => r.json.message.from !== member).map((r) => r.json.message.id).sort()
      expect(inbox.map((m) => m.id).sort()).toEqual(expected)
    }
  }, 60_000)

  it("concurrent acks only move the cursor forward, coalesce, and answer the cursor they reached", async () => {
    const a = await register(broker, "gc-ack-a")
    const b = await register(broker, "gc-ack-b")
    const api = client(broker, broker.adminToken)
    for (let i = 0; i < 20; i++) await api.messages.send({ from: a, to: b, body: `m${i}` })
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${b}`), { authorization: `Bearer ${broker.adminToken}` })
    await socket.next((f) => f.type === "hello")
    // Out of order and beyond the end: the cursor never goes back and stops at the last seq.
    const upTos = [5, 3, 12, 7, 12, 25, 1]
    for (const upTo of upTos) socket.send({ type: "ack", upTo })
    // Acks arriving while one commits merge into one cursor move: one `acked` may answer several
    // acks, each with the cursor its commit reached (the running maximum, clamped to the last seq).
    const acked: Array<number> = []
    while (acked[acked.length - 1] !== 20) acked.push((await socket.next((f) => f.type === "acked")).cursor)
    expect(acked.length).toBeLessThanOrEqual(upTos.length)
    expect(acked[0]).toBe(5)
    for (const cursor of acked) expect([5, 12, 20]).toContain(cursor)
    expect(acked).toEqual([...acked].sort((x, y) => x - y))
    expect((await api.inbox.read(b)).cursor).toBe(20)
    await socket.close()
    await api.close()
  }, 30_000)
})

describe("group commit with a small inbox capacity", () => {
  let broker: TestBroker
  beforeAll(async () => {
    broker = await startBroker({ inboxCapacity: 5 })
  })
  afterAll(() => broker.close())

  it("sends racing for the last places: exactly the capacity is accepted (201), the rest are InboxFull (429); acks make room again", async () => {
    const a = await register(broker, "cap-a")
    const b = await register(broker, "cap-b")
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => http(broker, broker.adminToken, "POST", "/api/messages", { from: a, to: b, body: `c${i}` })))
    const accepted = results.filter((r) => r.status === 201)
    const refused = results.filter((r) => r.status !== 201)
    expect(accepted).toHaveLength(5)
    for (const r of refused) expect(r.json).toMatchObject({ _tag: "InboxFull", peer: b, capacity: 5 })
    expect(refused.every((r) => r.status === 429)).toBe(true)
    const inbox = await inboxOf(broker, b)
    expect(inbox.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5])
    expect(inbox.map((m) => m.id).sort()).toEqual(accepted.map((r) => r.json.message.id).sort())

    // Ack two: exactly two more fit, with the next seqs.
    expect((await http(broker, broker.adminToken, "POST", `/api/peers/${b}/inbox/ack`, { upTo: 2 })).json).toEqual({ cursor: 2 })
    const again = await Promise.all(Array.from({ length: 4 }, (_, i) => http(broker, broker.adminToken, "POST", "/api/messages", { from: a, to: b, body: `d${i}` })))
    expect(again.filter((r) => r.status === 201).map((r) => r.json.message.seq).sort()).toEqual([6, 7])
    expect(again.filter((r) => r.status === 429)).toHaveLength(2)
  }, 30_000)
})
