/**
 * Connections: the open peer channel sockets of this process, and the one background fiber
 * each that serves all of them (instead of fibers per socket):
 *
 * - keep-alive: every third of the peer timeout, every peer with an open socket is touched, so
 *   GC never expires a connected peer although its client sends no heartbeats;
 * - revocation: every `TOKEN_POLL_MS`, the static tokens in force are read (the token file is
 *   reloaded when the CLI changed it) and every socket opened with a token no longer there is
 *   closed with 4003 (`REVOKED_CLOSE_CODE`).
 */
import { Ids, PeerRegistry } from "@mks/a2a"
import { ScopedSync } from "@mks/a2a/internal"
import { Context, Effect, Layer, Schedule, Scope } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { TokenStore } from "./TokenStore.js"
import { keyOf } from "./TenantKey.js"

/** Close code of a socket whose static token was revoked: do not reconnect with that token. */
export const REVOKED_CLOSE_CODE = 4003

/** Peers touched per turn of the event loop by the keep-alive sweep. */
const KEEP_ALIVE_CHUNK = 50

/** How often the token file is checked for revocations. */
export const TOKEN_POLL_MS = 1_000

/** One open socket, as the sweeps see it. */
export interface Connection {
  readonly tenant: string
  readonly peer: Ids.PeerId
  /** The static token the socket was opened with, if it was one (watched for revocation). */
  readonly tokenId: string | undefined
  /** Close the socket (idempotent, never blocks). */
  readonly close: (code: number, reason: string) => void
}

export interface ConnectionsService {
  /** Track `connection` for the lifetime of the scope. */
  readonly add: (connection: Connection) => Effect.Effect<void, never, Scope.Scope>
  /** Open sockets. */
  readonly size: Effect.Effect<number>
  /** Close now the sockets whose static token is no longer in force; how many were closed. */
  readonly closeRevoked: Effect.Effect<number>
}

export class Connections extends Context.Tag("@mks/a2a-broker/Connections")<Connections, ConnectionsService>() {}

export const make = Effect.gen(function* () {
  const config = yield* BrokerConfig
  const peers = yield* PeerRegistry.PeerRegistry
  const tokens = yield* TokenStore
  /** tenant+peer → its sockets (a peer may have several). */
  const byPeer = new Map<string, Set<Connection>>()
  /** static token id → sockets opened with it. */
  const byToken = new Map<string, Set<Connection>>()

  const index = <K>(map: Map<K, Set<Connection>>, key: K, connection: Connection) => {
    const set = map.get(key)
    if (set === undefined) map.set(key, new Set([connection]))
    else set.add(connection)
  }
  const unindex = <K>(map: Map<K, Set<Connection>>, key: K, connection: Connection) => {
    const set = map.get(key)
    if (set === undefined) return
    set.delete(connection)
    if (set.size === 0) map.delete(key)
  }

  // A plain scope finalizer (core's ScopedSync): one per peer socket, run when it closes.
  const add = (connection: Connection) =>
    ScopedSync.resource(
      () => {
        index(byPeer, keyOf(connection.tenant, connection.peer), connection)
        if (connection.tokenId !== undefined) index(byToken, connection.tokenId, connection)
      },
      () => {
        unindex(byPeer, keyOf(connection.tenant, connection.peer), connection)
        if (connection.tokenId !== undefined) unindex(byToken, connection.tokenId, connection)
      }
    )

  const closeRevoked = Effect.gen(function* () {
    if (byToken.size === 0) return 0
    const active = yield* tokens.activeIds
    let closed = 0
    for (const [id, connections] of Array.from(byToken)) {
      if (active.has(id)) continue
      byToken.delete(id)
      for (const connection of connections) {
        connection.close(REVOKED_CLOSE_CODE, "credentials revoked")
        closed++
      }
    }
    if (closed > 0) yield* Effect.logInfo(`closed ${closed} socket(s) of revoked token(s)`)
    return closed
  })

  /**
   * Touch every connected peer (a peer with several sockets once), `KEEP_ALIVE_CHUNK` at a
   * time with a turn of the event loop in between, so thousands of sockets never stall it.
   */
  const keepAlive = Effect.suspend(() => {
    const connected = Array.from(byPeer.values(), (set) => set.values().next().value as Connection)
    const chunks: Array<Array<Connection>> = []
    for (let i = 0; i < connected.length; i += KEEP_ALIVE_CHUNK) chunks.push(connected.slice(i, i + KEEP_ALIVE_CHUNK))
    return Effect.forEach(
      chunks,
      (chunk) =>
        Effect.zipRight(
          // A peer unregistered meanwhile (its sockets are being closed) or a store hiccup: the next round retries.
          // A peer whose last socket closed since the sweep began is offline now: not touched back online.
          Effect.forEach(chunk, (c) => (byPeer.has(keyOf(c.tenant, c.peer)) ? Effect.catchAllCause(peers.touch(c.tenant, c.peer), () => Effect.void) : Effect.void), { discard: true }),
          Effect.sleep(0)
        ),
      { discard: true }
    )
  })

  yield* keepAlive.pipe(
    // A third of the timeout, whatever the timeout: a floor above it would let GC expire open sockets.
    Effect.repeat(Schedule.spaced(Math.max(10, Math.floor(config.peerTimeout / 3)))),
    Effect.forkScoped
  )
  yield* closeRevoked.pipe(
    Effect.catchAllCause((cause) => Effect.as(Effect.logWarning(cause), 0)),
    Effect.repeat(Schedule.spaced(TOKEN_POLL_MS)),
    Effect.forkScoped
  )

  return {
    add,
    size: Effect.sync(() => {
      let n = 0
      for (const set of byPeer.values()) n += set.size
      return n
    }),
    closeRevoked
  } satisfies ConnectionsService
})

/** The registry, with its keep-alive and revocation fibers running for the layer's lifetime. */
export const layer = Layer.scoped(Connections, make)
