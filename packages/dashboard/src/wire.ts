/**
 * The broker's wire records and channel frames as the dashboard reads them (docs/protocol.md).
 * The types are core's: the JSON side of `@mks/a2a`'s schemas, imported as types only (the
 * dashboard bundles none of Effect). What arrives is checked by its `type`/`_tag`, and what the
 * dashboard does not know is ignored.
 */
import type {
  ClientFrameJson,
  CreateTaskJson,
  MessageJson,
  PeerEventJson,
  PeerJson,
  RunnerJson,
  ServerFrameJson,
  SpawnJson,
  SpawnSpecJson,
  SpawnStatusJson,
  TaskChangeJson,
  TaskJson,
  TaskStateJson,
  TeamJson,
  WireErrorJson
} from "@mks/a2a/client"

export type Peer = PeerJson
export type PeerStatus = Peer["status"]
export type Message = MessageJson
export type Team = TeamJson
export type SpawnStatus = SpawnStatusJson
export type SpawnSpec = SpawnSpecJson
export type Spawn = SpawnJson
export type Runner = RunnerJson
export type TaskState = TaskStateJson
export type TaskChange = TaskChangeJson
/** A task on a team's board (docs/tasks.md). */
export type Task = TaskJson
/** `POST /api/tasks` body. */
export type NewTask = CreateTaskJson
/** `{"_tag", "message", ...}` — every broker error body. */
export type WireError = WireErrorJson
/** A failed call as the dashboard holds it: the broker's error body, or its own when there is none. */
export type ErrorBody = WireError | { readonly _tag: "NetworkError" | `Http${number}`; readonly message: string }
export type PeerEvent = PeerEventJson
export type ServerFrame = ServerFrameJson
export type ClientFrame = ClientFrameJson

/** Every value of a string union, in the order given, checked complete at compile time. */
const every =
  <T extends string>() =>
  <const L extends ReadonlyArray<T>>(list: L & ([T] extends [L[number]] ? unknown : ["missing", Exclude<T, L[number]>])): ReadonlyArray<T> =>
    list

export const SPAWN_STATUSES = every<SpawnStatus>()(["pending", "dispatched", "starting", "running", "registered", "stopping", "exited", "failed", "lost"])

export const isFinal = (status: SpawnStatus) => status === "exited" || status === "failed"

/** The board's columns, in order. */
export const TASK_STATES = every<TaskState>()(["open", "claimed", "done", "failed", "cancelled"])

export const isFinalTask = (state: TaskState) => state === "done" || state === "failed" || state === "cancelled"

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
