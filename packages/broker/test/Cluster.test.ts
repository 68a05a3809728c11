/**
 * Several brokers on one PostgreSQL database behave as one broker: messages sent through
 * either instance reach recipients connected to either, once and in order, and an instance
 * killed with SIGKILL loses nothing (its peers reconnect to the other); long-polls wake on
 * appends made through another instance; an instance whose database goes away for 5 s answers
 * 503 meanwhile, re-opens its LISTEN connection and catches up on what it missed.
 */
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { http, startBroker, startBrokerProcess, tempHome, type BrokerProcess, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"
import { forward, type Forwarder } from "../../../test-support/tcpForward.js"

const enabled = await pgEnabled("broker cluster on PostgreSQL")

const MESSAGES = 2_000

const register = async (broker: { url: string }, token: string, name: string, teams: Array<string> = []) => {
  const res = await http(broker, token, "POST", "/api/peers", { name, teams })
  expect(res.status).toBeLessThan(300)
  return res.json.peer.id as string
}

const channel = (broker: { url: string }, token: string, peer: string, after?: number) =>
  FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer}${after === undefined ? "" : `?after=${after}`}`), { authorization: `Bearer ${token}` })

const messagesOf = (socket: FrameSocket) => socket.all((f) => f.type === "message").map((f) => f.message as { seq: number; body: string })

/** Resolves once `check` holds, re-checked whenever the socket receives a frame (no sleeps). */
const until = async (sockets: ReadonlyArray<FrameSocket>, check: () => boolean, what: string, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Promise.race([...sockets.map((s) => s.next(() => true, 1_000).catch(() => undefined))])
  }
}

if (!enabled) {
  it("broker cluster on PostgreSQL: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("two broker processes on one database", () => {
    let db: TestDatabase
    let home: string
    const children: Array<BrokerProcess> = []
    beforeAll(async () => {
      db = await createDatabase("a2a_cluster")
      home = tempHome()
    })
    afterAll(async () => {
      for (const c of children) c.child.kill("SIGKILL")
      await Promise.all(children.map((c) => c.exited))
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it(`${MESSAGES} messages sent alternately through both reach recipients on either once and in order; a SIGKILLed instance loses nothing`, async () => {
      // One home (the tokens file) and one database: the two processes are one broker.
      const a = await startBrokerProcess(home, ["--db", db.url])
      children.push(a)
      const b = await startBrokerProcess(home, ["--db", db.url])
      children.push(b)
      const token = readFileSync(join(home, "broker.token"), "utf8").trim()

      const sender = await register(a, token, "sender")
      const onA = await register(b, token, "on-a", ["crew"])
      const onB = await register(a, token, "on-b", ["crew"])
      const first = await channel(a, token, onA)
      const second = await channel(b, token, onB)
      await first.next((f) => f.type === "hello")
      await second.next((f) => f.type === "hello")

      // An event made on one instance reaches sockets on the other.
      expect((await http(a, token, "POST", "/api/teams", { name: "observers" })).status).toBe(201)
      await second.next((f) => f.type === "event" && f.event.type === "team_changed" && f.event.team === "observers")

      // Four lanes of sequential sends (lane j sends j, j+4, …): each lane's order must survive.
      const LANES = 4
      const sendRange = (from: number, to: number, via: (i: number) => { url: string }) =>
        Promise.all(
          Array.from({ length: LANES }, async (_, lane) => {
            for (let i = from + lane; i < to; i += LANES) {
              const res = await http(via(i), token, "POST", "/api/messages", { from: sender, team: "crew", body: String(i) })
              expect(res.status).toBe(201)
            }
          })
        )
      await sendRange(0, MESSAGES / 2, (i) => (i % 2 === 0 ? a : b))
      // Mid-way, B dies without a chance to push what it still had to: its peer moves to A.
      b.child.kill("SIGKILL")
      await b.exited
      await second.closed
      const seen = messagesOf(second)
      const replacement = await channel(a, token, onB, seen.length === 0 ? 0 : seen[seen.length - 1]!.seq)
      await replacement.next((f) => f.type === "hello")
      await sendRange(MESSAGES / 2, MESSAGES, () => a)

      await until([first], () => messagesOf(first).length >= MESSAGES, "the recipient on A")
      await until([replacement], () => messagesOf(second).length + messagesOf(replacement).length >= MESSAGES, "the recipient that moved to A")
      const moved = [...messagesOf(second), ...messagesOf(replacement)]
      for (const list of [messagesOf(first), moved]) {
        // Once each: every body exactly once; in order: seqs without gap, and each lane's sends in order.
        expect(list.map((m) => Number(m.body)).sort((x, y) => x - y)).toEqual(Array.from({ length: MESSAGES }, (_, i) => i))
        for (let i = 1; i < list.length; i++) expect(list[i]!.seq).toBe(list[i - 1]!.seq + 1)
        for (let lane = 0; lane < LANES; lane++) {
          const order = list.map((m) => Number(m.body)).filter((n) => n % LANES === lane)
          expect(order).toEqual([...order].sort((x, y) => x - y))
        }
      }
      first.ws.close()
      replacement.ws.close()
    }, 120_000)

    it("events one instance makes reach a socket on the other in the order they were made (docs/scaling.md, Events)", async () => {
      const a = await startBrokerProcess(home, ["--db", db.url])
      children.push(a)
      const b = await startBrokerProcess(home, ["--db", db.url])
      children.push(b)
      const token = readFileSync(join(home, "broker.token"), "utf8").trim()
      const watcher = await register(b, token, "order-watcher")
      const socket = await channel(b, token, watcher)
      await socket.next((f) => f.type === "hello")
      // Made on A, one after the other, with messages to the watcher in between (they keep seq
      // order among themselves; the promise gives no order between an event and a message).
      const EVENTS = 100
      const sender = await register(a, token, "order-sender")
      for (let i = 0; i < EVENTS; i++) {
        expect((await http(a, token, "POST", "/api/teams", { name: `ordered-${i}` })).status).toBe(201)
        if (i % 10 === 0) expect((await http(a, token, "POST", "/api/messages", { from: sender, to: watcher, body: String(i) })).status).toBe(201)
      }
      const teams = () =>
        socket
          .all((f) => f.type === "event" && f.event.type === "team_changed" && String(f.event.team).startsWith("ordered-"))
          .map((f) => Number(String(f.event.team).slice("ordered-".length)))
      await until([socket], () => teams().length >= EVENTS && messagesOf(socket).length >= EVENTS / 10, "the events and messages made on A")
      expect(teams()).toEqual(Array.from({ length: EVENTS }, (_, i) => i))
      expect(messagesOf(socket).map((m) => Number(m.body))).toEqual(Array.from({ length: EVENTS / 10 }, (_, i) => i * 10))
      socket.ws.close()
    }, 120_000)
  })

  describe("instances in one process, one of them behind a TCP gate to the database", () => {
    let db: TestDatabase
    let gate: Forwarder
    let home: string
    let gated: TestBroker
    let direct: TestBroker
    beforeAll(async () => {
      db = await createDatabase("a2a_cluster")
      gate = await forward("127.0.0.1", 5432)
      home = tempHome()
      gated = await startBroker({ home, db: gate.url(db.name) })
      direct = await startBroker({ home, db: db.url })
    })
    afterAll(async () => {
      await gated?.close()
      await direct?.close()
      await gate?.close()
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it("a runner connected to one instance gets a spawn ordered through the other; its status reaches the requester there", async () => {
      const token = gated.adminToken
      const runnerToken = await gated.token("default", "runner")
      // The runner's link is on the gated instance; the requester and the order are on the other.
      const runner = await FrameSocket.open(wsUrl(gated, "/ws/runner/rc-1"), { authorization: `Bearer ${runnerToken}` })
      runner.ws.send(
        JSON.stringify({ type: "hello", runner: { id: "rc-1", host: "h", labels: {}, capacity: 2, presets: ["command"], version: "test" }, agents: [] })
      )
      const requester = await register(direct, token, "spawn-boss")
      const boss = await channel(direct, token, requester)
      await boss.next((f) => f.type === "hello")
      // Listed by the other instance once the hello was handled (poll with a deadline: no event for it).
      const deadline = Date.now() + 5_000
      while (Date.now() < deadline) {
        const listed = await http(direct, token, "GET", "/api/runners")
        if (listed.json.runners.some((r: any) => r.id === "rc-1" && r.status === "online")) break
      }
      const created = await http(direct, token, "POST", "/api/spawn", { command: "node", args: ["agent.js"], name: "remote-1", requestedBy: requester })
      expect(created.status).toBe(202)
      expect(created.json.spawn.runnerId).toBe("rc-1")
      const spawnId: string = created.json.spawn.id
      const order = await runner.next((f) => f.type === "spawn")
      expect(order.spawn).toMatchObject({ id: spawnId, spec: { command: "node", name: "remote-1" } })
      runner.ws.send(JSON.stringify({ type: "spawn_status", spawnId, status: "running", pid: 77 }))
      await boss.next((f) => f.type === "event" && f.event.type === "spawn_status" && f.event.spawn.id === spawnId && f.event.spawn.status === "running")
      // Both instances read the same spawn.
      expect((await http(gated, token, "GET", `/api/spawn/${spawnId}`)).json.spawn).toMatchObject({ status: "running", pid: 77 })
      // The agent registers through the runner's instance with the token the other one issued.
      const agent = await http(gated, order.spawn.token, "POST", "/api/peers", { name: "remote-1" })
      expect(agent.status).toBeLessThan(300)
      expect(agent.json.peer.spawnId).toBe(spawnId)
      await boss.next((f) => f.type === "event" && f.event.type === "spawn_status" && f.event.spawn.id === spawnId && f.event.spawn.status === "registered")
      // A stop ordered through the other instance reaches the runner too.
      expect((await http(direct, token, "DELETE", `/api/spawn/${spawnId}`)).status).toBeLessThan(300)
      expect(await runner.next((f) => f.type === "stop")).toMatchObject({ spawnId })
      runner.ws.send(JSON.stringify({ type: "spawn_status", spawnId, status: "exited", exitCode: 0 }))
      await boss.next((f) => f.type === "event" && f.event.type === "spawn_status" && f.event.spawn.id === spawnId && f.event.spawn.status === "exited")
      // The spawn token died with the spawn, on both instances.
      expect((await http(gated, order.spawn.token, "GET", "/api/peers")).status).toBe(401)
      expect((await http(direct, order.spawn.token, "GET", "/api/peers")).status).toBe(401)
      runner.ws.close()
      boss.ws.close()
    })

    it("a long-poll on one instance wakes on a message sent through the other", async () => {
      const token = gated.adminToken
      const from = await register(direct, token, "poll-from")
      const to = await register(direct, token, "poll-to")
      const started = Date.now()
      const poll = http(gated, token, "GET", `/api/peers/${to}/inbox?wait=20`)
      // The poll is registered once it has read the (empty) inbox; a send after that must wake it.
      await new Promise((r) => setTimeout(r, 200))
      expect((await http(direct, token, "POST", "/api/messages", { from, to, body: "wake up" })).status).toBe(201)
      const answer = await poll
      expect(answer.status).toBe(200)
      expect(answer.json.messages.map((m: any) => m.body)).toEqual(["wake up"])
      expect(Date.now() - started).toBeLessThan(10_000)
    })

    it("database away for 5 s: 503 ServiceUnavailable meanwhile; back, it re-LISTENs and pushes what it missed", async () => {
      const token = gated.adminToken
      const from = await register(direct, token, "outage-from")
      const to = await register(direct, token, "outage-to")
      const socket = await channel(gated, token, to)
      await socket.next((f) => f.type === "hello")
      expect((await http(direct, token, "POST", "/api/messages", { from, to, body: "before" })).status).toBe(201)
      await socket.next((f) => f.type === "message" && f.message.body === "before")

      await gate.stop()
      const downAt = Date.now()
      let sent = 0
      while (Date.now() - downAt < 5_000) {
        const res = await http(gated, token, "GET", `/api/peers/${to}`)
        expect(res.status).toBe(503)
        expect(res.json).toMatchObject({ _tag: "ServiceUnavailable" })
        // Meanwhile the other instance goes on: these notifications never reach the gated one.
        expect((await http(direct, token, "POST", "/api/messages", { from, to, body: `during ${sent++}` })).status).toBe(201)
        await new Promise((r) => setTimeout(r, 250))
      }
      await gate.start()
      // No new send: only the catch-up after the LISTEN connection is back can deliver these.
      await until([socket], () => messagesOf(socket).length >= 1 + sent, "the catch-up after the outage", 15_000)
      expect(messagesOf(socket).map((m) => m.body)).toEqual(["before", ...Array.from({ length: sent }, (_, i) => `during ${i}`)])
      // And the API answers again (poll with a deadline: the pool reconnects on demand).
      const deadline = Date.now() + 10_000
      let status = 0
      while (Date.now() < deadline && status !== 200) status = (await http(gated, token, "GET", `/api/peers/${to}`)).status
      expect(status).toBe(200)
      socket.ws.close()
    })
  })
}
