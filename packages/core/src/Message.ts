/**
 * Messages between peers, and the inbox cursor protocol.
 *
 * A message is appended to each recipient's inbox with that recipient's next `seq`; it stays
 * there until the recipient acks a cursor at or past it (at-least-once delivery).
 */
import { Schema } from "effect"
import { Meta, MessageId, PeerId, PeerName, Seq, TeamName, ThreadId, Timestamp } from "./Ids.js"

/** Longest message body, in characters (256 KiB). Larger bodies fail decoding at `body`. */
export const MAX_BODY = 262_144

export const Body = Schema.String.pipe(
  Schema.minLength(1, { message: () => "body must not be empty" }),
  Schema.maxLength(MAX_BODY, { message: () => `body must be at most ${MAX_BODY} characters` })
)

/** A delivered message, as one recipient sees it. */
export class Message extends Schema.Class<Message>("Message")({
  id: MessageId,
  /** Position in the recipient's inbox. */
  seq: Seq,
  from: PeerId,
  fromName: PeerName,
  to: Schema.optional(PeerId),
  team: Schema.optional(TeamName),
  body: Schema.String,
  threadId: ThreadId,
  replyTo: Schema.optional(MessageId),
  sentAt: Timestamp,
  meta: Schema.optional(Meta)
}) {}

/** The recipient target: a peer id or name (`to`) or a team (`team`), exactly one. */
const sendFields = {
  to: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128))),
  team: Schema.optional(TeamName),
  body: Body,
  threadId: Schema.optional(ThreadId),
  replyTo: Schema.optional(MessageId),
  meta: Schema.optional(Meta)
}

const exactlyOneTarget = (input: { readonly to?: string | undefined; readonly team?: string | undefined }) =>
  (input.to === undefined) !== (input.team === undefined) ||
  { path: ["to"], message: "exactly one of `to` and `team` is required" }

/** Body of `POST /api/messages`; `from` must be a peer of the caller's principal. */
export const SendMessage = Schema.Struct({ from: PeerId, ...sendFields }).pipe(
  Schema.filter(exactlyOneTarget),
  Schema.annotations({ identifier: "SendMessage" })
)
export type SendMessage = typeof SendMessage.Type

/** The same fields without `from` (implied by the channel), for the `send` channel frame. */
export const SendFields = sendFields
export const exactlyOne = exactlyOneTarget

/** What the sender gets back: the message (with the first recipient's seq) and who got it. */
export const SendResult = Schema.Struct({
  message: Message,
  recipients: Schema.Array(PeerId)
})
export type SendResult = typeof SendResult.Type

/** A message before it is sequenced into inboxes. */
export interface MessageDraft {
  readonly id: MessageId
  readonly from: PeerId
  readonly fromName: string
  readonly to?: PeerId | undefined
  readonly team?: TeamName | undefined
  readonly body: string
  readonly threadId: ThreadId
  readonly replyTo?: MessageId | undefined
  readonly sentAt: string
  readonly meta?: Meta | undefined
}

/** One message as appended to one recipient's inbox. */
export interface Delivery {
  readonly recipient: PeerId
  readonly message: Message
}

/** Query of `GET /api/peers/:id/inbox`. */
export const InboxQuery = Schema.Struct({
  after: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1_000))),
  wait: Schema.optional(Schema.NumberFromString.pipe(Schema.between(0, 60)))
})
export type InboxQuery = typeof InboxQuery.Type

/** An inbox read: unacked messages after the cursor, in seq order. `cursor` is the acked position. */
export const InboxPage = Schema.Struct({
  messages: Schema.Array(Message),
  cursor: Seq
})
export type InboxPage = typeof InboxPage.Type

/** Body of `POST /api/peers/:id/inbox/ack`: everything up to and including `upTo` is acked. */
export const InboxAck = Schema.Struct({ upTo: Seq })

/** The acked cursor after an ack. */
export const InboxCursor = Schema.Struct({ cursor: Seq }).pipe(Schema.annotations({ identifier: "InboxCursor" }))
export type InboxCursor = typeof InboxCursor.Type
