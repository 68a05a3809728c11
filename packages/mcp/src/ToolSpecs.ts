/**
 * What a client sees of the tools before it calls one: name, title, description, input shape
 * (zod, which the SDK's `McpServer.registerTool` publishes as JSON Schema) and annotations, for
 * all 21 tools, in the order `tools/list` gives them. The one source of this metadata: the
 * Effect tools (Tools.ts, TaskTools.ts, A2aTools.ts) take theirs from here with {@link spec},
 * and the bin's front (Front.ts) answers `tools/list` from it before the Effect part is loaded.
 *
 * Plain TypeScript and zod only (zod is loaded with the MCP SDK anyway): importing effect or
 * `@mks/a2a` here would pull them into the bin's start-up path.
 */
import { z } from "zod"

export interface ToolSpec {
  readonly name: string
  readonly title: string
  readonly description: string
  readonly input: z.ZodRawShape
  readonly annotations?: { readonly readOnlyHint?: boolean; readonly destructiveHint?: boolean; readonly idempotentHint?: boolean }
}

const str = z.string()
const optStr = (description: string) => str.optional().describe(description)

const Scope = z.enum(["all", "team", "repo", "host", "directory"])

const taskId = { task_id: z.string().describe("The task's id (t_…)") }

/** Every tool: the bus tools, the task board's, then the A2A ones. */
export const toolSpecs: ReadonlyArray<ToolSpec> = [
  {
    name: "whoami",
    title: "Who am I on the bus",
    description: "Show this session's peer on the a2a bus: id, name, teams, summary, broker URL, and whether incoming messages are pushed into the conversation or must be fetched with check_inbox.",
    input: {},
    annotations: { readOnlyHint: true }
  },
  {
    name: "list_peers",
    title: "List peers",
    description: "List other agent sessions (peers) on the bus. scope narrows the list: all (default), team (peers in `team`, or in any of your teams), repo (same git repository), host (same machine), directory (same working directory). Offline peers are left out unless include_offline is true.",
    input: {
      scope: Scope.optional().describe("all | team | repo | host | directory (default all)"),
      team: optStr("With scope=team: only this team (default: all of your teams)"),
      include_offline: z.boolean().optional().describe("Also list peers that are offline (default false)"),
      include_self: z.boolean().optional().describe("Also list this session (default false)")
  },
    annotations: { readOnlyHint: true }
  },
  {
    name: "set_summary",
    title: "Set my summary",
    description: "Set the one-line summary other peers see for this session (what you are working on). At most 2,000 characters.",
    input: { summary: str.describe("What this session is working on") },
    annotations: { idempotentHint: true }
  },
  {
    name: "send_peer_message",
    title: "Message a peer",
    description: "Send a message to one peer, by id or by name. It is delivered at once if the peer is online, and kept in its inbox until read otherwise. To answer a message, pass its message_id as reply_to (the thread is kept).",
    input: {
      to: str.describe("The recipient's peer id or name"),
      message: str.describe("The message text (at most 262,144 characters)"),
      thread_id: optStr("Continue this thread (default: a new thread, or the thread of reply_to)"),
      reply_to: optStr("The message_id this answers")
  }
  },
  {
    name: "send_team_message",
    title: "Message a team",
    description: "Send a message to every member of a team except yourself. Members that are offline get it when they come back.",
    input: {
      team: str.describe("The team name"),
      message: str.describe("The message text (at most 262,144 characters)"),
      thread_id: optStr("Continue this thread"),
      reply_to: optStr("The message_id this answers")
  }
  },
  {
    name: "check_inbox",
    title: "Check inbox",
    description: "Return the messages that arrived and were not yet shown to you (oldest first), and spawn status events, then mark the messages read. Use it when messages are not pushed to you (see whoami).",
    input: { limit: z.number().int().optional().describe("At most this many messages (1-1000, default 50)") }
  },
  {
    name: "wait_for_messages",
    title: "Wait for messages",
    description: "Wait until a message (or a spawn status event) arrives, up to timeout_seconds, then return it like check_inbox. Returns at once if something is already waiting.",
    input: {
      timeout_seconds: z.number().optional().describe("How long to wait (0-600 seconds, default 60)"),
      limit: z.number().int().optional().describe("At most this many messages (1-1000, default 50)")
  }
  },
  {
    name: "list_teams",
    title: "List teams",
    description: "List the teams of your tenant with their members.",
    input: {},
    annotations: { readOnlyHint: true }
  },
  {
    name: "join_team",
    title: "Join a team",
    description: "Join a team (it is created if it does not exist). Team messages reach every member.",
    input: { team: str.describe("The team name (1-64 of A-Z a-z 0-9 _ . @ -)") },
    annotations: { idempotentHint: true }
  },
  {
    name: "leave_team",
    title: "Leave a team",
    description: "Leave a team you are a member of.",
    input: { team: str.describe("The team name") },
    annotations: { idempotentHint: true }
  },
  {
    name: "list_runners",
    title: "List runners",
    description: "List the runners (machines that can start new agent sessions) with their labels, capacity and load.",
    input: {},
    annotations: { readOnlyHint: true }
  },
  {
    name: "spawn_peer",
    title: "Spawn a peer",
    description: "Ask a runner to start a new agent session (preset claude: a Claude Code session with `prompt` as its first task; preset command: any program). Returns the spawn id at once; its status (starting, running, registered, exited, …) arrives as events. Pick a runner by id or labels, or let the broker choose one with free capacity.",
    input: {
      name: optStr("Peer name for the new session"),
      prompt: optStr("First task for a claude session"),
      preset: z.enum(["claude", "command"]).optional().describe("claude (default without command) or command"),
      command: optStr("Program to run (preset command)"),
      args: z.array(str).optional().describe("Arguments for command"),
      cwd: optStr("Working directory on the runner"),
      env: z.record(str, str).optional().describe("Extra environment variables"),
      teams: z.array(str).optional().describe("Teams the new peer joins"),
      runner: optStr("Runner id"),
      labels: z.record(str, str).optional().describe("Runner labels that must match"),
      provider: optStr("Model provider for a claude session (via the proxy)"),
      model: optStr("Model for a claude session"),
      task: optStr("Task id (of a team's board) the new session is for: it joins the task's team, holds the task once registered, and a claude session gets the task as its first prompt")
  }
  },
  {
    name: "stop_peer",
    title: "Stop a spawned peer",
    description: "Stop an agent session that a runner started: by its peer id or name, or by spawn id. The runner terminates it (and its child processes).",
    input: {
      peer: optStr("Peer id or name of the session to stop"),
      spawn_id: optStr("Spawn id to stop")
  },
    annotations: { destructiveHint: true }
  },
  {
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
  }
  },
  {
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
    annotations: { readOnlyHint: true }
  },
  {
    name: "get_next_task",
    title: "Claim the next task",
    description:
      "Claim the next task from a team's board: the highest priority open task (then the oldest) whose dependencies are done and that carries the labels you ask for. It is yours alone; this server keeps its lease alive while the session lives. Finish with complete_task, or fail_task / release_task.",
    input: {
      team: z.string().optional().describe("Team to take work from (default: your teams, in order)"),
      labels: z.array(z.string()).optional().describe("Only tasks carrying all of these labels")
  }
  },
  {
    name: "update_task",
    title: "Update a task you hold",
    description: "Report progress on a task you hold (a note others see in list_tasks) and renew its lease now.",
    input: { ...taskId, note: z.string().optional().describe("Progress note (≤ 4,000 characters)") }
  },
  {
    name: "complete_task",
    title: "Complete a task",
    description: "Mark a task you hold as done, with a result the creator reads (what was done, where it is).",
    input: { ...taskId, result: z.string().optional().describe("The outcome (≤ 65,536 characters)") }
  },
  {
    name: "fail_task",
    title: "Fail a task",
    description: "Give up on a task you hold because it failed: it goes back on the board for another attempt, or is failed for good after its last attempt.",
    input: { ...taskId, reason: z.string().optional().describe("Why it failed (≤ 4,000 characters)") }
  },
  {
    name: "release_task",
    title: "Release a task",
    description: "Put a task you hold back on the board untouched (no attempt is counted), e.g. when you cannot take it on after all.",
    input: { ...taskId }
  },
  {
    name: "list_a2a_agents",
    title: "List A2A agents",
    description:
      "List Agent2Agent (A2A) agents: remote agents bridged onto the bus (message them with send_peer_message like any peer; their answers and task updates arrive as messages) and the peers of this bus that A2A clients can reach, with their agent card URLs.",
    input: {},
    annotations: { readOnlyHint: true }
  }
]

/** The metadata of the tool `name`; throws on a name that is not in {@link toolSpecs}. */
export const spec = (name: string): ToolSpec => {
  const found = toolSpecs.find((s) => s.name === name)
  if (found === undefined) throw new Error(`no tool spec named ${name}`)
  return found
}
