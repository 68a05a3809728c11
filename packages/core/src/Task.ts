/**
 * Tasks: the shared task board of a team (docs/tasks.md). Work waits on the board as `open`
 * tasks, a peer claims one atomically (`claimed`, with a lease it must keep alive), and it ends
 * `done`, `failed` or `cancelled`. A lease that lapses returns the task to `open` (or `failed`
 * once its attempts are used up).
 */
import { Schema } from "effect"
import { PeerId, randomToken, TeamName, Timestamp } from "./Ids.js"

/** A task's id: `t_`, the creation time (sortable) and 16 random characters. */
export const TaskId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, { message: () => "TaskId must be 1-128 characters of [A-Za-z0-9_.:-]" }),
  Schema.brand("TaskId"),
  Schema.annotations({ identifier: "TaskId", description: "Id of a task on a team's board" })
)
export type TaskId = typeof TaskId.Type

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

/** A fresh task id; ids made later sort after earlier ones (to the millisecond). */
export const makeTaskId = (now: number = Date.now()): TaskId => {
  let time = ""
  for (let i = 0, t = now; i < 10; i++, t = Math.floor(t / 32)) time = ALPHABET[t % 32] + time
  return `t_${time}${randomToken(16)}` as TaskId
}

export const TaskState = Schema.Literal("open", "claimed", "done", "failed", "cancelled")
export type TaskState = typeof TaskState.Type

/** States a task never leaves. */
export const isFinal = (state: TaskState): boolean => state === "done" || state === "failed" || state === "cancelled"

export const Label = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}$/, { message: () => "a label must be 1-64 characters of [A-Za-z0-9_.:@/-]" }),
  Schema.annotations({ identifier: "TaskLabel" })
)

/** Lease bounds: 1 s … 1 h, 60 s by default. */
export const DEFAULT_LEASE_MS = 60_000
export const LeaseMs = Schema.Int.pipe(Schema.between(1, 3_600_000), Schema.annotations({ identifier: "LeaseMs", description: "Lease length in milliseconds" }))
export const DEFAULT_MAX_ATTEMPTS = 3

const Text = (max: number) => Schema.String.pipe(Schema.maxLength(max))

export class Task extends Schema.Class<Task>("Task")({
  id: TaskId,
  team: TeamName,
  title: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(500)),
  body: Text(65_536),
  /** Higher first; ties go to the oldest task. */
  priority: Schema.Int,
  labels: Schema.Array(Label),
  state: TaskState,
  /** The peer holding (or, once done, that completed) the task. */
  assignee: Schema.optional(PeerId),
  /** When the holder's lease lapses (state `claimed` only). */
  leaseExpiresAt: Schema.optional(Timestamp),
  /** How many times the task was handed out (claims and reassignments; a release gives one back). */
  attempts: Schema.NonNegativeInt,
  maxAttempts: Schema.Int.pipe(Schema.between(1, 1_000)),
  /** Tasks that must be `done` before this one can be claimed. */
  dependsOn: Schema.Array(TaskId),
  result: Schema.optional(Text(65_536)),
  /** Why the last attempt ended (a failure's reason, `lease expired`, a cancel's reason). */
  error: Schema.optional(Text(4_000)),
  /** The holder's latest progress note. */
  note: Schema.optional(Text(4_000)),
  /** The creating peer's id, or the principal's subject when no peer was named. */
  createdBy: Schema.String,
  createdAt: Timestamp,
  updatedAt: Timestamp
}) {}

// ---- request bodies ---------------------------------------------------------------------------

/** Body of `POST /api/tasks`. */
export const CreateTask = Schema.Struct({
  team: TeamName,
  title: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(500)),
  body: Schema.optional(Text(65_536)),
  priority: Schema.optional(Schema.Int.pipe(Schema.between(-1_000_000, 1_000_000))),
  labels: Schema.optional(Schema.Array(Label).pipe(Schema.maxItems(32))),
  dependsOn: Schema.optional(Schema.Array(TaskId).pipe(Schema.maxItems(100))),
  maxAttempts: Schema.optional(Schema.Int.pipe(Schema.between(1, 1_000))),
  /** The peer creating it (owned by the caller); recorded as `createdBy`. */
  peer: Schema.optional(PeerId)
})
export type CreateTask = typeof CreateTask.Type

/** Query of `GET /api/tasks`. */
export const TaskFilter = Schema.Struct({
  team: Schema.optional(TeamName),
  state: Schema.optional(TaskState),
  assignee: Schema.optional(PeerId),
  /** Comma-separated: tasks carrying every one of these labels. */
  labels: Schema.optional(Schema.String.pipe(Schema.maxLength(2_000))),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 10_000)))
})
export type TaskFilter = typeof TaskFilter.Type

/** Body of `POST /api/tasks/claim`: the next claimable task of the team for `peer`. */
export const ClaimNext = Schema.Struct({
  team: TeamName,
  peer: PeerId,
  /** Only tasks carrying every one of these labels. */
  labels: Schema.optional(Schema.Array(Label).pipe(Schema.maxItems(32))),
  leaseMs: Schema.optional(LeaseMs)
})
export type ClaimNext = typeof ClaimNext.Type

/** Body of `POST /api/tasks/:id/claim`. */
export const ClaimTask = Schema.Struct({ peer: PeerId, leaseMs: Schema.optional(LeaseMs) })
/** Body of `POST /api/tasks/:id/heartbeat`: extend the lease, optionally with a progress note. */
export const HeartbeatTask = Schema.Struct({ peer: PeerId, leaseMs: Schema.optional(LeaseMs), note: Schema.optional(Text(4_000)) })
/** Body of `POST /api/tasks/:id/complete`. */
export const CompleteTask = Schema.Struct({ peer: PeerId, result: Schema.optional(Text(65_536)) })
/** Body of `POST /api/tasks/:id/fail`. */
export const FailTask = Schema.Struct({ peer: PeerId, reason: Schema.optional(Text(4_000)) })
/** Body of `POST /api/tasks/:id/release`. */
export const ReleaseTask = Schema.Struct({ peer: PeerId })
/** Body of `POST /api/tasks/:id/cancel`. */
export const CancelTask = Schema.Struct({ reason: Schema.optional(Text(4_000)) })
/** Body of `POST /api/tasks/:id/reassign`: hand to `peer` (a fresh lease), or back to `open` without one. */
export const ReassignTask = Schema.Struct({ peer: Schema.optional(PeerId), leaseMs: Schema.optional(LeaseMs) })

export const TaskResponse = Schema.Struct({ task: Task })
export const TaskList = Schema.Struct({ tasks: Schema.Array(Task) })
/** Answer of claim-next: `null` when nothing is claimable now. */
export const ClaimNextResult = Schema.Struct({ task: Schema.NullOr(Task) })

/** What happened to a task, as carried by the channel's `task` event. */
export const TaskChange = Schema.Literal("created", "claimed", "done", "failed", "released", "cancelled", "reassigned", "lease_expired")
export type TaskChange = typeof TaskChange.Type

// ---- the rules, shared by every TaskBoard layer ---------------------------------------------------

/** Whether a `claimed` task's lease has lapsed at `now`. */
export const leaseLapsed = (task: Task, now: number): boolean =>
  task.state === "claimed" && task.leaseExpiresAt !== undefined && Date.parse(task.leaseExpiresAt) <= now

/**
 * The task as it is at `now`: a claimed task whose lease lapsed is `open` again (the attempt it
 * used stays counted), or `failed` if that was its last attempt. Stores apply this lazily on
 * every read and write, and the sweep writes it down (and reports it as `lease_expired`).
 */
export const atTime = (task: Task, now: number): Task =>
  leaseLapsed(task, now)
    ? new Task({
        ...task,
        state: task.attempts >= task.maxAttempts ? "failed" : "open",
        assignee: undefined,
        leaseExpiresAt: undefined,
        error: "lease expired",
        updatedAt: task.leaseExpiresAt!
      })
    : task

/** Order of claim-next: highest priority, then oldest, then id. */
export const claimOrder = (a: Task, b: Task): number =>
  b.priority - a.priority || (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** Comma-separated labels of a filter, as a list. */
export const parseLabels = (labels: string | undefined): ReadonlyArray<string> =>
  labels === undefined ? [] : labels.split(",").map((l) => l.trim()).filter((l) => l.length > 0)
