/**
 * TaskBoard: the tasks of a tenant's teams (docs/tasks.md). Every layer (memory here, SQLite
 * and PostgreSQL in the broker) follows the same rules (`Task.atTime`, `holderConflict`):
 * claims are atomic (one task is never held by two peers), a lapsed lease makes the task
 * claimable again at once (lazily, on every operation) and the sweep writes that down and
 * reports it. Time is the Effect `Clock`, so tests can move it.
 */
import { Clock, Context, Effect, Layer } from "effect"
import { TaskConflict, TaskNotFound } from "./Errors.js"
import type { PeerId, TeamName } from "./Ids.js"
import { nowIso } from "./Ids.js"
import { atTime, claimOrder, DEFAULT_MAX_ATTEMPTS, isFinal, makeTaskId, Task, type TaskId, type TaskState } from "./Task.js"

/** A task to put on the board. */
export interface NewTask {
  readonly team: TeamName
  readonly title: string
  readonly body?: string | undefined
  readonly priority?: number | undefined
  readonly labels?: ReadonlyArray<string> | undefined
  readonly dependsOn?: ReadonlyArray<TaskId> | undefined
  readonly maxAttempts?: number | undefined
  readonly createdBy: string
}

export interface ListFilter {
  readonly team?: TeamName | undefined
  readonly state?: TaskState | undefined
  readonly assignee?: PeerId | undefined
  /** Tasks carrying every one of these labels. */
  readonly labels?: ReadonlyArray<string> | undefined
  readonly limit?: number | undefined
}

/** A task whose lease lapsed, written down by `sweep`. */
export interface Expired {
  readonly tenant: string
  readonly task: Task
}

export interface TaskBoardService {
  /** Put a task on the board (`open`); `TaskNotFound` if a dependency is not a task of the tenant. */
  readonly create: (tenant: string, input: NewTask) => Effect.Effect<Task, TaskNotFound>
  /** Tasks of the tenant, oldest first (at most `limit`, 1,000 by default). */
  readonly list: (tenant: string, filter: ListFilter) => Effect.Effect<ReadonlyArray<Task>>
  readonly get: (tenant: string, id: TaskId) => Effect.Effect<Task, TaskNotFound>
  /**
   * Claim the team's next claimable task for `claimant`: open (or lease lapsed), every
   * dependency done, carrying every label asked for; highest priority, then oldest. Atomic:
   * concurrent callers never get the same task. `undefined` when there is none.
   */
  readonly claimNext: (
    tenant: string,
    input: { readonly team: TeamName; readonly claimant: PeerId; readonly labels?: ReadonlyArray<string> | undefined; readonly leaseMs: number }
  ) => Effect.Effect<Task | undefined>
  /** Claim this task; `TaskConflict` unless it is open with its dependencies done. */
  readonly claim: (tenant: string, id: TaskId, input: { readonly claimant: PeerId; readonly leaseMs: number }) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** The holder extends its lease (from now), optionally leaving a progress note. */
  readonly heartbeat: (
    tenant: string,
    id: TaskId,
    input: { readonly holder: PeerId; readonly leaseMs: number; readonly note?: string | undefined }
  ) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** The holder finishes the task (`done`); refused (`lease`) once its lease lapsed. */
  readonly complete: (tenant: string, id: TaskId, input: { readonly holder: PeerId; readonly result?: string | undefined }) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** The holder gives up: `open` again while attempts remain, else `failed`. */
  readonly fail: (tenant: string, id: TaskId, input: { readonly holder: PeerId; readonly reason?: string | undefined }) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** The holder puts the task back (`open`), giving its attempt back. */
  readonly release: (tenant: string, id: TaskId, input: { readonly holder: PeerId }) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** Withdraw an open or claimed task (`cancelled`). */
  readonly cancel: (tenant: string, id: TaskId, input: { readonly reason?: string | undefined }) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** Hand an open or claimed task to `assignee` with a fresh lease (an attempt), or back to `open`. */
  readonly reassign: (
    tenant: string,
    id: TaskId,
    input: { readonly assignee?: PeerId | undefined; readonly leaseMs: number }
  ) => Effect.Effect<Task, TaskNotFound | TaskConflict>
  /** Write down every lapsed lease (all tenants) and return those tasks. */
  readonly sweep: Effect.Effect<ReadonlyArray<Expired>>
}

export class TaskBoard extends Context.Tag("@mks/a2a/TaskBoard")<TaskBoard, TaskBoardService>() {}

export const notFound = (id: string) => new TaskNotFound({ message: `no task ${id}`, task: id })

/**
 * Why `holder` may not act as the holder of `stored` at `now` (undefined when it may): another
 * peer holds it (`holder`), its own lease lapsed (`lease`), or it is not claimed (`state`).
 */
export const holderConflict = (stored: Task, now: number, holder: PeerId): TaskConflict | undefined => {
  const task = atTime(stored, now)
  if (task.state === "claimed" && task.assignee === holder) return undefined
  const conflict = (reason: "state" | "holder" | "lease", message: string) =>
    new TaskConflict({ message: `task ${stored.id}: ${message}`, task: stored.id, reason, state: task.state })
  if (stored.state === "claimed" && stored.assignee === holder) return conflict("lease", "your lease lapsed; the task went back to the board")
  if (task.state === "claimed") return conflict("holder", "another peer holds it")
  return conflict("state", `it is ${task.state}, not claimed by ${holder}`)
}

/** Why `stored` cannot be claimed at `now`, given the states of its dependencies. */
export const claimConflict = (stored: Task, now: number, dependencyStates: ReadonlyArray<TaskState>): TaskConflict | undefined => {
  const task = atTime(stored, now)
  if (task.state !== "open") {
    return new TaskConflict({ message: `task ${stored.id} is ${task.state}`, task: stored.id, reason: task.state === "claimed" ? "holder" : "state", state: task.state })
  }
  if (dependencyStates.some((s) => s !== "done")) {
    return new TaskConflict({ message: `task ${stored.id} waits for tasks it depends on`, task: stored.id, reason: "dependencies", state: task.state })
  }
  return undefined
}

/** Why an open/claimed-only operation (cancel, reassign) cannot apply to `stored` at `now`. */
export const liveConflict = (stored: Task, now: number): TaskConflict | undefined => {
  const task = atTime(stored, now)
  return isFinal(task.state) ? new TaskConflict({ message: `task ${stored.id} is ${task.state}`, task: stored.id, reason: "state", state: task.state }) : undefined
}

/** The record of a new task at `now`. */
export const newTask = (input: NewTask, now: number): Task =>
  new Task({
    id: makeTaskId(now),
    team: input.team,
    title: input.title,
    body: input.body ?? "",
    priority: input.priority ?? 0,
    labels: [...new Set(input.labels ?? [])],
    state: "open",
    attempts: 0,
    maxAttempts: input.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    dependsOn: [...new Set(input.dependsOn ?? [])],
    createdBy: input.createdBy,
    createdAt: nowIso(now),
    updatedAt: nowIso(now)
  })

const hasLabels = (task: Task, labels: ReadonlyArray<string> | undefined) => labels === undefined || labels.every((l) => task.labels.includes(l))

/** A fresh in-memory board (state lives as long as the service). */
export const makeMemory: Effect.Effect<TaskBoardService> = Effect.sync(() => {
  const tenants = new Map<string, Map<string, Task>>()
  const board = (tenant: string) => {
    let tasks = tenants.get(tenant)
    if (tasks === undefined) tenants.set(tenant, (tasks = new Map()))
    return tasks
  }
  /** Everything below runs synchronously inside one `Effect.sync`, so each operation is atomic. */
  type TaskError = TaskNotFound | TaskConflict
  const withNow = (f: (now: number) => Task | TaskError): Effect.Effect<Task, TaskError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const out = f(now)
      return out instanceof Task ? Effect.succeed(out) : Effect.fail(out)
    })
  const stored = (tenant: string, id: TaskId): Task | TaskNotFound => board(tenant).get(id) ?? notFound(id)
  const put = (tenant: string, task: Task) => {
    board(tenant).set(task.id, task)
    return task
  }
  const depStates = (tenant: string, task: Task, now: number) =>
    task.dependsOn.map((d) => {
      const dep = board(tenant).get(d)
      return dep === undefined ? ("open" as const) : atTime(dep, now).state
    })
  const asHolder =
    (tenant: string, id: TaskId, holder: PeerId, next: (task: Task, now: number) => Task) =>
      withNow((now) => {
        const task = stored(tenant, id)
        if (task instanceof TaskNotFound) return task
        const conflict = holderConflict(task, now, holder)
        return conflict ?? put(tenant, next(task, now))
      })

  const service: TaskBoardService = {
    create: (tenant, input) =>
      withNow((now) => {
        const missing = (input.dependsOn ?? []).find((d) => !board(tenant).has(d))
        if (missing !== undefined) return notFound(missing)
        return put(tenant, newTask(input, now))
      }) as Effect.Effect<Task, TaskNotFound>,
    list: (tenant, filter) =>
      Effect.map(Clock.currentTimeMillis, (now) =>
        [...board(tenant).values()]
          .map((t) => atTime(t, now))
          .filter(
            (t) =>
              (filter.team === undefined || t.team === filter.team) &&
              (filter.state === undefined || t.state === filter.state) &&
              (filter.assignee === undefined || t.assignee === filter.assignee) &&
              hasLabels(t, filter.labels)
          )
          .sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1))
          .slice(0, filter.limit ?? 1_000)
      ),
    get: (tenant, id) =>
      withNow((now) => {
        const task = stored(tenant, id)
        return task instanceof TaskNotFound ? task : atTime(task, now)
      }) as Effect.Effect<Task, TaskNotFound>,
    claimNext: (tenant, input) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const candidates = [...board(tenant).values()]
          .filter((t) => t.team === input.team && hasLabels(t, input.labels) && claimConflict(t, now, depStates(tenant, t, now)) === undefined)
          .map((t) => atTime(t, now))
          .sort(claimOrder)
        const next = candidates[0]
        if (next === undefined) return undefined
        return put(tenant, new Task({ ...next, state: "claimed", assignee: input.claimant, leaseExpiresAt: nowIso(now + input.leaseMs), attempts: next.attempts + 1, error: undefined, note: undefined, updatedAt: nowIso(now) }))
      }),
    claim: (tenant, id, input) =>
      withNow((now) => {
        const task = stored(tenant, id)
        if (task instanceof TaskNotFound) return task
        const conflict = claimConflict(task, now, depStates(tenant, task, now))
        if (conflict !== undefined) return conflict
        const open = atTime(task, now)
        return put(tenant, new Task({ ...open, state: "claimed", assignee: input.claimant, leaseExpiresAt: nowIso(now + input.leaseMs), attempts: open.attempts + 1, error: undefined, note: undefined, updatedAt: nowIso(now) }))
      }),
    heartbeat: (tenant, id, input) =>
      asHolder(tenant, id, input.holder, (task, now) => new Task({ ...task, leaseExpiresAt: nowIso(now + input.leaseMs), note: input.note ?? task.note, updatedAt: nowIso(now) })),
    complete: (tenant, id, input) =>
      asHolder(tenant, id, input.holder, (task, now) => new Task({ ...task, state: "done", leaseExpiresAt: undefined, result: input.result, updatedAt: nowIso(now) })),
    fail: (tenant, id, input) =>
      asHolder(tenant, id, input.holder, (task, now) => {
        const final = task.attempts >= task.maxAttempts
        return new Task({
          ...task,
          state: final ? "failed" : "open",
          assignee: final ? task.assignee : undefined,
          leaseExpiresAt: undefined,
          error: input.reason ?? "failed",
          updatedAt: nowIso(now)
        })
      }),
    release: (tenant, id, input) =>
      asHolder(tenant, id, input.holder, (task, now) =>
        new Task({ ...task, state: "open", assignee: undefined, leaseExpiresAt: undefined, attempts: Math.max(0, task.attempts - 1), updatedAt: nowIso(now) })),
    cancel: (tenant, id, input) =>
      withNow((now) => {
        const task = stored(tenant, id)
        if (task instanceof TaskNotFound) return task
        const conflict = liveConflict(task, now)
        if (conflict !== undefined) return conflict
        return put(tenant, new Task({ ...atTime(task, now), state: "cancelled", assignee: undefined, leaseExpiresAt: undefined, error: input.reason ?? "cancelled", updatedAt: nowIso(now) }))
      }),
    reassign: (tenant, id, input) =>
      withNow((now) => {
        const task = stored(tenant, id)
        if (task instanceof TaskNotFound) return task
        const conflict = liveConflict(task, now)
        if (conflict !== undefined) return conflict
        const live = atTime(task, now)
        return put(
          tenant,
          input.assignee === undefined
            ? new Task({ ...live, state: "open", assignee: undefined, leaseExpiresAt: undefined, updatedAt: nowIso(now) })
            : new Task({ ...live, state: "claimed", assignee: input.assignee, leaseExpiresAt: nowIso(now + input.leaseMs), attempts: live.attempts + 1, updatedAt: nowIso(now) })
        )
      }),
    sweep: Effect.map(Clock.currentTimeMillis, (now) => {
      const expired: Array<Expired> = []
      for (const [tenant, tasks] of tenants) {
        for (const task of tasks.values()) {
          const at = atTime(task, now)
          if (at !== task) expired.push({ tenant, task: put(tenant, at) })
        }
      }
      return expired
    })
  }
  return service
})

/** In-memory `TaskBoard`, for tests and the embedded broker. */
export const layerMemory: Layer.Layer<TaskBoard> = Layer.effect(TaskBoard, makeMemory)
