/**
 * Runners: daemons that start agents on one machine, linked to the broker over `/ws/runner/:id`.
 */
import { Schema } from "effect"
import { RunnerId, Timestamp } from "./Ids.js"
import { RunnerPolicy } from "./RunnerPolicy.js"
import { Preset } from "./Spawn.js"

/** What a runner says about itself in its `hello` frame. */
export const RunnerInfo = Schema.Struct({
  id: RunnerId,
  host: Schema.String,
  labels: Schema.Record({ key: Schema.String, value: Schema.String }),
  capacity: Schema.Int.pipe(Schema.nonNegative()),
  presets: Schema.Array(Preset),
  version: Schema.String,
  /** What its owner lets spawn orders run (additive: older runners send none). */
  policy: Schema.optional(RunnerPolicy)
})
export type RunnerInfo = typeof RunnerInfo.Type

/** `online`: link open; `stale`: link open but silent past the stale timeout; `offline`: no link. */
export const RunnerStatus = Schema.Literal("online", "stale", "offline")
export type RunnerStatus = typeof RunnerStatus.Type

export class Runner extends Schema.Class<Runner>("Runner")({
  id: RunnerId,
  host: Schema.String,
  labels: Schema.Record({ key: Schema.String, value: Schema.String }),
  capacity: Schema.Int,
  presets: Schema.Array(Preset),
  version: Schema.String,
  /** The runner's policy claim, as it announced it. */
  policy: Schema.optional(RunnerPolicy),
  status: RunnerStatus,
  /** Spawns currently holding a slot on this runner. */
  active: Schema.Int,
  connectedAt: Schema.optional(Timestamp),
  lastSeenAt: Timestamp
}) {}

export const RunnerList = Schema.Struct({ runners: Schema.Array(Runner) })
