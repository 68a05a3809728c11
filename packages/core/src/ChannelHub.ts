/**
 * ChannelHub: live subscriptions of connected peers. The inbox is the source of truth; the
 * hub only wakes whoever is connected now. A subscriber that falls too far behind is cut
 * off with `SlowConsumer` (the broker closes its socket with 4008; the client reconnects and
 * replays from its inbox), so one slow peer never grows memory without bound.
 */
import { Context, Effect, Layer, Scope, Stream } from "effect"
import * as internal from "./internal/channelHubMemory.js"
import type { PeerEvent } from "./ChannelFrame.js"
import type { PeerId } from "./Ids.js"
import type { Delivery, Message } from "./Message.js"

/** What a subscription yields: a message for this peer or an event of its tenant. */
export type ChannelItem =
  | { readonly type: "message"; readonly message: Message }
  | { readonly type: "event"; readonly event: PeerEvent }

/**
 * A synchronous receiver of channel items, called inside `publish`/`publishEvent` (so it sees
 * items in publish order, with no queue or fiber of its own). It must not block or throw; a
 * sink that cannot keep up handles that itself (the broker closes the socket with 4008).
 */
export type ChannelSink = (item: ChannelItem) => void

/** How a sink is attached. */
export interface AttachOptions {
  /**
   * Whether the tenant's presence events (`peers_changed`, `peer_joined`, `peer_left`,
   * `peer_updated`) reach this sink (default `true`). With `false` only those that name the
   * sink's own peer do (so a session still learns that its peer was unregistered): a socket
   * that asked for `presence=none` costs nothing when thousands of peers come and go.
   */
  readonly presence?: boolean | undefined
}

export { SlowConsumer } from "./internal/slowConsumer.js"
import type { SlowConsumer } from "./internal/slowConsumer.js"

export interface ChannelHubService {
  /** Subscribe for the lifetime of the scope; several subscriptions per peer are allowed. */
  readonly subscribe: (tenant: string, peer: PeerId) => Effect.Effect<Stream.Stream<ChannelItem, SlowConsumer>, never, Scope.Scope>
  /**
   * Like `subscribe`, but items are handed to `sink` synchronously at publish time instead of
   * being buffered for a Stream: for a consumer that writes straight to a socket.
   */
  readonly attach: (tenant: string, peer: PeerId, sink: ChannelSink, options?: AttachOptions) => Effect.Effect<void, never, Scope.Scope>
  /** Push each delivery to its recipient's live subscriptions (no-op for peers not connected). */
  readonly publish: (tenant: string, deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void>
  /** Push an event to the given peers, or to every subscribed peer of the tenant. */
  readonly publishEvent: (tenant: string, event: PeerEvent, to?: ReadonlyArray<PeerId>) => Effect.Effect<void>
  /** Whether the peer has at least one live subscription. */
  readonly isConnected: (tenant: string, peer: PeerId) => Effect.Effect<boolean>
  /** Live subscriptions across all tenants (for metrics). */
  readonly connections: Effect.Effect<number>
}

export class ChannelHub extends Context.Tag("@mks/a2a/ChannelHub")<ChannelHub, ChannelHubService>() {}

/** Default per-subscription buffer before a subscriber counts as slow. */
export const DEFAULT_BUFFER = 4_096

/** Options of the in-memory hub. */
export interface MemoryOptions {
  /** Items buffered per subscription before it is cut off as slow (default `DEFAULT_BUFFER`). */
  readonly buffer?: number | undefined
}

/** A fresh in-memory hub. */
export const makeMemory = (options?: MemoryOptions): Effect.Effect<ChannelHubService> =>
  internal.make({ buffer: options?.buffer ?? DEFAULT_BUFFER })

/** In-memory `ChannelHub` (one process); the broker's live channels use it. */
export const layerMemory = (options?: MemoryOptions): Layer.Layer<ChannelHub> => Layer.effect(ChannelHub, makeMemory(options))
