import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { eventually, type McpSession, startSession } from "./harness.js"

const TOOLS = [
  "whoami",
  "list_peers",
  "set_summary",
  "send_peer_message",
  "send_team_message",
  "check_inbox",
  "wait_for_messages",
  "list_teams",
  "join_team",
  "leave_team",
  "list_runners",
  "spawn_peer",
  "stop_peer",
  "create_task",
  "list_tasks",
  "get_next_task",
  "update_task",
  "complete_task",
  "fail_task",
  "release_task",
  "list_a2a_agents"
]

let broker: TestBroker
let token: string
let alice: McpSession // declares claude/channel: messages are pushed
let bob: McpSession // plain MCP client: messages wait for check_inbox
const sessions: Array<McpSession> = []

const start = async (options: Parameters<typeof startSession>[0]) => {
  const s = await startSession(options)
  sessions.push(s)
  return s
}

beforeAll(async () => {
  broker = await startBroker()
  // The sessions spawn `command` agents: a peer token needs that permission (docs/security.md).
  token = await broker.scopedToken("acme", ["peer"], ["spawn:command"])
  alice = await start({ url: broker.url, token, name: "alice", teams: "dev", channels: true })
  bob = await start({ url: broker.url, token, name: "bob", teams: "dev" })
})

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await broker.close()
})

describe("tools/list", () => {
  it("lists the 21 tools with descriptions and input schemas", async () => {
    const { tools } = await alice.client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual([...TOOLS].sort())
    for (const tool of tools) {
      expect(tool.description?.length ?? 0).toBeGreaterThan(30)
      expect(tool.inputSchema.type).toBe("object")
    }
    const send = tools.find((t) => t.name === "send_peer_message")!
    expect(send.inputSchema.required).toEqual(expect.arrayContaining(["to", "message"]))
    expect(Object.keys(send.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(["to", "message", "thread_id", "reply_to"]))
    const peers = tools.find((t) => t.name === "list_peers")!
    expect(JSON.stringify(peers.inputSchema.properties)).toContain("directory")
  })

  it("declares the claude/channel capability and instructions that teach replying", async () => {
    expect(alice.client.getServerCapabilities()?.experimental?.["claude/channel"]).toEqual({})
    const instructions = alice.client.getInstructions() ?? ""
    expect(instructions).toContain("send_peer_message")
    expect(instructions).toContain("reply_to")
    expect(instructions).toContain("check_inbox")
  })
})

describe("tools against the broker", () => {
  it("whoami shows the registered peer, its teams and the delivery mode", async () => {
    const a = await alice.ok("whoami")
    expect(a.data.peer.name).toBe("alice")
    expect(a.data.peer.teams).toEqual(["dev"])
    expect(a.data.peer.agent).toBe("a2a-test-client")
    expect(a.data.push).toBe(true)
    const b = await bob.ok("whoami")
    expect(b.data.push).toBe(false)
    expect(b.text).toContain("check_inbox")
    // the broker holds the same peer, with the session's pid and cwd
    const res = await http(broker, token, "GET", `/api/peers/${b.data.peer.id}`)
    expect(res.json.peer).toMatchObject({ name: "bob", cwd: process.cwd(), agent: "a2a-test-client" })
    expect(res.json.peer.pid).toBe(process.pid)
  })

  it("pushes a message to a channel client with string meta, and acks it on the broker", async () => {
    const before = alice.pushed.length
    const bobPeer = (await bob.ok("whoami")).data.peer
    const alicePeer = (await alice.ok("whoami")).data.peer
    const t0 = performance.now()
    const sent = await bob.ok("send_peer_message", { to: "alice", message: "hello alice" })
    const pushed = await alice.push(before)
    expect(pushed.content).toBe("hello alice")
    expect(pushed.meta).toMatchObject({
      kind: "message",
      from_id: bobPeer.id,
      from_name: "bob",
      message_id: sent.data.message.id,
      thread_id: sent.data.message.threadId
    })
    for (const [key, value] of Object.entries(pushed.meta)) {
      expect(key).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/)
      expect(typeof value).toBe("string")
    }
    console.log(`send→push through broker + MCP: ${(pushed.at - t0).toFixed(1)} ms (bench/results/mcp.json has the distribution)`)
    // acked: the broker's inbox for alice holds nothing unacked
    await eventually(async () => {
      const res = await http(broker, token, "GET", `/api/peers/${alicePeer.id}/inbox`)
      return res.json.messages.length === 0 && res.json.cursor >= sent.data.message.seq ? true : undefined
    }, 5_000, "alice's ack")
    // and it is not handed over a second time
    expect((await alice.ok("check_inbox")).data.messages).toEqual([])
  })

  it("pushes nothing to a client without the capability: check_inbox returns the message once, then acks it", async () => {
    const bobPeer = (await bob.ok("whoami")).data.peer
    const sent = await alice.ok("send_peer_message", { to: bobPeer.id, message: "hello bob\nsecond line" })
    const inbox = await eventually(async () => {
      const r = await bob.ok("check_inbox")
      return r.data.messages.length > 0 ? r : undefined
    }, 5_000, "bob's message")
    expect(inbox.data.messages.map((m: any) => m.body)).toEqual(["hello bob\nsecond line"])
    expect(inbox.text).toContain("from alice")
    expect(inbox.text).toContain(sent.data.message.id)
    expect((await bob.ok("check_inbox")).data.messages).toEqual([])
    const res = await http(broker, token, "GET", `/api/peers/${bobPeer.id}/inbox`)
    expect(res.json.messages).toEqual([])
    expect(res.json.cursor).toBeGreaterThanOrEqual(sent.data.message.seq)
    // bob's client got no channel notification at all
    expect(bob.pushed).toEqual([])
  })

  it("pushes to a client that does not declare claude/channel when A2A_CHANNELS=1 says it shows them", async () => {
    const dana = await start({ url: broker.url, token, name: "dana", env: { A2A_CHANNELS: "1" } })
    expect((await dana.ok("whoami")).data.push).toBe(true)
    const sent = await bob.ok("send_peer_message", { to: "dana", message: "pushed without the capability" })
    const pushed = await dana.push(0)
    expect(pushed).toMatchObject({ content: "pushed without the capability", meta: { message_id: sent.data.message.id } })
    expect((await dana.ok("check_inbox")).data.messages).toEqual([])
  })

  it("keeps a reply in its thread", async () => {
    const first = await alice.ok("send_peer_message", { to: "bob", message: "question?" })
    const [q] = (await bob.ok("wait_for_messages", { timeout_seconds: 10 })).data.messages
    expect(q.id).toBe(first.data.message.id)
    const before = alice.pushed.length
    await bob.ok("send_peer_message", { to: q.from, message: "answer!", reply_to: q.id, thread_id: q.threadId })
    const reply = await alice.push(before)
    expect(reply.meta.reply_to).toBe(first.data.message.id)
    expect(reply.meta.thread_id).toBe(first.data.message.threadId)
  })

  it("wait_for_messages returns as soon as a message arrives", async () => {
    const waiting = bob.ok("wait_for_messages", { timeout_seconds: 60 })
    // the wait is parked on the server before the send: a whoami round trip proves the server is serving
    await bob.ok("whoami")
    await alice.ok("send_peer_message", { to: "bob", message: "wake up" })
    const result = await waiting
    expect(result.data.messages.map((m: any) => m.body)).toEqual(["wake up"])
  })

  it("wait_for_messages times out empty", async () => {
    const result = await bob.ok("wait_for_messages", { timeout_seconds: 0.2 })
    expect(result.data.messages).toEqual([])
    expect(result.text).toContain("before the timeout")
  })

  it("a team message reaches every other member, pushed or in the inbox", async () => {
    const carol = await start({ url: broker.url, token, name: "carol", teams: "dev" })
    const before = alice.pushed.length
    const sent = await carol.ok("send_team_message", { team: "dev", message: "standup in 5" })
    expect(sent.data.recipients).toHaveLength(2)
    const pushed = await alice.push(before)
    expect(pushed).toMatchObject({ content: "standup in 5", meta: { team: "dev", from_name: "carol" } })
    const bobs = await eventually(async () => {
      const r = await bob.ok("check_inbox")
      return r.data.messages.length > 0 ? r.data.messages : undefined
    }, 5_000, "bob's team message")
    expect(bobs.map((m: any) => [m.body, m.team])).toEqual([["standup in 5", "dev"]])
    expect((await carol.ok("check_inbox")).data.messages).toEqual([])
  })

  it("lists peers by scope, with summaries, and teams", async () => {
    await bob.ok("set_summary", { summary: "refactoring the parser" })
    const all = await alice.ok("list_peers")
    const bobRow = all.data.peers.find((p: any) => p.name === "bob")
    expect(bobRow.summary).toBe("refactoring the parser")
    expect(all.data.peers.some((p: any) => p.name === "alice")).toBe(false)
    expect((await alice.ok("list_peers", { include_self: true })).data.peers.some((p: any) => p.name === "alice")).toBe(true)
    const dir = await alice.ok("list_peers", { scope: "directory" })
    expect(dir.data.peers.map((p: any) => p.name)).toEqual(expect.arrayContaining(["bob"]))
    const host = await alice.ok("list_peers", { scope: "host" })
    expect(host.data.peers.map((p: any) => p.name)).toEqual(expect.arrayContaining(["bob"]))
    await bob.ok("join_team", { team: "parsers" })
    const team = await alice.ok("list_peers", { scope: "team", team: "parsers" })
    expect(team.data.peers.map((p: any) => p.name)).toEqual(["bob"])
    expect((await bob.ok("whoami")).data.peer.teams).toEqual(["dev", "parsers"])
    const teams = await bob.ok("list_teams")
    expect(teams.data.teams.map((t: any) => t.name)).toEqual(expect.arrayContaining(["dev", "parsers"]))
    expect(teams.text).toMatch(/parsers \[member\]/)
    await bob.ok("leave_team", { team: "parsers" })
    expect((await alice.ok("list_peers", { scope: "team", team: "parsers" })).data.peers).toEqual([])
    expect((await bob.ok("whoami")).data.peer.teams).toEqual(["dev"])
  })

  it("shows offline peers only when asked", async () => {
    const dave = await start({ url: broker.url, token, name: "dave" })
    await dave.ok("whoami")
    const daveId = (await dave.ok("whoami")).data.peer.id
    await http(broker, token, "DELETE", `/api/peers/${daveId}`)
    const online = await alice.ok("list_peers")
    expect(online.data.peers.some((p: any) => p.name === "dave")).toBe(false)
    // dave's own session learns it was unregistered and says so instead of failing obscurely
    const after = await eventually(async () => {
      const r = await dave.call("whoami")
      return r.isError === true ? r : undefined
    }, 5_000, "dave's session to notice")
    expect(after.text).toContain("unregistered")
  })
})

describe("bad input", () => {
  it("returns isError results with clear text, and keeps serving", async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["send_peer_message", { to: "nobody-here", message: "hi" }, /PeerNotFound|no peer/i],
      ["send_peer_message", { to: "bob", message: "" }, /must not be empty/],
      ["send_peer_message", { to: "bob", message: "x".repeat(262_145) }, /at most 262144/],
      ["send_peer_message", { to: "bob" }, /message/],
      ["send_peer_message", { to: "bob", message: "hi", reply_to: "" }, /reply_to/],
      ["send_team_message", { team: "no-such-team", message: "hi" }, /TeamNotFound|team/i],
      ["send_team_message", { team: "bad team name!", message: "hi" }, /team/],
      ["leave_team", { team: "no-such-team" }, /TeamNotFound/],
      ["join_team", { team: "" }, /team/],
      ["list_peers", { scope: "galaxy" }, /scope/],
      ["check_inbox", { limit: 0 }, /limit/],
      ["wait_for_messages", { timeout_seconds: 10_000 }, /timeout_seconds/],
      ["stop_peer", {}, /exactly one/],
      ["stop_peer", { peer: "nobody-here" }, /no peer/],
      ["stop_peer", { spawn_id: "s_nope" }, /SpawnNotFound/],
      ["spawn_peer", { preset: "command" }, /command/],
      ["set_summary", { summary: "y".repeat(2_001) }, /summary/]
    ]
    for (const [tool, args, pattern] of cases) {
      const result = await bob.call(tool, args)
      expect(result.isError, `${tool} ${JSON.stringify(args).slice(0, 80)} → ${result.text}`).toBe(true)
      expect(result.text).toMatch(pattern)
    }
    const unknown = await bob.client.callTool({ name: "no_such_tool", arguments: {} }).catch((e: Error) => ({ isError: true, text: e.message }))
    expect(unknown.isError).toBe(true)
    // still serving, still on the bus
    expect((await bob.ok("whoami")).data.peer.name).toBe("bob")
    await alice.ok("send_peer_message", { to: "bob", message: "still there?" })
    const r = await bob.ok("wait_for_messages", { timeout_seconds: 10 })
    expect(r.data.messages.map((m: any) => m.body)).toEqual(["still there?"])
  })
})

describe("spawn and stop", () => {
  it("spawns on a runner, pushes spawn_status events, and stops by spawn id and by peer", async () => {
    const runnerToken = await broker.token("acme", "runner")
    const frames: Array<any> = []
    const waiters: Array<[string, (f: any) => void]> = []
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/r1`, { headers: { authorization: `Bearer ${runnerToken}` } })
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      const i = waiters.findIndex(([type]) => type === frame.type)
      if (i >= 0) waiters.splice(i, 1)[0]![1](frame)
      else frames.push(frame)
    })
    const next = (type: string) =>
      new Promise<any>((resolve) => {
        const i = frames.findIndex((f) => f.type === type)
        if (i >= 0) resolve(frames.splice(i, 1)[0])
        else waiters.push([type, resolve])
      })
    await new Promise((resolve) => ws.once("open", resolve))
    ws.send(JSON.stringify({ type: "hello", runner: { id: "r1", host: "h", labels: { zone: "a" }, capacity: 2, presets: ["command", "claude"], version: "t" }, agents: [] }))
    const runners = await eventually(async () => {
      const r = await alice.ok("list_runners")
      return r.data.runners.length > 0 ? r : undefined
    }, 5_000, "the runner")
    expect(runners.text).toContain("r1")

    const before = alice.pushed.length
    const spawned = await alice.ok("spawn_peer", { name: "helper", command: "node", args: ["agent.js"], labels: { zone: "a" }, teams: ["dev"] })
    const order = await next("spawn")
    expect(order.spawn.id).toBe(spawned.data.spawn.id)
    expect(order.spawn.spec).toMatchObject({ name: "helper", command: "node", args: ["agent.js"] })
    ws.send(JSON.stringify({ type: "spawn_status", spawnId: order.spawn.id, status: "running", pid: 4242 }))
    const event = await eventually(async () => alice.pushed.slice(before).find((p) => p.meta.kind === "spawn_status" && p.meta.status === "running"), 5_000, "spawn_status push")
    expect(event.meta).toMatchObject({ spawn_id: order.spawn.id, runner_id: "r1", pid: "4242", name: "helper" })
    expect(event.content).toContain("running")

    await alice.ok("stop_peer", { spawn_id: order.spawn.id })
    const stop = await next("stop")
    expect(stop.spawnId).toBe(order.spawn.id)
    ws.send(JSON.stringify({ type: "spawn_status", spawnId: order.spawn.id, status: "exited", exitCode: 0 }))
    await eventually(async () => alice.pushed.slice(before).find((p) => p.meta.status === "exited"), 5_000, "exited push")

    // stop by peer: the spawned process registers with its spawn id, then is stopped by name
    const second = await alice.ok("spawn_peer", { name: "helper2", command: "node" })
    const order2 = await next("spawn")
    expect(order2.spawn.id).toBe(second.data.spawn.id)
    ws.send(JSON.stringify({ type: "spawn_status", spawnId: order2.spawn.id, status: "running", pid: 4343 }))
    const helper = await start({ url: broker.url, token: order2.spawn.token, name: "helper2", env: { A2A_SPAWN_ID: order2.spawn.id } })
    expect((await helper.ok("whoami")).data.peer.spawnId).toBe(order2.spawn.id)
    await eventually(async () => alice.pushed.slice(before).find((p) => p.meta.spawn_id === order2.spawn.id && p.meta.status === "registered"), 5_000, "registered push")
    await bob.ok("stop_peer", { peer: "helper2" })
    expect((await next("stop")).spawnId).toBe(order2.spawn.id)
    ws.close()
  })
})

describe("spawn for a task", () => {
  it("spawn_peer task=…: a claude session gets the task as its first prompt; its MCP server holds it from registration, keeps the lease alive and completes it", async () => {
    const runnerToken = await broker.token("acme", "runner")
    const orders: Array<any> = []
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/r-task`, { headers: { authorization: `Bearer ${runnerToken}` } })
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      if (frame.type === "spawn") {
        orders.push(frame.spawn)
        ws.send(JSON.stringify({ type: "spawn_status", spawnId: frame.spawn.id, status: "running", pid: 4545 }))
      }
    })
    await new Promise((resolve) => ws.once("open", resolve))
    ws.send(JSON.stringify({ type: "hello", runner: { id: "r-task", host: "h", labels: { zone: "tasks" }, capacity: 2, presets: ["claude"], version: "t" }, agents: [] }))
    const lead = await start({ url: broker.url, token: await broker.scopedToken("acme", ["peer"], ["spawn"]), name: "task-lead", teams: "mcp-queue" })
    try {
      await eventually(async () => ((await lead.ok("list_runners")).data.runners.some((r: any) => r.id === "r-task") ? true : undefined), 30_000, "the runner")
      const created = await lead.ok("create_task", { team: "mcp-queue", title: "summarise the logs", body: "the last 100 lines", labels: ["ops"] })
      const id: string = created.data.task.id

      const refused = await lead.client.callTool({ name: "spawn_peer", arguments: { name: "nobody", task: "t_unknown", labels: { zone: "tasks" } } })
      expect(refused.isError).toBe(true)
      expect(JSON.stringify(refused.content)).toMatch(/TaskNotFound/)

      const spawned = await lead.ok("spawn_peer", { name: "summariser", task: id, prompt: "Be brief.", labels: { zone: "tasks" } })
      expect(spawned.data.spawn.spec).toMatchObject({ task: id, teams: ["mcp-queue"] })
      const order = await eventually(async () => orders.find((o) => o.id === spawned.data.spawn.id), 30_000, "the order")
      // The first prompt is the task, how to finish it, then the spec's own prompt.
      expect(order.spec.prompt).toContain(`task ${id}`)
      expect(order.spec.prompt).toContain("Title: summarise the logs")
      expect(order.spec.prompt).toContain("Labels: ops")
      expect(order.spec.prompt).toContain("the last 100 lines")
      expect(order.spec.prompt).toMatch(/complete_task[\s\S]*fail_task/)
      expect(order.spec.prompt.endsWith("\n\nBe brief.")).toBe(true)

      // The session's MCP server, as the runner starts it (spawn token, A2A_SPAWN_ID, A2A_TASK_ID), with a short lease renewal.
      const session = await start({
        url: broker.url,
        token: order.token,
        name: "summariser",
        teams: order.spec.teams.join(","),
        env: { A2A_SPAWN_ID: order.id, A2A_TASK_ID: id, A2A_TASK_LEASE_MS: "1500" }
      })
      const me = (await session.ok("whoami")).data.peer
      const held = await http(broker, token, "GET", `/api/tasks/${id}`)
      expect(held.json.task).toMatchObject({ state: "claimed", assignee: me.id, attempts: 1 })
      // The broker's claim is 60 s; the server renews it with its own lease, so the expiry moves.
      const first = Date.parse(held.json.task.leaseExpiresAt)
      await eventually(async () => {
        const t = (await http(broker, token, "GET", `/api/tasks/${id}`)).json.task
        return Date.parse(t.leaseExpiresAt) !== first ? t : undefined
      }, 30_000, "a renewed lease")
      const done = await session.ok("complete_task", { task_id: id, result: "three errors, all timeouts" })
      expect(done.data.task).toMatchObject({ state: "done", assignee: me.id, result: "three errors, all timeouts" })
    } finally {
      ws.close()
    }
  }, 120_000)
})
