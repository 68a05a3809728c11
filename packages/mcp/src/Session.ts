/**
 * One agent session on the bus: registers the peer once the MCP client has said who it is,
 * keeps its channel open (reconnects are the channel's job), and routes every incoming
 * message to exactly one place:
 *
 * - pushed to the client as `notifications/claude/channel` and then acked, when the client
 *   declared the `claude/channel` capability, nobody is waiting in `wait_for_messages` and no
 *   older message is still pending;
 * - otherwise kept, unacked, in `pending`, until `check_inbox` / `wait_for_messages` hand it
 *   to the model (then acked). Unacked messages stay in the broker's inbox, so a session that
 *   dies before handing them over gets them again on its next start.
 */
import { BrokerClient, ChannelFrame, Errors, type Message, type Peer, type Task } from "@mks/a2a"
import {
  Cause,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,

  Option,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import { candidates, deriveName, type McpConfig } from "./McpConfig.js"

/** The `clientInfo.name` Claude Code gives in `initialize` (pushes to it wait `pushSettleMs`). */
export const CLAUDE_CODE = "claude-code"

/** What the MCP client told us in `initialize`. */
export interface ClientInfo {
  /** The client's name (`claude-code`, …); the agent kind unless `A2A_AGENT` says otherwise. */
  readonly name: string
  /** Whether it declared `experimental["claude/channel"]`. */
  readonly channels: boolean
  /** When its `initialized` notification arrived (`Date.now()`): the settle time of pushes counts from it. Unset: when the session learns of it. */
  readonly initializedAt?: number
}

/** Sends one channel notification to the client; fails when it could not be written. */
export type Notify = (content: string, meta: Record<string, string>) => Effect.Effect<void, unknown>

export type SessionState =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Registering"; readonly lastError: string | undefined; readonly attempts: number }
  | { readonly _tag: "Connected"; readonly peer: Peer.Peer; readonly channel: BrokerClient.ChannelState }
  | { readonly _tag: "Unregistered"; readonly peer: Peer.Peer; readonly reason: string }

/** A tool could not run because the session is not (or no longer) on the bus. */
export class NotOnBus extends Data.TaggedError("NotOnBus")<{ readonly message: string }> {}

export interface Inbox {
  readonly messages: ReadonlyArray<Message.Message>
  readonly events: ReadonlyArray<ChannelFrame.PeerEvent>
}

export interface SessionService {
  readonly config: McpConfig
  readonly client: BrokerClient.BrokerClientService
  readonly state: Effect.Effect<SessionState>
  /** Whether incoming messages are pushed (client capability and `A2A_PUSH`). */
  readonly pushing: Effect.Effect<boolean>
  /** This session's peer; waits up to `timeout` for the registration. */
  readonly peer: (timeout?: Duration.DurationInput) => Effect.Effect<Peer.Peer, NotOnBus>
  /** Remember a newer copy of our own peer record (after `set_summary`, `join_team`, …). */
  readonly remember: (peer: Peer.Peer) => Effect.Effect<void>
  /** Hand over (and ack) up to `limit` pending messages, oldest first, and the events since the last call. */
  readonly take: (limit: number) => Effect.Effect<Inbox>
  /** Like {@link take}, but waits up to `timeout` for the first message or event when none is pending. */
  readonly wait: (timeout: Duration.DurationInput, limit: number) => Effect.Effect<Inbox>
  /** Count of messages received but not yet handed over. */
  readonly pendingCount: Effect.Effect<number>
  /** Keep the lease of a task this session holds alive while the session lives (until `drop`). */
  readonly hold: (task: Task.TaskId) => Effect.Effect<void>
  readonly drop: (task: Task.TaskId) => Effect.Effect<void>
  /** The tasks whose leases this session keeps alive. */
  readonly held: Effect.Effect<ReadonlyArray<Task.TaskId>>
}

export class Session extends Context.Tag("@mks/a2a-mcp/Session")<Session, SessionService>() {}

const EVENT_BUFFER = 100

/** Channel notification meta for a message: string values, keys that pass Claude Code's key rule. */
export const messageMeta = (message: Message.Message): Record<string, string> => {
  const meta: Record<string, string> = {
    kind: "message",
    from_id: message.from,
    from_name: message.fromName,
    message_id: message.id,
    thread_id: message.threadId,
    seq: String(message.seq),
    sent_at: message.sentAt
  }
  if (message.team !== undefined) meta.team = message.team
  if (message.replyTo !== undefined) meta.reply_to = message.replyTo
  return meta
}

export const spawnMeta = (event: typeof ChannelFrame.SpawnStatusChanged.Type): Record<string, string> => {
  const meta: Record<string, string> = {
    kind: "spawn_status",
    spawn_id: event.spawn.id,
    status: event.spawn.status,
    runner_id: event.spawn.runnerId,
    at: event.at
  }
  if (event.spawn.spec.name !== undefined) meta.name = event.spawn.spec.name
  if (event.spawn.peerId !== undefined) meta.peer_id = event.spawn.peerId
  if (event.spawn.pid !== undefined) meta.pid = String(event.spawn.pid)
  if (event.spawn.exitCode !== undefined) meta.exit_code = String(event.spawn.exitCode)
  if (event.spawn.error !== undefined) meta.error = event.spawn.error
  return meta
}

export const spawnText = (event: typeof ChannelFrame.SpawnStatusChanged.Type): string => {
  const s = event.spawn
  const who = s.spec.name !== undefined ? `${s.spec.name} (${s.id})` : s.id
  const extra = [
    s.peerId !== undefined ? `peer ${s.peerId}` : undefined,
    s.exitCode !== undefined ? `exit code ${s.exitCode}` : undefined,
    s.error !== undefined ? `error: ${s.error}` : undefined
  ].filter((x) => x !== undefined)
  return `Spawn ${who} on runner ${s.runnerId} is now ${s.status}${extra.length > 0 ? ` (${extra.join(", ")})` : ""}.`
}

type TaskEvent = typeof ChannelFrame.TaskEvent.Type

/**
 * Whether a task event concerns this peer: work that became claimable on its teams (created
 * by someone else, released, lease expired, failed back to open), the end of a task it
 * created, or a task reassigned to it. Claims and the rest are not worth a turn.
 */
export const taskEventFor = (event: TaskEvent, me: string): boolean => {
  const t = event.task
  switch (event.change) {
    case "created":
      return t.createdBy !== me
    case "released":
    case "lease_expired":
      return t.state === "open"
    case "failed":
      return t.state === "open" ? t.assignee !== me : t.createdBy === me
    case "done":
    case "cancelled":
      return t.createdBy === me
    case "reassigned":
      return t.assignee === me
    case "claimed":
      return false
  }
}

export const taskMeta = (event: TaskEvent): Record<string, string> => {
  const t = event.task
  const meta: Record<string, string> = { kind: "task", change: event.change, task_id: t.id, team: t.team, state: t.state, priority: String(t.priority), at: event.at }
  if (t.assignee !== undefined) meta.assignee = t.assignee
  return meta
}

export const taskText = (event: TaskEvent): string => {
  const t = event.task
  const head = `Task ${t.id} "${t.title}" on team ${t.team}`
  switch (event.change) {
    case "done":
      return `${head} is done${t.result !== undefined ? `: ${t.result}` : "."}`
    case "failed":
      return t.state === "open" ? `${head} failed an attempt (${t.error ?? "no reason"}) and is open again; claim it with get_next_task.` : `${head} failed for good: ${t.error ?? "no reason"}.`
    case "cancelled":
      return `${head} was cancelled.`
    case "reassigned":
      return `${head} was assigned to you; its lease is kept alive while this session lives. Finish with complete_task or fail_task.`
    default:
      return `${head} is open (${event.change.replace("_", " ")}, priority ${t.priority}); claim work with get_next_task.`
  }
}

export const describeError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const tag = (error as { _tag?: unknown })._tag
    const message = (error as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) return typeof tag === "string" ? `${tag}: ${message}` : message
    if (typeof tag === "string") return tag
  }
  return String(error)
}

/**
 * Start the session in the current scope. Registration waits for `init` (completed when the
 * MCP client has initialized), then retries with backoff until the broker takes it.
 */
export const make = (
  config: McpConfig,
  client: BrokerClient.BrokerClientService,
  init: Deferred.Deferred<ClientInfo>,
  notify: Notify
): Effect.Effect<SessionService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const state = yield* SubscriptionRef.make<SessionState>({ _tag: "Starting" })
    const registered = yield* Deferred.make<Peer.Peer>()
    /** Whether this session pushes at all (client capability and `A2A_PUSH`), once `init` is known. */
    let pushing = false
    /** Whether pushes go out now (Claude Code: only once `pushSettleMs` passed after `initialized`). */
    let pushLive = false
    let pending: Array<Message.Message> = []
    let events: Array<ChannelFrame.PeerEvent> = []
    let waiters = 0
    let wake = yield* Deferred.make<void>()
    let channel: BrokerClient.Channel | undefined
    /** Tasks this session holds: their leases are renewed every third of the lease while the session lives. */
    const held = new Set<Task.TaskId>()
    let myId: string | undefined

    const signal = Effect.suspend(() => {
      const current = wake
      return Effect.flatMap(Deferred.make<void>(), (next) => {
        wake = next
        return Deferred.succeed(current, undefined)
      })
    })

    const ack = (upTo: number) =>
      channel === undefined ? Effect.void : channel.ack(upTo).pipe(Effect.catchAll((error) => Effect.logWarning("ack failed", describeError(error))))

    const register = Effect.gen(function*() {
      const info = yield* Deferred.await(init)
      pushing = config.push && (info.channels || config.channels)
      if (pushing) {
        // The settle time counts from `initialized`, however long the server took to get here.
        const settle = info.name === CLAUDE_CODE
          ? Math.max(0, config.pushSettleMs - (info.initializedAt === undefined ? 0 : Math.max(0, Date.now() - info.initializedAt)))
          : 0
        if (settle === 0) pushLive = true
        else {
          yield* Effect.sleep(Duration.millis(settle)).pipe(
            Effect.zipRight(Effect.suspend(() => {
              pushLive = true
              return flush
            })),
            Effect.forkIn(scope)
          )
        }
      }
      const base = {
        summary: Option.getOrUndefined(config.summary),
        agent: Option.getOrElse(config.agent, () => info.name).slice(0, 64),
        cwd: config.cwd,
        gitRoot: config.gitRoot,
        host: config.host,
        pid: config.agentPid,
        teams: config.teams as ReadonlyArray<never>,
        spawnId: Option.getOrUndefined(config.spawnId) as never
      }
      const attempt = (name: string) =>
        client.api.peers.register({ payload: { ...base, name: name as never } }).pipe(Effect.map((r) => r.peer))
      const once: Effect.Effect<Peer.Peer, unknown> = Option.match(config.name, {
        onSome: attempt,
        onNone: () =>
          Effect.gen(function*() {
            const online = yield* client.api.peers.list({ urlParams: { status: "online" } })
            const taken = new Set(online.peers.map((p) => p.name))
            const names = candidates(deriveName(config.cwd, config.gitRoot)).filter((n) => !taken.has(n))
            for (const name of names) {
              const result = yield* attempt(name).pipe(
                Effect.map(Option.some),
                Effect.catchIf((e) => e instanceof Errors.PeerNameTaken, () => Effect.succeedNone)
              )
              if (Option.isSome(result)) return result.value
            }
            return yield* Effect.fail(new NotOnBus({ message: "every derived peer name is taken; set A2A_PEER_NAME" }))
          })
      })
      let attempts = 0
      return yield* once.pipe(
        Effect.tapError((error) =>
          SubscriptionRef.set(state, { _tag: "Registering", lastError: describeError(error), attempts: ++attempts }).pipe(
            Effect.zipRight(Effect.logWarning(`registration with ${client.url.href} failed (retrying)`, describeError(error)))
          )
        ),
        Effect.retry(Schedule.exponential("200 millis", 2).pipe(Schedule.union(Schedule.spaced("5 seconds"))))
      )
    })

    /** Push a task or spawn event as a channel notification. */
    const notifyEvent = (event: TaskEvent | typeof ChannelFrame.SpawnStatusChanged.Type) =>
      event.type === "task" ? notify(taskText(event), taskMeta(event)) : notify(spawnText(event), spawnMeta(event))

    /**
     * Push what waited for the settle time, in order (messages, then events), each message acked
     * once written; stops at the first failure or when a tool is waiting (it takes them then).
     */
    const flush: Effect.Effect<void> = Effect.suspend(() => {
      if (!pushLive || waiters > 0) return Effect.void
      const message = pending[0]
      if (message !== undefined) {
        return notify(message.body, messageMeta(message)).pipe(
          Effect.zipRight(Effect.suspend(() => {
            if (pending[0] === message) pending = pending.slice(1)
            return ack(message.seq)
          })),
          Effect.zipRight(flush),
          Effect.catchAll(() => Effect.void)
        )
      }
      const event = events[0]
      if (event === undefined || (event.type !== "task" && event.type !== "spawn_status")) return Effect.void
      return notifyEvent(event).pipe(
        Effect.zipRight(Effect.suspend(() => {
          if (events[0] === event) events = events.slice(1)
          return flush
        })),
        Effect.catchAll(() => Effect.void)
      )
    })

    const deliver = (message: Message.Message) =>
      Effect.gen(function*() {
        if (pushLive && waiters === 0 && pending.length === 0) {
          const pushed = yield* notify(message.body, messageMeta(message)).pipe(Effect.as(true), Effect.catchAll(() => Effect.succeed(false)))
          if (pushed) return yield* ack(message.seq)
        }
        pending.push(message)
        yield* signal
      })

    const onEvent = (event: ChannelFrame.PeerEvent) =>
      Effect.gen(function*() {
        if (event.type !== "spawn_status" && event.type !== "task") return
        if (event.type === "task") {
          if (myId === undefined || !taskEventFor(event, myId)) return
          if (event.change === "reassigned") held.add(event.task.id)
        }
        if (pushLive && waiters === 0 && events.length === 0) {
          const pushed = yield* notifyEvent(event).pipe(Effect.as(true), Effect.catchAll(() => Effect.succeed(false)))
          if (pushed) return
        }
        events.push(event)
        if (events.length > EVENT_BUFFER) events = events.slice(-EVENT_BUFFER)
        yield* signal
      })

    const run = Effect.gen(function*() {
      const peer = yield* register
      myId = peer.id
      // A spawn for a task: the broker claimed it for this peer at registration; keep its lease alive.
      if (Option.isSome(config.taskId)) held.add(config.taskId.value as Task.TaskId)
      yield* SubscriptionRef.set(state, { _tag: "Connected", peer, channel: "connecting" })
      yield* Deferred.succeed(registered, peer)
      const ch = yield* client.channel(peer.id, { autoAck: false, presence: "none" }).pipe(Scope.extend(scope))
      channel = ch
      // On exit the channel's close is what takes the peer offline at the broker. A session that
      // exits while its channel is still connecting (registered over HTTP, socket not attached
      // yet) would leave its peer online until the peer timeout: give the channel up to 2 s to
      // open first. This finalizer runs before the channel's own (finalizers run last-added first).
      yield* Scope.addFinalizer(
        scope,
        ch.state.changes.pipe(
          Stream.filter((s) => s !== "connecting"),
          Stream.runHead,
          Effect.timeout("2 seconds"),
          Effect.ignore
        )
      )
      yield* ch.state.changes.pipe(
        Stream.runForEach((s) =>
          SubscriptionRef.update(state, (current) =>
            current._tag === "Connected"
              ? { ...current, channel: s }
              : current._tag === "Unregistered"
              ? current
              : { _tag: "Connected" as const, peer, channel: s }
          )
        ),
        Effect.forkIn(scope)
      )
      yield* ch.events.pipe(Stream.runForEach(onEvent), Effect.ignore, Effect.forkIn(scope))
      yield* ch.messages.pipe(
        Stream.runForEach(deliver),
        Effect.catchAll((closed) =>
          SubscriptionRef.update(state, (current) => ({
            _tag: "Unregistered" as const,
            peer: current._tag === "Connected" ? current.peer : peer,
            reason: closed.message
          })).pipe(Effect.zipRight(Effect.logError("the broker closed this peer's channel for good", closed.message)))
        )
      )
    })
    yield* run.pipe(
      Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("session failed", cause))),
      Effect.forkIn(scope)
    )

    // The keep-alive of held tasks; a task the broker no longer lets us hold (done elsewhere, lease lost) is dropped.
    const renew = Effect.gen(function*() {
      if (held.size === 0) return
      const peer = yield* Deferred.await(registered)
      for (const id of [...held]) {
        yield* client.api.tasks.heartbeat({ path: { id }, payload: { peer: peer.id, leaseMs: config.taskLeaseMs } }).pipe(
          Effect.catchAll((error) =>
            typeof error === "object" && error !== null && ["TaskConflict", "TaskNotFound"].includes((error as { _tag?: string })._tag ?? "")
              ? Effect.sync(() => void held.delete(id)).pipe(Effect.zipRight(Effect.logWarning(`no longer holding task ${id}`, describeError(error))))
              : Effect.logWarning(`could not renew the lease of task ${id}`, describeError(error))
          )
        )
      }
    })
    yield* renew.pipe(Effect.repeat(Schedule.spaced(Duration.millis(Math.max(100, Math.floor(config.taskLeaseMs / 3))))), Effect.forkIn(scope))

    if (config.unregisterOnExit) {
      yield* Effect.addFinalizer(() =>
        Deferred.poll(registered).pipe(
          Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (p) => Effect.flatMap(p, (peer) => client.api.peers.unregister({ path: { id: peer.id } })) })),
          Effect.timeout("2 seconds"),
          Effect.ignore
        )
      )
    }

    const takeNow = (limit: number): Effect.Effect<Inbox> =>
      Effect.suspend(() => {
        const messages = pending.slice(0, limit)
        pending = pending.slice(messages.length)
        const taken = events
        events = []
        const last = messages.at(-1)
        return (last === undefined ? Effect.void : ack(last.seq)).pipe(Effect.as({ messages, events: taken }))
      })

    const service: SessionService = {
      config,
      client,
      state: SubscriptionRef.get(state),
      pushing: Effect.sync(() => pushing),
      peer: (timeout = "15 seconds") =>
        Effect.raceFirst(
          Deferred.await(registered),
          // a registration that already failed answers at once with the reason (it keeps retrying)
          state.changes.pipe(
            Stream.filter((s): s is Extract<SessionState, { _tag: "Registering" }> => s._tag === "Registering"),
            Stream.runHead,
            Effect.flatMap(
              Option.match({
                onNone: () => Effect.never,
                onSome: (s) =>
                  Effect.fail(
                    new NotOnBus({
                      message: `not on the bus: the broker at ${client.url.href} refused or is unreachable (${s.attempts} attempt${s.attempts === 1 ? "" : "s"}, last: ${s.lastError}); still retrying`
                    })
                  )
              })
            )
          )
        ).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new NotOnBus({ message: `not on the bus yet: still registering with ${client.url.href}` })
          }),
          Effect.flatMap((peer) =>
            SubscriptionRef.get(state).pipe(
              Effect.flatMap((s) =>
                s._tag === "Unregistered"
                  ? Effect.fail(new NotOnBus({ message: `this session's peer ${peer.name} (${peer.id}) was unregistered by the broker (${s.reason}); restart the session to join again` }))
                  : Effect.succeed(s._tag === "Connected" ? s.peer : peer)
              )
            )
          )
        ),
      remember: (peer) => SubscriptionRef.update(state, (s) => (s._tag === "Connected" ? { ...s, peer } : s)),
      take: takeNow,
      wait: (timeout, limit) =>
        Effect.suspend(() => {
          if (pending.length > 0 || events.length > 0) return takeNow(limit)
          waiters++
          return Deferred.await(wake).pipe(
            Effect.timeout(timeout),
            Effect.ignore,
            Effect.ensuring(Effect.sync(() => void waiters--)),
            Effect.zipRight(Effect.suspend(() => takeNow(limit)))
          )
        }),
      pendingCount: Effect.sync(() => pending.length),
      hold: (id) => Effect.sync(() => void held.add(id)),
      drop: (id) => Effect.sync(() => void held.delete(id)),
      held: Effect.sync(() => [...held])
    }
    return service
  })

