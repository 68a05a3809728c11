/**
 * The frames of one socket are answered in frame order, whatever each frame is (a send, a send
 * refused before its append, a bad frame, a team send), and a socket's sends commit in frame
 * order. On PostgreSQL the broker pipelines a socket's sends (the next frame is handled once a
 * send is queued for its commit, docs/protocol.md "Pipelined sends"): frames fired without
 * waiting share commits instead of paying one transaction each. Runs on SQLite here and on
 * PostgreSQL through `pg/Pipelining.test.ts`.
 */
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ChannelSession } from "@mks/a2a"
import { http, startBroker, store, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"

const { MAX_PIPELINED } = ChannelSession

const register = async (broker: TestBroker, name: string, teams?: Array<string>) => {
  const res = await http(broker, broker.adminToken, "POST", "/api/peers", { name, ...(teams ? { teams } : {}) })
  expect(res.status, res.text).toBe(201)
  return res.json.peer.id as string
}

const open = async (broker: TestBroker, peer: string) => {
  const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer}`), { authorization: `Bearer ${broker.adminToken}` })
  await socket.next((f) => f.type === "hello")
  return socket
}

/** The answers (`sent`, `error`) of a socket, the next `n` of them in the order written. */
const answers = async (socket: FrameSocket, n: number, timeoutMs: number) => {
  const got: Array<any> = []
  while (got.length < n) got.push(await socket.next((f) => f.type === "sent" || f.type === "error", timeoutMs))
  return got
}

describe(`answers and commits in frame order (${store()})`, () => {
  let broker: TestBroker
  beforeAll(async () => {
    broker = await startBroker()
  })
  afterAll(async () => {
    await broker?.close()
  })

  it("a mix of sends, refused sends, bad frames and team sends fired without waiting is answered in frame order", async () => {
    const sender = await register(broker, "mix-sender")
    const target = await register(broker, "mix-target")
    await register(broker, "mix-member-1", ["mix-team"])
    await register(broker, "mix-member-2", ["mix-team"])
    const socket = await open(broker, sender)
    const ROUNDS = 20
    const expected: Array<string> = []
    for (let i = 0; i < ROUNDS; i++) {
      socket.send({ type: "send", to: target, body: `a${i}`, ref: `a${i}` })
      expected.push(`sent:a${i}`)
      socket.send({ type: "send", to: "nobody-by-that-name", body: "x", ref: `n${i}` })
      expected.push(`error:n${i}:PeerNotFound`)
      socket.send("{ not json")
      expected.push("error::InvalidRequest")
      socket.send({ type: "heartbeat" })
      socket.send({ type: "send", team: "mix-team", body: `t${i}`, ref: `t${i}` })
      expected.push(`sent:t${i}`)
    }
    const got = await answers(socket, expected.length, 30_000)
    expect(got.map((f) => (f.type === "sent" ? `sent:${f.ref}` : `error:${f.ref ?? ""}:${f.error._tag}`))).toEqual(expected)
    // The target's inbox holds the direct sends under the seqs they were answered with, in order.
    const direct = got.filter((f) => f.type === "sent" && f.ref.startsWith("a"))
    expect(direct.map((f) => f.message.seq)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1))
    const inbox = await http(broker, broker.adminToken, "GET", `/api/peers/${target}/inbox?limit=500`)
    expect(inbox.json.messages.map((m: { body: string; seq: number }) => `${m.seq}:${m.body}`)).toEqual(direct.map((f) => `${f.message.seq}:${f.message.body}`))
    await socket.close()
  })

  it("200 sends fired without waiting: answered in order under consecutive seqs", async () => {
    const sender = await register(broker, "burst-sender")
    const target = await register(broker, "burst-target")
    const socket = await open(broker, sender)
    const N = 200
    for (let i = 0; i < N; i++) socket.send({ type: "send", to: target, body: `m${i}`, ref: `r${i}` })
    const got = await answers(socket, N, 60_000)
    expect(got.map((f) => `${f.type}:${f.ref}:${f.message?.seq}`)).toEqual(Array.from({ length: N }, (_, i) => `sent:r${i}:${i + 1}`))
    await socket.close()
  })

  if (store() === "postgres") it("while a commit waits, the socket's next sends are queued for the next one (pipelined), up to MAX_PIPELINED", async () => {
    const sender = await register(broker, "held-sender")
    const target = await register(broker, "held-target")
    const socket = await open(broker, sender)
    // The target's inbox exists; a transaction of this test holds its row, so the next commit
    // that appends to it waits.
    socket.send({ type: "send", to: target, body: "first", ref: "first" })
    expect((await answers(socket, 1, 30_000))[0].type).toBe("sent")
    const holder = new pg.Client({ connectionString: broker.database })
    await holder.connect()
    try {
      await holder.query("BEGIN")
      await holder.query("SELECT 1 FROM a2a_inbox_state WHERE peer_id = $1 FOR UPDATE", [target])
      const before = (await broker.commits())!
      const N = MAX_PIPELINED + 1
      for (let i = 0; i < N; i++) socket.send({ type: "send", to: target, body: `m${i}`, ref: `r${i}` })
      // Handled one at a time until committed, the socket would have one send waiting; pipelined,
      // it queues sends until MAX_PIPELINED await their answers. (Waits for an event: the queue
      // filling; bounded so that a broken pipeline fails instead of hanging.)
      const deadline = Date.now() + 15_000
      while ((await broker.commits())!.waiting - before.waiting < MAX_PIPELINED) {
        expect(Date.now(), "sends queued behind the waiting commit").toBeLessThan(deadline)
        await new Promise((resolve) => setImmediate(resolve))
      }
      await holder.query("COMMIT")
      const got = await answers(socket, N, 60_000)
      expect(got.map((f) => `${f.type}:${f.ref}:${f.message?.seq}`)).toEqual(Array.from({ length: N }, (_, i) => `sent:r${i}:${i + 2}`))
      const after = (await broker.commits())!
      // The waiting send, then the queued ones together (and the last, which waited for room).
      expect(after.writes - before.writes).toBe(N)
      expect(after.batches - before.batches).toBeLessThanOrEqual(4)
    } finally {
      await holder.end()
      await socket.close()
    }
  })
})
