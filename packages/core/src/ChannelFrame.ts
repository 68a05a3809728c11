/**
 * Frames of a peer's live channel, `GET /ws/broker/peer/:id?after=<seq>`, both directions.
 * Every frame is a JSON text message with a `type`.
 */
import { Schema } from "effect"
import { typed } from "./internal/frame.js"
import { WireError } from "./Errors.js"
import { PeerId, Seq, TeamName, Timestamp } from "./Ids.js"
import { exactlyOne, Message, SendFields } from "./Message.js"
import { Peer } from "./Peer.js"
import { Spawn } from "./Spawn.js"

// ---- events ---------------------------------------------------------------------------------

export const PeerJoined = typed("peer_joined", { peer: Peer, at: Timestamp })
export const PeerLeft = typed("peer_left", { peer: Peer, at: Timestamp })
export const PeerUpdated = typed("peer_updated", { peer: Peer, at: Timestamp })
export const TeamChanged = typed("team_changed", {
  team: TeamName,
  change: Schema.Literal("created", "joined", "left"),
  peerId: Schema.optional(PeerId),
  at: Timestamp
})
export const SpawnStatusChanged = typed("spawn_status", { spawn: Spawn, at: Timestamp })

/** Something that happened in the tenant, pushed to interested peers. */
export const PeerEvent = Schema.Union(PeerJoined, PeerLeft, PeerUpdated, TeamChanged, SpawnStatusChanged).pipe(
  Schema.annotations({ identifier: "PeerEvent" })
)
export type PeerEvent = typeof PeerEvent.Type

// ---- server → client ------------------------------------------------------------------------

/** First frame: who you are and your acked cursor; replayed messages follow. */
export const Hello = typed("hello", { peer: Peer, cursor: Seq })
export const MessageFrame = typed("message", { message: Message })
export const EventFrame = typed("event", { event: PeerEvent })
/** Answer to a `send` frame that carried a `ref`. */
export const Sent = typed("sent", {
  ref: Schema.optional(Schema.String),
  message: Message,
  recipients: Schema.Array(PeerId)
})
/** Answer to an ack: the new acked cursor. */
export const Acked = typed("acked", { cursor: Seq })
/** A client frame was refused; the channel stays open. */
export const ErrorFrame = typed("error", { ref: Schema.optional(Schema.String), error: WireError })

export const ServerFrame = Schema.Union(Hello, MessageFrame, EventFrame, Sent, Acked, ErrorFrame).pipe(
  Schema.annotations({ identifier: "ChannelServerFrame" })
)
export type ServerFrame = typeof ServerFrame.Type

// ---- client → server ------------------------------------------------------------------------

export const Ack = typed("ack", { upTo: Seq })
/** Send a message as the channel's peer; `ref` correlates the `sent`/`error` answer. */
export const Send = typed("send", { ...SendFields, ref: Schema.optional(Schema.String.pipe(Schema.maxLength(128))) }).pipe(
  Schema.filter(exactlyOne)
)
export const Heartbeat = typed("heartbeat", {})

export const ClientFrame = Schema.Union(Ack, Send, Heartbeat).pipe(
  Schema.annotations({ identifier: "ChannelClientFrame" })
)
export type ClientFrame = typeof ClientFrame.Type

/** JSON text ↔ frame codecs for either end of the socket. */
export const ServerFrameJson = Schema.parseJson(ServerFrame)
export const ClientFrameJson = Schema.parseJson(ClientFrame)

/** WebSocket close codes used by the broker. */
export const CloseCode = {
  /** Normal close by either side. */
  normal: 1000,
  /** Broker shutting down; reconnect to it (or another instance) later. */
  goingAway: 1001,
  /** The peer was unregistered; do not reconnect. */
  unregistered: 4001,
  /** The credentials the socket was opened with were revoked; do not reconnect with them. */
  revoked: 4003,
  /** The client could not keep up with live frames; reconnect and replay from the inbox. */
  slowConsumer: 4008
} as const
