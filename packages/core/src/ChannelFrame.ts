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
import { Task, TaskChange } from "./Task.js"

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
/**
 * Presence changes of the tenant since the last such frame, coalesced (sent at most once per
 * broker presence interval, 100 ms by default): each peer appears once, in the list of its
 * latest change. Only sockets opened with `?presence=batched` get it, instead of one
 * `peer_joined` / `peer_left` / `peer_updated` frame per change.
 */
export const PeersChanged = typed("peers_changed", {
  joined: Schema.Array(Peer),
  left: Schema.Array(Peer),
  updated: Schema.Array(Peer),
  at: Timestamp
})

/**
 * A task of one of the peer's teams changed (docs/tasks.md): sent to every member of the task's
 * team, so an idle agent wakes when work appears (`created`, `released`, `lease_expired`, a
 * `failed` that went back to `open`) and a creator learns the outcome (`done`, `failed`).
 * Clients that predate it skip the frame (`BrokerClient` skips frames it cannot decode).
 */
export const TaskEvent = typed("task", { change: TaskChange, task: Task, at: Timestamp })

/**
 * How a channel socket wants presence (`?presence=` on the channel URL): `all` (the default,
 * for clients that predate it) one event per change, `batched` coalesced `peers_changed`
 * events, `none` no presence events at all (team and spawn events still arrive).
 */
export const PresenceMode = Schema.Literal("all", "batched", "none")
export type PresenceMode = typeof PresenceMode.Type

/** Something that happened in the tenant, pushed to interested peers. */
export const PeerEvent = Schema.Union(PeerJoined, PeerLeft, PeerUpdated, TeamChanged, SpawnStatusChanged, PeersChanged, TaskEvent).pipe(
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
