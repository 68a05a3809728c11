/**
 * The outbound A2A bridge (docs/a2a.md): a remote agent on the official `@a2a-js/sdk` server is
 * registered as a bridge peer; bus peers message it with the normal send, and its answers (a
 * Message, or task updates and artifacts) come back as ordinary bus messages replying to theirs.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type RemoteAgent, startRemoteAgent, startRemoteAgentV03 } from "./a2aRemote.js"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { opened, record } from "./support.js"

const SECRET = "remote-secret-token-0123456789"

describe("A2A bridge: remote A2A agents on the bus", () => {
  let broker: TestBroker
  let remote: RemoteAgent
  let token: string

  beforeAll(async () => {
    broker = await startBroker()
    remote = await startRemoteAgent(SECRET)
    token = await broker.token("default", "peer")
  })
  afterAll(async () => {
    await remote?.close()
    await broker?.close()
  })

  it("registers a remote agent: its card is read with the credential, which is never shown again nor stored in the clear", async () => {
    const added = await http(broker, token, "POST", "/api/a2a/agents", { name: "remote-echo", cardUrl: remote.cardUrl, token: SECRET })
    expect(added.status).toBe(201)
    expect(added.json.agent).toMatchObject({ name: "remote-echo", cardUrl: remote.cardUrl, version: "1.0", hasCredential: true })
    expect(added.json.agent.card.name).toBe("remote-echo")
    expect(added.text).not.toContain(SECRET)
    const listed = await http(broker, token, "GET", "/api/a2a/agents")
    expect(listed.json.agents.map((a: any) => a.name)).toEqual(["remote-echo"])
    expect(listed.text).not.toContain(SECRET)
    expect(readFileSync(join(broker.home, "a2a-agents.json"), "utf8")).not.toContain(SECRET)
    // It is a peer on the bus.
    const peers = await http(broker, token, "GET", "/api/peers")
    expect(peers.json.peers.find((p: any) => p.name === "remote-echo")).toMatchObject({ agent: "a2a-remote" })
  })

  it("a bus message reaches the remote agent (with the credential, the thread as context); its Message answers as a reply", async () => {
    const api = client(broker, token)
    const me = (await api.peers.register({ name: "asker" })).peer
    const channel = api.connect(me.id, { autoAck: true })
    const got = record(channel)
    await opened(channel)
    const sent = await channel.send({ to: "remote-echo", body: "hello from the bus" })
    const answer = await got.message((m) => m.replyTo === sent.message.id)
    expect(answer.body).toBe("remote-echo says: hello from the bus")
    expect(answer.fromName).toBe("remote-echo")
    expect(answer.threadId).toBe(sent.message.threadId)
    const request = remote.requests.find((r) => r.text === "hello from the bus")!
    expect(request.authorization).toBe(`Bearer ${SECRET}`)
    expect(request.contextId).toBe(sent.message.threadId)

    // A task: its progress, artifact and completion arrive as replies, in order.
    const task = await channel.send({ to: "remote-echo", body: "build the thing" })
    const done = await got.message((m) => m.replyTo === task.message.id && (m.meta as any)?.a2a?.taskState === "completed")
    const replies = got.messages.filter((m) => m.replyTo === task.message.id)
    expect(replies.map((m) => m.body)).toEqual(["working on: build the thing", "result of build the thing", done.body])
    expect((replies[0]!.meta as any).a2a).toMatchObject({ taskState: "working", kind: "task-update" })
    await api.close()
  })

  it("refusals: 401, bad input, duplicate name, unreachable card; another tenant sees nothing and cannot remove", async () => {
    expect((await http(broker, undefined, "GET", "/api/a2a/agents")).status).toBe(401)
    const bad = await http(broker, token, "POST", "/api/a2a/agents", { name: "x y", cardUrl: "ftp://nope" })
    expect(bad.status).toBe(400)
    expect(bad.json._tag).toBe("InvalidRequest")
    expect((await http(broker, token, "POST", "/api/a2a/agents", "{oops")).status).toBe(400)
    expect((await http(broker, token, "POST", "/api/a2a/agents", { name: "remote-echo", cardUrl: remote.cardUrl })).status).toBe(409)
    const noCard = await http(broker, token, "POST", "/api/a2a/agents", { name: "ghost", cardUrl: "http://127.0.0.1:1/.well-known/agent-card.json" })
    expect(noCard.status).toBe(400)
    expect(noCard.json.field).toBe("cardUrl")
    const unauthorizedRemote = await http(broker, token, "POST", "/api/a2a/agents", { name: "nocred", cardUrl: remote.cardUrl })
    expect(unauthorizedRemote.status).toBe(400)
    const other = await broker.token("elsewhere", "peer")
    expect((await http(broker, other, "GET", "/api/a2a/agents")).json.agents).toEqual([])
    expect((await http(broker, other, "DELETE", "/api/a2a/agents/remote-echo")).status).toBe(404)
  })

  it("a protocol 0.3 remote agent (official SDK 0.3.14 server) is bridged through the SDK's compatibility layer", async () => {
    const old = await startRemoteAgentV03("old-secret")
    try {
      const added = await http(broker, token, "POST", "/api/a2a/agents", { name: "remote-old", cardUrl: old.cardUrl, token: "old-secret" })
      expect(added.status).toBe(201)
      expect(added.json.agent.version).toBe("0.3")
      const api = client(broker, token)
      const me = (await api.peers.register({ name: "asker-03" })).peer
      const channel = api.connect(me.id, { autoAck: true })
      const got = record(channel)
      await opened(channel)
      const hello = await channel.send({ to: "remote-old", body: "hello old agent" })
      expect((await got.message((m) => m.replyTo === hello.message.id)).body).toBe("remote-old says: hello old agent")
      const task = await channel.send({ to: "remote-old", body: "index it" })
      await got.message((m) => m.replyTo === task.message.id && (m.meta as any)?.a2a?.taskState === "completed")
      expect(got.messages.filter((m) => m.replyTo === task.message.id).map((m) => m.body).slice(0, 2)).toEqual(["working on: index it", "result of index it"])
      expect(old.requests.find((r) => r.text === "hello old agent")?.contextId).toBe(hello.message.threadId)
      await api.close()
      expect((await http(broker, token, "DELETE", "/api/a2a/agents/remote-old")).status).toBe(204)
    } finally {
      await old.close()
    }
  })

  it("remove: the bridge peer leaves the bus", async () => {
    const removed = await http(broker, token, "DELETE", "/api/a2a/agents/remote-echo")
    expect(removed.status).toBe(204)
    expect((await http(broker, token, "GET", "/api/a2a/agents")).json.agents).toEqual([])
    const peers = await http(broker, token, "GET", "/api/peers")
    expect(peers.json.peers.map((p: any) => p.name)).not.toContain("remote-echo")
  })
})
