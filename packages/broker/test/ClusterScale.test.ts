/**
 * The cluster test of Cluster.test.ts at a larger scale and with its wake-ups cut:
 *
 * - three broker processes on one database: 2,000 team messages sent round-robin through all
 *   three reach one recipient on each instance once, gap-free and in order, with one instance
 *   SIGKILLed mid-way (its recipient moves to another);
 * - the same with the wake-up path cut: the recipients' instances run without LISTEN
 *   (`A2A_BROKER_PG_LISTEN=off`), so every message sent through another instance reaches them
 *   only by the catch-up reads, within a bounded time; a long-poll there wakes the same way.
 */
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { http, startBrokerProcess, tempHome, type BrokerProcess } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"

const enabled = await pgEnabled("broker cluster at scale on PostgreSQL")

const MESSAGES = 2_000
const LANES = 4
/** Catch-up period of the instances without LISTEN. */
const CATCHUP_MS = 200

const register = async (broker: { url: string }, token: string, name: string, teams: Array<string> = []) => {
  const res = await http(broker, token, "POST", "/api/peers", { name, teams })
  expect(res.status).toBeLessThan(300)
  return res.json.peer.id as string
}

const channel = (broker: { url: string }, token: string, peer: string, after?: number) =>
  FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer}${after === undefined ? "" : `?after=${after}`}`), { authorization: `Bearer ${token}` })

const messagesOf = (socket: FrameSocket) => socket.all((f) => f.type === "message").map((f) => f.message as { seq: number; body: string })

const until = async (sockets: ReadonlyArray<FrameSocket>, check: () => boolean, what: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Promise.race([...sockets.map((s) => s.next(() => true, 1_000).catch(() => undefined))])
  }
}

/** Every body once, seqs without gap, each lane's sends in order. */
const expectOnceInOrder = (list: ReadonlyArray<{ seq: number; body: string }>) => {
  expect(list.map((m) => Number(m.body)).sort((x, y) => x - y)).toEqual(Array.from({ length: MESSAGES }, (_, i) => i))
  for (let i = 1; i < list.length; i++) expect(list[i]!.seq).toBe(list[i - 1]!.seq + 1)
  for (let lane = 0; lane < LANES; lane++) {
    const order = list.map((m) => Number(m.body)).filter((n) => n % LANES === lane)
    expect(order).toEqual([...order].sort((x, y) => x - y))
  }
}

if (!enabled) {
  it("broker cluster at scale on PostgreSQL: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("three broker processes on one database", () => {
    let db: TestDatabase
    let home: string
    const children: Array<BrokerProcess> = []
    beforeAll(async () => {
      db = await createDatabase("a2a_cluster3")
      home = tempHome()
    })
    afterAll(async () => {
      for (const c of children) c.child.kill("SIGKILL")
      await Promise.all(children.map((c) => c.exited))
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it(`${MESSAGES} team messages sent round-robin through three reach a recipient on each once and in order; a SIGKILLed instance loses nothing`, async () => {
      const brokers: Array<BrokerProcess> = []
      for (let i = 0; i < 3; i++) {
        const b = await startBrokerProcess(home, ["--db", db.url])
        children.push(b)
        brokers.push(b)
      }
      const [a, b, c] = brokers as [BrokerProcess, BrokerProcess, BrokerProcess]
      const token = readFileSync(join(home, "broker.token"), "utf8").trim()
      const sender = await register(a, token, "sender")
      const ids = [await register(b, token, "on-a", ["crew"]), await register(c, token, "on-b", ["crew"]), await register(a, token, "on-c", ["crew"])]
      const sockets = [await channel(a, token, ids[0]!), await channel(b, token, ids[1]!), await channel(c, token, ids[2]!)]
      for (const s of sockets) await s.next((f) => f.type === "hello")

      const sendRange = (from: number, to: number, via: (i: number) => { url: string }) =>
        Promise.all(
          Array.from({ length: LANES }, async (_, lane) => {
            for (let i = from + lane; i < to; i += LANES) {
              const res = await http(via(i), token, "POST", "/api/messages", { from: sender, team: "crew", body: String(i) })
              expect(res.status).toBe(201)
            }
          })
        )
      await sendRange(0, MESSAGES / 2, (i) => brokers[i % 3]!)
      // Mid-way, C dies: its recipient moves to A, the sends go on through A and B.
      c.child.kill("SIGKILL")
      await c.exited
      await sockets[2]!.closed
      const seen = messagesOf(sockets[2]!)
      const replacement = await channel(a, token, ids[2]!, seen.length === 0 ? 0 : seen[seen.length - 1]!.seq)
      await replacement.next((f) => f.type === "hello")
      await sendRange(MESSAGES / 2, MESSAGES, (i) => (i % 2 === 0 ? a : b))

      await until([sockets[0]!], () => messagesOf(sockets[0]!).length >= MESSAGES, "the recipient on A")
      await until([sockets[1]!], () => messagesOf(sockets[1]!).length >= MESSAGES, "the recipient on B")
      await until([replacement], () => seen.length + messagesOf(replacement).length >= MESSAGES, "the recipient that moved to A")
      expectOnceInOrder(messagesOf(sockets[0]!))
      expectOnceInOrder(messagesOf(sockets[1]!))
      expectOnceInOrder([...seen, ...messagesOf(replacement)])
      for (const s of [sockets[0]!, sockets[1]!, replacement]) s.ws.close()
    }, 600_000)
  })

  describe("wake-up path cut: the recipients' instance runs without LISTEN", () => {
    let db: TestDatabase
    let home: string
    const children: Array<BrokerProcess> = []
    beforeAll(async () => {
      db = await createDatabase("a2a_cluster_cut")
      home = tempHome()
    })
    afterAll(async () => {
      for (const c of children) c.child.kill("SIGKILL")
      await Promise.all(children.map((c) => c.exited))
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it(`${MESSAGES} team messages sent through another instance reach recipients there by catch-up alone, once, in order, within a bounded time`, async () => {
      const sending = await startBrokerProcess(home, ["--db", db.url])
      children.push(sending)
      const deaf = await startBrokerProcess(home, ["--db", db.url], { A2A_BROKER_PG_LISTEN: "off", A2A_BROKER_PG_CATCHUP_MS: String(CATCHUP_MS) })
      children.push(deaf)
      const token = readFileSync(join(home, "broker.token"), "utf8").trim()
      const sender = await register(sending, token, "sender")
      const first = await register(sending, token, "deaf-1", ["crew"])
      const second = await register(sending, token, "deaf-2", ["crew"])
      const sockets = [await channel(deaf, token, first), await channel(deaf, token, second)]
      for (const s of sockets) await s.next((f) => f.type === "hello")

      // The last message's arrival after its send is bounded by the catch-up period plus a read.
      const sentAt = new Map<number, number>()
      await Promise.all(
        Array.from({ length: LANES }, async (_, lane) => {
          for (let i = lane; i < MESSAGES; i += LANES) {
            sentAt.set(i, Date.now())
            const res = await http(sending, token, "POST", "/api/messages", { from: sender, team: "crew", body: String(i) })
            expect(res.status).toBe(201)
          }
        })
      )
      const lastSent = Date.now()
      for (const s of sockets) await until([s], () => messagesOf(s).length >= MESSAGES, "catch-up delivery")
      const lastArrived = Date.now()
      for (const s of sockets) expectOnceInOrder(messagesOf(s))
      // Generous for a loaded machine: the catch-up runs every 200 ms.
      expect(lastArrived - lastSent).toBeLessThan(30_000)

      // A long-poll on the deaf instance wakes on a send through the other one.
      const to = await register(sending, token, "deaf-poll")
      const started = Date.now()
      const poll = http(deaf, token, "GET", `/api/peers/${to}/inbox?wait=25`)
      // Whether the poll is already waiting or still reading, it must answer with the message.
      expect((await http(sending, token, "POST", "/api/messages", { from: sender, to, body: "wake up" })).status).toBe(201)
      const answer = await poll
      expect(answer.status).toBe(200)
      expect(answer.json.messages.map((m: any) => m.body)).toEqual(["wake up"])
      expect(Date.now() - started).toBeLessThan(20_000)
      for (const s of sockets) s.ws.close()
    }, 600_000)
  })
}
