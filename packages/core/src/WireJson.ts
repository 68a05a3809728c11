/**
 * The broker's wire records and channel frames as JSON: the encoded side of core's schemas, as
 * TypeScript types only. Code that reads the wire without Effect (the dashboard, scripts, other
 * clients) imports these with `import type` from `@mks/a2a/client`, so it shares one definition
 * with the broker and pulls in no code. A schema change shows up as a type error there.
 */
import type { Schema } from "effect"
import type * as ChannelFrame from "./ChannelFrame.js"
import type { WireError } from "./Errors.js"
import type { Message, SendResult } from "./Message.js"
import type { Peer } from "./Peer.js"
import type { Runner, RunnerStatus } from "./Runner.js"
import type { RelayClientFrame, RelayLogsFrame, RelayTerminalFrame } from "./RunnerFrame.js"
import type { Spawn, SpawnSpec, SpawnStatus } from "./Spawn.js"
import type { CreateTask, Task, TaskChange, TaskState } from "./Task.js"
import type { Team } from "./Team.js"

/** The JSON form of a schema's values. */
export type Json<S extends Schema.Schema.Any> = Schema.Schema.Encoded<S>

export type PeerJson = Json<typeof Peer>
export type MessageJson = Json<typeof Message>
export type SendResultJson = Json<typeof SendResult>
export type TeamJson = Json<typeof Team>
export type SpawnStatusJson = Json<typeof SpawnStatus>
export type SpawnSpecJson = Json<typeof SpawnSpec>
export type SpawnJson = Json<typeof Spawn>
export type RunnerStatusJson = Json<typeof RunnerStatus>
export type RunnerJson = Json<typeof Runner>
export type TaskStateJson = Json<typeof TaskState>
export type TaskChangeJson = Json<typeof TaskChange>
export type TaskJson = Json<typeof Task>
/** `POST /api/tasks` body. */
export type CreateTaskJson = Json<typeof CreateTask>
/** Every error body: `{"_tag", "message", …}`. */
export type WireErrorJson = Json<typeof WireError>
export type PeerEventJson = Json<typeof ChannelFrame.PeerEvent>
/** What the broker writes on a peer channel. */
export type ServerFrameJson = Json<typeof ChannelFrame.ServerFrame>
/** What a client writes on a peer channel. */
export type ClientFrameJson = Json<typeof ChannelFrame.ClientFrame>
/** What the broker writes on a relay socket for an agent's log (`/ws/broker/spawns/:id/logs`). */
export type RelayLogsFrameJson = Json<typeof RelayLogsFrame>
/** What the broker writes on a terminal relay socket. */
export type RelayTerminalFrameJson = Json<typeof RelayTerminalFrame>
/** What a viewer writes on a terminal relay socket. */
export type RelayClientFrameJson = Json<typeof RelayClientFrame>
