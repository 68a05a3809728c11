import { Chunk, Clock, Data, Deferred, Effect, Either, HashMap, Option, Ref } from "effect"
import { InboxFull } from "../Errors.js"
import type { PeerId } from "../Ids.js"
import type { InboxService } from "../Inbox.js"
import type { Delivery } from "../Message.js"
import { Message } from "../Message.js"

interface Held {
  readonly message: Message
  /** When it was appended (epoch millis); `prune` retains by this, not by `sentAt`. */
  readonly appendedAt: number
}

interface PeerInbox {
  /** Last seq handed out; kept after prune so a seq is never reused. */
  readonly lastSeq: number
  /** Acked cursor; everything at or below it is acked. */
  readonly cursor: number
  /** Held messages (unacked, and acked ones not yet pruned), in seq order. */
  readonly held: Chunk.Chunk<Held>
}

/** Structural key: equal tuples hash alike, so (tenant, peer) needs no string encoding. */
const keyOf = (tenant: string, peer: PeerId) => Data.tuple(tenant, peer)
type Key = ReturnType<typeof keyOf>
type State = HashMap.HashMap<Key, PeerInbox>

const empty: PeerInbox = { lastSeq: 0, cursor: 0, held: Chunk.empty() }

/** Index of the first held message with `seq > after` (held is sorted by seq). */
const firstAfter = (held: ReadonlyArray<Held>, after: number): number => {
  let lo = 0
  let hi = held.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (held[mid]!.message.seq > after) hi = mid
    else lo = mid + 1
  }
  return lo
}

const DEFAULT_LIMIT = 100

/**
 * The in-memory `Inbox`. All state sits in one `Ref` of persistent maps, so every operation
 * (including an append to many recipients) is a single atomic `Ref.modify`.
 */
export const make = (options: { readonly capacity: number }): Effect.Effect<InboxService> =>
  Effect.gen(function*() {
    const { capacity } = options
    const ref = yield* Ref.make<State>(HashMap.empty())
    // One pending signal per inbox with a waiter; an append completes and removes it.
    const signals = yield* Ref.make(HashMap.empty<Key, Deferred.Deferred<void>>())

    const inboxOf = (state: State, key: Key): PeerInbox =>
      Option.getOrElse(HashMap.get(state, key), () => empty)

    const wake = (keys: ReadonlyArray<Key>) =>
      Ref.modify(signals, (pending) => {
        const woken = keys.flatMap((key) => Option.toArray(HashMap.get(pending, key)))
        return [woken, HashMap.removeMany(pending, keys)] as const
      }).pipe(Effect.flatMap(Effect.forEach((signal) => Deferred.succeed(signal, undefined), { discard: true })))

    /** The signal the next append to `key` completes, created if there is none yet. */
    const signalFor = (key: Key) =>
      Effect.flatMap(Deferred.make<void>(), (fresh) =>
        Ref.modify(signals, (pending) =>
          Option.match(HashMap.get(pending, key), {
            onNone: () => [fresh, HashMap.set(pending, key, fresh)] as const,
            onSome: (existing) => [existing, pending] as const
          })))

    const append: InboxService["append"] = (tenant, recipients, draft) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // A recipient listed twice still gets the message once.
        const unique = Array.from(new Set(recipients))
        const keys = unique.map((peer) => keyOf(tenant, peer))
        const outcome = yield* Ref.modify(ref, (state): readonly [Either.Either<Array<Delivery>, InboxFull>, State] => {
          // Check every recipient before touching any, so a full inbox appends nothing anywhere.
          for (let i = 0; i < keys.length; i++) {
            const inbox = inboxOf(state, keys[i]!)
            if (inbox.lastSeq - inbox.cursor >= capacity) {
              const peer = unique[i]!
              const error = new InboxFull({ message: `the inbox of ${peer} holds ${capacity} unacked messages`, peer, capacity })
              return [Either.left(error), state]
            }
          }
          const deliveries: Array<Delivery> = []
          let next = state
          for (let i = 0; i < keys.length; i++) {
            const inbox = inboxOf(next, keys[i]!)
            const seq = inbox.lastSeq + 1
            // Drafts are typed and built by the caller from decoded input; skip re-validation per recipient.
            const message = new Message({ ...draft, seq }, true)
            deliveries.push({ recipient: unique[i]!, message })
            next = HashMap.set(next, keys[i]!, {
              ...inbox,
              lastSeq: seq,
              held: Chunk.append(inbox.held, { message, appendedAt: now })
            })
          }
          return [Either.right(deliveries), next]
        })
        const deliveries = yield* outcome
        yield* wake(keys)
        return deliveries
      })

    const read: InboxService["read"] = (tenant, peer, options) =>
      Effect.map(Ref.get(ref), (state) => {
        const inbox = inboxOf(state, keyOf(tenant, peer))
        // Acked messages are never returned, whatever `after` says.
        const after = Math.max(options?.after ?? inbox.cursor, inbox.cursor)
        const limit = Math.max(0, options?.limit ?? DEFAULT_LIMIT)
        const held = Chunk.toReadonlyArray(inbox.held)
        const start = firstAfter(held, after)
        return { messages: held.slice(start, start + limit).map((h) => h.message), cursor: inbox.cursor }
      })

    const wait: InboxService["wait"] = (tenant, peer, options) =>
      Effect.gen(function*() {
        // Take the signal before reading: an append after the read then always completes it.
        const signal = yield* signalFor(keyOf(tenant, peer))
        const page = yield* read(tenant, peer, options)
        if (page.messages.length > 0) return page
        yield* Effect.timeoutOption(Deferred.await(signal), options.timeout)
        return yield* read(tenant, peer, options)
      })

    const ack: InboxService["ack"] = (tenant, peer, upTo) =>
      Ref.modify(ref, (state) => {
        const key = keyOf(tenant, peer)
        const inbox = inboxOf(state, key)
        const cursor = Math.max(inbox.cursor, Math.min(Math.floor(upTo), inbox.lastSeq))
        return cursor === inbox.cursor
          ? [{ cursor }, state] as const
          : [{ cursor }, HashMap.set(state, key, { ...inbox, cursor })] as const
      })

    const cursor: InboxService["cursor"] = (tenant, peer) =>
      Effect.map(Ref.get(ref), (state) => inboxOf(state, keyOf(tenant, peer)).cursor)

    const depth: InboxService["depth"] = (tenant, peer) =>
      Effect.map(Ref.get(ref), (state) => {
        // Unacked messages are never pruned, so they are exactly the seqs after the cursor.
        const inbox = inboxOf(state, keyOf(tenant, peer))
        return inbox.lastSeq - inbox.cursor
      })

    const find: InboxService["find"] = (tenant, peer, id) =>
      Effect.map(Ref.get(ref), (state) =>
        Chunk.findFirst(inboxOf(state, keyOf(tenant, peer)).held, (h) => h.message.id === id).pipe(
          Option.map((h) => h.message)
        ))

    const drop: InboxService["drop"] = (tenant, peer) => {
      const key = keyOf(tenant, peer)
      // Waiters on a dropped inbox return (empty) now rather than at their timeout.
      return Effect.zipRight(Ref.update(ref, HashMap.remove(key)), wake([key]))
    }

    const prune: InboxService["prune"] = (cutoff) =>
      Ref.modify(ref, (state) => {
        let removed = 0
        let next = state
        for (const [key, inbox] of state) {
          const kept = Chunk.filter(inbox.held, (h) => h.message.seq > inbox.cursor || h.appendedAt >= cutoff)
          if (kept.length !== inbox.held.length) {
            removed += inbox.held.length - kept.length
            next = HashMap.set(next, key, { ...inbox, held: kept })
          }
        }
        return [removed, next] as const
      })

    return { append, read, wait, ack, cursor, depth, find, drop, prune } satisfies InboxService
  })
