/**
 * Inbox: each recipient's durable, ordered queue of messages. A message stays until the
 * recipient acks a cursor at or past its `seq`; acked messages are pruned after a retention
 * period. The number of unacked messages per recipient is bounded (`InboxFull`).
 */
import { Context, Duration, Effect, Layer, Option } from "effect"
import * as internal from "./internal/inboxMemory.js"
import { InboxFull, PeerNotFound, ServiceUnavailable } from "./Errors.js"
import type { MessageId, PeerId } from "./Ids.js"
import type { Delivery, InboxCursor, InboxPage, Message, MessageDraft } from "./Message.js"

export interface ReadOptions {
  /** Return messages with `seq > after`; defaults to the acked cursor. */
  readonly after?: number | undefined
  /** At most this many messages (default 100). */
  readonly limit?: number | undefined
}

export interface InboxService {
  /**
   * Append one draft to every recipient's inbox, each with its next seq. All or nothing: if
   * any recipient's inbox is full, nothing is appended and the error names that recipient.
   * A store that checks the recipient of a direct message (`draft.to`) as it commits (the
   * broker's PostgreSQL store) refuses one to a peer that no longer exists with `PeerNotFound`.
   */
  readonly append: (tenant: string, recipients: ReadonlyArray<PeerId>, draft: MessageDraft) => Effect.Effect<ReadonlyArray<Delivery>, InboxFull | PeerNotFound | ServiceUnavailable>
  /**
   * Optional, for stores that commit in batches: queue the append now and return at once with
   * its outcome to await (the outcome `append` would have). Appends staged one after another
   * are committed in that order, so a channel can stage a socket's next send while the previous
   * one waits for its commit (docs/protocol.md, "Pipelined sends"). Without it, `append`.
   */
  readonly appendStaged?:
    | ((tenant: string, recipients: ReadonlyArray<PeerId>, draft: MessageDraft) => Effect.Effect<Effect.Effect<ReadonlyArray<Delivery>, InboxFull | PeerNotFound | ServiceUnavailable>>)
    | undefined
  /** Unacked messages after the cursor, in seq order. */
  readonly read: (tenant: string, peer: PeerId, options?: ReadOptions) => Effect.Effect<InboxPage, ServiceUnavailable>
  /** Like `read`, but when nothing is there waits up to `timeout` for an append (long-poll). */
  readonly wait: (tenant: string, peer: PeerId, options: ReadOptions & { readonly timeout: Duration.DurationInput }) => Effect.Effect<InboxPage, ServiceUnavailable>
  /** Ack everything up to `upTo` (clamped to the last seq); idempotent, never moves backwards. */
  readonly ack: (tenant: string, peer: PeerId, upTo: number) => Effect.Effect<InboxCursor, ServiceUnavailable>
  /** The acked cursor (0 before any ack). */
  readonly cursor: (tenant: string, peer: PeerId) => Effect.Effect<number, ServiceUnavailable>
  /** Number of unacked messages. */
  readonly depth: (tenant: string, peer: PeerId) => Effect.Effect<number, ServiceUnavailable>
  /** A message still held in the peer's inbox (acked but not yet pruned, or unacked). */
  readonly find: (tenant: string, peer: PeerId, id: MessageId) => Effect.Effect<Option.Option<Message>, ServiceUnavailable>
  /** Forget a peer's inbox entirely (on unregister). */
  readonly drop: (tenant: string, peer: PeerId) => Effect.Effect<void, ServiceUnavailable>
  /** Delete acked messages appended before `cutoff` (epoch millis); returns how many. */
  readonly prune: (cutoff: number) => Effect.Effect<number, ServiceUnavailable>
}

export class Inbox extends Context.Tag("@mks/a2a/Inbox")<Inbox, InboxService>() {}

/** Default bound on unacked messages per recipient. */
export const DEFAULT_CAPACITY = 10_000

/** Options of the in-memory inbox. */
export interface MemoryOptions {
  /** Unacked messages per recipient before `InboxFull` (default `DEFAULT_CAPACITY`). */
  readonly capacity?: number | undefined
}

/** A fresh in-memory inbox store. */
export const makeMemory = (options?: MemoryOptions): Effect.Effect<InboxService> =>
  internal.make({ capacity: options?.capacity ?? DEFAULT_CAPACITY })

/** In-memory `Inbox`, for tests and the embedded broker; nothing survives the layer. */
export const layerMemory = (options?: MemoryOptions): Layer.Layer<Inbox> => Layer.effect(Inbox, makeMemory(options))
