/**
 * Spawn orders: "start an agent on some runner", and the status machine they move through.
 *
 * ```
 * pending → dispatched → starting → running → registered → stopping → exited
 *    any non-final state → failed | exited ;  any non-final state but pending → lost
 *    lost → (reconciled) starting | running | registered | stopping | exited | failed
 * ```
 * A pending order is not on any runner yet, so it can neither be `lost` nor `stopping`:
 * stopping it withdraws it (`exited`).
 * Forward skips are legal (a runner may report `running` without `starting`, a fast agent may
 * register before the runner reports it running); moving backwards or out of `exited`/`failed`
 * is not.
 */
import { Either, Schema } from "effect"
import { IllegalTransition } from "./Errors.js"
import { Permission } from "./Permission.js"
import { nowIso, PeerId, PeerName, RunnerId, SpawnId, TeamName, Timestamp } from "./Ids.js"
import { TaskId } from "./Task.js"

export const SpawnStatus = Schema.Literal(
  "pending",
  "dispatched",
  "starting",
  "running",
  "registered",
  "stopping",
  "exited",
  "failed",
  "lost"
)
export type SpawnStatus = typeof SpawnStatus.Type

export const Preset = Schema.Literal("command", "claude")
export type Preset = typeof Preset.Type

const Labels = Schema.Record({ key: Schema.String, value: Schema.String })
const Env = Schema.Record({ key: Schema.String, value: Schema.String })

/**
 * What to start. `preset` defaults to `command` when `command` is given, else `claude`.
 * `runner` pins a runner; otherwise `labels` must all match and the runner with most free
 * capacity wins.
 */
export const SpawnSpec = Schema.Struct({
  runner: Schema.optional(RunnerId),
  labels: Schema.optional(Labels),
  preset: Schema.optional(Preset),
  command: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  args: Schema.optional(Schema.Array(Schema.String)),
  cwd: Schema.optional(Schema.String),
  env: Schema.optional(Env),
  name: Schema.optional(PeerName),
  teams: Schema.optional(Schema.Array(TeamName)),
  prompt: Schema.optional(Schema.String.pipe(Schema.maxLength(262_144))),
  provider: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  requestedBy: Schema.optional(PeerId),
  /** Permissions the spawn's own token gets (see `Permission.ts`); the creator must hold each. */
  grants: Schema.optional(Schema.Array(Permission)),
  /** A `claude` session relaunched after its runner restarted gets `prompt` again (default: only its first start does). */
  resendPrompt: Schema.optional(Schema.Boolean),
  /**
   * A task of the caller's tenant the spawn is for (docs/tasks.md, "Spawning for a task"): it
   * must be open; the spawn joins its team, the broker claims it for the spawn's peer when that
   * peer registers, and fails it (the attempt counted) if the spawn ends still holding it.
   */
  task: Schema.optional(TaskId),
  /** The subject of the principal that created the spawn: set by the broker (a client's value is replaced). */
  owner: Schema.optional(Schema.String.pipe(Schema.maxLength(256)))
}).pipe(
  Schema.filter((spec) =>
    spec.preset === "command" && spec.command === undefined
      ? { path: ["command"], message: "preset `command` needs a `command`" }
      : true
  ),
  Schema.annotations({ identifier: "SpawnSpec" })
)
export type SpawnSpec = typeof SpawnSpec.Type

/** The preset a spec runs with, after defaults. */
export const presetOf = (spec: SpawnSpec): Preset => spec.preset ?? (spec.command !== undefined ? "command" : "claude")

export class Spawn extends Schema.Class<Spawn>("Spawn")({
  id: SpawnId,
  spec: SpawnSpec,
  status: SpawnStatus,
  runnerId: RunnerId,
  peerId: Schema.optional(PeerId),
  pid: Schema.optional(Schema.Int),
  exitCode: Schema.optional(Schema.Int),
  error: Schema.optional(Schema.String),
  requestedBy: Schema.optional(PeerId),
  createdAt: Timestamp,
  updatedAt: Timestamp
}) {}

export const SpawnResponse = Schema.Struct({ spawn: Spawn })
export const SpawnList = Schema.Struct({ spawns: Schema.Array(Spawn) })

/** States a spawn never leaves. */
export const isFinal = (status: SpawnStatus): boolean => status === "exited" || status === "failed"

/** States in which a spawn holds a slot of its runner's capacity. */
export const isActive = (status: SpawnStatus): boolean => !isFinal(status) && status !== "lost"

const RANK: Record<SpawnStatus, number> = {
  pending: 0,
  dispatched: 1,
  starting: 2,
  running: 3,
  registered: 4,
  stopping: 5,
  exited: 6,
  failed: 6,
  lost: -1
}

/** Whether `from → to` is a legal move of the status machine (same state is not a move). */
export const canTransition = (from: SpawnStatus, to: SpawnStatus): boolean => {
  if (from === to || isFinal(from)) return false
  if (to === "failed" || to === "exited") return true
  if (to === "lost") return from !== "pending"
  if (from === "lost") return to !== "pending" && to !== "dispatched"
  if (to === "stopping") return from !== "pending"
  return RANK[to] > RANK[from]
}

/** The status after a move, or `IllegalTransition`. */
export const transition = (
  spawnId: string,
  from: SpawnStatus,
  to: SpawnStatus
): Either.Either<SpawnStatus, IllegalTransition> =>
  canTransition(from, to)
    ? Either.right(to)
    : Either.left(
        new IllegalTransition({
          message: `spawn ${spawnId} cannot move from ${from} to ${to}`,
          spawn: spawnId,
          from,
          to
        })
      )

/** Fields a status change writes over a spawn; `error: null` clears a previous error. */
export interface StatusFields {
  readonly pid?: number | undefined
  readonly exitCode?: number | undefined
  readonly error?: string | null | undefined
  readonly peerId?: PeerId | undefined
}

const present = <K extends string, V>(key: K, value: V | undefined | null): { [P in K]?: V } =>
  (value === undefined || value === null ? {} : { [key]: value }) as { [P in K]?: V }

/**
 * The spawn after a (legal, already checked) move to `status` at `now`: given fields replace
 * the old ones, absent fields keep them. One rule for every spawn-plane store.
 */
export const advance = (s: Spawn, status: SpawnStatus, fields: StatusFields, now: number): Spawn =>
  new Spawn({
    id: s.id,
    spec: s.spec,
    status,
    runnerId: s.runnerId,
    ...present("peerId", fields.peerId ?? s.peerId),
    ...present("pid", fields.pid ?? s.pid),
    ...present("exitCode", fields.exitCode ?? s.exitCode),
    ...present("error", fields.error === null ? undefined : (fields.error ?? s.error)),
    ...present("requestedBy", s.requestedBy),
    createdAt: s.createdAt,
    updatedAt: nowIso(now)
  })

/** Whether a runner's labels carry every label the spec asks for. */
export const labelsMatch = (wanted: SpawnSpec["labels"], have: Readonly<Record<string, string>>): boolean =>
  Object.entries(wanted ?? {}).every(([k, v]) => have[k] === v)
