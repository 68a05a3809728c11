/**
 * The broker side of the CLI: every command is an Effect over core's `BrokerClient`; broker
 * refusals and transport failures become one-line `CliError`s.
 */
import { BrokerClient, type ChannelFrame, type Message, type Peer, Spawn } from "@mks/a2a"
import { Effect, Option, ParseResult, Schema, Stream } from "effect"
import * as Os from "node:os"
import { ago, CliError, json, type Output, paint, progress, table } from "./Output.js"

/** The hint when nothing listens where the CLI looked. */
export const NOTHING_LISTENS =
  "; no stack is running there: start one with `npm start` in the a2a repository (or `a2a up`), or name the broker with --broker URL or A2A_BROKER_URL"

export const describe = (error: unknown, url?: URL): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: string; message?: string; reason?: string }
    if (e._tag === "RequestError" || (e._tag === "ResponseError" && e.reason !== "StatusCode")) {
      const cause = (error as { cause?: { code?: string; cause?: { code?: string }; message?: string } }).cause
      const why = cause?.code ?? cause?.cause?.code ?? cause?.message ?? e.reason
      return `cannot reach the broker${url !== undefined ? ` at ${url.href}` : ""} (${why})${why === "ECONNREFUSED" ? NOTHING_LISTENS : ""}`
    }
    if (e._tag === "ParseError") return `unexpected answer from the broker: ${e.message}`
    if (typeof e.message === "string" && e.message.length > 0) return e._tag !== undefined ? `${e._tag}: ${e.message}` : e.message
    if (e._tag !== undefined) return e._tag
  }
  return String(error)
}

/** Run a broker call; failures become a `CliError` naming the broker. */
export const call = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, CliError, R | BrokerClient.BrokerClient> =>
  Effect.flatMap(BrokerClient.BrokerClient, (client) =>
    effect.pipe(Effect.mapError((error) => new CliError({ message: describe(error, client.url) })))
  )

const api = Effect.map(BrokerClient.BrokerClient, (c) => c.api)

/** The CLI's own peer (name from `--as`, `A2A_PEER_NAME` or `cli-<user>`), registered or resumed. */
export const self = (name: string | undefined) =>
  Effect.gen(function*() {
    const a = yield* api
    const chosen = name || process.env.A2A_PEER_NAME || `cli-${Os.userInfo().username}`.replace(/[^A-Za-z0-9_.@-]/g, "-")
    const { peer } = yield* call(
      a.peers.register({ payload: { name: chosen as never, agent: "a2a-cli", host: Os.hostname(), cwd: process.cwd(), pid: process.pid } })
    )
    return peer
  })

const peerRow = (p: Peer.Peer) => [p.name, p.id, p.status, p.agent, p.teams.join(",") || "-", p.host || "-", ago(p.lastSeenAt), p.summary || "-"]

export const peers = (o: Output, filter: { team?: string; host?: string; all: boolean }) =>
  Effect.gen(function*() {
    const a = yield* api
    const { peers } = yield* call(
      a.peers.list({ urlParams: { team: filter.team as never, host: filter.host, status: filter.all ? undefined : "online" } })
    )
    if (o.json) return json(o, peers)
    if (peers.length === 0) return o.out(filter.all ? "no peers" : "no peers online (--all shows offline ones)")
    table(o, ["NAME", "ID", "STATUS", "AGENT", "TEAMS", "HOST", "SEEN", "SUMMARY"], peers.map((p) => {
      const row = peerRow(p)
      row[2] = paint(o, p.status === "online" ? "green" : "dim", p.status)
      return row
    }))
  })

export const teams = (o: Output) =>
  Effect.gen(function*() {
    const a = yield* api
    const { teams } = yield* call(a.teams.list())
    if (o.json) return json(o, teams)
    if (teams.length === 0) return o.out("no teams")
    table(o, ["TEAM", "MEMBERS", "DESCRIPTION"], teams.map((t) => [t.name, String(t.members.length), t.description || "-"]))
  })

export const runners = (o: Output) =>
  Effect.gen(function*() {
    const a = yield* api
    const { runners } = yield* call(a.runners.list())
    if (o.json) return json(o, runners)
    if (runners.length === 0) return o.out("no runners")
    table(
      o,
      ["RUNNER", "STATUS", "HOST", "BUSY", "PRESETS", "LABELS", "SEEN"],
      runners.map((r) => [
        r.id,
        paint(o, r.status === "online" ? "green" : "yellow", r.status),
        r.host,
        `${r.active}/${r.capacity}`,
        r.presets.join(","),
        Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
        ago(r.lastSeenAt)
      ])
    )
  })

const spawnRow = (s: Spawn.Spawn) => [
  s.id,
  s.spec.name ?? "-",
  s.status,
  s.runnerId,
  Spawn.presetOf(s.spec),
  s.peerId ?? "-",
  s.pid !== undefined ? String(s.pid) : "-",
  s.exitCode !== undefined ? String(s.exitCode) : "-",
  ago(s.updatedAt)
]

export const spawns = (o: Output) =>
  Effect.gen(function*() {
    const a = yield* api
    const { spawns } = yield* call(a.spawn.list())
    if (o.json) return json(o, spawns)
    if (spawns.length === 0) return o.out("no spawns")
    table(o, ["SPAWN", "NAME", "STATUS", "RUNNER", "PRESET", "PEER", "PID", "EXIT", "UPDATED"], spawns.map(spawnRow))
  })

export const readStdin = Effect.promise(async () => {
  const chunks: Array<Buffer> = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8").replace(/\n$/, "")
})

export const send = (o: Output, input: { as?: string; to?: string; team?: string; text: string; thread?: string; replyTo?: string }) =>
  Effect.gen(function*() {
    const a = yield* api
    const me = yield* self(input.as)
    const result = yield* call(
      a.messages.send({
        payload: {
          from: me.id,
          to: input.to,
          team: input.team as never,
          body: input.text,
          threadId: input.thread as never,
          replyTo: input.replyTo as never
        }
      })
    )
    if (o.json) return json(o, result)
    o.out(`sent ${result.message.id} (thread ${result.message.threadId}) to ${input.team !== undefined ? `team ${input.team}` : input.to}: ${result.recipients.length} recipient${result.recipients.length === 1 ? "" : "s"}`)
  })

const messageLine = (o: Output, m: Message.Message) =>
  `${paint(o, "dim", m.sentAt.slice(11, 19))} ${paint(o, "cyan", m.fromName)}${m.team !== undefined ? paint(o, "dim", ` @${m.team}`) : ""} ${paint(o, "dim", `[${m.id}]`)} ${m.body}`

const eventLine = (o: Output, e: ChannelFrame.PeerEvent): string => {
  switch (e.type) {
    case "peer_joined":
      return `${paint(o, "dim", e.at.slice(11, 19))} ${paint(o, "green", "+")} ${e.peer.name} joined (${e.peer.agent}${e.peer.host !== "" ? ` on ${e.peer.host}` : ""})`
    case "peer_left":
      return `${paint(o, "dim", e.at.slice(11, 19))} ${paint(o, "red", "-")} ${e.peer.name} left`
    case "peer_updated":
      return `${paint(o, "dim", e.at.slice(11, 19))} ${paint(o, "yellow", "~")} ${e.peer.name}: ${e.peer.summary || "(no summary)"}`
    case "team_changed":
      return `${paint(o, "dim", e.at.slice(11, 19))} team ${e.team} ${e.change}${e.peerId !== undefined ? ` ${e.peerId}` : ""}`
    case "spawn_status":
      return `${paint(o, "dim", e.at.slice(11, 19))} spawn ${e.spawn.spec.name ?? e.spawn.id} (${e.spawn.id}) ${e.spawn.status}`
    case "peers_changed":
      // One line per peer, as the per-change events printed them (the broker coalesces them).
      return [
        ...e.joined.map((peer) => eventLine(o, { type: "peer_joined", peer, at: e.at })),
        ...e.left.map((peer) => eventLine(o, { type: "peer_left", peer, at: e.at })),
        ...e.updated.map((peer) => eventLine(o, { type: "peer_updated", peer, at: e.at }))
      ].join("\n")
    case "task":
      return `${paint(o, "dim", e.at.slice(11, 19))} task ${e.task.id} ${e.change} (${e.task.state}${e.task.assignee !== undefined ? ` by ${e.task.assignee}` : ""}) @${e.task.team}: ${e.task.title}`
  }
}

/**
 * Follow the CLI peer's channel: messages to it (acked once printed, unless `noAck`) and,
 * unless `quiet`, the tenant's events. NDJSON with `--json`. Runs until interrupted.
 */
export const tail = (o: Output, input: { as?: string; noAck: boolean; quiet: boolean; count?: number }) =>
  Effect.gen(function*() {
    const client = yield* BrokerClient.BrokerClient
    const me = yield* self(input.as)
    // Presence coalesced by the broker (`peers_changed`), or none at all with --quiet.
    const channel = yield* client.channel(me.id, { autoAck: false, presence: input.quiet ? "none" : "batched" })
    yield* channel.hello.pipe(Effect.mapError((e) => new CliError({ message: describe(e, client.url) })))
    if (!o.json) o.err(paint(o, "dim", `following ${me.name} (${me.id}) on ${client.url.href}; Ctrl-C to stop`))
    if (!input.quiet) {
      yield* channel.events.pipe(
        Stream.runForEach((e) => Effect.sync(() => o.out(o.json ? JSON.stringify({ event: e }) : eventLine(o, e)))),
        Effect.ignore,
        Effect.forkScoped
      )
    }
    const messages = input.count === undefined ? channel.messages : Stream.take(channel.messages, input.count)
    yield* messages.pipe(
      Stream.runForEach((m) =>
        Effect.sync(() => o.out(o.json ? JSON.stringify({ message: m }) : messageLine(o, m))).pipe(
          Effect.zipRight(input.noAck ? Effect.void : Effect.ignore(channel.ack(m.seq)))
        )
      ),
      Effect.mapError((e) => new CliError({ message: describe(e, client.url) }))
    )
  }).pipe(Effect.scoped)

export interface SpawnInput {
  readonly as?: string | undefined
  readonly spec: Record<string, unknown>
  /** Wait until this status (or a final one); `undefined` returns at once. */
  readonly waitFor?: Spawn.SpawnStatus | undefined
  readonly timeoutSeconds: number
}

export const spawn = (o: Output, input: SpawnInput) =>
  Effect.gen(function*() {
    const client = yield* BrokerClient.BrokerClient
    const me = yield* self(input.as)
    const spec = yield* Schema.decodeUnknown(Spawn.SpawnSpec)({ ...input.spec, requestedBy: me.id }).pipe(
      Effect.mapError((e) => new CliError({ message: `bad spawn spec: ${ParseResult.TreeFormatter.formatErrorSync(e).split("\n").at(-1)?.trim()}`, usage: true }))
    )
    if (input.waitFor === undefined) {
      const { spawn } = yield* call(client.api.spawn.create({ payload: spec }))
      return o.json ? json(o, spawn) : o.out(`spawn ${spawn.id} ${spawn.status} on runner ${spawn.runnerId}${spawn.spec.task !== undefined ? ` for task ${spawn.spec.task}` : ""}`)
    }
    const target = input.waitFor
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const channel = yield* client.channel(me.id, { autoAck: false, presence: "none" })
        yield* channel.hello.pipe(Effect.mapError((e) => new CliError({ message: describe(e, client.url) })))
        const { spawn } = yield* call(client.api.spawn.create({ payload: spec }))
        if (!o.json) o.out(`spawn ${spawn.id} ${spawn.status} on runner ${spawn.runnerId}${spawn.spec.task !== undefined ? ` for task ${spawn.spec.task}` : ""}`)
        const reached = (s: Spawn.Spawn) => s.status === target || Spawn.isFinal(s.status) || s.status === "lost"
        if (reached(spawn)) return o.json ? json(o, spawn) : undefined
        const last = yield* channel.events.pipe(
          Stream.filter((e): e is typeof ChannelFrame.SpawnStatusChanged.Type => e.type === "spawn_status" && e.spawn.id === spawn.id),
          Stream.tap((e) => Effect.sync(() => (o.json ? undefined : o.out(`spawn ${spawn.id} ${e.spawn.status}${e.spawn.error !== undefined ? `: ${e.spawn.error}` : ""}`)))),
          Stream.map((e) => e.spawn),
          Stream.takeUntil(reached),
          Stream.runLast,
          (effect) => progress(o, `waiting for spawn ${spawn.id} to be ${target}`, effect),
          Effect.timeoutFail({ duration: `${input.timeoutSeconds} seconds`, onTimeout: () => new CliError({ message: `spawn ${spawn.id} did not reach ${target} within ${input.timeoutSeconds} s` }) }),
          Effect.mapError((e) => (e instanceof CliError ? e : new CliError({ message: describe(e, client.url) })))
        )
        const final = Option.getOrElse(last, () => spawn)
        if (o.json) json(o, final)
        if (final.status !== target && (Spawn.isFinal(final.status) || final.status === "lost") && final.status !== "exited") {
          return yield* new CliError({ message: `spawn ${final.id} ${final.status}${final.error !== undefined ? `: ${final.error}` : ""}` })
        }
      })
    )
  })


/** Stop by spawn id, or by peer id or name. */
export const stop = (o: Output, target: string) =>
  Effect.gen(function*() {
    const a = yield* api
    if (/^s_/.test(target)) {
      const { spawn } = yield* call(a.spawn.stop({ path: { id: target as never } }))
      return o.json ? json(o, spawn) : o.out(`stopping spawn ${spawn.id} (${spawn.status})`)
    }
    const { peers } = yield* call(a.peers.list({ urlParams: {} }))
    const peer = peers.find((p) => p.id === target) ?? peers.find((p) => p.name === target)
    if (peer === undefined) return yield* new CliError({ message: `no peer or spawn "${target}"` })
    const { spawn } = yield* call(a.spawn.stopPeer({ path: { id: peer.id } }))
    return o.json ? json(o, spawn) : o.out(`stopping ${peer.name} (${peer.id}), spawn ${spawn.id} (${spawn.status})`)
  })
