/**
 * BrokerClient: the typed client of a broker, as an Effect service.
 *
 * - `api` is derived from the `BrokerApi` definition with `HttpApiClient`, so every endpoint,
 *   payload and wire error is typed exactly as the broker implements it.
 * - `channel(peerId)` opens the peer's live channel (`GET /ws/broker/peer/:id`) for the
 *   lifetime of a scope: it reconnects with backoff, resumes from the acked cursor and drops
 *   replayed duplicates, so consumers see each message once (delivery stays at-least-once
 *   until they ack).
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const client = yield* BrokerClient.BrokerClient
 *   const { peer } = yield* client.api.peers.register({ payload: { name: "alice" } })
 *   const channel = yield* client.channel(peer.id, { autoAck: true })
 *   yield* channel.messages.pipe(Stream.runForEach((m) => Effect.log(m.body)))
 * }).pipe(Effect.scoped, Effect.provide(BrokerClient.layerConfig))
 * ```
 */
import { FetchHttpClient, type HttpApi, type HttpApiClient, type HttpClient } from "@effect/platform"
import { type ConfigError, Context, type Duration, Effect, Layer, type Redacted, type Scope, type Stream, type Subscribable } from "effect"
import type { BrokerApi } from "./BrokerApi.js"
import type { PeerEvent, PresenceMode, Send } from "./ChannelFrame.js"
import type { WireError } from "./Errors.js"
import type { PeerId } from "./Ids.js"
import * as internal from "./internal/brokerClient.js"
import { ChannelClosed } from "./internal/channel.js"
import type { Message, SendResult } from "./Message.js"
import type { Peer } from "./Peer.js"

export { ChannelClosed }

/** Where the broker is and how to authenticate. */
export interface Options {
  /** Base URL of the broker, e.g. `http://127.0.0.1:4200` (a path prefix is kept). */
  readonly url: string | URL
  /** Bearer token sent on every request and on the channel's upgrade request. */
  readonly token: string | Redacted.Redacted<string>
}

/** The typed HTTP client of every `BrokerApi` group (`api.peers.register(...)`, `api.healthz()`, …). */
export type Api = typeof BrokerApi extends HttpApi.HttpApi<infer _Id, infer Groups, infer E, infer _R>
  ? HttpApiClient.Client<Groups, E, never>
  : never

/** `connecting` until the broker's `hello`, `open` while live, `closed` for good. */
export type ChannelState = "connecting" | "open" | "closed"

/** Fields of a `send` frame: `POST /api/messages` without `from` (the channel's peer), plus an optional `ref`. */
export type SendInput = Omit<typeof Send.Type, "type">

export interface ChannelOptions {
  /**
   * Replay unacked messages after this seq on the first connect. Defaults to the broker's
   * acked cursor. Reconnects always resume from the last acked cursor.
   */
  readonly after?: number | undefined
  /** Ack each message as soon as it is taken from `messages` (default `false`). */
  readonly autoAck?: boolean | undefined
  /** Interval of `heartbeat` frames while the socket is open (default 20 seconds). */
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /**
   * Presence events wanted on `events` (`?presence=` on the socket): `all` (the default) one
   * `peer_joined`/`peer_left`/`peer_updated` per change, `batched` coalesced `peers_changed`
   * events, `none` no presence events (team and spawn events still arrive). Peers that do not
   * show presence should ask for `none`: a fleet reconnecting then costs the broker O(N) frames.
   */
  readonly presence?: PresenceMode | undefined
}

/** A peer's live channel; valid until its scope closes. */
export interface Channel {
  readonly peerId: PeerId
  /**
   * Messages in seq order, each once per channel even across reconnects and replays. Meant
   * for one consumer; buffered until taken. Ends when the scope closes, fails with
   * `ChannelClosed` when the broker refuses the peer for good (close code 4001 unregistered, 4003
   * credentials revoked, or an upgrade refused with 401/403/404).
   */
  readonly messages: Stream.Stream<Message, ChannelClosed>
  /** Live events of the tenant (not replayed; the latest 1024 are buffered for a slow reader). */
  readonly events: Stream.Stream<PeerEvent, ChannelClosed>
  /**
   * Send as this peer; waits for the channel to be open, then for the broker's `sent` answer
   * (or its `error`, as the typed wire error). `ChannelClosed` with reason `disconnected`
   * means the socket dropped after the frame left: the message may or may not have been sent.
   */
  readonly send: (input: SendInput) => Effect.Effect<SendResult, WireError | ChannelClosed>
  /**
   * Ack everything up to `upTo`. Never moves the cursor backwards; while disconnected the
   * cursor is kept and sent again after the next `hello`.
   */
  readonly ack: (upTo: number) => Effect.Effect<void, ChannelClosed | WireError>
  /** The last acked seq known to this client (0 until the first `hello` or ack). */
  readonly cursor: Effect.Effect<number>
  readonly state: Subscribable.Subscribable<ChannelState>
  /** The peer as the last `hello` frame showed it; waits for the first one. */
  readonly hello: Effect.Effect<Peer, ChannelClosed>
  /** Waits until the channel is closed for good, and says why. */
  readonly closed: Effect.Effect<ChannelClosed>
}

export interface BrokerClientService {
  /** The broker's base URL. */
  readonly url: URL
  readonly api: Api
  /** Open `peerId`'s channel for the lifetime of the scope; closing the scope closes the socket (1000). */
  readonly channel: (peerId: PeerId, options?: ChannelOptions) => Effect.Effect<Channel, never, Scope.Scope>
}

export class BrokerClient extends Context.Tag("@mks/a2a/BrokerClient")<BrokerClient, BrokerClientService>() {}

/** Build the client on the given `HttpClient`. */
export const make: (options: Options) => Effect.Effect<BrokerClientService, never, HttpClient.HttpClient> = internal.make

/** The client over the platform's `fetch`. */
export const layer = (options: Options): Layer.Layer<BrokerClient> =>
  Layer.effect(BrokerClient, make(options)).pipe(Layer.provide(FetchHttpClient.layer))

/** Default broker URL when `A2A_BROKER_URL` is not set. */
export const DEFAULT_URL: string = internal.DEFAULT_URL

/**
 * Options from the environment: `A2A_BROKER_URL` (default {@link DEFAULT_URL}) and
 * `A2A_TOKEN`, else the trimmed contents of `$A2A_HOME/broker.token` (`~/.a2a/broker.token`).
 * Fails with a `ConfigError` naming both places when neither holds a token.
 */
export const readConfig: Effect.Effect<Options, ConfigError.ConfigError> = internal.readConfig

/** {@link layer} with options read by {@link readConfig}. */
export const layerConfig: Layer.Layer<BrokerClient, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(internal.readConfig, layer)
)
