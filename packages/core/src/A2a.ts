/**
 * A2a: the subset of the Agent2Agent protocol (A2A, https://a2a-protocol.org) the broker speaks,
 * for both protocol generations it serves (1.0 and 0.3), and the conventions that map A2A onto
 * the bus (docs/a2a.md):
 *
 * - a peer opts in to being an A2A agent with `meta.a2a` (`true`, or an object with `skills`);
 * - a bus message the gateway delivers carries `meta.a2a = {taskId, contextId, messageId}`; the
 *   peer answers with a message `replyTo` it, and may set `meta.a2a.state` on the answer
 *   (`working` = a progress update, `input-required`, `failed`; default `completed`);
 * - contexts are threads: an A2A `contextId` is the bus `threadId`.
 *
 * The gateway itself (JSON-RPC dispatch, tasks, SSE, push notifications) lives in the broker; this
 * module holds only schemas and pure functions, so clients and tools can share them.
 */
import { Schema } from "effect"
import type { Peer } from "./Peer.js"

/** The two protocol generations served, newest first. The `A2A-Version` header picks one; absent means 0.3 (spec §3.6.2). */
export const VERSIONS = ["1.0", "0.3"] as const
export type Version = (typeof VERSIONS)[number]
export const VERSION_HEADER = "A2A-Version"

/** The version a request asked for: the header's value, `0.3` when absent. */
export const requestedVersion = (header: string | undefined): string => (header === undefined || header.trim() === "" ? "0.3" : header.trim())

/** JSON-RPC 2.0 and A2A error codes (spec §5.4 / §8). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  TaskNotFound: -32001,
  TaskNotCancelable: -32002,
  PushNotificationNotSupported: -32003,
  UnsupportedOperation: -32004,
  ContentTypeNotSupported: -32005,
  InvalidAgentResponse: -32006,
  VersionNotSupported: -32009
} as const

/** A JSON-RPC 2.0 request envelope (the `params` are judged by the method). */
export const JsonRpcRequest = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  id: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Number))),
  method: Schema.String,
  params: Schema.optional(Schema.Unknown)
})
export type JsonRpcRequest = typeof JsonRpcRequest.Type

/** A JSON-RPC 2.0 error envelope. */
export const JsonRpcError = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  id: Schema.NullOr(Schema.Union(Schema.String, Schema.Number)),
  error: Schema.Struct({ code: Schema.Number, message: Schema.String, data: Schema.optional(Schema.Unknown) })
})
export type JsonRpcError = typeof JsonRpcError.Type

export const jsonRpcError = (id: string | number | null | undefined, code: number, message: string): JsonRpcError => ({
  jsonrpc: "2.0",
  id: id ?? null,
  error: { code, message }
})

/** Methods of each generation (JSON-RPC binding). */
export const METHODS_V1 = [
  "SendMessage",
  "SendStreamingMessage",
  "GetTask",
  "ListTasks",
  "CancelTask",
  "SubscribeToTask",
  "CreateTaskPushNotificationConfig",
  "GetTaskPushNotificationConfig",
  "ListTaskPushNotificationConfigs",
  "DeleteTaskPushNotificationConfig",
  "GetExtendedAgentCard"
] as const
export const METHODS_V03 = [
  "message/send",
  "message/stream",
  "tasks/get",
  "tasks/cancel",
  "tasks/resubscribe",
  "tasks/pushNotificationConfig/set",
  "tasks/pushNotificationConfig/get",
  "tasks/pushNotificationConfig/list",
  "tasks/pushNotificationConfig/delete",
  "agent/getAuthenticatedExtendedCard"
] as const

const THREAD_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/

/**
 * Why the raw `params` of a send (either generation's JSON) cannot become a bus message, if they
 * cannot: parts beyond `maxChars` characters of text and data, no content at all, or a
 * `contextId` that is not a bus thread id. `undefined` when they can (other checks are the SDK's).
 */
export const sendParamsProblem = (params: unknown, maxChars: number): string | undefined => {
  const message = (params as { message?: unknown } | null | undefined)?.message
  if (message === null || typeof message !== "object") return undefined
  const { parts, contextId } = message as { parts?: unknown; contextId?: unknown }
  if (typeof contextId === "string" && contextId !== "" && !THREAD_ID.test(contextId)) return "contextId must be 1-128 characters of [A-Za-z0-9_.:-] (it is the bus thread)"
  if (!Array.isArray(parts)) return undefined
  let size = 0
  let content = false
  for (const part of parts) {
    if (part === null || typeof part !== "object") continue
    const p = part as Record<string, unknown>
    const file = p["file"] as Record<string, unknown> | undefined
    if (typeof p["text"] === "string") size += p["text"].length
    if (p["data"] !== undefined) size += JSON.stringify(p["data"])?.length ?? 0
    if (typeof p["raw"] === "string") size += p["raw"].length
    if (file !== undefined && typeof file["bytes"] === "string") size += file["bytes"].length
    if ((typeof p["text"] === "string" && p["text"] !== "") || p["data"] !== undefined || p["url"] !== undefined || p["raw"] !== undefined || file !== undefined) content = true
  }
  if (size > maxChars) return `message parts larger than ${maxChars} characters`
  if (!content) return "the message has no text, data or file content"
  return undefined
}

/** A part of a message (text, structured data, or a file by URL / bytes); the 1.0 JSON shape. */
export const Part = Schema.Struct({
  text: Schema.optional(Schema.String),
  data: Schema.optional(Schema.Unknown),
  url: Schema.optional(Schema.String),
  raw: Schema.optional(Schema.String),
  filename: Schema.optional(Schema.String),
  mediaType: Schema.optional(Schema.String),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})
export type Part = typeof Part.Type

/** Task states, in the 1.0 spelling (`TASK_STATE_*`) and the 0.3 one (kebab case). */
export const TaskState = Schema.Literal("submitted", "working", "input-required", "completed", "canceled", "failed", "rejected", "auth-required")
export type TaskState = typeof TaskState.Type
export const isTerminal = (state: TaskState): boolean => state === "completed" || state === "canceled" || state === "failed" || state === "rejected"

/** `meta.a2a` on a bus message the gateway delivered, or on a peer's answer to it. */
export const BusMeta = Schema.Struct({
  taskId: Schema.optional(Schema.String),
  contextId: Schema.optional(Schema.String),
  messageId: Schema.optional(Schema.String),
  /** On an answer: what the answer means for the task (default `completed`). */
  state: Schema.optional(Schema.Literal("working", "input-required", "completed", "failed")),
  /** On a message from the gateway: `cancel` when the A2A client canceled the task. */
  kind: Schema.optional(Schema.Literal("message", "cancel", "task-update")),
  /** On a message from a bridge peer: the remote agent's task state. */
  taskState: Schema.optional(Schema.String)
})
export type BusMeta = typeof BusMeta.Type

/** The `meta.a2a` of a message's meta, if it decodes. */
export const busMetaOf = (meta: unknown): BusMeta | undefined => {
  const value = (meta as { a2a?: unknown } | undefined)?.a2a
  if (value === undefined || value === null || typeof value !== "object") return undefined
  const decoded = Schema.decodeUnknownEither(BusMeta)(value)
  return decoded._tag === "Right" ? decoded.right : undefined
}

/** A skill a peer declares in `meta.a2a.skills`. */
export const Skill = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  description: Schema.optional(Schema.String),
  tags: Schema.optional(Schema.Array(Schema.String)),
  examples: Schema.optional(Schema.Array(Schema.String))
})
export type Skill = typeof Skill.Type

/** The opt-in: `meta.a2a` is `true` or an object (whose `skills`, if any, are the card's skills). */
export const PeerOptIn = Schema.Union(
  Schema.Literal(true),
  Schema.Struct({ skills: Schema.optional(Schema.Array(Skill)), description: Schema.optional(Schema.String) })
)

/** Whether a peer opted in to be reachable as an A2A agent, and what it declared. */
export const optInOf = (peer: Pick<Peer, "meta">): { readonly skills?: ReadonlyArray<Skill>; readonly description?: string } | undefined => {
  const value = (peer.meta as Record<string, unknown>)["a2a"]
  if (value === undefined || value === false) return undefined
  const decoded = Schema.decodeUnknownEither(PeerOptIn)(value)
  if (decoded._tag === "Left") return undefined
  return decoded.right === true ? {} : decoded.right
}

/** Skills of a peer's card: what it declared, else one skill made from its summary. */
export const skillsOf = (peer: Pick<Peer, "name" | "summary" | "meta" | "agent">): ReadonlyArray<Skill> => {
  const declared = optInOf(peer)?.skills
  if (declared !== undefined && declared.length > 0) return declared
  return [{ id: "chat", name: peer.name, description: peer.summary || `Messages to ${peer.name} (${peer.agent})`, tags: ["a2a-bus", peer.agent] }]
}

/** Where the gateway serves a peer: the JSON-RPC endpoint and its card (both under the broker's URL). */
export const peerPath = (peer: string) => `/a2a/peers/${encodeURIComponent(peer)}`
export const CARD_PATH = ".well-known/agent-card.json"

/**
 * A remote A2A agent registered as a bridge peer (outbound). The credential is never part of
 * a record: it is stored encrypted at rest by the broker and not shown again.
 */
export class RemoteAgent extends Schema.Class<RemoteAgent>("RemoteAgent")({
  /** The bus peer that stands for the remote agent. */
  peerId: Schema.String,
  name: Schema.String,
  cardUrl: Schema.String,
  /** The remote agent's card as fetched at registration (its JSON, either generation). */
  card: Schema.Unknown,
  /** The protocol version spoken to it. */
  version: Schema.String,
  hasCredential: Schema.Boolean,
  createdAt: Schema.String
}) {}

/** `POST /api/a2a/agents`: register a remote agent. */
export class AddRemoteAgent extends Schema.Class<AddRemoteAgent>("AddRemoteAgent")({
  name: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/)),
  cardUrl: Schema.String.pipe(Schema.pattern(/^https?:\/\/[^\s]+$/), Schema.maxLength(2048)),
  /** A bearer token for the remote agent (sent as `Authorization: Bearer …`). */
  token: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(4096)))
}) {}

export const RemoteAgentList = Schema.Struct({ agents: Schema.Array(RemoteAgent) })
export const RemoteAgentResponse = Schema.Struct({ agent: RemoteAgent })
