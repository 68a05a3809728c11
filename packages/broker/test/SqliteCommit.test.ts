/**
 * The SQLite group commit on the connection itself (`SqliteClient.ts`'s `SqliteDirect`): a batch
 * is one synchronous transaction. What must hold: writes of one batch keep their order and are
 * answered only once committed; a batch that fails is not durable and leaves no trace in the
 * counters (the next append takes the seq the failed one would have had); and a batch never
 * writes into an `@effect/sql` transaction that is open on the same connection.
 */
import { SqlClient } from "@effect/sql"
import { Ids, Inbox, type Message } from "@mks/a2a"
import { Cause, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { describe, expect, it } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqliteClient from "../src/SqliteClient.js"
import * as SqlStore from "../src/SqlStore.js"

const TENANT = "direct"
const peer = (n: number) => Ids.PeerId.make(`p_direct_${n}`)
let clock = 1_800_000_000_000
const draft = (from: Ids.PeerId): Message.MessageDraft => {
  const now = clock++
  const id = Ids.messageId(now)
  return { id, from, fromName: from, to: from, body: `body of ${id}`, threadId: Ids.ThreadId.make(id), sentAt: new Date(now).toISOString() }
}

/** A file database with the SQLite store's tables, its group commit on, for one test. */
const store = <A, E>(body: Effect.Effect<A, E, Inbox.Inbox | SqlClient.SqlClient | SqliteClient.SqliteDirect>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "a2a-sqlite-commit-"))),
    (dir) => {
      const layer = SqlStore.layer({ capacity: 1_000, cache: true }).pipe(Layer.provideMerge(SqliteClient.layer(join(dir, "broker.db"))))
      return Effect.provide(body, layer)
    },
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const seqsIn = (tenant: string, id: Ids.PeerId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ seq: number }>`SELECT seq FROM a2a_inbox WHERE tenant = ${tenant} AND peer_id = ${id} ORDER BY seq`, (rows) => rows.map((r) => Number(r.seq)))
  )

describe("the SQLite group commit on the connection", () => {
  it.effect("concurrent appends and acks: each answered with its committed seq or cursor, gap-free, in the table", () =>
    store(
      Effect.gen(function* () {
        const inbox = yield* Inbox.Inbox
        const peers = [peer(1), peer(2), peer(3)]
        const answers = yield* Effect.forEach(
          Array.from({ length: 300 }, (_, i) => peers[i % 3]!),
          (to) => Effect.map(inbox.append(TENANT, [to], draft(to)), (d) => [to, d[0]!.message.seq] as const),
          { concurrency: "unbounded" }
        )
        for (const id of peers) {
          const mine = answers.filter(([to]) => to === id).map(([, seq]) => seq)
          expect(mine).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
          expect(yield* seqsIn(TENANT, id)).toEqual(mine)
        }
        // Acks in one batch with appends: cursors only move forward and are what the table holds.
        const [acked, , late] = yield* Effect.all([inbox.ack(TENANT, peers[0]!, 60), inbox.append(TENANT, [peers[0]!], draft(peers[0]!)), inbox.ack(TENANT, peers[0]!, 40)], {
          concurrency: "unbounded"
        })
        expect(acked.cursor).toBe(60)
        expect(late.cursor).toBe(60)
        const sql = yield* SqlClient.SqlClient
        const [state] = yield* sql<{ last_seq: number; cursor: number }>`SELECT last_seq, cursor FROM a2a_inbox_state WHERE tenant = ${TENANT} AND peer_id = ${peers[0]!}`
        expect([Number(state!.last_seq), Number(state!.cursor)]).toEqual([101, 60])
      })
    )
  )

  it.effect("a batch that fails is not durable, its writes fail as ServiceUnavailable, and the next append takes the seq it would have had", () =>
    store(
      Effect.gen(function* () {
        const inbox = yield* Inbox.Inbox
        const sql = yield* SqlClient.SqlClient
        const to = peer(9)
        for (let i = 1; i <= 3; i++) expect((yield* inbox.append(TENANT, [to], draft(to)))[0]!.message.seq).toBe(i)
        // A row already at seq 4 makes the next batch's insert fail (primary key).
        yield* sql`INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data) VALUES (${TENANT}, ${to}, 4, 'rogue', 0, '{}')`
        const failed = yield* Effect.exit(
          Effect.all([inbox.append(TENANT, [to], draft(to)), inbox.append(TENANT, [peer(10)], draft(peer(10)))], { concurrency: "unbounded" })
        )
        expect(Exit.isFailure(failed)).toBe(true)
        if (Exit.isFailure(failed)) expect(Cause.squash(failed.cause)).toMatchObject({ _tag: "ServiceUnavailable" })
        // Nothing of the batch is in the table: not the other peer's message either.
        expect(yield* seqsIn(TENANT, peer(10))).toEqual([])
        yield* sql`DELETE FROM a2a_inbox WHERE message_id = 'rogue'`
        expect((yield* inbox.append(TENANT, [to], draft(to)))[0]!.message.seq).toBe(4)
        expect((yield* inbox.append(TENANT, [peer(10)], draft(peer(10))))[0]!.message.seq).toBe(1)
        expect(yield* seqsIn(TENANT, to)).toEqual([1, 2, 3, 4])
      })
    )
  )

  it.effect("a batch waits for an @effect/sql transaction open on the connection and does not write into it", () =>
    store(
      Effect.gen(function* () {
        const inbox = yield* Inbox.Inbox
        const sql = yield* SqlClient.SqlClient
        const to = peer(20)
        const inside = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        // A transaction that writes, then waits (across event-loop turns) and rolls back.
        const transaction = yield* Effect.fork(
          sql.withTransaction(
            Effect.gen(function* () {
              yield* sql`INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data) VALUES (${TENANT}, ${"someone"}, 1, 'in-tx', 0, '{}')`
              yield* Deferred.succeed(inside, undefined)
              yield* Deferred.await(release)
              return yield* Effect.fail("roll back" as const)
            })
          )
        )
        yield* Deferred.await(inside)
        const order: Array<string> = []
        const append = yield* Effect.fork(Effect.tap(inbox.append(TENANT, [to], draft(to)), () => Effect.sync(() => order.push("append"))))
        // A few event-loop turns: the group commit starts its batch (setImmediate) meanwhile.
        for (let i = 0; i < 5; i++) yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
        order.push("release")
        yield* Deferred.succeed(release, undefined)
        expect(Exit.isFailure(yield* Fiber.await(transaction))).toBe(true)
        expect((yield* Fiber.join(append))[0]!.message.seq).toBe(1)
        // It committed only after the transaction ended (it waited for the connection).
        expect(order).toEqual(["release", "append"])
        // The rolled-back row is gone, the append is there.
        expect(yield* seqsIn(TENANT, Ids.PeerId.make("someone"))).toEqual([])
        expect(yield* seqsIn(TENANT, to)).toEqual([1])
      })
    )
  )
})
