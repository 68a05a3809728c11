/**
 * A remote A2A agent for the bridge tests: the official `@a2a-js/sdk` server (DefaultRequestHandler
 * behind its Express JSON-RPC handler) on 127.0.0.1, requiring a bearer token. It answers
 * `hello …` with a Message, and anything else with a task: working (with a progress note), an
 * artifact, then completed. `requests` records what reached it (text, context, auth header).
 */
import { type AgentCard, Role, TaskState } from "@a2a-js/sdk"
import { AgentEvent, type AgentExecutor, DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server"
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express"
import express from "express"
import { randomUUID } from "node:crypto"
import type { Server } from "node:http"

export interface RemoteAgent {
  readonly url: string
  readonly cardUrl: string
  readonly requests: Array<{ text: string; contextId: string; authorization?: string }>
  readonly close: () => Promise<void>
}

const text = (value: string) => ({ content: { $case: "text" as const, value }, metadata: undefined, filename: "", mediaType: "text/plain" })
const agentMessage = (value: string, contextId: string, taskId = "") => ({
  messageId: randomUUID(),
  role: Role.ROLE_AGENT,
  parts: [text(value)],
  contextId,
  taskId,
  metadata: undefined,
  extensions: [],
  referenceTaskIds: []
})

export const startRemoteAgent = async (token: string, name = "remote-echo"): Promise<RemoteAgent> => {
  const requests: RemoteAgent["requests"] = []
  let url = ""
  const executor: AgentExecutor = {
    execute: async (ctx, bus) => {
      const said = ctx.userMessage.parts.map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("")
      const headers = (ctx.context.state.get("headers") ?? {}) as Record<string, string>
      requests.push({ text: said, contextId: ctx.contextId, authorization: headers["authorization"] })
      if (said.startsWith("hello")) {
        bus.publish(AgentEvent.message(agentMessage(`${name} says: ${said}`, ctx.contextId) as never))
        bus.finished()
        return
      }
      const { taskId, contextId } = ctx
      const status = (state: TaskState, note?: string) =>
        AgentEvent.statusUpdate({ taskId, contextId, status: { state, message: note === undefined ? undefined : (agentMessage(note, contextId, taskId) as never), timestamp: new Date().toISOString() }, metadata: undefined })
      bus.publish(AgentEvent.task({ id: taskId, contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() }, artifacts: [], history: [ctx.userMessage], metadata: undefined }))
      bus.publish(status(TaskState.TASK_STATE_WORKING, `working on: ${said}`))
      bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact: { artifactId: "a1", name: "result", description: "", parts: [text(`result of ${said}`)], metadata: undefined, extensions: [] }, append: false, lastChunk: true, metadata: undefined }))
      bus.publish(status(TaskState.TASK_STATE_COMPLETED))
      bus.finished()
    },
    cancelTask: async () => {}
  }
  const card = (): AgentCard =>
    ({
      name,
      description: "An echo agent on the official A2A SDK",
      supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
      version: "1.0.0",
      capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
      securitySchemes: {},
      securityRequirements: [],
      defaultInputModes: ["text"],
      defaultOutputModes: ["text"],
      skills: [{ id: "echo", name: "echo", description: "echoes", tags: [], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }],
      documentationUrl: "",
      signatures: []
    }) as unknown as AgentCard
  const app = express()
  app.use((req, res, next) => {
    if (req.headers["authorization"] !== `Bearer ${token}`) return void res.status(401).json({ error: "unauthorized" })
    next()
  })
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s))
  })
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  url = `${base}/rpc`
  const handler = new DefaultRequestHandler(card(), new InMemoryTaskStore(), executor)
  app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: async () => card() }))
  app.use("/rpc", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  return { url: base, cardUrl: `${base}/.well-known/agent-card.json`, requests, close: () => new Promise((r) => server.close(() => r())) }
}

/**
 * The same kind of remote agent on the official SDK 0.3.14 server (a genuine protocol 0.3 agent,
 * `a2a-sdk-v03`): `hello …` answers a Message, anything else a task (working, artifact, completed).
 */
export const startRemoteAgentV03 = async (token: string, name = "remote-old"): Promise<RemoteAgent> => {
  const { DefaultRequestHandler: Handler03, InMemoryTaskStore: Store03 } = await import("a2a-sdk-v03/server")
  const { agentCardHandler: cardHandler03, jsonRpcHandler: rpcHandler03, UserBuilder: Users03 } = await import("a2a-sdk-v03/server/express")
  const requests: RemoteAgent["requests"] = []
  const app = express()
  app.use((req, res, next) => {
    if (req.headers["authorization"] !== `Bearer ${token}`) return void res.status(401).json({ error: "unauthorized" })
    next()
  })
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s))
  })
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const card = {
    name,
    description: "A 0.3 agent on the official A2A SDK 0.3",
    protocolVersion: "0.3.0",
    version: "1.0.0",
    url: `${base}/rpc`,
    preferredTransport: "JSONRPC",
    capabilities: { streaming: true, pushNotifications: false },
    defaultInputModes: ["text"],
    defaultOutputModes: ["text"],
    skills: [{ id: "echo", name: "echo", description: "echoes", tags: [] }]
  }
  const text03 = (value: string) => ({ kind: "text" as const, text: value })
  const executor = {
    execute: async (ctx: any, bus: any) => {
      const said = ctx.userMessage.parts.map((p: any) => p.text ?? "").join("")
      requests.push({ text: said, contextId: ctx.contextId })
      const { taskId, contextId } = ctx
      if (said.startsWith("hello")) {
        bus.publish({ kind: "message", role: "agent", messageId: randomUUID(), parts: [text03(`${name} says: ${said}`)], contextId })
        bus.finished()
        return
      }
      const status = (state: string, note?: string, final = false) => ({
        kind: "status-update",
        taskId,
        contextId,
        final,
        status: { state, timestamp: new Date().toISOString(), ...(note === undefined ? {} : { message: { kind: "message", role: "agent", messageId: randomUUID(), parts: [text03(note)], taskId, contextId } }) }
      })
      bus.publish({ kind: "task", id: taskId, contextId, status: { state: "submitted", timestamp: new Date().toISOString() }, history: [ctx.userMessage] })
      bus.publish(status("working", `working on: ${said}`))
      bus.publish({ kind: "artifact-update", taskId, contextId, artifact: { artifactId: "a1", name: "result", parts: [text03(`result of ${said}`)] }, lastChunk: true })
      bus.publish(status("completed", undefined, true))
      bus.finished()
    },
    cancelTask: async () => {}
  }
  const handler = new Handler03(card as never, new Store03(), executor as never)
  app.use("/.well-known/agent-card.json", cardHandler03({ agentCardProvider: async () => card as never }))
  app.use("/rpc", rpcHandler03({ requestHandler: handler, userBuilder: Users03.noAuthentication }))
  return { url: base, cardUrl: `${base}/.well-known/agent-card.json`, requests, close: () => new Promise((r) => server.close(() => r())) }
}
