/**
 * The broker client for code that does not use Effect: plain async methods over plain JSON
 * data, and a peer channel with `on(...)` listeners and `for await`. It runs the Effect
 * `BrokerClient` in a `ManagedRuntime`, so behaviour (auth, reconnects, dedup) is identical.
 *
 * ```ts
 * const broker = createBrokerClient({ url: "http://127.0.0.1:4200", token })
 * const { peer } = await broker.peers.register({ name: "alice" })
 * const channel = broker.connect(peer.id, { autoAck: true })
 * for await (const message of channel) console.log(message.fromName, message.body)
 * ```
 *
 * Failures reject with a {@link BrokerError}: `_tag`, `status` and `message` of the wire error
 * (`PeerNotFound`, 404, …), or of the client-side failure (`ChannelClosed`, `RequestError`).
 */
import { HttpClientError } from "@effect/platform"
import {
  Cause,
  Deferred,
  Effect,
  Exit,
  Fiber,
  FiberId,
  ManagedRuntime,
  Option,
  ParseResult,
  Redacted,
  Schema,
  Stream
} from "effect"
import { type PeerCreated, PeerResumed } from "./BrokerApi.js"
import * as BrokerClient from "./BrokerClient.js"
import * as ChannelFrame from "./ChannelFrame.js"
import { decodeUnknown, toInvalidRequest } from "./Codec.js"
import { statusOf, WireError } from "./Errors.js"
import { PeerId, SpawnId, TeamName } from "./Ids.js"
import { InboxCursor, InboxPage, InboxQuery, Message, SendMessage, SendResult } from "./Message.js"
import { Peer, PeerFilter, PeerList, PeerRegistration, PeerResponse, PeerUpdate } from "./Peer.js"
import { RunnerList } from "./Runner.js"
import { SpawnList, SpawnResponse, SpawnSpec } from "./Spawn.js"
import {
  CancelTask,
  ClaimNext,
  ClaimNextResult,
  ClaimTask,
  CompleteTask,
  CreateTask,
  FailTask,
  HeartbeatTask,
  ReassignTask,
  ReleaseTask,
  TaskFilter,
  TaskId,
  TaskList,
  TaskResponse
} from "./Task.js"
import { CreateTeam, TeamList, TeamResponse } from "./Team.js"

import type { Json, MessageJson, PeerEventJson, PeerJson, SendResultJson, TaskJson } from "./WireJson.js"

export type { MessageJson, PeerEventJson, PeerJson, SendResultJson, TaskJson }
/** Input of `channel.send`: `POST /api/messages` fields without `from`, plus an optional `ref`. */
export type ChannelSendJson = Omit<Json<typeof ChannelFrame.Send>, "type">

/** A failed call: the wire error's `_tag`, HTTP `status` and `message`; its other fields in `details`. */
export class BrokerError extends Error {
  override readonly name = "BrokerError"
  constructor(
    readonly _tag: string,
    message: string,
    readonly status: number | undefined,
    readonly details: Readonly<Record<string, unknown>> = {},
    options?: { readonly cause?: unknown }
  ) {
    super(message, options)
  }
}

const isWireError = Schema.is(WireError)

/** The failure of a cause as a `BrokerError`, whatever layer it came from. */
export const toBrokerError = (cause: Cause.Cause<unknown>): BrokerError => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return new BrokerError(Cause.isInterruptedOnly(cause) ? "Interrupted" : "Defect", Cause.pretty(cause), undefined, {}, {
      cause: Cause.squash(cause)
    })
  }
  const error = failure.value
  if (isWireError(error)) {
    const { _tag, message, ...details } = Schema.encodeSync(WireError)(error)
    return new BrokerError(_tag, message, statusOf(error), details, { cause: error })
  }
  if (error instanceof BrokerClient.ChannelClosed) {
    return new BrokerError(error._tag, error.message, error.status, { reason: error.reason, code: error.code }, { cause: error })
  }
  if (HttpClientError.isHttpClientError(error)) {
    const status = error._tag === "ResponseError" ? error.response.status : undefined
    return new BrokerError(error._tag, error.message, status, { reason: error.reason }, { cause: error })
  }
  if (ParseResult.isParseError(error)) {
    return new BrokerError(error._tag, error.message, undefined, {}, { cause: error })
  }
  return new BrokerError("UnknownError", String(error), undefined, {}, { cause: error })
}

export interface ClientOptions {
  /** Base URL of the broker, e.g. `http://127.0.0.1:4200`. */
  readonly url: string | URL
  readonly token: string
}

export interface ConnectOptions {
  /** Replay unacked messages after this seq on the first connect (default: the broker's acked cursor). */
  readonly after?: number
  /** Ack each message once it was handed to the listeners / iterators (default `false`). */
  readonly autoAck?: boolean
  /** Heartbeat interval in milliseconds (default 20 000). */
  readonly heartbeatInterval?: number
  /** Presence events wanted: `all` (default), `batched` (`peers_changed`) or `none` (see `ChannelOptions.presence`). */
  readonly presence?: "all" | "batched" | "none"
}

export interface ChannelListeners {
  readonly message: (message: MessageJson) => void
  readonly event: (event: PeerEventJson) => void
  /** The channel is live (again): after every `hello`. */
  readonly open: (peer: PeerJson) => void
  /** The channel ended for good: `error` is set unless `close()` ended it. */
  readonly close: (error?: BrokerError) => void
  /** The channel ended with an error, or a listener threw. */
  readonly error: (error: Error) => void
}

/** A peer's live channel. Messages flow once a `message` listener or an iterator is attached. */
export interface PromiseChannel extends AsyncIterable<MessageJson> {
  readonly peerId: string
  readonly state: BrokerClient.ChannelState
  on<K extends keyof ChannelListeners>(event: K, listener: ChannelListeners[K]): this
  off<K extends keyof ChannelListeners>(event: K, listener: ChannelListeners[K]): this
  /** Send as this peer; resolves with the broker's `sent` answer. */
  send(input: ChannelSendJson): Promise<SendResultJson>
  ack(upTo: number): Promise<void>
  /** The acked cursor known to this client. */
  cursor(): Promise<number>
  /** Close the socket (1000) and stop reconnecting; iterators finish, `close` fires. */
  close(): Promise<void>
}

type InboxQueryInput = typeof InboxQuery.Type
/** Query of `tasks.list`: as `GET /api/tasks`, with `labels` as a list and `limit` a number. */
export interface TaskFilterInput {
  readonly team?: string
  readonly state?: TaskJson["state"]
  readonly assignee?: string
  readonly labels?: ReadonlyArray<string>
  readonly limit?: number
}

export interface PromiseBrokerClient {
  readonly url: URL
  readonly health: () => Promise<Json<typeof HealthResponse>>
  readonly peers: {
    /** `resumed` is true when the name resumed an existing peer (HTTP 200 instead of 201). */
    readonly register: (registration?: Json<typeof PeerRegistration>) => Promise<Json<typeof Registered>>
    readonly list: (filter?: Json<typeof PeerFilter>) => Promise<Json<typeof PeerList>>
    readonly get: (id: string) => Promise<Json<typeof PeerResponse>>
    readonly update: (id: string, update: Json<typeof PeerUpdate>) => Promise<Json<typeof PeerResponse>>
    readonly unregister: (id: string) => Promise<void>
    readonly heartbeat: (id: string) => Promise<Json<typeof PeerResponse>>
  }
  readonly messages: {
    readonly send: (message: Json<typeof SendMessage>) => Promise<SendResultJson>
  }
  readonly inbox: {
    readonly read: (id: string, query?: InboxQueryInput) => Promise<Json<typeof InboxPage>>
    readonly ack: (id: string, upTo: number) => Promise<Json<typeof InboxCursor>>
  }
  readonly teams: {
    readonly create: (team: Json<typeof CreateTeam>) => Promise<Json<typeof TeamResponse>>
    readonly list: () => Promise<Json<typeof TeamList>>
    readonly get: (name: string) => Promise<Json<typeof TeamResponse>>
    readonly join: (name: string, peerId: string) => Promise<Json<typeof TeamResponse>>
    readonly leave: (name: string, peerId: string) => Promise<Json<typeof TeamResponse>>
  }
  readonly runners: {
    readonly list: () => Promise<Json<typeof RunnerList>>
  }
  readonly spawn: {
    readonly create: (spec: Json<typeof SpawnSpec>) => Promise<Json<typeof SpawnResponse>>
    readonly list: () => Promise<Json<typeof SpawnList>>
    readonly get: (id: string) => Promise<Json<typeof SpawnResponse>>
    readonly stop: (id: string) => Promise<Json<typeof SpawnResponse>>
    readonly stopPeer: (peerId: string) => Promise<Json<typeof SpawnResponse>>
  }
  /** The team task board (docs/tasks.md). `peer` in the inputs is the peer the call acts as. */
  readonly tasks: {
    readonly create: (task: Json<typeof CreateTask>) => Promise<Json<typeof TaskResponse>>
    readonly list: (filter?: TaskFilterInput) => Promise<Json<typeof TaskList>>
    readonly get: (id: string) => Promise<Json<typeof TaskResponse>>
    /** Claim the team's next claimable task; `{task: null}` when there is none. */
    readonly claimNext: (input: Json<typeof ClaimNext>) => Promise<Json<typeof ClaimNextResult>>
    readonly claim: (id: string, input: Json<typeof ClaimTask>) => Promise<Json<typeof TaskResponse>>
    readonly heartbeat: (id: string, input: Json<typeof HeartbeatTask>) => Promise<Json<typeof TaskResponse>>
    readonly complete: (id: string, input: Json<typeof CompleteTask>) => Promise<Json<typeof TaskResponse>>
    readonly fail: (id: string, input: Json<typeof FailTask>) => Promise<Json<typeof TaskResponse>>
    readonly release: (id: string, input: Json<typeof ReleaseTask>) => Promise<Json<typeof TaskResponse>>
    readonly cancel: (id: string, input?: Json<typeof CancelTask>) => Promise<Json<typeof TaskResponse>>
    readonly reassign: (id: string, input: Json<typeof ReassignTask>) => Promise<Json<typeof TaskResponse>>
  }
  /** Open a peer's live channel (connects in the background; see {@link PromiseChannel}). */
  readonly connect: (peerId: string, options?: ConnectOptions) => PromiseChannel
  /** Close every open channel and release the client. */
  readonly close: () => Promise<void>
}

const HealthResponse = Schema.Struct({ status: Schema.Literal("ok"), version: Schema.String })
const Registered = Schema.Struct({ peer: Peer, resumed: Schema.Boolean })
const NoContent = Schema.Void

type Runtime = ManagedRuntime.ManagedRuntime<BrokerClient.BrokerClient, never>

const runToPromise = <A>(runtime: Runtime, effect: Effect.Effect<A, unknown, BrokerClient.BrokerClient>): Promise<A> =>
  runtime.runPromiseExit(effect).then((exit) =>
    Exit.isSuccess(exit) ? exit.value : Promise.reject(toBrokerError(exit.cause))
  )

/** Create a client of the broker at `url`, authenticating with `token`. */
export const createBrokerClient = (options: ClientOptions): PromiseBrokerClient => {
  const runtime: Runtime = ManagedRuntime.make(
    BrokerClient.layer({ url: options.url, token: Redacted.make(options.token) })
  )
  const channels = new Set<PromiseChannel>()

  /** Run `f` on the typed client and answer its result as plain JSON through `output`. */
  const call = <A, I, E>(
    output: Schema.Schema<A, I>,
    f: (api: BrokerClient.Api) => Effect.Effect<A, E>
  ): Promise<I> =>
    runToPromise(
      runtime,
      BrokerClient.BrokerClient.pipe(
        Effect.flatMap((client) => f(client.api)),
        Effect.flatMap(Schema.encode(output))
      )
    )
  const peerId = decodeUnknown(PeerId)
  const teamName = decodeUnknown(TeamName)
  const spawnId = decodeUnknown(SpawnId)
  const taskId = decodeUnknown(TaskId)
  /** `POST /api/tasks/:id/<action>` with a decoded body. */
  const taskAction = <P, I>(
    id: string,
    payloadSchema: Schema.Schema<P, I>,
    input: unknown,
    f: (api: BrokerClient.Api, request: { path: { id: TaskId }; payload: P }) => Effect.Effect<typeof TaskResponse.Type, unknown>
  ) =>
    call(TaskResponse, (api) =>
      Effect.all([taskId(id), decodeUnknown(payloadSchema)(input)]).pipe(Effect.flatMap(([id, payload]) => f(api, { path: { id }, payload })))
    )

  return {
    url: new URL(options.url),
    health: () => call(HealthResponse, (api) => api.healthz()),
    peers: {
      register: (registration = {}) =>
        call(Registered, (api) =>
          decodeUnknown(PeerRegistration)(registration).pipe(
            Effect.flatMap((payload) => api.peers.register({ payload })),
            Effect.map((answer: PeerCreated | PeerResumed) => ({ peer: answer.peer, resumed: answer instanceof PeerResumed }))
          )),
      list: (filter = {}) =>
        call(PeerList, (api) => decodeUnknown(PeerFilter)(filter).pipe(Effect.flatMap((urlParams) => api.peers.list({ urlParams })))),
      get: (id) => call(PeerResponse, (api) => peerId(id).pipe(Effect.flatMap((id) => api.peers.get({ path: { id } })))),
      update: (id, update) =>
        call(PeerResponse, (api) =>
          Effect.all([peerId(id), decodeUnknown(PeerUpdate)(update)]).pipe(
            Effect.flatMap(([id, payload]) => api.peers.update({ path: { id }, payload }))
          )),
      unregister: (id) => call(NoContent, (api) => peerId(id).pipe(Effect.flatMap((id) => api.peers.unregister({ path: { id } })))),
      heartbeat: (id) => call(PeerResponse, (api) => peerId(id).pipe(Effect.flatMap((id) => api.peers.heartbeat({ path: { id } }))))
    },
    messages: {
      send: (message) =>
        call(SendResult, (api) => decodeUnknown(SendMessage)(message).pipe(Effect.flatMap((payload) => api.messages.send({ payload }))))
    },
    inbox: {
      read: (id, query = {}) =>
        call(InboxPage, (api) =>
          Effect.all([peerId(id), Schema.validate(InboxQuery)(query).pipe(Effect.mapError(toInvalidRequest))]).pipe(
            Effect.flatMap(([id, urlParams]) => api.inbox.read({ path: { id }, urlParams }))
          )),
      ack: (id, upTo) =>
        call(InboxCursor, (api) =>
          Effect.all([peerId(id), decodeUnknown(ChannelFrame.Ack)({ type: "ack", upTo })]).pipe(
            Effect.flatMap(([id, { upTo }]) => api.inbox.ack({ path: { id }, payload: { upTo } }))
          ))
    },
    teams: {
      create: (team) => call(TeamResponse, (api) => decodeUnknown(CreateTeam)(team).pipe(Effect.flatMap((payload) => api.teams.create({ payload })))),
      list: () => call(TeamList, (api) => api.teams.list()),
      get: (name) => call(TeamResponse, (api) => teamName(name).pipe(Effect.flatMap((name) => api.teams.get({ path: { name } })))),
      join: (name, member) =>
        call(TeamResponse, (api) =>
          Effect.all([teamName(name), peerId(member)]).pipe(
            Effect.flatMap(([name, peerId]) => api.teams.join({ path: { name }, payload: { peerId } }))
          )),
      leave: (name, member) =>
        call(TeamResponse, (api) =>
          Effect.all([teamName(name), peerId(member)]).pipe(
            Effect.flatMap(([name, peerId]) => api.teams.leave({ path: { name, peerId } }))
          ))
    },
    runners: {
      list: () => call(RunnerList, (api) => api.runners.list())
    },
    spawn: {
      create: (spec) => call(SpawnResponse, (api) => decodeUnknown(SpawnSpec)(spec).pipe(Effect.flatMap((payload) => api.spawn.create({ payload })))),
      list: () => call(SpawnList, (api) => api.spawn.list()),
      get: (id) => call(SpawnResponse, (api) => spawnId(id).pipe(Effect.flatMap((id) => api.spawn.get({ path: { id } })))),
      stop: (id) => call(SpawnResponse, (api) => spawnId(id).pipe(Effect.flatMap((id) => api.spawn.stop({ path: { id } })))),
      stopPeer: (id) => call(SpawnResponse, (api) => peerId(id).pipe(Effect.flatMap((id) => api.spawn.stopPeer({ path: { id } }))))
    },
    tasks: {
      create: (task) => call(TaskResponse, (api) => decodeUnknown(CreateTask)(task).pipe(Effect.flatMap((payload) => api.tasks.create({ payload })))),
      list: (filter = {}) =>
        call(TaskList, (api) =>
          decodeUnknown(TaskFilter)({
            ...filter,
            labels: filter.labels === undefined ? undefined : filter.labels.join(","),
            limit: filter.limit === undefined ? undefined : String(filter.limit)
          }).pipe(Effect.flatMap((urlParams) => api.tasks.list({ urlParams })))),
      get: (id) => call(TaskResponse, (api) => taskId(id).pipe(Effect.flatMap((id) => api.tasks.get({ path: { id } })))),
      claimNext: (input) => call(ClaimNextResult, (api) => decodeUnknown(ClaimNext)(input).pipe(Effect.flatMap((payload) => api.tasks.claimNext({ payload })))),
      claim: (id, input) => taskAction(id, ClaimTask, input, (api, request) => api.tasks.claim(request)),
      heartbeat: (id, input) => taskAction(id, HeartbeatTask, input, (api, request) => api.tasks.heartbeat(request)),
      complete: (id, input) => taskAction(id, CompleteTask, input, (api, request) => api.tasks.complete(request)),
      fail: (id, input) => taskAction(id, FailTask, input, (api, request) => api.tasks.fail(request)),
      release: (id, input) => taskAction(id, ReleaseTask, input, (api, request) => api.tasks.release(request)),
      cancel: (id, input = {}) => taskAction(id, CancelTask, input, (api, request) => api.tasks.cancel(request)),
      reassign: (id, input) => taskAction(id, ReassignTask, input, (api, request) => api.tasks.reassign(request))
    },
    connect: (id, connectOptions = {}) => {
      const channel = new ChannelHandle(runtime, id, connectOptions, () => channels.delete(channel))
      channels.add(channel)
      return channel
    },
    close: async () => {
      await Promise.all([...channels].map((channel) => channel.close()))
      await runtime.dispose()
    }
  }
}

const encodeMessage = Schema.encodeSync(Message)
const encodePeer = Schema.encodeSync(Peer)
const encodeEvent = Schema.encodeSync(ChannelFrame.PeerEvent)

/** One reader of `for await`: its own buffer, so a slow loop never blocks the listeners. */
interface Reader {
  push(message: MessageJson): void
  finish(error: BrokerError | undefined): void
}

type ListenerSets = { [K in keyof ChannelListeners]: Set<ChannelListeners[K]> }

class ChannelHandle implements PromiseChannel {
  state: BrokerClient.ChannelState = "connecting"
  private readonly listeners: ListenerSets = {
    message: new Set(),
    event: new Set(),
    open: new Set(),
    close: new Set(),
    error: new Set()
  }
  private readonly readers = new Set<Reader>()
  /** Resolved when the first consumer attaches; until then messages stay buffered (and unacked) in the Effect channel. */
  private readonly flowing = Deferred.unsafeMake<void>(FiberId.none)
  private readonly channel: Promise<BrokerClient.Channel>
  private readonly fiber: Fiber.RuntimeFiber<void, never>
  private finished = false
  private closing: Promise<void> | undefined

  constructor(
    private readonly runtime: Runtime,
    readonly peerId: string,
    options: ConnectOptions,
    private readonly onFinish: () => void
  ) {
    let resolveChannel: (channel: BrokerClient.Channel) => void = () => {}
    let rejectChannel: (error: BrokerError) => void = () => {}
    this.channel = new Promise((resolve, reject) => {
      resolveChannel = resolve
      rejectChannel = reject
    })
    // Callers that never use send/ack must not see an unhandled rejection.
    this.channel.catch(() => {})
    const self = this
    const program = Effect.gen(function*() {
      const client = yield* BrokerClient.BrokerClient
      const id = yield* decodeUnknown(PeerId)(peerId)
      const channel = yield* client.channel(id, {
        after: options.after,
        autoAck: options.autoAck,
        heartbeatInterval: options.heartbeatInterval,
        presence: options.presence
      })
      resolveChannel(channel)
      yield* channel.state.changes.pipe(
        Stream.runForEach((state) =>
          Effect.sync(() => {
            self.state = state
          }).pipe(
            Effect.zipRight(state === "open" ? Effect.map(channel.hello, (peer) => self.emit("open", encodePeer(peer))) : Effect.void),
            Effect.ignore
          )
        ),
        Effect.forkScoped
      )
      yield* channel.events.pipe(
        Stream.runForEach((event) => Effect.sync(() => self.emit("event", encodeEvent(event)))),
        Effect.ignore,
        Effect.forkScoped
      )
      const pump = yield* Deferred.await(self.flowing).pipe(
        Effect.zipRight(Stream.runForEach(channel.messages, (message) => Effect.sync(() => self.deliver(encodeMessage(message))))),
        Effect.ignore,
        Effect.forkScoped
      )
      // Only a close by the broker gets here; `close()` interrupts this fiber instead.
      const closed = yield* channel.closed
      // Let the consumers see what was buffered before the close.
      if (yield* Deferred.isDone(self.flowing)) yield* Fiber.await(pump)
      return closed
    }).pipe(Effect.scoped)

    this.fiber = runtime.runFork(
      program.pipe(
        Effect.matchCause({
          onSuccess: (closed) => this.finish(toBrokerError(Cause.fail(closed))),
          onFailure: (cause) => {
            if (Cause.isInterruptedOnly(cause)) return
            const error = toBrokerError(cause)
            rejectChannel(error)
            this.finish(error)
          }
        })
      )
    )
  }

  on<K extends keyof ChannelListeners>(event: K, listener: ChannelListeners[K]): this {
    this.listeners[event].add(listener)
    if (event === "message") this.startFlowing()
    return this
  }

  off<K extends keyof ChannelListeners>(event: K, listener: ChannelListeners[K]): this {
    this.listeners[event].delete(listener)
    return this
  }

  send(input: ChannelSendJson): Promise<SendResultJson> {
    return this.run((channel) =>
      decodeUnknown(ChannelFrame.Send)({ ...input, type: "send" }).pipe(
        Effect.flatMap(({ type: _, ...fields }) => channel.send(fields)),
        Effect.flatMap(Schema.encode(SendResult))
      )
    )
  }

  ack(upTo: number): Promise<void> {
    return this.run((channel) => channel.ack(upTo))
  }

  cursor(): Promise<number> {
    return this.run((channel) => channel.cursor)
  }

  close(): Promise<void> {
    this.closing ??= this.runtime.runPromise(Fiber.interrupt(this.fiber)).then(() => this.finish(undefined))
    return this.closing
  }

  [Symbol.asyncIterator](): AsyncIterator<MessageJson> {
    const buffer: Array<MessageJson> = []
    let waiting: { resolve: (result: IteratorResult<MessageJson>) => void; reject: (error: unknown) => void } | undefined
    let ended: { readonly error: BrokerError | undefined } | undefined
    const reader: Reader = {
      push: (message) => {
        if (waiting === undefined) return void buffer.push(message)
        waiting.resolve({ value: message, done: false })
        waiting = undefined
      },
      finish: (error) => {
        ended = { error }
        if (waiting === undefined) return
        if (error === undefined) waiting.resolve({ value: undefined, done: true })
        else waiting.reject(error)
        waiting = undefined
      }
    }
    if (this.finished) reader.finish(undefined)
    else this.readers.add(reader)
    this.startFlowing()
    return {
      next: () => {
        const message = buffer.shift()
        if (message !== undefined) return Promise.resolve({ value: message, done: false })
        if (ended !== undefined) {
          const { error } = ended
          ended = { error: undefined } // report an error once, then stay done
          return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error)
        }
        return new Promise((resolve, reject) => {
          waiting = { resolve, reject }
        })
      },
      return: () => {
        this.readers.delete(reader)
        ended = { error: undefined }
        return Promise.resolve({ value: undefined, done: true })
      }
    }
  }

  private run<A>(f: (channel: BrokerClient.Channel) => Effect.Effect<A, unknown>): Promise<A> {
    return this.channel.then((channel) => runToPromise(this.runtime, f(channel)))
  }

  private startFlowing(): void {
    Deferred.unsafeDone(this.flowing, Exit.void)
  }

  private deliver(message: MessageJson): void {
    this.emit("message", message)
    for (const reader of this.readers) reader.push(message)
  }

  private emit<K extends keyof ChannelListeners>(event: K, ...args: Parameters<ChannelListeners[K]>): void {
    for (const listener of [...this.listeners[event]] as Array<(...args: Parameters<ChannelListeners[K]>) => void>) {
      try {
        listener(...args)
      } catch (error) {
        if (event !== "error") this.emit("error", error instanceof Error ? error : new Error(String(error)))
      }
    }
  }

  private finish(error: BrokerError | undefined): void {
    if (this.finished) return
    this.finished = true
    this.state = "closed"
    for (const reader of this.readers) reader.finish(error)
    this.readers.clear()
    if (error !== undefined) this.emit("error", error)
    this.emit("close", error)
    this.onFinish()
  }
}
