/**
 * `a2a tasks`: the team task board (docs/tasks.md) for people. Listing and creating need no
 * peer; claiming, completing and failing act as the CLI's own peer (`--as`), which joins the
 * team to claim from it.
 */
import { BrokerClient, Task } from "@mks/a2a"
import { Effect, Schema } from "effect"
import { call, self } from "./Broker.js"
import { ago, CliError, json, type Output, paint, table } from "./Output.js"

const api = Effect.map(BrokerClient.BrokerClient, (c) => c.api)

/** A task id from the command line, or a usage error. */
const taskId = (id: string) =>
  Schema.decodeUnknown(Task.TaskId)(id).pipe(Effect.mapError(() => new CliError({ message: `"${id}" is not a task id (t_…; a2a tasks lists them)`, usage: true })))

const stateColour = (state: Task.TaskState) =>
  state === "done" ? "green" : state === "failed" ? "red" : state === "claimed" ? "yellow" : state === "cancelled" ? "dim" : "cyan"

const row = (o: Output, t: Task.Task) => [
  t.id,
  paint(o, stateColour(t.state), t.state),
  String(t.priority),
  t.team,
  t.title,
  t.assignee ?? "-",
  `${t.attempts}/${t.maxAttempts}`,
  t.labels.join(",") || "-",
  ago(t.updatedAt)
]

const show = (o: Output, verb: string, task: Task.Task) => {
  if (o.json) return json(o, task)
  o.out(`${verb} ${task.id} "${task.title}" @${task.team}: ${task.state}${task.assignee !== undefined ? ` (${task.assignee})` : ""}`)
  if (task.body !== "" && verb === "claimed") o.out(task.body)
}

export const list = (o: Output, filter: { team?: string; state?: string; labels?: ReadonlyArray<string>; limit?: number }) =>
  Effect.gen(function*() {
    const a = yield* api
    const { tasks } = yield* call(
      a.tasks.list({ urlParams: { team: filter.team as never, state: filter.state as never, labels: filter.labels?.join(","), limit: filter.limit } })
    )
    if (o.json) return json(o, tasks)
    if (tasks.length === 0) return o.out("no tasks")
    table(o, ["TASK", "STATE", "PRI", "TEAM", "TITLE", "ASSIGNEE", "TRIES", "LABELS", "UPDATED"], tasks.map((t) => row(o, t)))
  })

export const create = (
  o: Output,
  input: { team: string; title: string; body?: string; priority?: number; labels?: ReadonlyArray<string>; dependsOn?: ReadonlyArray<string>; maxAttempts?: number }
) =>
  Effect.gen(function*() {
    const a = yield* api
    const { task } = yield* call(
      a.tasks.create({
        payload: {
          team: input.team as never,
          title: input.title,
          body: input.body,
          priority: input.priority,
          labels: input.labels,
          dependsOn: input.dependsOn as never,
          maxAttempts: input.maxAttempts
        }
      })
    )
    show(o, "created", task)
  })

export const claim = (o: Output, input: { as?: string; team: string; labels?: ReadonlyArray<string>; leaseMs?: number }) =>
  Effect.gen(function*() {
    const a = yield* api
    const me = yield* self(input.as)
    // Claiming takes a member of the team: the CLI's peer joins it (idempotent).
    if (!me.teams.includes(input.team as never)) yield* call(a.teams.join({ path: { name: input.team as never }, payload: { peerId: me.id } }))
    const { task } = yield* call(a.tasks.claimNext({ payload: { team: input.team as never, peer: me.id, labels: input.labels, leaseMs: input.leaseMs } }))
    if (task === null) {
      if (o.json) return json(o, null)
      return yield* new CliError({ message: `no claimable task on team ${input.team}` })
    }
    show(o, "claimed", task)
  })

export const complete = (o: Output, input: { as?: string; id: string; result?: string }) =>
  Effect.gen(function*() {
    const a = yield* api
    const id = yield* taskId(input.id)
    const me = yield* self(input.as)
    const { task } = yield* call(a.tasks.complete({ path: { id }, payload: { peer: me.id, result: input.result } }))
    show(o, "completed", task)
  })

export const fail = (o: Output, input: { as?: string; id: string; reason?: string }) =>
  Effect.gen(function*() {
    const a = yield* api
    const id = yield* taskId(input.id)
    const me = yield* self(input.as)
    const { task } = yield* call(a.tasks.fail({ path: { id }, payload: { peer: me.id, reason: input.reason } }))
    show(o, "failed", task)
  })

export const cancel = (o: Output, input: { id: string; reason?: string }) =>
  Effect.gen(function*() {
    const a = yield* api
    const id = yield* taskId(input.id)
    const { task } = yield* call(a.tasks.cancel({ path: { id }, payload: { reason: input.reason } }))
    show(o, "cancelled", task)
  })
