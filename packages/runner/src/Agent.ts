/**
 * Agents: what the runner keeps running. The spec (`POST /agents`, a definition file in
 * `<data-dir>/agents/*.json`, or a broker spawn order), the public view, status events and
 * the runner's own wire errors.
 */
import { HttpApiSchema } from "@effect/platform"
import { Ids, Spawn } from "@mks/a2a"
import { Schema } from "effect"

/** When a process that ended is started again. */
export const RestartPolicy = Schema.Literal("always", "on-failure", "never")
export type RestartPolicy = typeof RestartPolicy.Type

/**
 * `starting` → `running` → `stopping` → `stopped` (asked to stop), or `exited` (ended on its own
 * with code 0) / `crashed` (non-zero code or a signal). A restart goes back to `starting`.
 */
export const AgentStatus = Schema.Literal("starting", "running", "stopping", "stopped", "exited", "crashed")
export type AgentStatus = typeof AgentStatus.Type

const Env = Schema.Record({ key: Schema.String, value: Schema.String })

/** The body of `POST /agents` and the content of a definition file. */
export const AgentSpec = Schema.Struct({
  name: Ids.PeerName,
  preset: Schema.optional(Spawn.Preset),
  command: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  args: Schema.optional(Schema.Array(Schema.String)),
  cwd: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  env: Schema.optional(Env),
  restart: Schema.optional(RestartPolicy),
  prompt: Schema.optional(Schema.String.pipe(Schema.maxLength(262_144))),
  provider: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  teams: Schema.optional(Schema.Array(Ids.TeamName))
}).pipe(
  Schema.filter((spec) =>
    (spec.preset ?? (spec.command !== undefined ? "command" : "claude")) === "command" && spec.command === undefined
      ? { path: ["command"], message: "preset `command` needs a `command`" }
      : true
  ),
  Schema.annotations({ identifier: "AgentSpec" })
)
export type AgentSpec = typeof AgentSpec.Type

/** The public view of an agent (`GET /agents`). */
export const Agent = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  status: AgentStatus,
  pid: Schema.optional(Schema.Int),
  startedAt: Schema.optional(Ids.Timestamp),
  restarts: Schema.Int,
  exitCode: Schema.optional(Schema.Int),
  spawnId: Schema.optional(Schema.String),
  peerId: Schema.optional(Schema.String),
  preset: Spawn.Preset,
  command: Schema.String,
  args: Schema.Array(Schema.String),
  cwd: Schema.String,
  restart: RestartPolicy
}).pipe(Schema.annotations({ identifier: "Agent" }))
export type Agent = typeof Agent.Type

/** `GET /agents/:id`: the agent, its spec and the last 200 log lines. */
export const AgentDetail = Schema.Struct({ agent: Agent, config: AgentSpec, logs: Schema.Array(Schema.String) })
export type AgentDetail = typeof AgentDetail.Type

/** One event of `GET /sse/status`. */
export const StatusChange = Schema.Struct({
  agent_id: Schema.String,
  old_status: Schema.NullOr(AgentStatus),
  new_status: AgentStatus,
  at: Ids.Timestamp
})
export type StatusChange = typeof StatusChange.Type

/** One event of `GET /sse/agents/:id/logs`. */
export const LogLine = Schema.Struct({ agent_id: Schema.String, line: Schema.String, at: Ids.Timestamp })
export type LogLine = typeof LogLine.Type

/** 404: no agent with this id on this runner. */
export class AgentNotFound extends Schema.TaggedError<AgentNotFound>()(
  "AgentNotFound",
  { message: Schema.String, agent: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** 409: another agent of this runner has this name. */
export class AgentExists extends Schema.TaggedError<AgentExists>()(
  "AgentExists",
  { message: Schema.String, name: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** 404: no such route. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}
