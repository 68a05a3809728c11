/**
 * The peer channel (`GET /ws/broker/peer/:id`) at the Node level, for a broker on its own Node
 * server (`BrokerServer.layer`): the upgrade is taken before the HTTP router, checked (token, id,
 * `after`, `presence`, ownership: the same checks and refusals as the routed path in
 * `Channels.ts`), and the socket is a plain `ws` socket whose callbacks drive core's
 * `ChannelSession`.
 *
 * Why not the router: a routed WebSocket is `@effect/platform`'s socket, read by a fiber of its
 * own with its own `FiberSet`, `Runtime` and scopes, and the platform writes the upgrade's
 * response itself. At fleet scale that per-socket machinery was most of an idle peer's memory
 * (measured with `bench/resilience.mjs`: see `docs/benchmarks.md`). Here a socket costs its
 * `ws` object, one `Scope` and the session's own state; every callback runs on the layer's one
 * runtime (no per-socket copies of the service context).
 *
 * A broker mounted in a host's server (`BrokerServer.layerApp`) keeps the routed path.
 */
import { Authenticator, ChannelFrame, type ChannelHub, type ChannelSession, Errors, type Inbox } from "@mks/a2a"
import { Cause, Effect, Exit, Fiber, Runtime, Scope } from "effect"
import { type IncomingMessage, STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocket, WebSocketServer } from "ws"
import { BrokerConfig } from "./BrokerConfig.js"
import { encodeWireError, makePeerSessions, peerTarget, type PeerTarget, principalOf, type RawSocket, wsOutput } from "./Channels.js"
import type { Bus } from "./Bus.js"
import type { Connections } from "./Connections.js"
import { Metrics } from "./Metrics.js"
import type { TokenStore } from "./TokenStore.js"

const PREFIX = "/ws/broker/peer/"
/** The router's cap on a path parameter (`maxParamLength`): longer ids are left to the router (404). */
const MAX_ID = 1024

/** Takes an `upgrade` event when it is a peer channel's (`true`), else leaves it to the router. */
export type PeerUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean

/** The `:id` of a peer channel upgrade this path serves, or `undefined` (then the router decides). */
const peerIdOf = (request: IncomingMessage): string | undefined => {
  const url = request.url
  if (request.method !== "GET" || url === undefined || !url.startsWith(PREFIX)) return undefined
  // A body on an upgrade is the router's to refuse (415/413), as for any request.
  if (request.headers["transfer-encoding"] !== undefined || Number(request.headers["content-length"] ?? "0") !== 0) return undefined
  const end = url.indexOf("?")
  const id = url.slice(PREFIX.length, end === -1 ? undefined : end)
  // Percent-encoded ids are decoded by the router: leave them to it.
  if (id.length === 0 || id.length > MAX_ID || id.includes("/") || id.includes("%")) return undefined
  return id
}

/** An HTTP refusal written on the raw socket (the upgrade never happened), in the contract's error shape. */
const refuseOn = (socket: Duplex, error: Errors.WireError): number => {
  const status = Errors.statusOf(error)
  const body = JSON.stringify(encodeWireError(error))
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
    )
  }
  // A client that does not read its refusal is not waited for.
  setTimeout(() => socket.destroy(), 1_000).unref()
  return status
}

/**
 * Upgrade work scheduled so that accepting connections comes first.
 *
 * Node's libuv accepts one connection per poll of the listening socket, so connections are
 * accepted at the rate of event-loop turns. An upgrade costs this thread ~0.6-1 ms (checks,
 * session, hello, replay); done as it arrives, every turn carries about one, connections are
 * accepted no faster than they are served, and in a wave of thousands the kernel's accept queue
 * (≤ somaxconn, 4,096 by default) stays full: the clients it drops retry their handshake after
 * 1, 3, 7, 15 s, and the last ones set the wave's time. Measured in a 10,000-socket wave
 * (`bench/resilience.mjs`, docs/benchmarks.md): 45,000-60,000 dropped SYNs and 10-20 s, by
 * luck of the retry timers.
 *
 * Here upgrades wait in arrival order; a turn in which a connection was accepted (`accepts`
 * moved) does no upgrade work, up to `MAX_SKIPS` turns in a row, so the queue is drained into
 * this process while the upgrades are served, at most `SLICE_MS` of them per turn. Measured
 * the same way, three runs: 5,000-14,000 dropped SYNs (most in the first burst), 5.6-6.6 s, and
 * 0.58-0.70 ms per upgrade instead of 1 ms (the retries' work is gone). Hand-written, not an
 * Effect queue: it decides per loop turn and must not add fibers on this path.
 */
const makeAcceptFirst = (accepts: () => number) => {
  let queue: Array<() => void> = []
  let head = 0
  let scheduled = false
  let seen = accepts()
  let skipped = 0
  const drain = () => {
    const now = accepts()
    if (now !== seen && skipped < MAX_SKIPS) {
      seen = now
      skipped++
      setImmediate(drain)
      return
    }
    seen = now
    skipped = 0
    const until = performance.now() + SLICE_MS
    while (head < queue.length) {
      const job = queue[head]!
      queue[head++] = undefined as never
      job()
      if (performance.now() >= until) break
    }
    if (head < queue.length) {
      if (head > 1024) {
        queue = queue.slice(head)
        head = 0
      }
      setImmediate(drain)
    } else {
      queue = []
      head = 0
      scheduled = false
    }
  }
  return (job: () => void) => {
    queue.push(job)
    if (!scheduled) {
      scheduled = true
      setImmediate(drain)
    }
  }
}

/** Upgrade work per loop turn, and turns in a row given to accepting (see `makeAcceptFirst`). */
const SLICE_MS = 1
const MAX_SKIPS = 7

interface Live {
  readonly ws: WebSocket
  readonly scope: Scope.CloseableScope
  start: Fiber.RuntimeFiber<void, Errors.WireError> | undefined
  /** The fiber ending the session, once its socket closed or the broker stops. */
  ending: Fiber.RuntimeFiber<void> | undefined
}

/**
 * The Node-level peer channel, in the current scope. Closing the scope (broker shutdown) refuses
 * new upgrades with 503, closes every open peer socket with 1001 and waits for their sessions to
 * end (their peers go offline) — before the stores close. `accepts`: the server's count of
 * accepted connections (`ServerLimits.apply`'s guard), which paces the upgrade work.
 */
export const make = (accepts: () => number): Effect.Effect<
  PeerUpgrade,
  never,
  BrokerConfig | Metrics | Authenticator.Authenticator | Bus | TokenStore | ChannelHub.ChannelHub | Inbox.Inbox | Connections | Scope.Scope
> => Effect.gen(function* () {
  const config = yield* BrokerConfig
  const metrics = yield* Metrics
  const auth = yield* Authenticator.Authenticator
  const sessions = yield* makePeerSessions
  const runtime = yield* Effect.runtime<Effect.Effect.Context<ReturnType<typeof peerTarget>>>()
  const runFork = Runtime.runFork(runtime)
  // The frame limit is `ws`'s own: an oversize frame is refused (1009) before it is buffered.
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.maxBodyBytes, clientTracking: false })
  const live = new Set<Live>()
  let stopping = false

  /**
   * Ends a session once (its socket closed, or the broker stops) and answers the fiber doing it.
   * The entry stays in `live` until its scope closed, so a shutdown that begins while a client's
   * own close is still taking its peer offline waits for that too: the stores close after it.
   */
  const end = (entry: Live): Fiber.RuntimeFiber<void> => {
    if (entry.ending === undefined) {
      const start = entry.start
      entry.ending = runFork(
        Effect.zipRight(start === undefined ? Effect.void : Fiber.interrupt(start), Scope.close(entry.scope, Exit.void)).pipe(
          Effect.ensuring(Effect.sync(() => live.delete(entry)))
        )
      )
    }
    return entry.ending
  }

  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      stopping = true
      const entries = [...live]
      for (const entry of entries) entry.ws.close(ChannelFrame.CloseCode.goingAway, "broker shutting down")
      return Effect.forEach(entries, (entry) => Fiber.await(end(entry)), { discard: true, concurrency: "unbounded" })
    })
  )

  const open = (target: PeerTarget, ws: WebSocket, stream: Duplex) => {
    // `ws` gave up on the handshake (invalid headers, or the client left during the checks).
    if (stopping || ws.readyState !== WebSocket.OPEN) {
      if (ws.readyState === WebSocket.OPEN) ws.close(ChannelFrame.CloseCode.goingAway, "broker shutting down")
      return
    }
    const output = wsOutput(ws as unknown as RawSocket, stream)
    const entry: Live = { ws, scope: Effect.runSync(Scope.make()), start: undefined, ending: undefined }
    live.add(entry)
    ws.on("error", () => {}) // an `error` (e.g. 1009 for an oversize frame) is followed by `close`
    ws.on("close", () => {
      output.ended()
      end(entry)
    })
    let session: ChannelSession.ChannelSession
    try {
      session = Runtime.runSync(runtime)(Scope.extend(sessions(target, output), entry.scope))
    } catch {
      // Making a session is synchronous today; should it ever fail, the socket is refused, not the process.
      output.close(1011, "channel could not start; reconnect")
      return
    }
    ws.on("message", (data: Buffer) => session.receive(data))
    entry.start = runFork(
      session.start.pipe(
        // The store is away or the peer is gone: the client reconnects and is told then.
        Effect.catchAllCause((cause) =>
          Effect.sync(() => {
            if (!Cause.isInterruptedOnly(cause)) output.close(1011, "channel could not start; reconnect")
          })
        )
      )
    )
  }

  const later = makeAcceptFirst(accepts)
  const take = (id: string, request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (stopping) {
      metrics.httpRequest(refuseOn(socket, new Errors.ServiceUnavailable({ message: "broker shutting down" })))
      return
    }
    // The client left while this upgrade waited for its turn: nothing to check or answer.
    if (socket.destroyed) return
    const url = new URL(request.url!, "http://broker")
    const check = Effect.flatMap(principalOf(auth, request.headers, url), ({ principal, token }) => peerTarget(principal, token, id, url))
    runFork(check).addObserver((exit) => {
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        const error = failure._tag === "Some" ? failure.value : new Errors.ServiceUnavailable({ message: "the broker could not check this request" })
        metrics.httpRequest(refuseOn(socket, error))
        return
      }
      metrics.httpRequest(101)
      wss.handleUpgrade(request, socket, head, (ws) => open(exit.value, ws, socket))
    })
  }

  const upgrade: PeerUpgrade = (request, socket, head) => {
    const id = peerIdOf(request)
    if (id === undefined) return false
    later(() => take(id, request, socket, head))
    return true
  }
  return upgrade
})
