/**
 * The two WebSocket endpoints: a peer's live channel (`/ws/broker/peer/:id`) and a runner's
 * control link (`/ws/runner/:id`). Everything is checked before the upgrade (token, tenant,
 * ownership, role), so a refused socket gets a proper HTTP status and a JSON error body.
 */
import { HttpApiBuilder, HttpRouter, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type { Duplex } from "node:stream"
import { Authenticator, ChannelFrame, ChannelHub, ChannelSession, Codec, Errors, Ids, Inbox, type Peer, Principal, RunnerFrame } from "@mks/a2a"
import { Deferred, Effect, Exit, type Fiber, FiberSet, Queue, Runtime, Schema, Scope, Stream } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import { Connections } from "./Connections.js"
import { Metrics } from "./Metrics.js"
import { FEATURE as RELAY_FEATURE, isRelayFrame, Relay } from "./Relay.js"
import { TokenStore } from "./TokenStore.js"

const decoder = new TextDecoder()
const textOf = (data: string | Uint8Array) => (typeof data === "string" ? data : decoder.decode(data))

/** Deepest JSON nesting accepted in a body or frame (core's `ChannelSession`): decoding and error formatting recurse per level. */
export const MAX_JSON_DEPTH = ChannelSession.MAX_JSON_DEPTH

/** Whether JSON text nests arrays/objects deeper than `limit` (a scan, without parsing). */
export const nestsDeeperThan = ChannelSession.nestsDeeperThan

export const tooDeep = ChannelSession.tooDeep

/** A wire error in the contract's JSON shape. */
export const encodeWireError = Schema.encodeSync(Errors.WireError)

/** A wire error as an HTTP response (for refusals before the upgrade). */
export const errorResponse = (error: Errors.WireError) =>
  HttpServerResponse.unsafeJson(encodeWireError(error), { status: Errors.statusOf(error) })

/** The bearer token of a request: its `authorization` header, else the `token` query parameter (browsers cannot set headers on a WebSocket). */
const bearerOf = (headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>, url: URL): string | undefined => {
  const header = headers["authorization"]
  if (typeof header === "string" && /^bearer /i.test(header)) return header.slice(7).trim()
  return url.searchParams.get("token") ?? undefined
}

/** Who sent a request (its bearer token, see `bearerOf`), and the token; no token is 401. */
export const principalOf = (auth: Authenticator.AuthenticatorService, headers: Parameters<typeof bearerOf>[0], url: URL) => {
  const token = bearerOf(headers, url)
  return token === undefined || token.length === 0
    ? Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
    : Effect.map(auth.authenticate(token), (principal) => ({ principal, token }))
}

const encodeRunner = Codec.encodeJson(RunnerFrame.RunnerDownFrame)
const decodeRunner = Codec.decodeJson(RunnerFrame.RunnerUpFrame)
const decodePeerId = Codec.decodeUnknown(Ids.PeerId)
const decodeRunnerId = Codec.decodeUnknown(Ids.RunnerId)
const decodeAfter = Codec.decodeUnknown(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()))
const decodePresence = Codec.decodeUnknown(ChannelFrame.PresenceMode)
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

/**
 * The 1001 a closing broker sends on a socket, given at most a second. It runs in an
 * `onInterrupt` finalizer, which is uninterruptible: without `interruptible` the timeout could not
 * cancel a write that waits for a socket that never opened (a client that reset during the
 * upgrade), and that one socket kept the broker from stopping on SIGTERM.
 */
const goingAway = (write: (chunk: Uint8Array | string | Socket.CloseEvent) => Effect.Effect<void, Socket.SocketError>) =>
  write(new Socket.CloseEvent(ChannelFrame.CloseCode.goingAway, "broker shutting down")).pipe(Effect.interruptible, Effect.timeout("1 second"), Effect.ignore)

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
  const { principal, token } = yield* principalOf(auth, request.headers, url)
  const params = yield* HttpRouter.params
  return { request, url, principal, token, id: params["id"] ?? "" }
})

/** The parts of a `ws` socket the channel writes to directly (never blocks, never throws once open). */
export interface RawSocket {
  readonly readyState: number
  readonly bufferedAmount: number
  send(data: string | Buffer, options?: { readonly binary: boolean }): void
  close(code: number, reason: string): void
  terminate(): void
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

/**
 * Refuse frames over `bytes` before they are buffered: the platform's WebSocket server uses the
 * `ws` default `maxPayload` (100 MiB) and offers no option, so the limit is set on the socket's
 * frame parser as soon as the socket is open (before its first read: the upgrade completes and
 * this runs in the same turn of the event loop). A larger frame closes the socket with 1009.
 */
export const capPayload = (request: HttpServerRequest.HttpServerRequest, bytes: number): void => {
  const found = rawSocketOf(request)
  const receiver = (found?.ws as { _receiver?: { _maxPayload?: number } } | undefined)?._receiver
  if (receiver !== undefined && typeof receiver._maxPayload === "number") receiver._maxPayload = bytes
}

/** Bytes a client may leave unread in its socket's send buffer before it is cut off as slow (4008). */
export const SLOW_CONSUMER_BYTES = 16 * 1024 * 1024

/**
 * A channel session's output on a `ws` socket (core's `ChannelSession.ChannelOutput`): frames
 * are written now, in call order, and a client that leaves too much unread is cut off. The
 * frames written during one turn of the event loop leave in one write: the TCP socket (`stream`)
 * is corked at the first and uncorked once the loop has handled its pending I/O.
 */
export const wsOutput = (raw: RawSocket, stream: Duplex | undefined) => {
  let closing = false
  let corked = false
  const uncork = () => {
    corked = false
    stream?.uncork()
  }
  const close = (code: number, reason: string) => {
    if (closing) return
    closing = true
    if (code === ChannelFrame.CloseCode.slowConsumer) {
      // A client that stopped reading would not read the close frame either: queue it, then
      // drop the connection at once instead of holding its unread bytes through the close
      // handshake (the client reconnects and replays from its inbox either way).
      raw.close(code, reason)
      stream?.uncork()
      setImmediate(() => raw.terminate())
    } else raw.close(code, reason)
  }
  /** Whether a frame may go out now (and the socket is corked for this turn). */
  const ready = () => {
    if (closing) return false
    if (raw.bufferedAmount > SLOW_CONSUMER_BYTES) {
      close(ChannelFrame.CloseCode.slowConsumer, "slow consumer: reconnect to replay")
      return false
    }
    if (!corked && stream !== undefined) {
      corked = true
      stream.cork()
      setImmediate(uncork)
    }
    return true
  }
  return {
    write: (text: string) => {
      if (ready()) raw.send(text)
    },
    /** A text frame encoded once and shared by every socket it goes to. */
    writeShared: (frame: Buffer) => {
      if (ready()) raw.send(frame, { binary: false })
    },
    close,
    closed: () => closing,
    /** The socket closed (the client left): nothing more is written. */
    ended: () => {
      closing = true
    }
  }
}

/** What a peer's channel acts for, resolved before the upgrade. */
export interface PeerTarget {
  readonly principal: Principal.Principal
  readonly token: string
  readonly peerId: Ids.PeerId
  readonly me: Peer.Peer
  readonly tokenId: string | undefined
  readonly after: number | undefined
  readonly presence: ChannelFrame.PresenceMode
}

/**
 * Check a peer channel request before its upgrade: the token, the `:id`, the `after` and
 * `presence` parameters, tenancy and ownership (checked once: the socket acts for this peer
 * until it closes; it is closed when the peer is unregistered or the token revoked).
 */
export const peerTarget = (principal: Principal.Principal, token: string, id: string, url: URL) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    const tokens = yield* TokenStore
    const peerId = yield* decodePeerId(id)
    const afterParam = url.searchParams.get("after")
    const after = afterParam === null ? undefined : yield* decodeAfter(afterParam)
    const presenceParam = url.searchParams.get("presence")
    const presence = presenceParam === null ? "all" : yield* decodePresence(presenceParam)
    const me = (yield* bus.owned(principal, peerId)).peer
    const tokenId = yield* tokens.idOf(token)
    return { principal, token, peerId, me, tokenId, after, presence } satisfies PeerTarget
  })

/**
 * Makes the channel session of a `PeerTarget` (core's `ChannelSession` over the `Bus`) writing
 * to an output, in the current scope. The services are resolved once, here.
 */
export const makePeerSessions = Effect.gen(function* () {
  const bus = yield* Bus
  const sendStaged = bus.sendStaged
  const hub = yield* ChannelHub.ChannelHub
  const inbox = yield* Inbox.Inbox
  const config = yield* BrokerConfig
  const metrics = yield* Metrics
  const connections = yield* Connections
  return (target: PeerTarget, output: ChannelSession.ChannelOutput) => {
    const { principal, peerId, me, tokenId } = target
    const tenant = principal.tenant
    return ChannelSession.make(
      {
        tenant,
        peerId,
        hub,
        inbox,
        connect: bus.heartbeat(principal, peerId),
        heartbeat: bus.peers.touch(tenant, peerId),
        send: (fields, accepted) => bus.sendAs(tenant, me, fields, accepted),
        // Stores that commit in batches (PostgreSQL) stage appends: a socket's sends are pipelined.
        sendStaged: sendStaged === undefined ? undefined : (fields, accepted) => sendStaged(tenant, me, fields, accepted),
        registered: bus.peers.get(tenant, peerId).pipe(
          Effect.as(true),
          Effect.catchTag("PeerNotFound", () => Effect.succeed(false))
        ),
        disconnected: bus.disconnected(tenant, peerId),
        // Tracked from the subscription on, and untracked before the peer is taken offline (the
        // keep-alive touches tracked peers: it must not bring this one back online).
        attached: connections.add({ tenant, peer: peerId, tokenId, close: output.close }),
        delivered: (message, replayed) => {
          metrics.messagesOut(1)
          if (!replayed) metrics.observeDelivery(Date.now() - Date.parse(message.sentAt))
        }
      },
      output,
      { after: target.after, presence: target.presence, maxFrameBytes: config.maxBodyBytes }
    )
  }
})

/**
 * Runs a peer socket's lifetime in a fiber of the channel layer's own (see `layer`): the request
 * fiber returns once the socket is open, so an idle socket does not keep the request's fiber,
 * its stack of provided contexts and fiber-ref copies alive (measured ~70 → ~45 KiB per idle peer).
 * A broker on its own Node server takes peer upgrades before the router (`ChannelNode.ts`);
 * this route serves them when the broker is mounted in a host's server.
 */
type RunLifetime = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

const peerChannel = (runLifetime: RunLifetime, sessions: Effect.Effect.Success<typeof makePeerSessions>) => Effect.gen(function* () {
  const config = yield* BrokerConfig
  const { request, url, principal, id, token } = yield* preflight
  const target = yield* peerTarget(principal, token, id, url)

  const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))
  const opened = yield* Deferred.make<void>()
  const lifetime = Effect.scoped(
    Effect.gen(function* () {
      const write = yield* socket.writer
      const runtime = yield* Effect.runtime<never>()
      const ended = yield* Deferred.make<void>()
      let raw: ReturnType<typeof wsOutput> | undefined
      let closing = false
      // Until the socket is open (or where its `ws` socket cannot be found), through the platform's writer.
      const output: ChannelSession.ChannelOutput = {
        write: (text) => {
          if (raw !== undefined) raw.write(text)
          else if (!closing) Runtime.runFork(runtime)(Effect.ignore(write(text)))
        },
        writeShared: (frame) => (raw !== undefined ? raw.writeShared(frame) : output.write(frame.toString("utf8"))),
        close: (code, reason) => {
          if (raw !== undefined) return raw.close(code, reason)
          if (closing) return
          closing = true
          Runtime.runFork(runtime)(Effect.ignore(write(new Socket.CloseEvent(code, reason))))
        },
        closed: () => (raw !== undefined ? raw.closed() : closing)
      }
      // The protocol (hello, replay, live, ordered sends, coalesced acks) is core's ChannelSession;
      // this is its WebSocket transport and the Bus behind it.
      const session = yield* sessions(target, output)

      // Reading drives the upgrade: start it first, or writes would wait for an open socket forever.
      yield* socket
        .runRaw(session.receive, {
          onOpen: Effect.sync(() => {
            const found = rawSocketOf(request)
            capPayload(request, config.maxBodyBytes)
            if (found !== undefined) raw = wsOutput(found.ws, found.stream)
            Deferred.unsafeDone(opened, Effect.void)
          })
        })
        .pipe(
          Effect.catchAll(() => Effect.void),
          Effect.ensuring(
            Effect.sync(() => {
              closing = true
              raw?.ended()
              Deferred.unsafeDone(opened, Effect.void)
              Deferred.unsafeDone(ended, Effect.void)
            })
          ),
          Effect.forkScoped
        )
      // Nothing is written before the socket is open, so every frame takes the same path, in order.
      yield* Deferred.await(opened)
      if (output.closed()) return
      yield* session.start

      yield* Deferred.await(ended).pipe(
        Effect.onInterrupt(() =>
          raw !== undefined
            ? Effect.sync(() => raw!.close(ChannelFrame.CloseCode.goingAway, "broker shutting down"))
            : goingAway(write)
        )
      )
    })
  )
  runLifetime(lifetime.pipe(Effect.ensuring(Deferred.done(opened, Exit.void))))
  // Until the upgrade is done the response must not be written (it would go out on the socket).
  yield* Deferred.await(opened)
  return HttpServerResponse.empty()
})

/**
 * The runner links open on this broker, by tenant and runner id. A new link for an id that is
 * linked already closes the older one (4009, `RunnerFrame.LinkCloseCode.replaced`) and waits
 * until it is released before it attaches, so the spawn plane sees one link at a time.
 */
type RunnerLinks = Map<string, { readonly replace: Effect.Effect<void> }>

const runnerLink = (links: RunnerLinks) => Effect.gen(function* () {
  const bus = yield* Bus
  const config = yield* BrokerConfig
  const relay = yield* Relay
  const { request, principal, id } = yield* preflight
  const runnerId = yield* decodeRunnerId(id)
  if (!principal.hasRole("runner")) return yield* Effect.fail(new Errors.Forbidden({ message: "the runner link needs the runner role" }))
  const tenant = principal.tenant
  const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))

  const released = yield* Deferred.make<void>()
  const key = `${tenant}\u0000${runnerId}`
  yield* Effect.scoped(
    Effect.gen(function* () {
      const write = yield* socket.writer
      const send = (frame: RunnerFrame.RunnerDownFrame) => write(encodeRunner(frame))
      const scope = yield* Effect.scope
      let isAttached = false
      const me = {
        replace: write(new Socket.CloseEvent(RunnerFrame.LinkCloseCode.replaced, `runner ${runnerId} was linked again by another connection`)).pipe(
          Effect.timeout("1 second"),
          Effect.ignore,
          Effect.zipRight(Deferred.await(released).pipe(Effect.timeout("5 seconds"), Effect.ignore))
        )
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => links.get(key) === me && links.delete(key)))

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
                  const previous = links.get(key)
                  links.set(key, me)
                  if (previous !== undefined) {
                    yield* Effect.logWarning(`runner ${runnerId} (tenant ${tenant}) linked again: closing its older link (4009)`)
                    yield* previous.replace
                  }
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
      yield* socket.runRaw((data) => Queue.offer(inbound, data), { onOpen: Effect.sync(() => capPayload(request, config.maxBodyBytes)) }).pipe(
        Effect.catchAll(() => Effect.void),
        Effect.ensuring(Deferred.succeed(ended, undefined)),
        Effect.forkScoped
      )
      yield* Deferred.await(ended).pipe(
        Effect.onInterrupt(() =>
          goingAway(write)
        )
      )
    })
  ).pipe(Effect.ensuring(Deferred.succeed(released, undefined)))
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
    // Peer sockets live in this layer's fibers; closing it (broker shutdown) interrupts them: 1001.
    const runLifetime: RunLifetime = yield* FiberSet.makeRuntime<never>()
    const sessions = yield* makePeerSessions
    yield* router.get("/ws/broker/peer/:id", refuse(peerChannel(runLifetime, sessions)).pipe(Effect.provide(services)))
    const links: RunnerLinks = new Map()
    yield* router.get("/ws/runner/:id", refuse(runnerLink(links)).pipe(Effect.provide(services)))
  })
)
