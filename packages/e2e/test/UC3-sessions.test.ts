/**
 * UC3: two agent sessions see each other and message both ways in real time. Each session is
 * the built `a2a-mcp` process (as Claude Code starts it), driven by the official MCP SDK
 * client; the broker is the built `a2a-broker`. Messages arrive as channel pushes: nobody
 * calls check_inbox or wait_for_messages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { a2aMcp, createToken, startBroker, type McpSession } from "./support.js"

describe("UC3: two sessions on one broker", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>
  let alice: McpSession
  let bob: McpSession
  beforeAll(async () => {
    broker = await startBroker()
    const token = await createToken(broker.home, "acme", "peer")
    alice = await a2aMcp(broker, token, "alice", { env: { A2A_TEAMS: "web", A2A_SUMMARY: "frontend" } })
    bob = await a2aMcp(broker, token, "bob", { env: { A2A_TEAMS: "web", A2A_SUMMARY: "backend" } })
  })
  afterAll(async () => {
    await alice?.close()
    await bob?.close()
    await broker?.stop()
  })

  it("see each other with their summaries and teams", async () => {
    const me = await alice.ok("whoami")
    expect(me.text).toContain("alice")
    await bob.ok("whoami")
    const seen = async (session: McpSession) =>
      ((await session.ok("list_peers")).data.peers as Array<{ name: string; summary: string; teams: Array<string>; status: string }>).map((p) => [p.name, p.summary, p.teams, p.status])
    // Each sees the other (a session does not list itself).
    expect(await seen(alice)).toEqual([["bob", "backend", ["web"], "online"]])
    expect(await seen(bob)).toEqual([["alice", "frontend", ["web"], "online"]])
  })

  it("message both ways, each pushed into the other session, in order, without polling", async () => {
    const t0 = performance.now()
    await alice.ok("send_peer_message", { to: "bob", message: "API ready?" })
    const asked = await bob.push((p) => p.content === "API ready?")
    const latencyMs = performance.now() - t0
    expect(asked.meta).toMatchObject({ from_name: "alice", message_id: expect.stringMatching(/^m_/) })
    await bob.ok("send_peer_message", { to: asked.meta.from_id, message: "yes, v2 is up", reply_to: asked.meta.message_id })
    const answered = await alice.push((p) => p.content === "yes, v2 is up")
    expect(answered.meta).toMatchObject({ from_name: "bob", thread_id: asked.meta.thread_id })

    // A burst arrives complete and in order.
    for (let i = 1; i <= 5; i++) await bob.ok("send_peer_message", { to: "alice", message: `update ${i}` })
    await alice.push((p) => p.content === "update 5")
    expect(alice.pushed.filter((p) => p.content.startsWith("update ")).map((p) => p.content)).toEqual(["update 1", "update 2", "update 3", "update 4", "update 5"])

    // Team messages reach the other member (not the sender).
    await alice.ok("send_team_message", { team: "web", message: "standup in 5" })
    expect((await bob.push((p) => p.content === "standup in 5")).meta).toMatchObject({ team: "web" })
    expect(alice.pushed.some((p) => p.content === "standup in 5")).toBe(false)

    // Pushed messages were acked: nothing waits in either inbox.
    expect((await alice.ok("check_inbox")).data.messages).toEqual([])
    expect((await bob.ok("check_inbox")).data.messages).toEqual([])
    console.log(`UC3: send → push into the other session in ${latencyMs.toFixed(1)} ms`)
  })
})
