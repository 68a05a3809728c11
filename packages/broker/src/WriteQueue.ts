/**
 * The queue of a group commit, shared by the SQLite inbox (`SqlStore`, `groupCommit`) and the
 * PostgreSQL one (`PgGroupCommit`): inbox writes wait here, one writer takes everything queued
 * after the current I/O phase (`setImmediate`) and commits it as one batch, and writes that
 * arrive meanwhile form the next batch. Each caller is resumed by its write's `done` once the
 * batch's transaction is decided.
 */
import type { Errors, Ids, Message } from "@mks/a2a"
import { Effect, Runtime } from "effect"

/** Resumes the fiber waiting for a queued write. */
export type Answer<A, E = never> = (outcome: Effect.Effect<A, E>) => void

/** A write waiting for the next group commit; settled only after its transaction committed. */
export type PendingWrite =
  | {
      readonly kind: "append"
      readonly tenant: string
      readonly recipients: ReadonlyArray<Ids.PeerId>
      readonly draft: Message.MessageDraft
      readonly data: string
      readonly now: number
      readonly done: Answer<ReadonlyArray<Message.Delivery>, Errors.InboxFull | Errors.PeerNotFound>
    }
  | { readonly kind: "ack"; readonly tenant: string; readonly peer: Ids.PeerId; readonly upTo: number; readonly done: Answer<Message.InboxCursor> }
  | { readonly kind: "drop"; readonly tenant: string; readonly peer: Ids.PeerId; readonly done: Answer<void> }

/** Queues writes for the next group commit (see `make`). */
export interface Enqueue<W> {
  /** Queue a write and await its answer. */
  <A, E>(write: (done: Answer<A, E>) => W): Effect.Effect<A, E>
  /**
   * Queue a write now and return at once with its answer to await: writes staged one after
   * another are in the queue, hence committed, in that order (a socket pipelines its sends).
   */
  readonly stage: <A, E>(write: (done: Answer<A, E>) => W) => Effect.Effect<Effect.Effect<A, E>>
}

/**
 * `enqueue`, which queues a write for the next batch (after the current I/O phase, or after the
 * batch in flight) and awaits its answer. `commit` must answer every write of its batch. The
 * inboxes queue `PendingWrite`s; the SQLite peer registry queues its status updates the same way.
 */
export const make = <W = PendingWrite>(commit: (batch: ReadonlyArray<W>) => Effect.Effect<void>, runtime: Runtime.Runtime<never>): Enqueue<W> => {
  let queue: Array<W> = []
  let scheduled = false
  const drain: Effect.Effect<void> = Effect.suspend(() => {
    const batch = queue
    queue = []
    return commit(batch).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          if (queue.length > 0) setImmediate(startDrain)
          else scheduled = false
        })
      )
    )
  })
  const startDrain = () => {
    Runtime.runFork(runtime)(drain)
  }
  const push = (write: W) => {
    queue.push(write)
    if (!scheduled) {
      scheduled = true
      setImmediate(startDrain)
    }
  }
  const enqueue = <A, E>(write: (done: Answer<A, E>) => W): Effect.Effect<A, E> => Effect.async<A, E>((resume) => push(write(resume)))
  const stage = <A, E>(write: (done: Answer<A, E>) => W): Effect.Effect<Effect.Effect<A, E>> =>
    Effect.sync(() => {
      let outcome: Effect.Effect<A, E> | undefined
      let waiting: Answer<A, E> | undefined
      push(
        write((o) => {
          if (waiting !== undefined) waiting(o)
          else outcome = o
        })
      )
      return Effect.async<A, E>((resume) => {
        if (outcome !== undefined) resume(outcome)
        else waiting = resume
      })
    })
  return Object.assign(enqueue, { stage })
}
