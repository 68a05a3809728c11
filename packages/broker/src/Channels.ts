/**
 * The two WebSocket endpoints: a peer's live channel (`/ws/broker/peer/:id`) and a runner's
 * control link (`/ws/runner/:id`). Everything is checked before the upgrade (token, tenant,
 * ownership, role), so a refused socket gets a proper HTTP status and a JSON error body.
 */
import { HttpApiBuilder, HttpRouter, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { Authenticator, ChannelFrame, ChannelHub, Codec, Errors, Ids, Inbox, RunnerFrame } from "@mks/a2a"
import { Deferred, Effect, Fiber, Queue, Schedule, Schema, Scope, Stream } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import { Metrics } from "./Metrics.js"

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

/** Authenticate and resolve the request before upgrading; `WireError`s become HTTP answers. */
const preflight = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const auth = yield* Authenticator.Authenticator
  const url = new URL(request.url, "http://broker")
  const token = bearerOf(request, url)
  if (token === undefined || token.length === 0) return yield* Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
  const principal = yield* auth.authenticate(token)
  const params = yield* HttpRouter.params
  return { request, url, principal, id: params["id"] ?? "" }
})

const peerChannel = Effect.gen(function* () {
  const bus = yield* Bus
  const hub = yield* ChannelHub.ChannelHub
  const inbox = yield* Inbox.Inbox
  const config = yield* BrokerConfig
  const metrics = yield* Metrics
  const { request, url, principal, id } = yield* preflight
  const peerId = yield* decodePeerId(id)
  const afterParam = url.searchParams.get("after")
  const after = afterParam === null ? undefined : yield* decodeAfter(afterParam)
  yield* bus.owned(principal, peerId)
  const tenant = principal.tenant

  const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))
  yield* Effect.scoped(
    Effect.gen(function* () {
      const write = yield* socket.writer
      const send = (frame: ChannelFrame.ServerFrame) => write(encodeServer(frame))
      const inbound = yield* Queue.unbounded<string | Uint8Array>()
      const ended = yield* Deferred.make<void>()
      // Reading drives the upgrade: start it first, or writes would wait for an open socket forever.
      const reader = yield* socket.runRaw((data) => Queue.offer(inbound, data)).pipe(
        Effect.catchAll(() => Effect.void),
        Effect.ensuring(Deferred.succeed(ended, undefined)),
        Effect.forkScoped
      )
      yield* inOrder(inbound, onFrame)
      // Subscribe before reading the inbox so nothing appended in between is missed.
      const live = yield* hub.subscribe(tenant, peerId)
      const peer = yield* bus.heartbeat(principal, peerId)
      const cursor = yield* inbox.cursor(tenant, peerId)
      yield* send({ type: "hello", peer, cursor })

      let last = Math.max(after ?? cursor, 0)
      while (true) {
        const page = yield* inbox.read(tenant, peerId, { after: last, limit: REPLAY_PAGE })
        for (const message of page.messages) {
          yield* write(JSON.stringify({ type: "message", message }))
          last = message.seq
        }
        metrics.messagesOut(page.messages.length)
        if (page.messages.length < REPLAY_PAGE) break
      }

      const closed = yield* Deferred.make<void>()
      const forward = yield* live.pipe(
        Stream.runForEach((item) => {
          if (item.type === "event") {
            // This peer was unregistered (not merely gone offline): tell the client not to reconnect.
            if (item.event.type === "peer_left" && item.event.peer.id === peerId) {
              return send(item).pipe(
                Effect.zipRight(bus.peers.get(tenant, peerId)),
                Effect.catchTag("PeerNotFound", () =>
                  write(new Socket.CloseEvent(ChannelFrame.CloseCode.unregistered, "peer unregistered")).pipe(Effect.zipRight(Deferred.succeed(closed, undefined)))
                ),
                Effect.asVoid
              )
            }
            return send(item)
          }
          if (item.message.seq <= last) return Effect.void
          last = item.message.seq
          metrics.messagesOut(1)
          metrics.observeDelivery(Date.now() - Date.parse(item.message.sentAt))
          return write(JSON.stringify(item))
        }),
        Effect.catchTag("SlowConsumer", () => write(new Socket.CloseEvent(ChannelFrame.CloseCode.slowConsumer, "slow consumer: reconnect to replay"))),
        Effect.ensuring(Deferred.succeed(closed, undefined)),
        Effect.forkScoped
      )
      // Keep the peer online while the socket is open, without the client having to heartbeat
      // (a third of the timeout, whatever the timeout: a floor above it would let GC expire open sockets).
      yield* bus.peers.touch(tenant, peerId).pipe(
        Effect.ignore,
        Effect.repeat({ schedule: Schedule.spaced(Math.max(10, Math.floor(config.peerTimeout / 3))) }),
        Effect.forkScoped
      )

      function onFrame(data: string | Uint8Array) {
        const text = textOf(data)
        if (text.length > config.maxBodyBytes) {
          return send({ type: "error", error: new Errors.PayloadTooLarge({ message: `frame larger than ${config.maxBodyBytes} bytes`, limit: config.maxBodyBytes }) })
        }
        if (nestsDeeperThan(text)) return send({ type: "error", error: tooDeep() })
        return decodeClient(text).pipe(
          Effect.flatMap((frame): Effect.Effect<void, Errors.WireError | Socket.SocketError> => {
            switch (frame.type) {
              case "ack":
                return bus.ack(principal, peerId, frame.upTo).pipe(Effect.flatMap(({ cursor }) => send({ type: "acked", cursor })))
              case "heartbeat":
                return bus.peers.touch(tenant, peerId)
              case "send": {
                const { type: _type, ref, ...fields } = frame
                return bus.send(principal, peerId, fields).pipe(
                  Effect.flatMap((result) => send({ type: "sent", ref, ...result })),
                  Effect.catchAll((error) => (error._tag === "SocketError" ? Effect.fail(error) : send({ type: "error", ref, error })))
                )
              }
            }
          }),
          Effect.catchAll((error) => (error._tag === "SocketError" ? Effect.fail(error) : send({ type: "error", error })))
        )
      }
      yield* Deferred.await(ended).pipe(
        Effect.raceFirst(Deferred.await(closed)),
        Effect.onInterrupt(() =>
          write(new Socket.CloseEvent(ChannelFrame.CloseCode.goingAway, "broker shutting down")).pipe(Effect.timeout("1 second"), Effect.ignore)
        )
      )
      yield* Fiber.interrupt(forward)
      yield* Fiber.interrupt(reader)
    })
  ).pipe(Effect.catchTag("SocketError", () => Effect.void))
  return HttpServerResponse.empty()
})

const runnerLink = Effect.gen(function* () {
  const bus = yield* Bus
  const config = yield* BrokerConfig
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
    const services = yield* Effect.context<Bus | BrokerConfig | Metrics | ChannelHub.ChannelHub | Inbox.Inbox | Authenticator.Authenticator>()
    yield* router.get("/ws/broker/peer/:id", refuse(peerChannel).pipe(Effect.provide(services)))
    yield* router.get("/ws/runner/:id", refuse(runnerLink).pipe(Effect.provide(services)))
  })
)
