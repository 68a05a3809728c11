/**
 * Frames of a runner's control link, `GET /ws/runner/:id` (role `runner`), both directions.
 */
import { Schema } from "effect"
import { typed } from "./internal/frame.js"
import { WireError } from "./Errors.js"
import { SpawnId } from "./Ids.js"
import { RunnerInfo } from "./Runner.js"
import { SpawnSpec, SpawnStatus } from "./Spawn.js"

/** An agent the runner is running for a spawn, reported in `hello` to reconcile after reconnects. */
export const RunnerAgent = Schema.Struct({
  spawnId: SpawnId,
  pid: Schema.optional(Schema.Int),
  status: SpawnStatus
})
export type RunnerAgent = typeof RunnerAgent.Type

// ---- runner → broker ------------------------------------------------------------------------

export const RunnerHello = typed("hello", {
  runner: RunnerInfo,
  agents: Schema.Array(RunnerAgent)
})
export const SpawnStatusReport = typed("spawn_status", {
  spawnId: SpawnId,
  status: SpawnStatus,
  pid: Schema.optional(Schema.Int),
  exitCode: Schema.optional(Schema.Int),
  error: Schema.optional(Schema.String)
})
export const RunnerHeartbeat = typed("heartbeat", {})

export const RunnerUpFrame = Schema.Union(RunnerHello, SpawnStatusReport, RunnerHeartbeat).pipe(
  Schema.annotations({ identifier: "RunnerUpFrame" })
)
export type RunnerUpFrame = typeof RunnerUpFrame.Type

// ---- broker → runner ------------------------------------------------------------------------

/** The order the runner executes; `token` is a fresh peer token for this spawn only. */
export const SpawnOrder = Schema.Struct({
  id: SpawnId,
  spec: SpawnSpec,
  brokerUrl: Schema.String,
  token: Schema.String
})
export type SpawnOrder = typeof SpawnOrder.Type

export const SpawnCommand = typed("spawn", { spawn: SpawnOrder })
export const StopCommand = typed("stop", {
  spawnId: SpawnId,
  graceMs: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
})
export const RunnerErrorFrame = typed("error", { error: WireError })

export const RunnerDownFrame = Schema.Union(SpawnCommand, StopCommand, RunnerErrorFrame).pipe(
  Schema.annotations({ identifier: "RunnerDownFrame" })
)
export type RunnerDownFrame = typeof RunnerDownFrame.Type

export const RunnerUpFrameJson = Schema.parseJson(RunnerUpFrame)
export const RunnerDownFrameJson = Schema.parseJson(RunnerDownFrame)
