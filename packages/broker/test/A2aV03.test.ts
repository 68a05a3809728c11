/**
 * The A2A gateway against a genuine protocol 0.3 client: the official `@a2a-js/sdk` 0.3.14
 * (installed as `a2a-sdk-v03`), which sends no `A2A-Version` header, reads the 0.3 card shape and
 * speaks `message/send`, `message/stream`, `tasks/get`, `tasks/cancel` and 0.3 push configs.
 */
import { type Client, ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory } from "a2a-sdk-v03/client"
import { randomUUID } from "node:crypto"
import { createServer, type Server } from "node:http"
import { afterAll, beforeAll, expect, it } from "vitest"
import { client, startBroker, type TestBroker } from "./harness.js"
import { opened } from "./support.js"

let broker: TestBroker
let token: string
let a2a: Client
let closePeer: () => Promise<void>
let webhook: Server
let webhookUrl: string
const pushed: Array<{ token: unknown; body: any }> = []
const received: Array<{ body: string; meta?: any }> = []

const message = (text: string, extra: Record<string, unknown> = {}) => ({
  message: { kind: "message" as const, role: "user" as const, messageId: randomUUID(), parts: [{ kind: "text" as const, text }], ...extra }
})

beforeAll(async () => {
  broker = await startBroker()
  token = await broker.token("default", "peer")
  const api = client(broker, token)
  const peer = (await api.peers.register({ name: "old-school", summary: "answers 0.3 clients", meta: { a2a: true } })).peer
  const channel = api.connect(peer.id, { autoAck: true })
  channel.on("message", (m) => {
    const meta = (m.meta as any)?.a2a
    received.push({ body: m.body, meta })
    if (meta?.kind === "cancel") return
    const reply = (body: string, state?: string) => channel.send({ to: m.from, body, replyTo: m.id, ...(state ? { meta: { a2a: { state } } } : {}) })
    void (async () => {
      if (m.body.startsWith("echo ")) return reply(`echo: ${m.body.slice(5)}`)
      if (m.body === "long") {
        await reply("step 1", "working")
        return reply("all done")
      }
      if (m.body === "hold") return reply("started", "working")
    })()
  })
  await opened(channel)
  closePeer = () => api.close()
  webhook = createServer((req, res) => {
    let body = ""
    req.on("data", (c) => (body += c))
    req.on("end", () => {
      pushed.push({ token: req.headers["x-a2a-notification-token"], body: JSON.parse(body) })
      res.writeHead(200).end()
    })
  })
  await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", r))
  webhookUrl = `http://127.0.0.1:${(webhook.address() as { port: number }).port}/hook`
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers)
    headers.set("authorization", `Bearer ${token}`)
    return fetch(input, { ...init, headers })
  }
  const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }) })
  a2a = await factory.createFromUrl(broker.url, "/a2a/peers/old-school/.well-known/agent-card.json")
})
afterAll(async () => {
  await closePeer?.()
  await new Promise((r) => webhook?.close(r))
  await broker?.close()
})

const until = async <A>(probe: () => A | undefined, what: string, ms = 20_000): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const value = probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

it("reads the 0.3 card and gets a peer's quick answer as a 0.3 Message", async () => {
  const card = await a2a.getAgentCard()
  expect(card).toMatchObject({ name: "old-school", protocolVersion: "0.3.0", preferredTransport: "JSONRPC" })
  const result: any = await a2a.sendMessage(message("echo from 0.3"))
  expect(result.kind).toBe("message")
  expect(result.role).toBe("agent")
  expect(result.parts[0]).toMatchObject({ kind: "text", text: "echo: from 0.3" })
})

it("streams a long task (task, working, artifact, completed) and gets it", async () => {
  const events: Array<any> = []
  for await (const event of a2a.sendMessageStream(message("long"))) events.push(event)
  expect(events[0].kind).toBe("task")
  const updates = events.filter((e) => e.kind === "status-update").map((e) => e.status.state)
  expect(updates).toContain("working")
  expect(updates.at(-1)).toBe("completed")
  expect(events.some((e) => e.kind === "artifact-update" && e.artifact.parts[0].text === "all done")).toBe(true)
  const task: any = await a2a.getTask({ id: events[0].id })
  expect(task.status.state).toBe("completed")
})

it("cancels a task the peer works on", async () => {
  let taskId = ""
  for await (const event of a2a.sendMessageStream(message("hold")) as AsyncGenerator<any>) {
    if (event.kind === "status-update" && event.status.message?.parts?.[0]?.text === "started") {
      taskId = event.taskId
      break
    }
  }
  const canceled: any = await a2a.cancelTask({ id: taskId })
  expect(canceled.status.state).toBe("canceled")
  await until(() => received.find((r) => r.meta?.kind === "cancel" && r.meta?.taskId === taskId), "the peer told of the cancel")
})

it("pushes 0.3 task bodies to a webhook set in the send configuration", async () => {
  const first: any = await a2a.sendMessage({ ...message("long"), configuration: { blocking: false, pushNotificationConfig: { url: webhookUrl, token: "old-token" } } })
  expect(first.kind).toBe("task")
  const done = await until(() => pushed.find((p) => p.body.id === first.id && p.body.status?.state === "completed"), "a 0.3 push of the completed task")
  expect(done.token).toBe("old-token")
  expect(done.body.kind).toBe("task")
})

it("an unknown task is a 0.3 TaskNotFound error", async () => {
  await expect(a2a.getTask({ id: "no-such-task" })).rejects.toThrow(/not found/i)
})
