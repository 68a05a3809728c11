/**
 * Frames of a runner's control link, `GET /ws/runner/:id` (role `runner`), both directions,
 * and of the relay built on it: agent logs and terminals that browsers and the CLI reach
 * through the broker (`GET /ws/broker/spawns/:id/logs`, `GET /ws/broker/spawns/:id/terminal`).
 *
 * The relay frames are additive: a runner announces `features: ["relay"]` in its `hello`; the
 * broker sends relay frames only to runners that did (older runners never see them), and an
 * older broker never sends them (so a new runner's extra frames never arise).
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

/** What a runner can do beyond the base link (`"relay"`: it answers the relay frames below). */
export const RunnerFeature = Schema.String.pipe(Schema.maxLength(64))

export const RunnerHello = typed("hello", {
  runner: RunnerInfo,
  agents: Schema.Array(RunnerAgent),
  features: Schema.optional(Schema.Array(RunnerFeature).pipe(Schema.maxItems(64)))
})
export const SpawnStatusReport = typed("spawn_status", {
  spawnId: SpawnId,
  status: SpawnStatus,
  pid: Schema.optional(Schema.Int),
  exitCode: Schema.optional(Schema.Int),
  error: Schema.optional(Schema.String)
})
export const RunnerHeartbeat = typed("heartbeat", {})

// ---- relay: runner → broker (answers to the broker's `logs_open` / `term_open`) ----------------

/** A relay stream on one runner link, chosen by the broker. */
export const StreamId = Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER))
export type StreamId = typeof StreamId.Type

/** Most characters of terminal data in one frame (input or output); longer output is split. */
export const MAX_TERMINAL_DATA = 65_536
/** Most log lines in one frame; longer tails are split. */
export const MAX_LOG_LINES = 1_000
/** Lines a `logs_open` may ask for (`n`). */
export const MAX_LOG_TAIL = 10_000
const TerminalData = Schema.String.pipe(Schema.maxLength(MAX_TERMINAL_DATA))
const LogLines = Schema.Array(Schema.String).pipe(Schema.maxItems(MAX_LOG_LINES))
const Dimension = Schema.Int.pipe(Schema.between(1, 1_000))

/** Log lines of the agent (escape sequences stripped): the last `n` first, then each new one. */
export const LogLinesFrame = typed("log", { stream: StreamId, lines: LogLines })
/** Terminal output (raw, with escape sequences): the recent backlog first, then live output. */
export const TermOutput = typed("term_output", { stream: StreamId, data: TerminalData })
/**
 * The stream is over: `reason` for people; for a terminal or log whose agent ended, `status`
 * is the runner's agent status (`exited`, `crashed`, `stopped`) and `exitCode` its code.
 */
export const StreamEnd = typed("stream_end", {
  stream: StreamId,
  reason: Schema.String.pipe(Schema.maxLength(1_000)),
  status: Schema.optional(Schema.String.pipe(Schema.maxLength(64))),
  exitCode: Schema.optional(Schema.Int)
})
/** The stream could not be opened or broke (`SpawnNotFound` for a spawn the runner does not run). */
export const StreamError = typed("stream_error", { stream: StreamId, error: WireError })

export const RunnerUpFrame = Schema.Union(RunnerHello, SpawnStatusReport, RunnerHeartbeat, LogLinesFrame, TermOutput, StreamEnd, StreamError).pipe(
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

// ---- relay: broker → runner ----------------------------------------------------------------

/** Follow the spawn's log: the last `n` lines, then each new line, until `stream_close`. */
export const LogsOpen = typed("logs_open", { stream: StreamId, spawnId: SpawnId, n: Schema.Int.pipe(Schema.between(0, MAX_LOG_TAIL)) })
/** Attach to the spawn's pseudo-terminal at this size, until `stream_close` or the agent ends. */
export const TermOpen = typed("term_open", { stream: StreamId, spawnId: SpawnId, cols: Dimension, rows: Dimension })
/** Keystrokes for an open terminal stream. */
export const TermInput = typed("term_input", { stream: StreamId, data: TerminalData })
export const TermResize = typed("term_resize", { stream: StreamId, cols: Dimension, rows: Dimension })
/** The broker no longer wants the stream (its client went away): stop sending it. */
export const StreamClose = typed("stream_close", { stream: StreamId })

export const RunnerDownFrame = Schema.Union(SpawnCommand, StopCommand, RunnerErrorFrame, LogsOpen, TermOpen, TermInput, TermResize, StreamClose).pipe(
  Schema.annotations({ identifier: "RunnerDownFrame" })
)
export type RunnerDownFrame = typeof RunnerDownFrame.Type

export const RunnerUpFrameJson = Schema.parseJson(RunnerUpFrame)
export const RunnerDownFrameJson = Schema.parseJson(RunnerDownFrame)

// ---- relay: browser / CLI ↔ broker -----------------------------------------------------------

/** Frames the broker sends on `GET /ws/broker/spawns/:id/logs`. */
export const RelayLog = typed("log", { lines: LogLines, at: Schema.String })
/** The log (or terminal) is over; the broker then closes the socket with 1000. */
export const RelayEnd = typed("end", {
  reason: Schema.String,
  status: Schema.optional(Schema.String),
  exitCode: Schema.optional(Schema.Int)
})
/** A refusal or failure; fatal ones are followed by a close (see `RelayCloseCode`). */
export const RelayError = typed("error", { error: WireError })
export const RelayLogsFrame = Schema.Union(RelayLog, RelayEnd, RelayError).pipe(Schema.annotations({ identifier: "RelayLogsFrame" }))
export type RelayLogsFrame = typeof RelayLogsFrame.Type

/** Frames the broker sends on `GET /ws/broker/spawns/:id/terminal`. */
export const RelayOutput = typed("output", { data: Schema.String })
/** The agent's process ended: its runner status and exit code; the broker then closes with 1000. */
export const RelayExit = typed("exit", { status: Schema.String, exitCode: Schema.optional(Schema.Int) })
export const RelayTerminalFrame = Schema.Union(RelayOutput, RelayExit, RelayEnd, RelayError).pipe(Schema.annotations({ identifier: "RelayTerminalFrame" }))
export type RelayTerminalFrame = typeof RelayTerminalFrame.Type

/** Frames a client sends on `GET /ws/broker/spawns/:id/terminal`. */
export const RelayInput = typed("input", { data: TerminalData })
export const RelayResize = typed("resize", { cols: Dimension, rows: Dimension })
export const RelayClientFrame = Schema.Union(RelayInput, RelayResize).pipe(Schema.annotations({ identifier: "RelayClientFrame" }))
export type RelayClientFrame = typeof RelayClientFrame.Type

/** Close codes of the relay sockets (besides 1000 normal, 1001 broker going away). */
/** Close codes of the runner link (`GET /ws/runner/:id`) beyond the standard ones. */
export const LinkCloseCode = {
  /**
   * Another connection linked with the same runner id in the tenant and took over: the older
   * link is closed with this code and must not reconnect (two runners with one id would take
   * turns evicting each other).
   */
  replaced: 4009
} as const

export const RelayCloseCode = {
  /** The agent's runner is not linked to this broker (offline, or too old to relay). */
  runnerUnavailable: 4503,
  /** The runner does not know the spawn (it ended and was forgotten, or never ran there). */
  notFound: 4404,
  /** The client did not read fast enough: the stream was dropped (open it again). */
  slowConsumer: 4008,
  /** The token was revoked. */
  revoked: 4003
} as const
