/**
 * The broker's wire records and channel frames as the dashboard reads them (docs/protocol.md).
 * The dashboard does not bundle the Effect schemas of `@mks/a2a`; it checks the `type`/`_tag`
 * of what arrives and ignores what it does not know.
 */

export type PeerStatus = "online" | "offline"

export interface Peer {
  readonly id: string
  readonly name: string
  readonly summary: string
  readonly agent: string
  readonly cwd: string
  readonly gitRoot: string | null
  readonly host: string
  readonly pid: number | null
  readonly teams: ReadonlyArray<string>
  readonly status: PeerStatus
  readonly registeredAt: string
  readonly lastSeenAt: string
  readonly spawnId?: string
  readonly runnerId?: string
  readonly meta?: Record<string, unknown>
}

export interface Message {
  readonly id: string
  readonly seq: number
  readonly from: string
  readonly fromName: string
  readonly to?: string
  readonly team?: string
  readonly body: string
  readonly threadId: string
  readonly replyTo?: string
  readonly sentAt: string
  readonly meta?: Record<string, unknown>
}

export interface Team {
  readonly name: string
  readonly description: string
  readonly createdAt: string
  readonly members: ReadonlyArray<string>
}

export type SpawnStatus = "pending" | "dispatched" | "starting" | "running" | "registered" | "stopping" | "exited" | "failed" | "lost"

export const SPAWN_STATUSES: ReadonlyArray<SpawnStatus> = ["pending", "dispatched", "starting", "running", "registered", "stopping", "exited", "failed", "lost"]

export const isFinal = (status: SpawnStatus) => status === "exited" || status === "failed"

export interface SpawnSpec {
  readonly runner?: string
  readonly labels?: Record<string, string>
  readonly preset?: "command" | "claude"
  readonly command?: string
  readonly args?: ReadonlyArray<string>
  readonly cwd?: string
  readonly env?: Record<string, string>
  readonly name?: string
  readonly teams?: ReadonlyArray<string>
  readonly prompt?: string
  readonly provider?: string
  readonly model?: string
  readonly requestedBy?: string
}

export interface Spawn {
  readonly id: string
  readonly spec: SpawnSpec
  readonly status: SpawnStatus
  readonly runnerId: string
  readonly peerId?: string
  readonly pid?: number
  readonly exitCode?: number
  readonly error?: string
  readonly requestedBy?: string
  readonly createdAt: string
  readonly updatedAt: string
}

export interface Runner {
  readonly id: string
  readonly host: string
  readonly labels: Record<string, string>
  readonly capacity: number
  readonly presets: ReadonlyArray<string>
  readonly version: string
  readonly status: "online" | "stale" | "offline"
  readonly active: number
  readonly connectedAt?: string
  readonly lastSeenAt: string
}

export type TaskState = "open" | "claimed" | "done" | "failed" | "cancelled"

/** The board's columns, in order. */
export const TASK_STATES: ReadonlyArray<TaskState> = ["open", "claimed", "done", "failed", "cancelled"]

export const isFinalTask = (state: TaskState) => state === "done" || state === "failed" || state === "cancelled"

/** A task on a team's board (docs/tasks.md). */
export interface Task {
  readonly id: string
  readonly team: string
  readonly title: string
  readonly body: string
  readonly priority: number
  readonly labels: ReadonlyArray<string>
  readonly state: TaskState
  readonly assignee?: string
  readonly leaseExpiresAt?: string
  readonly attempts: number
  readonly maxAttempts: number
  readonly dependsOn: ReadonlyArray<string>
  readonly result?: string
  readonly error?: string
  readonly note?: string
  readonly createdBy: string
  readonly createdAt: string
  readonly updatedAt: string
}

export type TaskChange = "created" | "claimed" | "done" | "failed" | "released" | "cancelled" | "reassigned" | "lease_expired"

export interface NewTask {
  readonly team: string
  readonly title: string
  readonly body?: string
  readonly priority?: number
  readonly labels?: ReadonlyArray<string>
  readonly dependsOn?: ReadonlyArray<string>
  readonly maxAttempts?: number
  readonly peer?: string
}

/** `{"_tag", "message", ...}` — every broker error body. */
export interface WireError {
  readonly _tag: string
  readonly message: string
  readonly [field: string]: unknown
}

export type PeerEvent =
  | { readonly type: "peer_joined" | "peer_left" | "peer_updated"; readonly peer: Peer; readonly at: string }
  | { readonly type: "team_changed"; readonly team: string; readonly change: "created" | "joined" | "left"; readonly peerId?: string; readonly at: string }
  | { readonly type: "spawn_status"; readonly spawn: Spawn; readonly at: string }
  /** A change on the board of a team the operator is a member of. */
  | { readonly type: "task"; readonly change: TaskChange; readonly task: Task; readonly at: string }
  /** Presence changes coalesced by the broker (the dashboard's socket asks for `?presence=batched`). */
  | { readonly type: "peers_changed"; readonly joined: ReadonlyArray<Peer>; readonly left: ReadonlyArray<Peer>; readonly updated: ReadonlyArray<Peer>; readonly at: string }

export type ServerFrame =
  | { readonly type: "hello"; readonly peer: Peer; readonly cursor: number }
  | { readonly type: "message"; readonly message: Message }
  | { readonly type: "event"; readonly event: PeerEvent }
  | { readonly type: "sent"; readonly ref?: string; readonly message: Message; readonly recipients: ReadonlyArray<string> }
  | { readonly type: "acked"; readonly cursor: number }
  | { readonly type: "error"; readonly ref?: string; readonly error: WireError }

export type ClientFrame =
  | { readonly type: "ack"; readonly upTo: number }
  | { readonly type: "send"; readonly to?: string; readonly team?: string; readonly body: string; readonly threadId?: string; readonly replyTo?: string; readonly ref?: string }
  | { readonly type: "heartbeat" }

/** Channel close codes (ChannelFrame.CloseCode in @mks/a2a). */
export const CloseCode = { normal: 1000, goingAway: 1001, unregistered: 4001, slowConsumer: 4008 } as const

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A server frame, or undefined when the text is not one the dashboard understands. */
export const parseServerFrame = (text: string): ServerFrame | undefined => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isObject(value) || typeof value["type"] !== "string") return undefined
  switch (value["type"]) {
    case "hello":
      return isObject(value["peer"]) && typeof value["cursor"] === "number" ? (value as unknown as ServerFrame) : undefined
    case "message":
    case "sent":
      return isObject(value["message"]) && typeof (value["message"] as Record<string, unknown>)["id"] === "string" ? (value as unknown as ServerFrame) : undefined
    case "event":
      return isObject(value["event"]) && typeof (value["event"] as Record<string, unknown>)["type"] === "string" ? (value as unknown as ServerFrame) : undefined
    case "acked":
      return typeof value["cursor"] === "number" ? (value as unknown as ServerFrame) : undefined
    case "error":
      return isObject(value["error"]) ? (value as unknown as ServerFrame) : undefined
    default:
      return undefined
  }
}
