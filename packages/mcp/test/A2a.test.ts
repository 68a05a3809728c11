/**
 * An MCP session (real MCP SDK client over stdio, the built server) and A2A: a remote agent on the
 * official `@a2a-js/sdk` server is bridged onto the bus; the session finds it with
 * `list_a2a_agents`, messages it with `send_peer_message`, and its answer — and a task's updates —
 * are pushed to the session as channel messages.
 */
import { afterAll, beforeAll, expect, it } from "vitest"
import { type RemoteAgent, startRemoteAgent } from "../../broker/test/a2aRemote.js"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { type McpSession, startSession } from "./harness.js"

let broker: TestBroker
let remote: RemoteAgent
let session: McpSession

beforeAll(async () => {
  broker = await startBroker()
  remote = await startRemoteAgent("mcp-remote-secret", "remote-helper")
  const token = await broker.token("acme", "peer")
  const added = await http(broker, token, "POST", "/api/a2a/agents", { name: "remote-helper", cardUrl: remote.cardUrl, token: "mcp-remote-secret" })
  expect(added.status).toBe(201)
  await http(broker, token, "POST", "/api/peers", { name: "published", summary: "reachable by A2A clients", meta: { a2a: true } })
  session = await startSession({ url: broker.url, token, name: "mcp-asker", channels: true })
})
afterAll(async () => {
  await session?.close()
  await remote?.close()
  await broker?.close()
})

it("list_a2a_agents shows the bridged remote agent with its card and the published local peer", async () => {
  const listed = await session.ok("list_a2a_agents")
  expect(listed.text).toContain("remote-helper")
  expect(listed.text).toContain(remote.cardUrl)
  expect(listed.text).toContain("An echo agent on the official A2A SDK")
  expect(listed.data.local.map((p: any) => p.name)).toEqual(["published"])
  expect(listed.data.local[0].cardUrl).toBe(`${broker.url}/a2a/peers/published/.well-known/agent-card.json`)
})

it("send_peer_message to the bridged agent: its answer is pushed as a channel message replying to ours", async () => {
  const before = session.pushed.length
  const sent = await session.ok("send_peer_message", { to: "remote-helper", message: "hello over MCP" })
  const pushed = await session.push(before)
  expect(pushed.content).toBe("remote-helper says: hello over MCP")
  expect(pushed.meta).toMatchObject({ from_name: "remote-helper", thread_id: sent.data.message.threadId })

  // A task: progress, the artifact and the completion each arrive pushed.
  const at = session.pushed.length
  await session.ok("send_peer_message", { to: "remote-helper", message: "summarise the repo" })
  await session.push(at + 2)
  expect(session.pushed.slice(at).map((p) => p.content)).toEqual(["working on: summarise the repo", "result of summarise the repo", expect.stringContaining("completed")])
})
