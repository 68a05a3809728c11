/**
 * Claude Code 2.1.330 registers its channel handler a while after the MCP handshake and drops a
 * channel notification that arrives sooner. Pushes to a client that says it is Claude Code
 * start `A2A_PUSH_SETTLE_MS` after `initialized`; what arrived meanwhile is pushed then, in
 * order, and acked. Other clients are pushed to at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { eventually, type McpSession, startSession } from "./harness.js"

// Well above a loaded start-up (an immediate push arrives within ~1-2 s of `started`).
const SETTLE_MS = 4_000

let broker: TestBroker
let token: string
const sessions: Array<McpSession> = []

beforeAll(async () => {
  broker = await startBroker()
  token = await broker.token("settle", "peer")
})

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await broker.close()
})

/** Register `name` and leave two messages in its inbox before any session holds it. */
const waitingFor = async (name: string) => {
  const api = client(broker, token)
  const sender = (await api.peers.register({ name: `${name}-sender` })).peer
  const peer = (await api.peers.register({ name })).peer
  const first = await api.messages.send({ from: sender.id, to: peer.id, body: `${name} first` })
  const second = await api.messages.send({ from: sender.id, to: peer.id, body: `${name} second` })
  await api.close()
  return { peer, seqs: [first.message.seq, second.message.seq] }
}

describe("pushes to a fresh Claude Code session wait for its channel handler", () => {
  it("messages waiting at start reach Claude Code after the settle time, in order, and are acked", async () => {
    const { peer, seqs } = await waitingFor("cc-settle")
    const started = performance.now()
    const session = await startSession({ url: broker.url, token, name: "cc-settle", channels: true, clientName: "claude-code", env: { A2A_PUSH_SETTLE_MS: String(SETTLE_MS) } })
    sessions.push(session)
    const first = await session.push(0)
    const second = await session.push(1)
    expect([first.content, second.content]).toEqual(["cc-settle first", "cc-settle second"])
    // The server starts the settle time once the client's `initialized` has arrived (after `started`).
    expect(first.at - started).toBeGreaterThanOrEqual(SETTLE_MS)
    await eventually(async () => {
      const res = await http(broker, token, "GET", `/api/peers/${peer.id}/inbox`)
      return res.json.messages.length === 0 && res.json.cursor >= seqs[1]! ? true : undefined
    }, 10_000, "the pushed messages acked")
    expect((await session.ok("whoami")).data.push).toBe(true)
    expect((await session.ok("check_inbox")).data.messages).toEqual([])
  })

  it("another client is pushed to at once (the settle time is Claude Code's only)", async () => {
    await waitingFor("plain-settle")
    // A settle time far beyond the test's own deadline: a push at all proves it was not applied.
    const session = await startSession({ url: broker.url, token, name: "plain-settle", channels: true, env: { A2A_PUSH_SETTLE_MS: "60000" } })
    sessions.push(session)
    expect((await session.push(0)).content).toBe("plain-settle first")
    expect((await session.push(1)).content).toBe("plain-settle second")
  })
})
