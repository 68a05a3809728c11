/**
 * The MCP server pushes every message as a channel notification and acks it right after: a
 * session acking every message must keep up with many senders (its acks are cumulative and
 * coalesced end to end), so no sender is refused with `InboxFull`. The inbox cap is lowered to
 * 256 so a lagging ack path shows up within a few dozen commits, however slow the machine.
 */
import { rmSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { client as brokerClient, http, startBroker, tempHome, type TestBroker } from "../../broker/test/harness.js"
import { NODE_FLAGS } from "../src/Commands.js"
import { eventually, type McpSession, startSession } from "./harness.js"

const SENDERS = 16
const SEND_FOR_MS = 10_000

let broker: TestBroker
let session: McpSession
const home = tempHome()

beforeAll(async () => {
  broker = await startBroker({ home, db: join(home, "broker.db"), inboxCapacity: 256 })
})

afterAll(async () => {
  await session?.close()
  await broker.close()
  rmSync(home, { recursive: true, force: true })
})

it("an MCP session pushed and acking every message, 16 senders (8 over HTTP, 8 over channels) flat out for 10 s: zero InboxFull, every message once", async () => {
  const token = await broker.token("acme", "admin")
  // Started as the runner and `a2a up` start it: interpreter only (NODE_FLAGS), the slower of the ways it runs.
  session = await startSession({ url: broker.url, token, name: "mcp-reader", channels: true, nodeFlags: NODE_FLAGS })
  const receiver = (await session.ok("whoami")).data.peer.id as string
  const register = async (name: string) => {
    const res = await http(broker, token, "POST", "/api/peers", { name })
    expect(res.status, res.text).toBe(201)
    return res.json.peer.id as string
  }
  const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => register(`mcp-flood-${i}`)))
  const sdk = brokerClient(broker, token)
  try {
    const channels = senders.slice(0, SENDERS / 2).map((id) => sdk.connect(id))
    const sent: Array<{ id: string; body: string }> = []
    const refusals: Array<string> = []
    const end = Date.now() + SEND_FOR_MS
    await Promise.all(
      senders.map(async (from, i) => {
        const channel = i < SENDERS / 2 ? channels[i]! : undefined
        for (let n = 0; Date.now() < end; n++) {
          const body = `${i}-${n}`
          try {
            const result = channel !== undefined ? await channel.send({ to: receiver, body }) : await sdk.messages.send({ from, to: receiver, body })
            sent.push({ id: result.message.id, body })
          } catch (error) {
            refusals.push(`${body}: ${(error as Error).message}`)
          }
        }
      })
    )
    expect(refusals, refusals.slice(0, 5).join("\n")).toEqual([])
    expect(sent.length).toBeGreaterThan(SENDERS)

    // Every accepted message is pushed exactly once, in seq order, and the acks reach the broker.
    await eventually(async () => (session.pushed.length >= sent.length ? true : undefined), 60_000, `all ${sent.length} pushes`)
    const pushedIds = session.pushed.map((p) => p.meta.message_id)
    expect(new Set(pushedIds).size).toBe(pushedIds.length)
    expect(new Set(pushedIds)).toEqual(new Set(sent.map((m) => m.id)))
    const seqs = session.pushed.map((p) => Number(p.meta.seq))
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    await eventually(
      async () => ((await http(broker, token, "GET", `/api/peers/${receiver}/inbox?limit=1`)).json.messages.length === 0 ? true : undefined),
      30_000,
      "the session's acks to reach the broker"
    )
  } finally {
    await sdk.close()
  }
}, 120_000)
