/**
 * MCP tools for the team task board (docs/tasks.md): `create_task`, `list_tasks`,
 * `get_next_task` (claims), `update_task` (progress note, renews the lease), `complete_task`,
 * `fail_task`, `release_task`. A task this session claims is held: the session renews its lease
 * every third of `A2A_TASK_LEASE_MS` while it lives, so a task comes back to the board only when
 * the session is gone.
 */
import { Ids, Task } from "@mks/a2a"
import { Effect, ParseResult, Schema } from "effect"
import { describeError, Session } from "./Session.js"
import { spec } from "./ToolSpecs.js"
import { type Tool, ToolError } from "./Tools.js"

const check = <A, I>(schema: Schema.Schema<A, I>, what: string) => {
  const decode = Schema.decodeUnknown(schema)
  return (value: unknown): Effect.Effect<A, ToolError> =>
    decode(value).pipe(
      Effect.mapError((error) => new ToolError({ message: `${what}: ${ParseResult.TreeFormatter.formatErrorSync(error).split("\n").at(-1)?.trim() ?? "invalid"}` }))
    )
}

const broker = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, ToolError, R> =>
  effect.pipe(Effect.mapError((error) => new ToolError({ message: `${what}: ${describeError(error)}` })))

const me = Effect.flatMap(Session, (s) => s.peer().pipe(Effect.mapError((e) => new ToolError({ message: e.message }))))

const json = (value: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(value)) as Record<string, unknown>

const checkId = check(Task.TaskId, "task_id")
const checkTeam = check(Ids.TeamName, "team")
const checkLabels = check(Schema.UndefinedOr(Schema.Array(Task.Label)), "labels")

export const taskLine = (t: Task.Task): string =>
  [
    `- ${t.id} [${t.state}] p${t.priority} "${t.title}" @${t.team}`,
    t.assignee !== undefined ? ` · ${t.state === "claimed" ? "held" : "by"} ${t.assignee}` : "",
    t.labels.length > 0 ? ` · labels: ${t.labels.join(", ")}` : "",
    t.dependsOn.length > 0 ? ` · after: ${t.dependsOn.join(", ")}` : "",
    ` · attempts ${t.attempts}/${t.maxAttempts}`
  ].join("")

const taskText = (t: Task.Task): string =>
  [
    taskLine(t),
    t.body !== "" ? t.body.split("\n").map((l) => `  > ${l}`).join("\n") : undefined,
    t.note !== undefined ? `  note: ${t.note}` : undefined,
    t.result !== undefined ? `  result: ${t.result}` : undefined,
    t.error !== undefined ? `  last error: ${t.error}` : undefined
  ].filter((x) => x !== undefined).join("\n")

export const createTask: Tool = {
  ...spec("create_task"),
  run: (args) =>
    Effect.gen(function*() {
      const session = yield* Session
      const self = yield* me
      const payload = yield* check(Task.CreateTask, "task")({
        team: args.team,
        title: args.title,
        body: args.body,
        priority: args.priority,
        labels: args.labels,
        dependsOn: args.depends_on,
        maxAttempts: args.max_attempts,
        peer: self.id
      })
      const { task } = yield* broker("create_task", session.client.api.tasks.create({ payload }))
      return { text: `Created task ${task.id} on team ${task.team}:\n${taskText(task)}`, structured: json({ task }) }
    })
}

export const listTasks: Tool = {
  ...spec("list_tasks"),
  run: (args) =>
    Effect.gen(function*() {
      const session = yield* Session
      const self = yield* me
      const teams = args.team !== undefined ? [yield* checkTeam(args.team)] : self.teams
      const labels = yield* checkLabels(args.labels)
      const assignee = args.assignee === "me" ? self.id : args.assignee === undefined ? undefined : yield* check(Ids.PeerId, "assignee")(args.assignee)
      const limit = yield* check(Schema.UndefinedOr(Schema.Int.pipe(Schema.between(1, 1_000))), "limit")(args.limit)
      const state = yield* check(Schema.UndefinedOr(Task.TaskState), "state")(args.state)
      const all: Array<Task.Task> = []
      for (const team of teams) {
        const { tasks } = yield* broker(
          "list_tasks",
          session.client.api.tasks.list({ urlParams: { team, state, assignee, labels: labels?.join(","), limit: limit ?? 100 } })
        )
        all.push(...tasks)
      }
      return {
        text: all.length === 0 ? `No tasks${teams.length === 0 ? " (you are in no team; join one or pass team)" : ""}.` : all.map(taskLine).join("\n"),
        structured: json({ tasks: all })
      }
    })
}

export const getNextTask: Tool = {
  ...spec("get_next_task"),
  run: (args) =>
    Effect.gen(function*() {
      const session = yield* Session
      const self = yield* me
      const teams = args.team !== undefined ? [yield* checkTeam(args.team)] : self.teams
      const labels = yield* checkLabels(args.labels)
      if (teams.length === 0) return yield* new ToolError({ message: "get_next_task: you are in no team; join one or pass team" })
      for (const team of teams) {
        const { task } = yield* broker(
          "get_next_task",
          session.client.api.tasks.claimNext({ payload: { team, peer: self.id, labels, leaseMs: session.config.taskLeaseMs } })
        )
        if (task !== null) {
          yield* session.hold(task.id)
          return {
            text: `You hold task ${task.id} (this server keeps the lease alive). When finished call complete_task with a result; if you cannot do it, fail_task or release_task.\n${taskText(task)}`,
            structured: json({ task })
          }
        }
      }
      return { text: `No claimable task on ${teams.join(", ")} right now.`, structured: { task: null } }
    })
}

const holderAction = (
  name: "update_task" | "complete_task" | "fail_task" | "release_task",
  act: (session: Effect.Effect.Success<typeof Session>, id: Task.TaskId, peer: Ids.PeerId, args: Record<string, unknown>) => Effect.Effect<{ readonly task: Task.Task }, unknown>
): Tool => ({
  ...spec(name),
  run: (args) =>
    Effect.gen(function*() {
      const session = yield* Session
      const self = yield* me
      const id = yield* checkId(args.task_id)
      const { task } = yield* broker(name, act(session, id, self.id, args))
      if (name !== "update_task") yield* session.drop(id)
      return { text: `${name === "update_task" ? "Updated" : "Task now"} ${task.state}:\n${taskText(task)}`, structured: json({ task }) }
    })
})

export const updateTask = holderAction(
  "update_task",
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(4_000))), "note")(args.note), (note) =>
      session.client.api.tasks.heartbeat({ path: { id }, payload: { peer, note, leaseMs: session.config.taskLeaseMs } }))
)

export const completeTask = holderAction(
  "complete_task",
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(65_536))), "result")(args.result), (result) =>
      session.client.api.tasks.complete({ path: { id }, payload: { peer, result } }))
)

export const failTask = holderAction(
  "fail_task",
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(4_000))), "reason")(args.reason), (reason) =>
      session.client.api.tasks.fail({ path: { id }, payload: { peer, reason } }))
)

export const releaseTask = holderAction(
  "release_task",
  (session, id, peer) => session.client.api.tasks.release({ path: { id }, payload: { peer } })
)

export const taskTools: ReadonlyArray<Tool> = [createTask, listTasks, getNextTask, updateTask, completeTask, failTask, releaseTask]
