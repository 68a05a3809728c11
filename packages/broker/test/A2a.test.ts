/**
 * The A2A gateway (docs/a2a.md) against a real broker on 127.0.0.1, driven by the official
 * `@a2a-js/sdk` client for each protocol generation the broker serves (1.0, and 0.3 through the
 * SDK's v0.3 compatibility transport), with a test peer on the bus (our SDK) answering.
 */
import { type AgentCard, type Message, Role, type StreamResponse, type Task, TaskState } from "@a2a-js/sdk"
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory, type Client } from "@a2a-js/sdk/client"
import { randomUUID } from "node:crypto"
import { createServer, type Server } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { opened } from "./support.js"

const authed =
  (token: string): typeof fetch =>
  (input, init) => {
    const headers = new Headers(init?.headers)
    headers.set("authorization", `Bearer ${token}`)
    return fetch(input, { ...init, headers })
  }

const cardPath = (peer: string) => `/a2a/peers/${peer}/.well-known/agent-card.json`

/** An official SDK client of a peer's card: 1.0 natively, 0.3 through the SDK's compat transport (the card's 0.3 interface). */
const sdkClient = async (broker: TestBroker, token: string, peer: string, version: "1.0" | "0.3"): Promise<Client> => {
  const fetchImpl = authed(token)
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      cardResolver: new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }),
      transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat: { enabled: true } })]
    })
  )
  if (version === "1.0") return factory.createFromUrl(broker.url, cardPath(peer))
  const card = (await new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }).resolve(broker.url, cardPath(peer))) as AgentCard
  return factory.createFromAgentCard({ ...card, supportedInterfaces: card.supportedInterfaces.filter((i) => i.protocolVersion === "0.3") })
}

const userMessage = (text: string, extra: Partial<Message> = {}): Message =>
  ({
    messageId: randomUUID(),
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" }],
    contextId: "",
    taskId: "",
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
    ...extra
  }) as Message

const send = (text: string, extra: Partial<Message> = {}, configuration?: object) =>
  ({ tenant: "", message: userMessage(text, extra), configuration, metadata: undefined }) as never

const textOf = (m: Message | undefined) => (m?.parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("")
const isTask = (r: unknown): r is Task => typeof r === "object" && r !== null && "status" in r && "id" in r

/** Poll `probe` until it returns a value, with a generous deadline (no sleeps in place of events). */
const until = async <A>(probe: () => A | undefined | Promise<A | undefined>, what: string, ms = 20_000): Promise<A> => {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("A2A gateway: bus peers as A2A agents", () => {
  let broker: TestBroker
  let token: string
  let otherTenant: string
  const received: Array<{ body: string; meta?: any; from: string; threadId: string }> = []
  let webhook: Server
  let webhookUrl: string
  const pushed: Array<{ headers: Record<string, unknown>; body: any }> = []
  let closePeer: () => Promise<void>
  /** Messages the peer holds unanswered (`wait`), by A2A task id, and how to answer them later. */
  const held = new Map<string, { id: string; from: string }>()
  let answer: (to: { id: string; from: string }, body: string) => Promise<unknown>

  beforeAll(async () => {
    broker = await startBroker()
    token = await broker.token("default", "peer")
    otherTenant = await broker.token("elsewhere", "peer")
    const api = client(broker, token)
    const peer = (await api.peers.register({ name: "echo", summary: "Echoes what it is told", meta: { a2a: true } })).peer
    await api.peers.register({ name: "private-peer", summary: "did not opt in" })
    const channel = api.connect(peer.id, { autoAck: true })
    channel.on("message", (m) => {
      const meta = (m.meta as any)?.a2a
      received.push({ body: m.body, meta, from: m.from, threadId: m.threadId })
      if (meta?.kind === "cancel") return
      const reply = (body: string, state?: string) => channel.send({ to: m.from, body, replyTo: m.id, ...(state ? { meta: { a2a: { state } } } : {}) })
      void (async () => {
        if (m.body.startsWith("echo ")) return reply(`echo: ${m.body.slice(5)}`)
        if (m.body === "long") {
          await reply("step 1", "working")
          await reply("step 2", "working")
          return reply("all done")
        }
        if (m.body === "hold") return reply("started", "working")
        if (m.body === "wait") {
          held.set(meta?.taskId, { id: m.id, from: m.from })
          return reply("waiting", "working")
        }
        if (m.body === "ask") return reply("which branch?", "input-required")
        if (m.body === "main") return reply("merged main")
        if (m.body === "break") return reply("could not", "failed")
      })()
    })
    await opened(channel)
    answer = (to, body) => channel.send({ to: to.from, body, replyTo: to.id })
    closePeer = () => api.close()
    webhook = createServer((req, res) => {
      let body = ""
      req.on("data", (c) => (body += c))
      req.on("end", () => {
        pushed.push({ headers: req.headers, body: JSON.parse(body) })
        res.writeHead(200).end()
      })
    })
    await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", r))
    webhookUrl = `http://127.0.0.1:${(webhook.address() as { port: number }).port}/hook`
  })

  afterAll(async () => {
    await closePeer?.()
    await new Promise((r) => webhook?.close(r))
    await broker?.close()
  })

  for (const version of ["1.0", "0.3"] as const) {
    describe(`protocol ${version}`, () => {
      it("fetches the peer's card: name, skill from the summary, bearer auth, streaming and push", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        expect(a2a.protocolVersion).toBe(version)
        const card = await a2a.getAgentCard()
        expect(card.name).toBe("echo")
        expect(card.skills[0]?.description).toBe("Echoes what it is told")
        expect(card.capabilities?.streaming).toBe(true)
        expect(card.capabilities?.pushNotifications).toBe(true)
        expect(Object.keys(card.securitySchemes)).toEqual(["bearer"])
      })

      it("a message reaches the peer's inbox as a bus message, and the peer's reply comes back as a Message", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const contextId = randomUUID()
        const result = await a2a.sendMessage(send(`echo hello ${version}`, { contextId }))
        expect(isTask(result)).toBe(false)
        expect(textOf(result as Message)).toBe(`echo: hello ${version}`)
        expect((result as Message).role).toBe(Role.ROLE_AGENT)
        expect((result as Message).contextId).toBe(contextId)
        const delivered = received.find((r) => r.body === `echo hello ${version}`)!
        expect(delivered.meta).toMatchObject({ contextId, kind: "message" })
        // Contexts are threads.
        expect(delivered.threadId).toBe(contextId)
      })

      it("streams a long task: submitted, working with the peer's progress, an artifact, completed; then gets it", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const events: Array<StreamResponse["payload"]> = []
        for await (const event of a2a.sendMessageStream(send("long"))) events.push(event.payload)
        const kinds = events.map((e) => e?.$case)
        expect(kinds[0]).toBe("task")
        expect(kinds).toContain("artifactUpdate")
        const flat = events.map((e: any) => e.value)
        const task = flat[0] as Task
        expect(task.status?.state).toBe(TaskState.TASK_STATE_SUBMITTED)
        const states = events.filter((e) => e?.$case === "statusUpdate").map((e: any) => e.value.status.state)
        expect(states).toContain(TaskState.TASK_STATE_WORKING)
        expect(states.at(-1)).toBe(TaskState.TASK_STATE_COMPLETED)
        const progress = flat.filter((e: any) => e.status?.message).map((e: any) => textOf(e.status.message))
        expect(progress).toEqual(expect.arrayContaining(["step 1", "step 2", "all done"]))
        expect(kinds.length).toBeGreaterThanOrEqual(6)
        const got = await a2a.getTask({ tenant: "", id: task.id, historyLength: undefined } as never)
        expect(got.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
        expect(textOf({ parts: got.artifacts[0]?.parts } as Message)).toBe("all done")
      })

      it("cancels a task the peer is working on; the peer is told; a finished task cannot be canceled", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const stream = a2a.sendMessageStream(send("hold"))
        let taskId = ""
        for await (const event of stream) {
          const value: any = event.payload?.value
          if (value.status?.state === TaskState.TASK_STATE_WORKING && textOf(value.status.message) === "started") {
            taskId = value.taskId
            break
          }
        }
        expect(taskId).not.toBe("")
        const canceled = await a2a.cancelTask({ tenant: "", id: taskId, metadata: undefined } as never)
        expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED)
        await until(() => received.find((r) => r.meta?.kind === "cancel" && r.meta?.taskId === taskId), "the peer told of the cancel")
        expect((await a2a.getTask({ tenant: "", id: taskId } as never)).status?.state).toBe(TaskState.TASK_STATE_CANCELED)
        await expect(a2a.cancelTask({ tenant: "", id: taskId } as never)).resolves.toMatchObject({ status: { state: TaskState.TASK_STATE_CANCELED } })
      })

      it("input-required: the task waits, the next message on it reaches the peer as a reply, and completes it", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const first = await a2a.sendMessage(send("ask"))
        expect(isTask(first)).toBe(true)
        const task = first as Task
        expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED)
        expect(textOf(task.status?.message)).toBe("which branch?")
        const second = (await a2a.sendMessage(send("main", { taskId: task.id, contextId: task.contextId }))) as Task
        expect(second.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
        expect(textOf(second.status?.message)).toBe("merged main")
      })

      it("a failed answer fails the task", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const stream = a2a.sendMessageStream(send("break"))
        const states: Array<number> = []
        for await (const event of stream) {
          const value: any = event.payload?.value
          if (value.status !== undefined) states.push(value.status.state)
        }
        expect(states.at(-1)).toBe(TaskState.TASK_STATE_FAILED)
      })

      it("resubscribes to a running task and registers a push config on it: both see the peer's later answer", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const first = (await a2a.sendMessage(send("wait", {}, { acceptedOutputModes: [], historyLength: undefined, returnImmediately: true, taskPushNotificationConfig: undefined }))) as Task
        expect(isTask(first)).toBe(true)
        const config = await a2a.createTaskPushNotificationConfig({ tenant: "", id: "", taskId: first.id, url: webhookUrl, token: `sub-${version}`, authentication: undefined } as never)
        expect(config.taskId).toBe(first.id)
        const before = pushed.length
        const target = await until(() => held.get(first.id), "the peer holding the message")
        const seen: Array<number> = []
        const done = (async () => {
          for await (const event of a2a.resubscribeTask({ tenant: "", id: first.id } as never)) {
            const value: any = event.payload?.value
            if (value?.status !== undefined) seen.push(value.status.state)
          }
        })()
        // The stream is open once its first event (the task as it is now) arrived.
        await until(() => (seen.length > 0 ? true : undefined), "the resubscription's first event")
        await answer(target, "finished late")
        await done
        expect(seen.at(-1)).toBe(TaskState.TASK_STATE_COMPLETED)
        const hook = await until(
          () => pushed.slice(before).find((p) => JSON.stringify(p.body).includes(first.id) && /COMPLETED|"completed"/.test(JSON.stringify(p.body))),
          "a push of the completed task"
        )
        expect(hook.headers["x-a2a-notification-token"]).toBe(`sub-${version}`)
        expect((await a2a.getTask({ tenant: "", id: first.id } as never)).status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
      })

      it("pushes task updates to a webhook named in the send configuration", async () => {
        const a2a = await sdkClient(broker, token, "echo", version)
        const before = pushed.length
        const hookToken = `tok-${version}`
        const first = (await a2a.sendMessage(
          send("long", {}, { acceptedOutputModes: [], historyLength: undefined, returnImmediately: true, taskPushNotificationConfig: { tenant: "", id: "", taskId: "", url: webhookUrl, token: hookToken, authentication: undefined } })
        )) as Task
        expect(isTask(first)).toBe(true)
        const completed = await until(
          () =>
            pushed.slice(before).find((p) => JSON.stringify(p.body).includes(first.id) && /COMPLETED|"completed"/.test(JSON.stringify(p.body))),
          "a push of the completed task"
        )
        expect(completed.headers["x-a2a-notification-token"]).toBe(hookToken)
      })
    })
  }

  describe("refusals", () => {
    it("401 without a token, 404 for a peer that did not opt in, and for another tenant's peer", async () => {
      expect((await http(broker, undefined, "GET", cardPath("echo"))).status).toBe(401)
      expect((await http(broker, undefined, "POST", "/a2a/peers/echo", { jsonrpc: "2.0", id: 1, method: "SendMessage", params: {} })).status).toBe(401)
      expect((await http(broker, "a2a_not-a-token", "GET", cardPath("echo"))).status).toBe(401)
      const hidden = await http(broker, token, "GET", cardPath("private-peer"))
      expect(hidden.status).toBe(404)
      expect(hidden.json._tag).toBe("PeerNotFound")
      const cross = await http(broker, otherTenant, "GET", cardPath("echo"))
      expect(cross.status).toBe(404)
      expect((await http(broker, otherTenant, "POST", "/a2a/peers/echo", { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }, { "a2a-version": "1.0" })).status).toBe(404)
    })

    it("a peer holding the name a2a-gateway does not stop the gateway of its tenant", async () => {
      const squatterToken = await broker.token("squatted", "peer")
      const api = client(broker, squatterToken)
      await api.peers.register({ name: "a2a-gateway" })
      const target = (await api.peers.register({ name: "helper", meta: { a2a: true } })).peer
      const channel = api.connect(target.id, { autoAck: true })
      channel.on("message", (m) => void channel.send({ to: m.from, body: `got ${m.body}`, replyTo: m.id }).catch(() => undefined))
      await opened(channel)
      const a2a = await sdkClient(broker, squatterToken, "helper", "1.0")
      const answer = (await a2a.sendMessage(send("ping"))) as Message
      expect(textOf(answer)).toBe("got ping")
      await api.close()
    })

    it("another principal's task is not found", async () => {
      const a2a = await sdkClient(broker, token, "echo", "1.0")
      const task = (await a2a.sendMessage(send("ask"))) as Task
      const stranger = await sdkClient(broker, await broker.token("default", "peer"), "echo", "1.0")
      await expect(stranger.getTask({ tenant: "", id: task.id } as never)).rejects.toThrow(/not found/i)
    })

    const rpc = (body: unknown, version?: string) =>
      http(broker, token, "POST", "/a2a/peers/echo", body, version === undefined ? {} : { "a2a-version": version })

    it("malformed JSON → -32700, not JSON-RPC → -32600, unknown method → -32601, bad params → -32602 (both generations)", async () => {
      for (const version of ["1.0", undefined]) {
        const parse = await rpc("{not json", version)
        expect(parse.json.error.code).toBe(-32700)
        const notRpc = await rpc({ hello: "world" }, version)
        expect(notRpc.json.error.code).toBe(-32600)
        const unknown = await rpc({ jsonrpc: "2.0", id: 7, method: "tasks/teleport", params: {} }, version)
        expect(unknown.json).toMatchObject({ id: 7, error: { code: -32601 } })
      }
      const badParams = await rpc({ jsonrpc: "2.0", id: 8, method: "SendMessage", params: { message: 5 } }, "1.0")
      expect(badParams.json.error.code).toBe(-32602)
    })

    it("unknown task → -32001; oversize parts → -32602; unsupported version → -32009", async () => {
      const unknownTask = await rpc({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "no-such-task" } }, "1.0")
      expect(unknownTask.json).toMatchObject({ id: 1, error: { code: -32001 } })
      const unknownLegacy = await rpc({ jsonrpc: "2.0", id: 2, method: "tasks/get", params: { id: "no-such-task" } })
      expect(unknownLegacy.json).toMatchObject({ id: 2, error: { code: -32001 } })
      const big = "x".repeat(262_145)
      const oversize = await rpc(
        { jsonrpc: "2.0", id: 3, method: "SendMessage", params: { message: { messageId: "m1", role: "ROLE_USER", parts: [{ text: big }] } } },
        "1.0"
      )
      expect(oversize.json).toMatchObject({ id: 3, error: { code: -32602 } })
      const empty = await rpc({ jsonrpc: "2.0", id: 9, method: "SendMessage", params: { message: { messageId: "m9", role: "ROLE_USER", parts: [{ text: "" }] } } }, "1.0")
      expect(empty.json).toMatchObject({ id: 9, error: { code: -32602 } })
      const badContext = await rpc({ jsonrpc: "2.0", id: 10, method: "SendMessage", params: { message: { messageId: "m10", role: "ROLE_USER", contextId: "no spaces allowed", parts: [{ text: "echo x" }] } } }, "1.0")
      expect(badContext.json).toMatchObject({ id: 10, error: { code: -32602 } })
      const extended = await rpc({ jsonrpc: "2.0", id: 5, method: "GetExtendedAgentCard", params: {} }, "1.0")
      expect(extended.json).toMatchObject({ id: 5, error: { code: -32004 } })
      const listed = await rpc({ jsonrpc: "2.0", id: 6, method: "ListTasks", params: {} }, "1.0")
      expect(listed.json.result.tasks.length).toBeGreaterThan(0)
      const version = await rpc({ jsonrpc: "2.0", id: 4, method: "GetTask", params: { id: "x" } }, "7.0")
      expect(version.json).toMatchObject({ id: 4, error: { code: -32009 } })
      // Nothing of the refused sends reached the peer.
      expect(received.some((r) => r.body.length > 262_144)).toBe(false)
    })
  })

  it("the 1.0 card is the spec's JSON (proto field names for the security scheme and interfaces)", async () => {
    const card = await http(broker, token, "GET", cardPath("echo"), undefined, { "a2a-version": "1.0" })
    expect(card.json.securitySchemes).toEqual({ bearer: { httpAuthSecurityScheme: { description: "a2a broker token or OIDC JWT", scheme: "Bearer" } } })
    expect(card.json.securityRequirements).toEqual([{ schemes: { bearer: {} } }])
    expect(card.json.supportedInterfaces).toEqual([
      { url: `${broker.url}/a2a/peers/echo`, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: `${broker.url}/a2a/peers/echo`, protocolBinding: "JSONRPC", protocolVersion: "0.3" }
    ])
    expect(card.headers.get("vary")).toContain("A2A-Version")
  })

  it("the 0.3 card (no A2A-Version header) has the 0.3 shape; the tenant directory lists opted-in peers only", async () => {
    const legacy = await http(broker, token, "GET", cardPath("echo"))
    expect(legacy.json).toMatchObject({ protocolVersion: "0.3.0", name: "echo", preferredTransport: "JSONRPC" })
    expect(legacy.json.url).toBe(`${broker.url}/a2a/peers/echo`)
    const directory = await http(broker, token, "GET", "/a2a/.well-known/agent-card.json")
    expect(directory.status).toBe(200)
    expect(directory.json.skills.map((s: any) => s.id)).toEqual(["echo"])
  })
})
