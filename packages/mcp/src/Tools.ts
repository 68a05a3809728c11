/**
 * The 13 tools of the architecture. Each tool is data: its metadata from ToolSpecs.ts (a name,
 * a description the model reads, an input shape for the MCP SDK), and an Effect that does the
 * work against the broker. Values are then checked
 * against core's Effect Schemas (body length, names, ids), so the limits are the broker's
 * own, and every failure becomes a readable `isError` result.
 */
import { Ids, Message, type Peer, Spawn, Team } from "@mks/a2a"
import { Duration, Effect, ParseResult, Schema } from "effect"
import { a2aTools } from "./A2aTools.js"
import { taskTools } from "./TaskTools.js"
import { spec, type ToolSpec } from "./ToolSpecs.js"
import { describeError, type Inbox, Session, taskText as taskEventText } from "./Session.js"

export interface ToolOutput {
  readonly text: string
  readonly structured: Record<string, unknown>
}

/** A tool refused its input or the broker refused the call; the text is shown to the model. */
export class ToolError extends Schema.TaggedError<ToolError>()("ToolError", { message: Schema.String }) {}

/** A tool: its metadata (ToolSpecs.ts, the one source the bin's front lists too) and the Effect that does the work. */
export interface Tool extends ToolSpec {
  readonly run: (args: Record<string, unknown>) => Effect.Effect<ToolOutput, ToolError, Session>
}

const check = <A, I>(schema: Schema.Schema<A, I>, what: string) => {
  const decode = Schema.decodeUnknown(schema)
  return (value: unknown): Effect.Effect<A, ToolError> =>
    decode(value).pipe(
      Effect.mapError((error) => new ToolError({ message: `${what}: ${ParseResult.TreeFormatter.formatErrorSync(error).split("\n").at(-1)?.trim() ?? "invalid"}` }))
    )
}

const checkBody = check(Message.Body, "message")
const checkTeam = check(Ids.TeamName, "team")
const checkThread = check(Schema.UndefinedOr(Ids.ThreadId), "thread_id")
const checkReplyTo = check(Schema.UndefinedOr(Ids.MessageId), "reply_to")
const checkSpec = check(Spawn.SpawnSpec, "spawn spec")

/** Run a broker call; its typed errors (and transport failures) become a `ToolError` with the broker's message. */
const broker = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, ToolError, R> =>
  effect.pipe(Effect.mapError((error) => new ToolError({ message: `${what}: ${describeError(error)}` })))

const me = Effect.flatMap(Session, (s) => s.peer().pipe(Effect.mapError((e) => new ToolError({ message: e.message }))))

const json = (value: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(value)) as Record<string, unknown>

const peerLine = (p: Peer.Peer, self?: string): string => {
  const parts = [
    `${p.name} (${p.id})${p.id === self ? " [you]" : ""}`,
    p.status,
    p.agent,
    p.teams.length > 0 ? `teams: ${p.teams.join(", ")}` : undefined,
    p.host !== "" ? `host: ${p.host}` : undefined,
    p.cwd !== "" ? `cwd: ${p.cwd}` : undefined,
    p.spawnId !== undefined ? `spawn: ${p.spawnId}` : undefined
  ].filter((x) => x !== undefined)
  return `- ${parts.join(" · ")}${p.summary !== "" ? `\n  summary: ${p.summary}` : ""}`
}

export const messageText = (m: Message.Message): string =>
  [
    `[#${m.seq}] from ${m.fromName} (${m.from})${m.team !== undefined ? ` to team ${m.team}` : ""} at ${m.sentAt}`,
    `  message_id: ${m.id} · thread_id: ${m.threadId}${m.replyTo !== undefined ? ` · reply_to: ${m.replyTo}` : ""}`,
    ...m.body.split("\n").map((line) => `  > ${line}`)
  ].join("\n")

const inboxOutput = (inbox: Inbox, waited?: boolean): ToolOutput => {
  const lines: Array<string> = []
  if (inbox.messages.length === 0 && inbox.events.length === 0) {
    lines.push(waited === true ? "No new messages arrived before the timeout." : "No new messages.")
  }
  if (inbox.messages.length > 0) {
    lines.push(`${inbox.messages.length} new message${inbox.messages.length === 1 ? "" : "s"} (now acknowledged):`)
    for (const m of inbox.messages) lines.push(messageText(m))
    lines.push("Reply with send_peer_message (to = the sender's id, reply_to = message_id) or send_team_message for team messages.")
  }
  for (const e of inbox.events) {
    if (e.type === "task") lines.push(`event: ${taskEventText(e)}`)
    if (e.type === "spawn_status") {
      lines.push(`event: spawn ${e.spawn.spec.name ?? e.spawn.id} (${e.spawn.id}) is ${e.spawn.status}${e.spawn.peerId !== undefined ? `, peer ${e.spawn.peerId}` : ""}${e.spawn.exitCode !== undefined ? `, exit code ${e.spawn.exitCode}` : ""}`)
    }
  }
  return { text: lines.join("\n"), structured: json({ messages: inbox.messages, events: inbox.events }) }
}

const sendOutput = (result: Message.SendResult, to: string): ToolOutput => ({
  text: `Sent message ${result.message.id} (thread ${result.message.threadId}) to ${to}: ${result.recipients.length} recipient${result.recipients.length === 1 ? "" : "s"}.`,
  structured: json(result)
})

export const tools: ReadonlyArray<Tool> = [
  {
    ...spec("whoami"),
    run: () =>
      Effect.gen(function*() {
        const session = yield* Session
        const peer = yield* me
        const pushing = yield* session.pushing
        const state = yield* session.state
        const pending = yield* session.pendingCount
        const channel = state._tag === "Connected" ? state.channel : "connecting"
        return {
          text: [
            `You are ${peer.name} (${peer.id}) on ${session.client.url.href}.`,
            `teams: ${peer.teams.length > 0 ? peer.teams.join(", ") : "none"} · channel: ${channel} · delivery: ${pushing ? "pushed as channel messages" : "fetch with check_inbox / wait_for_messages"} · pending: ${pending}`,
            peer.summary !== "" ? `summary: ${peer.summary}` : "summary: (none; set one with set_summary)"
          ].join("\n"),
          structured: json({ peer, broker: session.client.url.href, channel, push: pushing, pending })
        }
      })
  },
  {
    ...spec("list_peers"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const scope = (args.scope as string | undefined) ?? "all"
        const team = args.team === undefined ? undefined : yield* checkTeam(args.team)
        const status = args.include_offline === true ? undefined : ("online" as const)
        const urlParams = {
          status,
          host: scope === "host" ? self.host : undefined,
          cwd: scope === "directory" ? self.cwd : undefined,
          gitRoot: scope === "repo" ? (self.gitRoot ?? self.cwd) : undefined,
          team: scope === "team" ? team : undefined
        }
        if (scope === "repo" && self.gitRoot === null) {
          return yield* new ToolError({ message: "scope repo: this session is not inside a git repository; use scope directory" })
        }
        const { peers } = yield* broker("list_peers", session.client.api.peers.list({ urlParams }))
        const teams = new Set(self.teams as ReadonlyArray<string>)
        const shown = peers.filter(
          (p) =>
            (args.include_self === true || p.id !== self.id) &&
            (scope !== "team" || team !== undefined || p.teams.some((t) => teams.has(t)))
        )
        return {
          text: shown.length === 0 ? `No ${status === "online" ? "online " : ""}peers in scope ${scope}.` : `${shown.length} peer${shown.length === 1 ? "" : "s"} (scope ${scope}):\n${shown.map((p) => peerLine(p, self.id)).join("\n")}`,
          structured: json({ peers: shown, scope })
        }
      })
  },
  {
    ...spec("set_summary"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const summary = yield* check(Schema.String.pipe(Schema.maxLength(2_000)), "summary")(args.summary)
        const { peer } = yield* broker("set_summary", session.client.api.peers.update({ path: { id: self.id }, payload: { summary } }))
        yield* session.remember(peer)
        return { text: `Summary set for ${peer.name}: ${peer.summary}`, structured: json({ peer }) }
      })
  },
  {
    ...spec("send_peer_message"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const to = yield* check(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)), "to")(args.to)
        const body = yield* checkBody(args.message)
        const threadId = yield* checkThread(args.thread_id)
        const replyTo = yield* checkReplyTo(args.reply_to)
        const result = yield* broker(
          "send_peer_message",
          session.client.api.messages.send({ payload: { from: self.id, to, body, threadId, replyTo } })
        )
        return sendOutput(result, to)
      })
  },
  {
    ...spec("send_team_message"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const team = yield* checkTeam(args.team)
        const body = yield* checkBody(args.message)
        const threadId = yield* checkThread(args.thread_id)
        const replyTo = yield* checkReplyTo(args.reply_to)
        const result = yield* broker(
          "send_team_message",
          session.client.api.messages.send({ payload: { from: self.id, team, body, threadId, replyTo } })
        )
        return sendOutput(result, `team ${team}`)
      })
  },
  {
    ...spec("check_inbox"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        yield* me
        const limit = yield* check(Schema.UndefinedOr(Schema.Int.pipe(Schema.between(1, 1_000))), "limit")(args.limit)
        return inboxOutput(yield* session.take(limit ?? 50))
      })
  },
  {
    ...spec("wait_for_messages"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        yield* me
        const timeout = yield* check(Schema.UndefinedOr(Schema.Number.pipe(Schema.between(0, 600))), "timeout_seconds")(args.timeout_seconds)
        const limit = yield* check(Schema.UndefinedOr(Schema.Int.pipe(Schema.between(1, 1_000))), "limit")(args.limit)
        return inboxOutput(yield* session.wait(Duration.seconds(timeout ?? 60), limit ?? 50), true)
      })
  },
  {
    ...spec("list_teams"),
    run: () =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const { teams } = yield* broker("list_teams", session.client.api.teams.list())
        return {
          text: teams.length === 0
            ? "No teams yet. join_team creates one."
            : teams.map((t: Team.Team) => `- ${t.name}${t.members.includes(self.id) ? " [member]" : ""}: ${t.members.length} member${t.members.length === 1 ? "" : "s"}${t.description !== "" ? ` · ${t.description}` : ""}`).join("\n"),
          structured: json({ teams })
        }
      })
  },
  {
    ...spec("join_team"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const name = yield* checkTeam(args.team)
        const { team } = yield* broker("join_team", session.client.api.teams.join({ path: { name }, payload: { peerId: self.id } }))
        const { peer } = yield* broker("join_team", session.client.api.peers.get({ path: { id: self.id } }))
        yield* session.remember(peer)
        return { text: `Joined team ${team.name} (${team.members.length} member${team.members.length === 1 ? "" : "s"}).`, structured: json({ team }) }
      })
  },
  {
    ...spec("leave_team"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const name = yield* checkTeam(args.team)
        const { team } = yield* broker("leave_team", session.client.api.teams.leave({ path: { name, peerId: self.id } }))
        const { peer } = yield* broker("leave_team", session.client.api.peers.get({ path: { id: self.id } }))
        yield* session.remember(peer)
        return { text: `Left team ${team.name}.`, structured: json({ team }) }
      })
  },
  {
    ...spec("list_runners"),
    run: () =>
      Effect.gen(function*() {
        const session = yield* Session
        yield* me
        const { runners } = yield* broker("list_runners", session.client.api.runners.list())
        return {
          text: runners.length === 0
            ? "No runners are connected."
            : runners.map((r) => `- ${r.id} · ${r.status} · host ${r.host} · ${r.active}/${r.capacity} busy · presets ${r.presets.join(", ")}${Object.keys(r.labels).length > 0 ? ` · labels ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(",")}` : ""}`).join("\n"),
          structured: json({ runners })
        }
      })
  },
  {
    ...spec("spawn_peer"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        const self = yield* me
        const payload = yield* checkSpec({ ...args, requestedBy: self.id })
        const { spawn } = yield* broker("spawn_peer", session.client.api.spawn.create({ payload }))
        return {
          text: `Spawn ${spawn.id} accepted by runner ${spawn.runnerId} (status ${spawn.status}). You will get its status changes as events; stop it with stop_peer spawn_id=${spawn.id}.`,
          structured: json({ spawn })
        }
      })
  },
  {
    ...spec("stop_peer"),
    run: (args) =>
      Effect.gen(function*() {
        const session = yield* Session
        yield* me
        const peerArg = args.peer as string | undefined
        const spawnArg = args.spawn_id as string | undefined
        if ((peerArg === undefined) === (spawnArg === undefined)) {
          return yield* new ToolError({ message: "stop_peer needs exactly one of peer and spawn_id" })
        }
        if (spawnArg !== undefined) {
          const id = yield* check(Ids.SpawnId, "spawn_id")(spawnArg)
          const { spawn } = yield* broker("stop_peer", session.client.api.spawn.stop({ path: { id } }))
          return { text: `Stopping spawn ${spawn.id} (status ${spawn.status}).`, structured: json({ spawn }) }
        }
        const { peers } = yield* broker("stop_peer", session.client.api.peers.list({ urlParams: {} }))
        const target = peers.find((p) => p.id === peerArg) ?? peers.find((p) => p.name === peerArg)
        if (target === undefined) return yield* new ToolError({ message: `stop_peer: no peer with id or name "${peerArg}"` })
        const { spawn } = yield* broker("stop_peer", session.client.api.spawn.stopPeer({ path: { id: target.id } }))
        return { text: `Stopping ${target.name} (${target.id}), spawn ${spawn.id} (status ${spawn.status}).`, structured: json({ spawn }) }
      })
  }
]

/** Every tool the server registers: the bus tools above, the task board's (TaskTools.ts), then the A2A ones (A2aTools.ts). */
export const allTools = (): ReadonlyArray<Tool> => [...tools, ...taskTools, ...a2aTools]

export const TOOL_NAMES = tools.map((t) => t.name)
