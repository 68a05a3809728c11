/**
 * ServerLimits: the timeouts and the connection cap every listening HTTP socket of a2a (broker,
 * proxy, runner) applies, so that slow-loris and half-open floods cannot hold file descriptors
 * while real clients are served:
 *
 * - `headersTimeout`: a request's headers must arrive within it (else 408 and close);
 * - `requestTimeout`: the whole request, body included, must arrive within it (else 408);
 * - `keepAliveTimeout`: an idle keep-alive connection is closed after it;
 * - `maxPendingConnections`: connections that have not sent a complete request head yet (a
 *   half-open or slow-loris connection). When a new connection would exceed it, the OLDEST one is
 *   answered `503` with `retry-after` and closed: a flood evicts itself, while a real client,
 *   which sends its request at once, is served.
 *
 * - `listenBacklog`: the kernel's accept queue of the listening socket. When a reconnect wave
 *   (every session after an outage) arrives faster than the process accepts, connections beyond
 *   it are dropped by the kernel and their clients retry the handshake only after 1, 3, 7, 15 s;
 *   node's default of 511 turned a 6,000-socket wave into ~43,000 dropped SYNs and a minute of
 *   waiting on an idle broker. The OS caps it (`net.core.somaxconn` on Linux, 4,096 by default).
 *
 * Upgraded (WebSocket) connections leave the count at the upgrade; their sockets have limits
 * of their own (frame size, unread bytes).
 */
import { Config, Effect } from "effect"
import type { IncomingMessage, Server } from "node:http"
import type { Socket } from "node:net"
import { WebSocket, WebSocketServer } from "ws"

export interface ServerLimits {
  /** Milliseconds to receive a request's headers (default 10,000). */
  readonly headersTimeout: number
  /** Milliseconds to receive a whole request, body included (default 30,000). */
  readonly requestTimeout: number
  /** Milliseconds an idle keep-alive connection stays open (default 5,000). */
  readonly keepAliveTimeout: number
  /** Connections without a complete request head yet; the oldest is refused (503) beyond it (default 1,000). */
  readonly maxPendingConnections: number
  /** Seconds in the `retry-after` of a refusal (default 1). */
  readonly retryAfter: number
  /** The listen backlog, capped by the OS (default 4,096; absent = the default). */
  readonly listenBacklog?: number | undefined
}

const DEFAULT_BACKLOG = 4_096

export const defaults: ServerLimits = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  maxPendingConnections: 1_000,
  retryAfter: 1,
  listenBacklog: DEFAULT_BACKLOG
}

/** The listen backlog of `limits` (the default when it has none). */
export const backlog = (limits: ServerLimits): number => limits.listenBacklog ?? DEFAULT_BACKLOG

/**
 * The limits from the environment: `<PREFIX>_HEADERS_TIMEOUT_MS`, `<PREFIX>_REQUEST_TIMEOUT_MS`,
 * `<PREFIX>_KEEP_ALIVE_TIMEOUT_MS`, `<PREFIX>_MAX_PENDING_CONNECTIONS`, `<PREFIX>_LISTEN_BACKLOG`,
 * each defaulting to `base` (default `defaults`).
 */
export const config = (prefix: string, base: ServerLimits = defaults): Config.Config<ServerLimits> =>
  Config.all({
    headersTimeout: Config.integer(`${prefix}_HEADERS_TIMEOUT_MS`).pipe(Config.validate({ message: "must be ≥ 1", validation: (n) => n >= 1 }), Config.withDefault(base.headersTimeout)),
    requestTimeout: Config.integer(`${prefix}_REQUEST_TIMEOUT_MS`).pipe(Config.validate({ message: "must be ≥ 0", validation: (n) => n >= 0 }), Config.withDefault(base.requestTimeout)),
    keepAliveTimeout: Config.integer(`${prefix}_KEEP_ALIVE_TIMEOUT_MS`).pipe(Config.validate({ message: "must be ≥ 1", validation: (n) => n >= 1 }), Config.withDefault(base.keepAliveTimeout)),
    maxPendingConnections: Config.integer(`${prefix}_MAX_PENDING_CONNECTIONS`).pipe(Config.validate({ message: "must be ≥ 1", validation: (n) => n >= 1 }), Config.withDefault(base.maxPendingConnections)),
    retryAfter: Config.succeed(base.retryAfter),
    listenBacklog: Config.integer(`${prefix}_LISTEN_BACKLOG`).pipe(Config.validate({ message: "must be ≥ 1", validation: (n) => n >= 1 }), Config.withDefault(backlog(base)))
  })

/** `config(prefix, base)` read from the process environment now (for CLIs building a config object). */
export const fromEnv = (prefix: string, base: ServerLimits = defaults): ServerLimits => Effect.runSync(config(prefix, base))

/** Options for `http.createServer` that carry the timeouts node checks itself. */
export const serverOptions = (limits: ServerLimits) => ({
  headersTimeout: limits.headersTimeout,
  // node requires requestTimeout ≥ headersTimeout (0 = none).
  requestTimeout: limits.requestTimeout === 0 ? 0 : Math.max(limits.requestTimeout, limits.headersTimeout),
  // How often node looks for connections past those timeouts (its default is 30 s).
  connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(limits.headersTimeout / 2)))
})

const refusal = (retryAfter: number): string => {
  const body = JSON.stringify({ _tag: "ServiceUnavailable", message: "too many connections waiting to be served; retry later" })
  return (
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n" +
    `retry-after: ${retryAfter}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
}

/** How long a closing server lets its open connections (WebSockets included) finish before it destroys them. */
export const DRAIN_MS = 3_000

/** What `apply` installed: the pending count (for metrics and tests). */
export interface Guard {
  readonly pending: () => number
  /** Connections accepted so far (a server that paces its own work by the accept rate reads it). */
  readonly accepted: () => number
  /** Connections refused at the cap so far. */
  readonly refused: () => number
  /**
   * The bookkeeping of an upgrade a server takes before its `upgrade` listeners run (a Node-level
   * WebSocket path): the connection leaves the pending count and its socket gets an `error` listener.
   */
  readonly upgrading: (request: IncomingMessage) => void
}

/**
 * Apply `limits` to `server` (created with `serverOptions(limits)`, or not: the timeouts are set
 * here too) and track pending connections. Call before `listen`; `upgrades` for a server that
 * accepts WebSocket upgrades. Once the server is closed, connections still open after
 * `drainMs` (default `DRAIN_MS`) are destroyed, so a stop cannot hang on a client.
 */
export const apply = (server: Server, limits: ServerLimits, options: { readonly upgrades?: boolean; readonly drainMs?: number } = {}): Guard => {
  const timeouts = serverOptions(limits)
  server.headersTimeout = timeouts.headersTimeout
  server.requestTimeout = timeouts.requestTimeout
  server.keepAliveTimeout = limits.keepAliveTimeout
  // Insertion order: the first is the oldest.
  const pending = new Set<Socket>()
  const open = new Set<Socket>()
  let refused = 0
  let accepted = 0
  const text = refusal(limits.retryAfter)
  // A stop never waits on a client. `server.close()` stops accepting and then waits for every
  // connection to end, upgraded ones included: a WebSocket that reconnected while the server was
  // closing its channels (or a client that never answers the close handshake) would hold the
  // process forever, SIGTERM ignored. What is still open `drainMs` after close() is destroyed.
  const close = server.close.bind(server)
  server.close = ((callback?: (error?: Error) => void) => {
    close(callback)
    if (open.size > 0) setTimeout(() => open.forEach((socket) => socket.destroy()), options.drainMs ?? DRAIN_MS).unref()
    return server
  }) as Server["close"]
  server.on("connection", (socket: Socket) => {
    accepted++
    open.add(socket)
    socket.once("close", () => open.delete(socket))
    while (pending.size >= limits.maxPendingConnections) {
      const oldest = pending.values().next().value as Socket
      pending.delete(oldest)
      refused++
      // A few hundred bytes fit any socket buffer; a peer that never reads is dropped just after.
      if (oldest.writable) oldest.end(text)
      setImmediate(() => oldest.destroy())
    }
    pending.add(socket)
    socket.once("close", () => pending.delete(socket))
  })
  // Served once a request head arrived: a long poll or an event stream is never evicted (a slow
  // body is the request timeout's business).
  server.on("request", (request) => {
    pending.delete(request.socket)
  })
  const upgrading = (request: IncomingMessage) => {
    const socket = request.socket
    pending.delete(socket)
    // Node's server drops its own `error` listener when it hands a socket to `upgrade`, and the
    // WebSocket server adds one only once the (async) checks before the upgrade are done: a
    // client that resets in between was an unhandled `error` event, and the process died.
    socket.on("error", () => socket.destroy())
  }
  // Only for a server that upgrades (an `upgrade` listener makes node hand upgrades to it).
  if (options.upgrades === true) {
    settleAbortedUpgrades()
    server.on("upgrade", upgrading)
  }
  return { pending: () => pending.size, refused: () => refused, accepted: () => accepted, upgrading }
}

const settles = Symbol.for("@mks/a2a/ws-upgrade-settles")

/**
 * Make every `WebSocketServer.handleUpgrade` end in exactly one callback. `ws` gives up on an
 * upgrade whose socket is already dead (the client reset it during the checks before the
 * upgrade), whose headers are invalid, or that arrives while the server closes: it destroys the
 * socket and never calls back. `@effect/platform-node` waits for that callback in an
 * uninterruptible acquire, so each such upgrade left a fiber behind for good (a reset flood grew
 * memory without bound) and a broker that had seen one did not stop on SIGTERM. Here the callback
 * gets an already closed WebSocket instead (its `close` event, code 1006, follows on the next
 * turn), which ends the waiting fiber like a client that left at once. Patches the prototype
 * once per process (every `ws` server in it gets the same guarantee); idempotent.
 */
export const settleAbortedUpgrades = (): void => {
  const proto = WebSocketServer.prototype as unknown as Record<PropertyKey, unknown> & {
    handleUpgrade: (request: unknown, socket: Socket, head: Buffer, cb: (ws: WebSocket, request: unknown) => void) => void
  }
  if (proto[settles] === true) return
  proto[settles] = true
  const handleUpgrade = proto.handleUpgrade
  proto.handleUpgrade = function (this: WebSocketServer, request, socket, head, cb) {
    let settled = false
    const giveUp = () => {
      if (settled) return
      settled = true
      socket.off("close", giveUp)
      const dead = new WebSocket(null as unknown as string, undefined, {}) as WebSocket & { emitClose: () => void }
      cb(dead, request)
      setImmediate(() => dead.emitClose())
    }
    socket.once("close", giveUp)
    handleUpgrade.call(this, request, socket, head, (ws, upgraded) => {
      settled = true
      socket.off("close", giveUp)
      cb(ws, upgraded)
    })
    // Destroyed (and its `close` emitted) before this call: no `close` event is coming any more.
    if (!settled && socket.closed) setImmediate(giveUp)
  }
}

/**
 * Whether a request's `content-type` is JSON (`application/json`, `application/*+json`, any
 * parameters). A body with any other type is refused with 415 before it is read.
 */
export const isJson = (contentType: string | undefined): boolean => {
  if (contentType === undefined) return false
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase()
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"))
}
