/**
 * MCP tools for the team task board (docs/tasks.md): `create_task`, `list_tasks`,
 * `get_next_task` (claims), `update_task` (progress note, renews the lease), `complete_task`,
 * `fail_task`, `release_task`. A task this session claims is held: the session renews its lease
 * every third of `A2A_TASK_LEASE_MS` while it lives, so a task comes back to the board only when
 * the session is gone.
 */
import { Ids, Task } from "@mks/a2a"
import { Effect, ParseResult, Schema } from "effect"
import { z } from "zod"
import { describeError, Session } from "./Session.js"
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

const taskId = { task_id: z.string().describe("The task's id (t_…)") }

export const createTask: Tool = {
  name: "create_task",
  title: "Create a task",
  description:
    "Put a task on a team's shared task board. Members are notified and any of them can claim it with get_next_task. Higher priority is taken first; depends_on lists tasks that must be done first; labels let claimants pick what they can do.",
  input: {
    team: z.string().describe("Team whose board gets the task"),
    title: z.string().describe("Short title (≤ 500 characters)"),
    body: z.string().optional().describe("What to do, in full"),
    priority: z.number().int().optional().describe("Higher first (default 0)"),
    labels: z.array(z.string()).optional().describe("Labels a claimant can ask for"),
    depends_on: z.array(z.string()).optional().describe("Ids of tasks that must be done first"),
    max_attempts: z.number().int().optional().describe("Attempts before the task is failed for good (default 3)")
  },
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
  name: "list_tasks",
  title: "List tasks",
  description: "List tasks of the task board, oldest first: by team (default: all your teams), state (open, claimed, done, failed, cancelled), assignee (a peer id, or \"me\") and labels.",
  input: {
    team: z.string().optional().describe("Only this team (default: every team you are in)"),
    state: z.enum(["open", "claimed", "done", "failed", "cancelled"]).optional().describe("Only tasks in this state"),
    assignee: z.string().optional().describe("Only tasks held or done by this peer id; \"me\" for yours"),
    labels: z.array(z.string()).optional().describe("Only tasks carrying all of these labels"),
    limit: z.number().int().optional().describe("At most this many per team (default 100)")
  },
  annotations: { readOnlyHint: true },
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
  name: "get_next_task",
  title: "Claim the next task",
  description:
    "Claim the next task from a team's board: the highest priority open task (then the oldest) whose dependencies are done and that carries the labels you ask for. It is yours alone; this server keeps its lease alive while the session lives. Finish with complete_task, or fail_task / release_task.",
  input: {
    team: z.string().optional().describe("Team to take work from (default: your teams, in order)"),
    labels: z.array(z.string()).optional().describe("Only tasks carrying all of these labels")
  },
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
  title: string,
  description: string,
  extra: z.ZodRawShape,
  act: (session: Effect.Effect.Success<typeof Session>, id: Task.TaskId, peer: Ids.PeerId, args: Record<string, unknown>) => Effect.Effect<{ readonly task: Task.Task }, unknown>
): Tool => ({
  name,
  title,
  description,
  input: { ...taskId, ...extra },
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
  "Update a task you hold",
  "Report progress on a task you hold (a note others see in list_tasks) and renew its lease now.",
  { note: z.string().optional().describe("Progress note (≤ 4,000 characters)") },
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(4_000))), "note")(args.note), (note) =>
      session.client.api.tasks.heartbeat({ path: { id }, payload: { peer, note, leaseMs: session.config.taskLeaseMs } }))
)

export const completeTask = holderAction(
  "complete_task",
  "Complete a task",
  "Mark a task you hold as done, with a result the creator reads (what was done, where it is).",
  { result: z.string().optional().describe("The outcome (≤ 65,536 characters)") },
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(65_536))), "result")(args.result), (result) =>
      session.client.api.tasks.complete({ path: { id }, payload: { peer, result } }))
)

export const failTask = holderAction(
  "fail_task",
  "Fail a task",
  "Give up on a task you hold because it failed: it goes back on the board for another attempt, or is failed for good after its last attempt.",
  { reason: z.string().optional().describe("Why it failed (≤ 4,000 characters)") },
  (session, id, peer, args) =>
    Effect.flatMap(check(Schema.UndefinedOr(Schema.String.pipe(Schema.maxLength(4_000))), "reason")(args.reason), (reason) =>
      session.client.api.tasks.fail({ path: { id }, payload: { peer, reason } }))
)

export const releaseTask = holderAction(
  "release_task",
  "Release a task",
  "Put a task you hold back on the board untouched (no attempt is counted), e.g. when you cannot take it on after all.",
  {},
  (session, id, peer) => session.client.api.tasks.release({ path: { id }, payload: { peer } })
)

export const taskTools: ReadonlyArray<Tool> = [createTask, listTasks, getNextTask, updateTask, completeTask, failTask, releaseTask]
