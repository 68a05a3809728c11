/**
 * The task board's rules on the bus (docs/tasks.md): tenant scoping, who may act for which
 * peer, team membership for claims, and `task` events to the team's members.
 *
 * - Everything is scoped to the principal's tenant (another tenant's task is `TaskNotFound`).
 * - Creating needs the team to exist; acting as a peer (`peer` in a body) needs to own it, as
 *   sending a message does.
 * - Claiming (next or a given task) needs the claimant to be a member of the task's team.
 * - Heartbeat, complete, fail and release are the holder's (the store checks the lease).
 * - Cancel and reassign are for an admin or the task's creator.
 */
import { ChannelHub, Errors, Ids, Peer, PeerRegistry, Principal, Task, TaskBoard, TeamDirectory } from "@mks/a2a"
import { Clock, Effect } from "effect"

type P = Principal.Principal

const forbidden = (message: string) => new Errors.Forbidden({ message })

export interface Deps {
  readonly board: TaskBoard.TaskBoardService
  readonly teams: TeamDirectory.TeamDirectoryService
  readonly peers: PeerRegistry.PeerRegistryService
  readonly hub: ChannelHub.ChannelHubService
  readonly owned: (principal: P, id: Ids.PeerId) => Effect.Effect<Peer.PeerRecord, Errors.PeerNotFound | Errors.Forbidden | Errors.ServiceUnavailable>
  readonly defaultLeaseMs: number
}

/**
 * The first prompt of a `claude` session spawned for `task`: the task (id, team, title,
 * labels, body), that it already holds it, how to finish it, then the spec's own prompt.
 */
export const taskPrompt = (task: Task.Task, prompt: string | undefined): string =>
  [
    `You were started to do task ${task.id} from the board of team ${task.team}. You already hold it: the broker claimed it for you when your session joined the bus, and its lease is kept alive while your session lives.`,
    "",
    `Title: ${task.title}`,
    ...(task.labels.length > 0 ? [`Labels: ${task.labels.join(", ")}`] : []),
    ...(task.priority !== 0 ? [`Priority: ${task.priority}`] : []),
    ...(task.body !== "" ? ["", task.body] : []),
    "",
    `Do the work, then finish with the MCP tool complete_task (task_id ${task.id}, a result saying what you did), or fail_task with the reason if you cannot do it.`,
    ...(prompt !== undefined && prompt !== "" ? ["", prompt] : [])
  ].join("\n")

export const make = (deps: Deps) => {
  const { board, teams, hub, owned } = deps

  /** Push a `task` event to every member of the task's team (`known`: the members, when the caller just read them). */
  const publish = (tenant: string, change: Task.TaskChange, task: Task.Task, known?: ReadonlyArray<Ids.PeerId>) =>
    Effect.gen(function* () {
      const members = known ?? (yield* teams.members(tenant, task.team).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<Ids.PeerId>)))
      if (members.length === 0) return
      const at = Ids.nowIso(yield* Clock.currentTimeMillis)
      yield* hub.publishEvent(tenant, { type: "task", change, task, at }, members)
    })

  const published = (tenant: string, change: Task.TaskChange) => (task: Task.Task) => Effect.as(publish(tenant, change, task), task)

  const member = (principal: P, team: Ids.TeamName, peer: Ids.PeerId) =>
    Effect.gen(function* () {
      yield* owned(principal, peer)
      const members = yield* teams.members(principal.tenant, team)
      if (!members.includes(peer)) return yield* Effect.fail(forbidden(`peer ${peer} is not a member of team ${team}`))
      return members
    })

  /** Cancel and reassign: an admin, or the principal that created the task (directly or through a peer it owns). */
  const operator = (principal: P, task: Task.Task) =>
    Effect.gen(function* () {
      if (principal.isAdmin || task.createdBy === principal.subject) return
      const creator = yield* deps.peers.get(principal.tenant, task.createdBy as Ids.PeerId).pipe(Effect.option)
      if (creator._tag === "Some" && creator.value.owner === principal.subject) return
      return yield* Effect.fail(forbidden(`only an admin or the creator of task ${task.id} may do this`))
    })

  const canAct = (principal: P) =>
    principal.isAdmin || principal.hasRole("peer") ? Effect.void : Effect.fail(forbidden("the task board needs the peer or admin role"))

  const create = (principal: P, input: Task.CreateTask) =>
    Effect.gen(function* () {
      yield* canAct(principal)
      yield* teams.get(principal.tenant, input.team)
      if (input.peer !== undefined) yield* owned(principal, input.peer)
      const task = yield* board.create(principal.tenant, { ...input, createdBy: input.peer ?? principal.subject })
      return yield* published(principal.tenant, "created")(task)
    })

  const list = (principal: P, filter: Task.TaskFilter) =>
    board.list(principal.tenant, { team: filter.team, state: filter.state, assignee: filter.assignee, labels: Task.parseLabels(filter.labels), limit: filter.limit })

  const get = (principal: P, id: Task.TaskId) => board.get(principal.tenant, id)

  const lease = (ms: number | undefined) => ms ?? deps.defaultLeaseMs

  const claimNext = (principal: P, input: Task.ClaimNext) =>
    Effect.gen(function* () {
      const members = yield* member(principal, input.team, input.peer)
      const task = yield* board.claimNext(principal.tenant, { team: input.team, claimant: input.peer, labels: input.labels, leaseMs: lease(input.leaseMs) })
      if (task !== undefined) yield* publish(principal.tenant, "claimed", task, members)
      return task
    })

  const claim = (principal: P, id: Task.TaskId, input: typeof Task.ClaimTask.Type) =>
    Effect.gen(function* () {
      const task = yield* board.get(principal.tenant, id)
      yield* member(principal, task.team, input.peer)
      return yield* board.claim(principal.tenant, id, { claimant: input.peer, leaseMs: lease(input.leaseMs) }).pipe(Effect.flatMap(published(principal.tenant, "claimed")))
    })

  const heartbeat = (principal: P, id: Task.TaskId, input: typeof Task.HeartbeatTask.Type) =>
    Effect.zipRight(owned(principal, input.peer), board.heartbeat(principal.tenant, id, { holder: input.peer, leaseMs: lease(input.leaseMs), note: input.note }))

  const complete = (principal: P, id: Task.TaskId, input: typeof Task.CompleteTask.Type) =>
    Effect.zipRight(owned(principal, input.peer), board.complete(principal.tenant, id, { holder: input.peer, result: input.result })).pipe(
      Effect.flatMap(published(principal.tenant, "done"))
    )

  const fail = (principal: P, id: Task.TaskId, input: typeof Task.FailTask.Type) =>
    Effect.zipRight(owned(principal, input.peer), board.fail(principal.tenant, id, { holder: input.peer, reason: input.reason })).pipe(
      Effect.flatMap(published(principal.tenant, "failed"))
    )

  const release = (principal: P, id: Task.TaskId, input: typeof Task.ReleaseTask.Type) =>
    Effect.zipRight(owned(principal, input.peer), board.release(principal.tenant, id, { holder: input.peer })).pipe(
      Effect.flatMap(published(principal.tenant, "released"))
    )

  const cancel = (principal: P, id: Task.TaskId, input: typeof Task.CancelTask.Type) =>
    Effect.gen(function* () {
      yield* operator(principal, yield* board.get(principal.tenant, id))
      return yield* board.cancel(principal.tenant, id, { reason: input.reason }).pipe(Effect.flatMap(published(principal.tenant, "cancelled")))
    })

  const reassign = (principal: P, id: Task.TaskId, input: typeof Task.ReassignTask.Type) =>
    Effect.gen(function* () {
      const task = yield* board.get(principal.tenant, id)
      yield* operator(principal, task)
      if (input.peer !== undefined) {
        yield* deps.peers.get(principal.tenant, input.peer)
        const members = yield* teams.members(principal.tenant, task.team)
        if (!members.includes(input.peer)) return yield* Effect.fail(forbidden(`peer ${input.peer} is not a member of team ${task.team}`))
      }
      return yield* board.reassign(principal.tenant, id, { assignee: input.peer, leaseMs: lease(input.leaseMs) }).pipe(Effect.flatMap(published(principal.tenant, "reassigned")))
    })

  /** Write down lapsed leases and tell the teams (`lease_expired`): the tasks are claimable again. */
  const sweep = Effect.gen(function* () {
    const expired = yield* board.sweep
    for (const { tenant, task } of expired) yield* publish(tenant, "lease_expired", task)
    return expired.length
  })

  /**
   * Spawning for a task (docs/tasks.md, "Spawning for a task"). `forSpawn` checks, when the
   * spawn is ordered, that the task is in the caller's tenant (`TaskNotFound`), that the caller
   * may act on the board, and that the task could be claimed now: open (or its lease lapsed),
   * its dependencies done (`TaskConflict` otherwise).
   */
  const forSpawn = (principal: P, id: Task.TaskId) =>
    Effect.gen(function* () {
      yield* canAct(principal)
      const task = yield* board.get(principal.tenant, id)
      const deps = yield* Effect.forEach(task.dependsOn, (d) => board.get(principal.tenant, d).pipe(Effect.map((t) => t.state), Effect.orElseSucceed(() => "open" as const)))
      const conflict = TaskBoard.claimConflict(task, yield* Clock.currentTimeMillis, deps)
      if (conflict !== undefined) return yield* Effect.fail(conflict)
      return task
    })

  /**
   * The spawn's peer registered: the broker claims the task for it (no team check: the spawn
   * joined the task's team when it was ordered). A peer that already holds it (a resumed
   * registration) keeps it; a task taken or withdrawn meanwhile is left alone (logged).
   */
  const claimForSpawn = (tenant: string, id: Task.TaskId, peer: Ids.PeerId) =>
    Effect.gen(function* () {
      const task = yield* board.get(tenant, id)
      if (task.state === "claimed" && task.assignee === peer) return task
      return yield* board.claim(tenant, id, { claimant: peer, leaseMs: deps.defaultLeaseMs }).pipe(Effect.flatMap(published(tenant, "claimed")))
    }).pipe(
      Effect.tapError((e) => Effect.logWarning(`spawn for task ${id}: not claimed for peer ${peer}: ${e.message}`)),
      Effect.option
    )

  /**
   * The spawn ended while its peer still holds the task: the task is failed with `reason` (the
   * attempt counts), so it is open again while attempts remain, and the queue is not stuck
   * until the lease lapses.
   */
  const spawnEnded = (tenant: string, id: Task.TaskId, peer: Ids.PeerId, reason: string) =>
    Effect.gen(function* () {
      const task = yield* board.get(tenant, id)
      if (task.state !== "claimed" || task.assignee !== peer) return undefined
      return yield* board.fail(tenant, id, { holder: peer, reason }).pipe(Effect.flatMap(published(tenant, "failed")))
    }).pipe(Effect.option)

  return { forSpawn, claimForSpawn, spawnEnded, create, list, get, claimNext, claim, heartbeat, complete, fail, release, cancel, reassign, sweep, board } as const
}
