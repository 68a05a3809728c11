/**
 * The two WebSocket endpoints: a peer's live channel (`/ws/broker/peer/:id`) and a runner's
 * control link (`/ws/runner/:id`). Everything is checked before the upgrade (token, tenant,
 * ownership, role), so a refused socket gets a proper HTTP status and a JSON error body.
 */
import { HttpApiBuilder, HttpRouter, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import type { Duplex } from "node:stream"
import { Authenticator, ChannelFrame, ChannelHub, Codec, Errors, Ids, Inbox, Message, Principal, RunnerFrame } from "@mks/a2a"
import { Deferred, Effect, Queue, Runtime, Schema, Scope, Stream } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus, type SendResult } from "./Bus.js"
import { Connections } from "./Connections.js"
import { Metrics } from "./Metrics.js"
import { FEATURE as RELAY_FEATURE, isRelayFrame, Relay } from "./Relay.js"
import { TokenStore } from "./TokenStore.js"

const decoder = new TextDecoder()
const textOf = (data: string | Uint8Array) => (typeof data === "string" ? data : decoder.decode(data))

/** Deepest JSON nesting accepted in a body or frame: decoding and error formatting recurse per level. */
export const MAX_JSON_DEPTH = 128

/** Whether JSON text nests arrays/objects deeper than `limit` (a scan, without parsing). */
export const nestsDeeperThan = (text: string, limit = MAX_JSON_DEPTH): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

export const tooDeep = () => new Errors.InvalidRequest({ message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` })

/** A wire error as an HTTP response (for refusals before the upgrade). */
export const errorResponse = (error: Errors.WireError) =>
  HttpServerResponse.unsafeJson(Schema.encodeSync(Errors.WireError)(error), { status: Errors.statusOf(error) })

const bearerOf = (request: HttpServerRequest.HttpServerRequest, url: URL): string | undefined => {
  const header = request.headers["authorization"]
  if (header !== undefined && /^bearer /i.test(header)) return header.slice(7).trim()
  return url.searchParams.get("token") ?? undefined
}

const encodeServer = Codec.encodeJson(ChannelFrame.ServerFrame)
const encodeRunner = Codec.encodeJson(RunnerFrame.RunnerDownFrame)
const decodeClient = Codec.decodeJson(ChannelFrame.ClientFrame)
const decodeRunner = Codec.decodeJson(RunnerFrame.RunnerUpFrame)
const decodePeerId = Codec.decodeUnknown(Ids.PeerId)
const decodeRunnerId = Codec.decodeUnknown(Ids.RunnerId)
const decodeAfter = Codec.decodeUnknown(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()))

const REPLAY_PAGE = 500

/**
 * Handle a socket's frames one at a time, in arrival order, for the scope's lifetime. The
 * platform runs a fiber per frame; without this, two sends on one socket could commit in
 * either order (and a runner's `running` could land after its `exited`).
 */
const inOrder = <E>(inbound: Queue.Queue<string | Uint8Array>, handle: (data: string | Uint8Array) => Effect.Effect<void, E>) =>
  Queue.take(inbound).pipe(
    Effect.flatMap((data) => Effect.ignore(handle(data))),
    Effect.forever,
    Effect.forkScoped
  )

/** What {@link preflight} resolves: the request, its URL, who sent it, the token and the `:id` path parameter. */
export interface Preflight {
  readonly request: HttpServerRequest.HttpServerRequest
  readonly url: URL
  readonly principal: Principal.Principal
  readonly token: string
  readonly id: string
}

/** Authenticate and resolve the request before upgrading; `WireError`s become HTTP answers. */
export const preflight: Effect.Effect<
  Preflight,
  Errors.Unauthorized | Errors.Forbidden | Errors.ServiceUnavailable,
  HttpServerRequest.HttpServerRequest | Authenticator.Authenticator | HttpRouter.RouteContext
> = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const auth = yield* Authenticator.Authenticator
  const url = new URL(request.url, "http://broker")
  const token = bearerOf(request, url)
  if (token === undefined || token.length === 0) return yield* Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
  const principal = yield* auth.authenticate(token)
  const params = yield* HttpRouter.params
  return { request, url, principal, token, id: params["id"] ?? "" }
})

/** The parts of a `ws` socket the channel writes to directly (never blocks, never throws once open). */
interface RawSocket {
  readonly readyState: number
  readonly bufferedAmount: number
  send(data: string): void
  close(code: number, reason: string): void
}

/**
 * The `ws` socket behind an upgraded request, found through the Node socket it took over (`ws`
 * marks it with its `websocket` symbol). With it, live items are written synchronously at
 * publish time and a slow client is detected by its send buffer. `undefined` if not found (then
 * writes go through the platform's writer).
 */
export const rawSocketOf = (request: HttpServerRequest.HttpServerRequest): { readonly ws: RawSocket; readonly stream: Duplex } | undefined => {
  try {
    const stream = NodeHttpServerRequest.toIncomingMessage(request).socket
    const marked = stream as unknown as Record<symbol, unknown>
    const symbol = Object.getOwnPropertySymbols(marked).find((s) => s.description === "websocket")
    const ws = symbol === undefined ? undefined : (marked[symbol] as Partial<RawSocket> | undefined)
    return ws !== undefined && typeof ws.send === "function" && typeof ws.close === "function" && typeof ws.bufferedAmount === "number"
      ? { ws: ws as RawSocket, stream }
      : undefined
  } catch {
    return undefined
  }
}

/** Bytes a client may leave unread in its socket's send buffer before it is cut off as slow (4008). */
export const SLOW_CONSUMER_BYTES = 16 * 1024 * 1024

/** Live items held while a socket replays its inbox, before it is cut off as slow (4008). */
const REPLAY_BUFFER = ChannelHub.DEFAULT_BUFFER

/**
 * A message's JSON without a schema pass (a Message is a schema class of JSON values: it
 * stringifies to its encoding). The copies of one message differ only in `seq` (fan-out to a
 * team, several sockets of a peer, the sender's `sent`): the rest is encoded once per id.
 */
const makeMessageJson = () => {
  let lastId: string | undefined
  let rest = ""
  return (message: Message.Message): string => {
    if (message.id !== lastId) {
      const { seq: _seq, ...fields } = message
      rest = JSON.stringify(fields).slice(1)
      lastId = message.id
    }
    return rest === "}" ? `{"seq":${message.seq}}` : `{"seq":${message.seq},${rest}`
  }
}
const messageJson = makeMessageJson()
const messageFrame = (message: Message.Message) => `{"type":"message","message":${messageJson(message)}}`
const sentFrame = (ref: string | undefined, result: SendResult) =>
  `{"type":"sent",${ref === undefined ? "" : `"ref":${JSON.stringify(ref)},`}"message":${messageJson(result.message)},"recipients":${JSON.stringify(result.recipients)}}`

/**
 * Decode a client frame: the schema's synchronous decoder for the common case, the Effect
 * decoder (with its `InvalidRequest` naming the field) for anything that does not decode.
 */
const decodeClientSync = Schema.decodeUnknownEither(ChannelFrame.ClientFrame)
const decodeClientFrame = (text: string): Effect.Effect<ChannelFrame.ClientFrame, Errors.InvalidRequest> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return decodeClient(text)
  }
  const decoded = decodeClientSync(json)
  return decoded._tag === "Right" ? Effect.succeed(decoded.right) : decodeClient(text)
}

type Task = string | Uint8Array | Effect.Effect<void>

const peerChannel = Effect.gen(function* () {
  const bus = yield* Bus
  const hub = yield* ChannelHub.ChannelHub
  const inbox = yield* Inbox.Inbox
  const config = yield* BrokerConfig
  const metrics = yield* Metrics
  const connections = yield* Connections
  const tokens = yield* TokenStore
  const { request, url, principal, id, token } = yield* preflight
  const peerId = yield* decodePeerId(id)
  const afterParam = url.searchParams.get("after")
  const after = afterParam === null ? undefined : yield* decodeAfter(afterParam)
  // Tenancy and ownership are checked once, here: the socket acts for this peer until it closes
  // (it is closed when the peer is unregistered or the token revoked).
  const me = (yield* bus.owned(principal, peerId)).peer
  const tenant = principal.tenant
  const tokenId = yield* tokens.idOf(token)

  const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))
  yield* Effect.scoped(
    Effect.gen(function* () {
      const write = yield* socket.writer
      const runtime = yield* Effect.runtime<never>()
      const ended = yield* Deferred.make<void>()
      const opened = yield* Deferred.make<void>()
      let raw: RawSocket | undefined
      let closing = false

      let stream: Duplex | undefined
      let corked = false
      const uncork = () => {
        corked = false
        stream?.uncork()
      }
      /**
       * Write a frame now, in call order; a client that leaves too much unread is cut off. The
       * frames written during one turn of the event loop leave in one write: the TCP socket is
       * corked at the first and uncorked once the loop has handled its pending I/O.
       */
      const out = (text: string) => {
        if (closing) return
        if (raw === undefined) {
          Runtime.runFork(runtime)(Effect.ignore(write(text)))
          return
        }
        if (raw.bufferedAmount > SLOW_CONSUMER_BYTES) return close(ChannelFrame.CloseCode.slowConsumer, "slow consumer: reconnect to replay")
        if (!corked && stream !== undefined) {
          corked = true
          stream.cork()
          setImmediate(uncork)
        }
        raw.send(text)
      }
      const close = (code: number, reason: string) => {
        if (closing) return
        closing = true
        if (raw !== undefined) raw.close(code, reason)
        else Runtime.runFork(runtime)(Effect.ignore(write(new Socket.CloseEvent(code, reason))))
      }
      const send = (frame: ChannelFrame.ServerFrame) => Effect.sync(() => out(encodeServer(frame)))

      // ---- inbound: frames are handled one at a time, in arrival order, by one fiber per
      // socket that sleeps while there is nothing to do ----
      const tasks: Array<Task> = []
      let paused = true // until the hello and the replay are out
      let wake: ((done: Effect.Effect<void>) => void) | undefined
      const idle = Effect.async<void>((resume) => {
        if (!paused && tasks.length > 0) resume(Effect.void)
        else wake = resume
      })
      const work: Effect.Effect<void> = Effect.suspend(() => {
        const task = paused ? undefined : tasks.shift()
        if (task === undefined) return idle
        const step = Effect.isEffect(task) ? task : onFrame(task)
        return Effect.zipRight(Effect.catchAllCause(step, () => Effect.void), work)
      })
      const kick = () => {
        if (wake === undefined || paused || tasks.length === 0) return
        const resume = wake
        wake = undefined
        resume(Effect.void)
      }
      const schedule = (task: Task) => {
        tasks.push(task)
        kick()
      }
      yield* Effect.forever(work).pipe(Effect.forkScoped)

      // Reading drives the upgrade: start it first, or writes would wait for an open socket forever.
      yield* socket
        .runRaw((data) => schedule(data), {
          onOpen: Effect.sync(() => {
            const found = rawSocketOf(request)
            raw = found?.ws
            stream = found?.stream
            Deferred.unsafeDone(opened, Effect.void)
          })
        })
        .pipe(
          Effect.catchAll(() => Effect.void),
          Effect.ensuring(
            Effect.sync(() => {
              closing = true
              Deferred.unsafeDone(opened, Effect.void)
              Deferred.unsafeDone(ended, Effect.void)
            })
          ),
          Effect.forkScoped
        )
      // Nothing is written before the socket is open, so every frame takes the same path, in order.
      yield* Deferred.await(opened)
      if (closing) return

      // ---- outbound: live items go straight to the socket at publish time ----
      let last = 0
      let replaying = true
      const held: Array<ChannelHub.ChannelItem> = []
      const deliver = (item: ChannelHub.ChannelItem) => {
        if (item.type === "event") {
          out(encodeServer(item))
          // This peer was unregistered (not merely gone offline): tell the client not to reconnect.
          if (item.event.type === "peer_left" && item.event.peer.id === peerId) {
            schedule(
              bus.peers.get(tenant, peerId).pipe(
                Effect.asVoid,
                Effect.catchTag("PeerNotFound", () => Effect.sync(() => close(ChannelFrame.CloseCode.unregistered, "peer unregistered")))
              )
            )
          }
          return
        }
        if (item.message.seq <= last) return
        last = item.message.seq
        metrics.messagesOut(1)
        metrics.observeDelivery(Date.now() - Date.parse(item.message.sentAt))
        out(messageFrame(item.message))
      }
      // Attach before reading the inbox so nothing appended in between is missed: live items
      // are held until the replay is out, then written after it (skipping what it covered).
      yield* hub.attach(tenant, peerId, (item) => {
        if (!replaying) return deliver(item)
        if (held.length >= REPLAY_BUFFER) return close(ChannelFrame.CloseCode.slowConsumer, "slow consumer: reconnect to replay")
        held.push(item)
      })
      yield* connections.add({ tenant, peer: peerId, tokenId, close })
      const peer = yield* bus.heartbeat(principal, peerId)
      const cursor = yield* inbox.cursor(tenant, peerId)
      yield* send({ type: "hello", peer, cursor })

      last = Math.max(after ?? cursor, 0)
      while (!closing) {
        const page = yield* inbox.read(tenant, peerId, { after: last, limit: REPLAY_PAGE })
        for (const message of page.messages) {
          out(messageFrame(message))
          last = message.seq
        }
        metrics.messagesOut(page.messages.length)
        if (page.messages.length < REPLAY_PAGE) break
      }
      yield* Effect.sync(() => {
        replaying = false
        for (const item of held.splice(0)) deliver(item)
        paused = false
        kick()
      })

      function onFrame(data: string | Uint8Array): Effect.Effect<void> {
        const text = textOf(data)
        if (text.length > config.maxBodyBytes) {
          return send({ type: "error", error: new Errors.PayloadTooLarge({ message: `frame larger than ${config.maxBodyBytes} bytes`, limit: config.maxBodyBytes }) })
        }
        if (nestsDeeperThan(text)) return send({ type: "error", error: tooDeep() })
        return decodeClientFrame(text).pipe(
          Effect.flatMap((frame): Effect.Effect<void, Errors.WireError> => {
            switch (frame.type) {
              case "ack":
                return Effect.map(inbox.ack(tenant, peerId, frame.upTo), ({ cursor }) => out(`{"type":"acked","cursor":${cursor}}`))
              case "heartbeat":
                return Effect.asVoid(bus.peers.touch(tenant, peerId))
              case "send": {
                const { type: _type, ref, ...fields } = frame
                return bus.sendAs(tenant, me, fields, (result) => out(sentFrame(ref, result))).pipe(
                  Effect.asVoid,
                  Effect.catchAll((error) => send({ type: "error", ref, error }))
                )
              }
            }
          }),
          Effect.catchAll((error) => send({ type: "error", error }))
        )
      }

      yield* Deferred.await(ended).pipe(
        Effect.onInterrupt(() =>
          raw !== undefined
            ? Effect.sync(() => close(ChannelFrame.CloseCode.goingAway, "broker shutting down"))
            : write(new Socket.CloseEvent(ChannelFrame.CloseCode.goingAway, "broker shutting down")).pipe(Effect.timeout("1 second"), Effect.ignore)
        )
      )
    })
  )
  return HttpServerResponse.empty()
})

const runnerLink = Effect.gen(function* () {
  const bus = yield* Bus
  const config = yield* BrokerConfig
  const relay = yield* Relay
  const { request, principal, id } = yield* preflight
  const runnerId = yield* decodeRunnerId(id)
  if (!principal.hasRole("runner")) return yield* Effect.fail(new Errors.Forbidden({ message: "the runner link needs the runner role" }))
  const tenant = principal.tenant
  const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))

  yield* Effect.scoped(
    Effect.gen(function* () {
      const write = yield* socket.writer
      const send = (frame: RunnerFrame.RunnerDownFrame) => write(encodeRunner(frame))
      const scope = yield* Effect.scope
      let isAttached = false

      const onFrame = (data: string | Uint8Array): Effect.Effect<void, Socket.SocketError> => {
        const text = textOf(data)
        if (text.length > config.maxBodyBytes) {
          return send({ type: "error", error: new Errors.PayloadTooLarge({ message: `frame larger than ${config.maxBodyBytes} bytes`, limit: config.maxBodyBytes }) })
        }
        if (nestsDeeperThan(text)) return send({ type: "error", error: tooDeep() })
        return decodeRunner(text).pipe(
          Effect.flatMap((frame): Effect.Effect<void, Errors.WireError | Socket.SocketError> => {
            switch (frame.type) {
              case "hello": {
                if (frame.runner.id !== runnerId) {
                  return Effect.fail(new Errors.InvalidRequest({ message: `hello names runner ${frame.runner.id} on the link of ${runnerId}`, field: "runner.id" }))
                }
                if (isAttached) return Effect.fail(new Errors.InvalidRequest({ message: "hello was already received on this link", field: "type" }))
                isAttached = true
                return Effect.gen(function* () {
                  const link = yield* bus.spawns.attach(tenant, frame.runner, frame.agents).pipe(Scope.extend(scope))
                  yield* link.orders.pipe(Stream.runForEach(send), Effect.ignore, Effect.forkIn(scope))
                  yield* relay.attach(tenant, runnerId, frame.features?.includes(RELAY_FEATURE) ?? false, send).pipe(Scope.extend(scope))
                  yield* Effect.logInfo(`runner ${runnerId} attached (tenant ${tenant}), reconciled ${link.reconciled.length} spawn(s)`)
                })
              }
              case "heartbeat":
                return isAttached ? bus.spawns.heartbeat(tenant, runnerId) : Effect.void
              case "spawn_status":
                return bus.spawns
                  .transition(tenant, frame.spawnId, frame.status, { pid: frame.pid, exitCode: frame.exitCode, error: frame.error })
                  .pipe(
                    // A late report (e.g. `running` after the agent already registered) is stale, not an error.
                    Effect.catchTag("IllegalTransition", (e) => Effect.logDebug(`ignored stale report: ${e.message}`)),
                    Effect.asVoid
                  )
              default:
                return isRelayFrame(frame) ? relay.fromRunner(tenant, runnerId, frame) : Effect.void
            }
          }),
          Effect.catchAll((error) => (error._tag === "SocketError" ? Effect.fail(error) : send({ type: "error", error })))
        )
      }
      const inbound = yield* Queue.unbounded<string | Uint8Array>()
      yield* inOrder(inbound, onFrame)
      // Read in a fiber of its own and await it here: on shutdown this fiber is interrupted while the
      // socket is still open, so the 1001 can go out (from inside the reader it would wait forever).
      const ended = yield* Deferred.make<void>()
      yield* socket.runRaw((data) => Queue.offer(inbound, data)).pipe(
        Effect.catchAll(() => Effect.void),
        Effect.ensuring(Deferred.succeed(ended, undefined)),
        Effect.forkScoped
      )
      yield* Deferred.await(ended).pipe(
        Effect.onInterrupt(() =>
          write(new Socket.CloseEvent(ChannelFrame.CloseCode.goingAway, "broker shutting down")).pipe(Effect.timeout("1 second"), Effect.ignore)
        )
      )
    })
  )
  return HttpServerResponse.empty()
})

const refuse = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, Errors.WireError, R>) =>
  handler.pipe(Effect.catchAll((error) => Effect.succeed(errorResponse(error))))

/** Mount both WebSocket routes on the API's router. */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const services = yield* Effect.context<
      Bus | BrokerConfig | Metrics | ChannelHub.ChannelHub | Inbox.Inbox | Authenticator.Authenticator | Connections | TokenStore | Relay
    >()
    yield* router.get("/ws/broker/peer/:id", refuse(peerChannel).pipe(Effect.provide(services)))
    yield* router.get("/ws/runner/:id", refuse(runnerLink).pipe(Effect.provide(services)))
  })
)
