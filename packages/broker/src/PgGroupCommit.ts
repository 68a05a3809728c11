/**
 * Group commit of inbox writes on PostgreSQL (see docs/scaling.md, "Group commit").
 *
 * Appends (direct and team), acks and drops that arrive while a transaction is in flight are
 * queued; the single writer of this instance then writes the whole queue as ONE transaction:
 *
 *  1. lock: one upsert over every inbox the batch appends to or acks (`ON CONFLICT DO UPDATE`
 *     that changes nothing, sorted by key so two instances lock in the same order) returns each
 *     inbox's `last_seq` and `cursor` and holds its row lock until commit — seqs of one
 *     recipient are still assigned and committed in order whichever instance writes;
 *  2. the batch is applied in memory, in queue order (capacity checked per send, all or
 *     nothing across a team send's recipients);
 *  3. write: one statement inserts every message row, upserts every changed inbox state and
 *     sends the batch's wake-up notification(s) (`pg_notify`, delivered at commit); a drop in
 *     the batch first writes what precedes it, then deletes the inbox in one statement.
 *
 * Every caller is answered only after the commit. Rows travel as one JSON parameter
 * (`json_to_recordset`), so each statement has one fixed text whatever the batch size.
 * A deadlock (two instances locking overlapping inboxes out of order cannot happen with
 * sorted keys, but PostgreSQL may still pick a victim) retries the whole batch.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Message } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { Cause, Effect, Schedule } from "effect"
import * as WriteQueue from "./WriteQueue.js"
import type { PendingWrite } from "./WriteQueue.js"
import { keyOf } from "./TenantKey.js"

/** Largest notification payload we send, in bytes (PostgreSQL refuses 8,000 bytes and more). */
const NOTIFY_BYTES = 7_500
/**
 * A message whose wake-up entry (`[peer, seq, data]` serialized) is at most this many bytes
 * travels in the wake-up itself, so the instance holding the recipient's socket can push it
 * without reading the table (docs/scaling.md, "Wake-ups carry small messages"); larger ones are
 * only announced (`[peer, seq]`) and read.
 */
export const INLINE_MESSAGE_BYTES = 2_000

/** An append of a batch: tenant, recipient, seq, and the message's stored JSON. */
export type Appended = readonly [tenant: string, peer: string, seq: number, data?: string]

interface State {
  readonly tenant: string
  readonly peer: string
  lastSeq: number
  cursor: number
}

export interface Options {
  readonly capacity: number
  /** This instance's id, carried in every notification. */
  readonly instance: string
  /** The notification channel (`a2a_inbox`). */
  readonly channel: string
  /** After each commit, with the inboxes appended to (tenant, peer, last seq): local wake-ups. */
  readonly committed: (appended: ReadonlyArray<Appended>) => void
}

/** Counters for measurement (bench and tests): batches committed and writes in them. */
export interface Stats {
  batches: number
  writes: number
}

const unavailable = (e: unknown) =>
  new Errors.ServiceUnavailable({ message: `store unavailable: ${(e as { message?: string }).message ?? String(e)}` })

/** PostgreSQL's deadlock_detected and serialization_failure: the batch is retried as a whole. */
const isRetryable = (e: SqlError) => {
  const code = (e.cause as { code?: string } | undefined)?.code
  return code === "40P01" || code === "40001"
}

/**
 * The `{i, t, d: [[peer, seq, data?]…]}` notifications for a batch's appends: one per tenant,
 * split only when a payload would pass the size limit. `data` (the message's stored JSON) is
 * there when the entry is at most `INLINE_MESSAGE_BYTES`; readers of the older `[peer, seq]`
 * form ignore it.
 */
export const notices = (instance: string, appended: ReadonlyArray<Appended>): Array<string> => {
  // Each entry serialized once, with its size in bytes (escaping can make it far larger than `data`).
  const byTenant = new Map<string, Array<{ readonly text: string; readonly bytes: number }>>()
  for (const [tenant, peer, seq, data] of appended) {
    const list = byTenant.get(tenant) ?? []
    let text = data === undefined ? undefined : JSON.stringify([peer, seq, data])
    let bytes = text === undefined ? 0 : Buffer.byteLength(text)
    if (text === undefined || bytes > INLINE_MESSAGE_BYTES) {
      text = JSON.stringify([peer, seq])
      bytes = Buffer.byteLength(text)
    }
    list.push({ text, bytes })
    byTenant.set(tenant, list)
  }
  const out: Array<string> = []
  for (const [tenant, entries] of byTenant) {
    const prefix = JSON.stringify({ i: instance, t: tenant }).slice(0, -1) + ',"d":['
    const head = Buffer.byteLength(prefix) + 2
    let part: Array<string> = []
    let size = head
    for (const entry of entries) {
      const add = entry.bytes + 1
      if (part.length > 0 && size + add > NOTIFY_BYTES) {
        out.push(prefix + part.join(",") + "]}")
        part = []
        size = head
      }
      part.push(entry.text)
      size += add
    }
    if (part.length > 0) out.push(prefix + part.join(",") + "]}")
  }
  return out
}

export const make = (options: Options) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const runtime = yield* Effect.runtime<never>()
    const stats: Stats = { batches: 0, writes: 0 }
    const { capacity } = options

    /** Lock the inboxes (creating the missing ones) and read their counters. */
    const lock = (keys: ReadonlyArray<{ tenant: string; peer_id: string }>) =>
      sql<{ tenant: string; peer_id: string; last_seq: number | string; cursor: number | string }>`INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
        SELECT x.tenant, x.peer_id, 0, 0 FROM json_to_recordset(${JSON.stringify(keys)}::json) AS x(tenant text, peer_id text) ORDER BY x.tenant, x.peer_id
        ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = a2a_inbox_state.last_seq
        RETURNING tenant, peer_id, last_seq, cursor`

    /** One statement: the message rows, the changed counters and the wake-up notifications. */
    const write = (rows: ReadonlyArray<Record<string, unknown>>, states: ReadonlyArray<State>, wakeups: ReadonlyArray<string>) =>
      sql`WITH inserted AS (
          INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data)
          SELECT x.tenant, x.peer_id, x.seq, x.message_id, x.appended_at, x.data
          FROM json_to_recordset(${JSON.stringify(rows)}::json) AS x(tenant text, peer_id text, seq bigint, message_id text, appended_at bigint, data text)
          RETURNING 1),
        counters AS (
          INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
          SELECT x.tenant, x.peer, x."lastSeq", x.cursor FROM json_to_recordset(${JSON.stringify(states)}::json) AS x(tenant text, peer text, "lastSeq" bigint, cursor bigint)
          ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = excluded.last_seq, cursor = excluded.cursor
          RETURNING 1)
        SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM counters) AS counters,
          (SELECT count(pg_notify(${options.channel}, n)) FROM json_array_elements_text(${JSON.stringify(wakeups)}::json) AS n) AS notified`

    const deleteInbox = (tenant: string, peer: string) =>
      sql`WITH gone AS (DELETE FROM a2a_inbox WHERE tenant = ${tenant} AND peer_id = ${peer} RETURNING 1)
        DELETE FROM a2a_inbox_state WHERE tenant = ${tenant} AND peer_id = ${peer} AND (SELECT count(*) FROM gone) >= 0`

    /** The batch's transaction; returns the answers to give once it committed. */
    const transaction = (batch: ReadonlyArray<PendingWrite>) =>
      Effect.gen(function* () {
        const settle: Array<() => void> = []
        const appended: Array<Appended> = []
        const wanted = new Map<string, { tenant: string; peer_id: string }>()
        for (const op of batch) {
          if (op.kind === "append") for (const r of op.recipients) wanted.set(keyOf(op.tenant, r), { tenant: op.tenant, peer_id: r })
          else if (op.kind === "ack") wanted.set(keyOf(op.tenant, op.peer), { tenant: op.tenant, peer_id: op.peer })
        }
        const states = new Map<string, State>()
        if (wanted.size > 0) {
          const sorted = [...wanted.values()].sort((a, b) => (a.tenant === b.tenant ? (a.peer_id < b.peer_id ? -1 : 1) : a.tenant < b.tenant ? -1 : 1))
          for (const row of yield* lock(sorted)) {
            states.set(keyOf(row.tenant, row.peer_id), { tenant: row.tenant, peer: row.peer_id, lastSeq: Number(row.last_seq), cursor: Number(row.cursor) })
          }
        }
        const stateOf = (tenant: string, peer: string) => {
          const key = keyOf(tenant, peer)
          let state = states.get(key)
          if (state === undefined) {
            // Dropped earlier in this batch: a fresh inbox (re-created by the counters upsert).
            state = { tenant, peer, lastSeq: 0, cursor: 0 }
            states.set(key, state)
          }
          return state
        }
        let rows: Array<Record<string, unknown>> = []
        let dirty = new Set<State>()
        let batchAppended: Array<Appended> = []
        const writeOut = Effect.suspend(() => {
          if (rows.length === 0 && dirty.size === 0) return Effect.void
          const out = write(rows, [...dirty], notices(options.instance, batchAppended))
          rows = []
          dirty = new Set()
          batchAppended = []
          return Effect.asVoid(out)
        })
        for (const op of batch) {
          switch (op.kind) {
            case "append": {
              const targets = op.recipients.map((r) => stateOf(op.tenant, r))
              const full = targets.find((s) => s.lastSeq - s.cursor >= capacity)
              if (full !== undefined) {
                const error = new Errors.InboxFull({ message: `the inbox of ${full.peer} holds ${capacity} unacked messages`, peer: full.peer as Ids.PeerId, capacity })
                settle.push(() => op.done(Effect.fail(error)))
                break
              }
              const deliveries = targets.map((state, i): Message.Delivery => {
                const seq = ++state.lastSeq
                dirty.add(state)
                rows.push({ tenant: op.tenant, peer_id: state.peer, seq, message_id: op.draft.id, appended_at: op.now, data: op.data })
                batchAppended.push([op.tenant, state.peer, seq, op.data])
                appended.push([op.tenant, state.peer, seq])
                return { recipient: op.recipients[i]!, message: new Message.Message({ ...op.draft, seq }, true) }
              })
              settle.push(() => op.done(Effect.succeed(deliveries)))
              break
            }
            case "ack": {
              const state = stateOf(op.tenant, op.peer)
              if (op.upTo > state.cursor && state.cursor < state.lastSeq) {
                state.cursor = Math.min(op.upTo, state.lastSeq)
                dirty.add(state)
              }
              const cursor = { cursor: state.cursor }
              settle.push(() => op.done(Effect.succeed(cursor)))
              break
            }
            case "drop": {
              // What precedes the drop first, so the delete removes it too.
              yield* writeOut
              yield* deleteInbox(op.tenant, op.peer)
              states.delete(keyOf(op.tenant, op.peer))
              settle.push(() => op.done(Effect.void))
              break
            }
          }
        }
        yield* writeOut
        return { settle, appended }
      })

    const commit = (batch: ReadonlyArray<PendingWrite>) =>
      sql.withTransaction(transaction(batch)).pipe(
        Effect.retry({ while: isRetryable, schedule: Schedule.recurs(3) }),
        Effect.matchCauseEffect({
          onSuccess: ({ appended, settle }) =>
            Effect.sync(() => {
              stats.batches++
              stats.writes += batch.length
              for (const answer of settle) answer()
              options.committed(appended)
            }),
          onFailure: (cause) =>
            Effect.sync(() => {
              // Nothing of the batch is durable: every write of it fails (503 to its caller).
              const failure = Cause.squash(cause)
              const error = (failure as { _tag?: string })._tag === "SqlError" ? unavailable(failure) : failure
              for (const op of batch) op.done(Effect.die(error))
            })
        })
      )

    const enqueue = WriteQueue.make(commit, runtime)

    return {
      stats,
      append: (tenant: string, recipients: ReadonlyArray<Ids.PeerId>, draft: Message.MessageDraft, now: number) =>
        enqueue<ReadonlyArray<Message.Delivery>, Errors.InboxFull>((done) => ({ kind: "append", tenant, recipients, draft, data: JSON.stringify(draft), now, done })),
      /** `append` queued now; returns its outcome to await (staged appends commit in staging order). */
      appendStaged: (tenant: string, recipients: ReadonlyArray<Ids.PeerId>, draft: Message.MessageDraft, now: number) =>
        enqueue.stage<ReadonlyArray<Message.Delivery>, Errors.InboxFull>((done) => ({ kind: "append", tenant, recipients, draft, data: JSON.stringify(draft), now, done })),
      ack: (tenant: string, peer: Ids.PeerId, upTo: number) => enqueue<Message.InboxCursor, never>((done) => ({ kind: "ack", tenant, peer, upTo, done })),
      drop: (tenant: string, peer: Ids.PeerId) => enqueue<void, never>((done) => ({ kind: "drop", tenant, peer, done }))
    }
  })
