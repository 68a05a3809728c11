/**
 * The inbox's message-id index (SqlStore migration 3): a reply's thread is found by the
 * replied-to message's id through an index on `message_id` alone, which grows at its end because
 * ids are time-ordered, instead of one on (tenant, peer_id, message_id) that every append wrote at
 * its recipient's place. A database of an older version is migrated (the new index created, the
 * old one dropped, its messages still found), and the lookup the store actually runs (captured as
 * compiled) uses the index on SQLite and on PostgreSQL rather than scanning the peer's inbox.
 */
import { SqlClient, Statement } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as SqliteClient from "../src/SqliteClient.js"
import { Ids, type Message } from "@mks/a2a"
import { Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import * as SqlStore from "../src/SqlStore.js"
import { tempHome } from "./harness.js"

const TENANT = "idx"
const PEERS = Array.from({ length: 40 }, (_, i) => Ids.PeerId.make(`p_index_${i}`))

/** The statements the store ran that look a message up by id, as compiled (text and parameters). */
const captured: Array<readonly [string, ReadonlyArray<unknown>]> = []
const capture = Statement.setTransformer((statement) =>
  Effect.sync(() => {
    const [text, params] = statement.compile()
    if (/^SELECT seq, data FROM a2a_inbox\b/.test(text) && text.includes("message_id =")) captured.push([text, params])
    return statement
  })
)

const draft = (from: Ids.PeerId, now: number): Message.MessageDraft => {
  const id = Ids.messageId(now)
  return { id, from, fromName: from, to: from, body: `body of ${id}`, threadId: Ids.ThreadId.make(id), sentAt: new Date(now).toISOString() }
}

/** The index names of a2a_inbox. */
const inboxIndexes = (dialect: "sqlite" | "pg") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    (dialect === "sqlite"
      ? sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'a2a_inbox'`
      : sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE tablename = 'a2a_inbox'`
    ).pipe(Effect.map((rows) => rows.map((r) => r.name).sort()))
  )

/**
 * Migrate, turn the database back into the previous version's shape (the old index, migration 3
 * unrecorded), fill inboxes, migrate again; then look messages up and return the plan of that lookup.
 */
const scenario = (dialect: "sqlite" | "pg") =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* SqlStore.migrate
    yield* sql.unsafe(`DROP INDEX IF EXISTS a2a_inbox_message_id`)
    yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS a2a_inbox_message ON a2a_inbox (tenant, peer_id, message_id)`)
    yield* sql`DELETE FROM a2a_migrations WHERE version = 3`
    const before = yield* inboxIndexes(dialect)

    const inbox = yield* SqlStore.makeInbox(1_000_000, dialect === "sqlite")
    const sent: Array<{ readonly peer: Ids.PeerId; readonly message: Message.Message }> = []
    let now = 1_800_000_000_000
    for (let round = 0; round < 50; round++) {
      yield* Effect.forEach(
        PEERS,
        (peer) =>
          Effect.map(inbox.append(TENANT, [peer], draft(peer, now++)), (deliveries) => {
            for (const d of deliveries) sent.push({ peer: d.recipient, message: d.message })
          }),
        { concurrency: "unbounded", discard: true }
      )
    }
    yield* SqlStore.migrate
    const after = yield* inboxIndexes(dialect)
    if (dialect === "pg") yield* sql.unsafe(`ANALYZE a2a_inbox`)

    const probes = [sent[0]!, sent[Math.floor(sent.length / 2)]!, sent[sent.length - 1]!]
    captured.length = 0
    const found = yield* Effect.forEach(probes, (p) => inbox.find(TENANT, p.peer, p.message.id))
    // The same id in another peer's inbox is not found there.
    const elsewhere = yield* inbox.find(TENANT, PEERS.find((p) => p !== probes[0]!.peer)!, probes[0]!.message.id)
    const [text, params] = captured[0]!
    const plan =
      dialect === "sqlite"
        ? (yield* sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN ${text}`, params)).map((r) => r.detail).join("\n")
        : (yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN ${text}`, params)).map((r) => r["QUERY PLAN"]).join("\n")
    return { before, after, probes, found, elsewhere, plan, lookups: captured.length }
  })

const check = (result: Effect.Effect.Success<ReturnType<typeof scenario>>) => {
  expect(result.before).toContain("a2a_inbox_message")
  expect(result.before).not.toContain("a2a_inbox_message_id")
  expect(result.after).toContain("a2a_inbox_message_id")
  expect(result.after).not.toContain("a2a_inbox_message")
  expect(result.lookups).toBe(4)
  result.found.forEach((found, i) => {
    const probe = result.probes[i]!
    expect(Option.isSome(found)).toBe(true)
    expect(Option.getOrThrow(found)).toMatchObject({ id: probe.message.id, seq: probe.message.seq, body: probe.message.body })
  })
  expect(Option.isNone(result.elsewhere)).toBe(true)
  expect(result.plan).toContain("a2a_inbox_message_id")
}

describe("the inbox's message-id index", () => {
  const home = tempHome()
  afterAll(() => rmSync(home, { recursive: true, force: true }))

  it("SQLite: an older database is migrated, its messages are found, and the lookup uses the index", async () => {
    const runtime = ManagedRuntime.make(Layer.merge(SqliteClient.layer(join(home, "index.db")), capture))
    try {
      check(await runtime.runPromise(scenario("sqlite")))
    } finally {
      await runtime.dispose()
    }
  })

  it("PostgreSQL: an older database is migrated, its messages are found, and the lookup uses the index", async () => {
    if (!(await pgEnabled("the inbox's message-id index on PostgreSQL"))) return
    let database: TestDatabase | undefined
    try {
      database = await createDatabase("a2a_inbox_index")
      const runtime = ManagedRuntime.make(Layer.merge(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 4 }), capture))
      try {
        check(await runtime.runPromise(scenario("pg")))
      } finally {
        await runtime.dispose()
      }
    } finally {
      await database?.drop()
    }
  })
})
