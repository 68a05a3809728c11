/**
 * The PostgreSQL group commit's server-side function (`a2a_inbox_commit_v1`, PgGroupCommit.ts),
 * called directly on a database the broker migrated, with a second connection LISTENing:
 * a batch applies in order (capacity per send, all or nothing across a team send's recipients,
 * acks forward only, a drop mid-batch writes what precedes it and frees the inbox, a direct
 * message to a peer that is gone refused), and its
 * wake-ups carry small messages, announce large ones, stay under PostgreSQL's 8,000-byte limit
 * counted in bytes, and name every append once, in order, one notification per tenant.
 */
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { INLINE_MESSAGE_BYTES } from "../src/PgGroupCommit.js"
import { INBOX_CHANNEL } from "../src/PgStore.js"
import { http, startBroker, type TestBroker } from "./harness.js"

const enabled = await pgEnabled("the group commit's server-side function")
/**
 * The appends' time: now. The broker running on the same database prunes, every GC round, acked
 * messages older than its retention (24 h), so a message stamped 1970 and acked could vanish
 * between the commit and the test's read of the table.
 */
const NOW = Date.now()

interface Notice {
  readonly i: string
  readonly t: string
  readonly d: ReadonlyArray<[string, number, string?]>
}

if (!enabled) {
  it("the group commit's server-side function: not run, no server (see the NOT RUN line)", () => {})
} else describe("a2a_inbox_commit_v1", () => {
  let database: TestDatabase
  let broker: TestBroker
  let caller: pg.Client
  let listener: pg.Client
  const received: Array<{ readonly payload: string; readonly notice: Notice }> = []
  const waiters: Array<() => void> = []

  beforeAll(async () => {
    database = await createDatabase("a2a_commitfn")
    broker = await startBroker({ db: database.url }) // creates the tables and the function
    caller = new pg.Client({ connectionString: database.url })
    listener = new pg.Client({ connectionString: database.url })
    await Promise.all([caller.connect(), listener.connect()])
    listener.on("notification", (n) => {
      const notice = JSON.parse(n.payload!) as Notice
      // Only this test's calls (the broker's own instance id differs).
      if (notice.i !== "test") return
      received.push({ payload: n.payload!, notice })
      for (const wake of waiters.splice(0)) wake()
    })
    await listener.query(`LISTEN ${INBOX_CHANNEL}`)
  })
  afterAll(async () => {
    await Promise.all([caller?.end(), listener?.end()])
    await broker?.close()
    await database?.drop()
  })

  const commit = async (ops: ReadonlyArray<Record<string, unknown>>, capacity = 1_000, notifyBytes = 7_500) => {
    const res = await caller.query<{ r: string }>(`SELECT a2a_inbox_commit_v1($1::json, $2, 'test', $3, $4, $5) AS r`, [
      JSON.stringify(ops),
      capacity,
      INBOX_CHANNEL,
      INLINE_MESSAGE_BYTES,
      notifyBytes
    ])
    return JSON.parse(res.rows[0]!.r) as Array<unknown>
  }
  /** The notices to `tenants` (each test uses its own), once they name `appends` appends. */
  const noticesOf = async (tenants: ReadonlyArray<string>, appends: number) => {
    const mine = () => received.filter((r) => tenants.includes(r.notice.t))
    while (mine().reduce((n, r) => n + r.notice.d.length, 0) < appends) await new Promise<void>((resolve) => waiters.push(resolve))
    return mine()
  }
  const state = async (tenant: string, peer: string) =>
    (await caller.query(`SELECT last_seq::int AS last, cursor::int AS cursor FROM a2a_inbox_state WHERE tenant = $1 AND peer_id = $2`, [tenant, peer])).rows[0]
  const seqs = async (tenant: string, peer: string) =>
    (await caller.query(`SELECT seq::int AS seq, message_id FROM a2a_inbox WHERE tenant = $1 AND peer_id = $2 ORDER BY seq`, [tenant, peer])).rows

  it("applies a batch in order: capacity per send, team sends all or nothing, acks forward only, a drop mid-batch", async () => {
    const append = (t: string, r: Array<string>, id: string) => ({ k: "a", t, r, id, at: NOW, d: JSON.stringify({ id }) })
    const out = await commit(
      [
        append("acme", ["a1", "a2"], "m1"), // team send: seq 1 each
        append("acme", ["a1"], "m2"), // a1: 2 unacked
        append("acme", ["a1", "a2"], "m3"), // a1 full at capacity 2: refused for both
        { k: "k", t: "acme", p: "a1", u: 1 }, // a1 cursor 1
        { k: "k", t: "acme", p: "a1", u: 0 }, // backwards: cursor stays 1
        append("acme", ["a1", "a2"], "m4"), // fits again: a1 seq 3, a2 seq 2
        { k: "k", t: "acme", p: "a2", u: 99 }, // past the last seq: clamped to 2
        { k: "d", t: "acme", p: "a2" }, // drops a2's inbox with what preceded it
        append("acme", ["a2"], "m5"), // a fresh inbox: seq 1
        append("other", ["a1"], "m6") // another tenant's a1
      ],
      2
    )
    expect(out).toEqual([[1, 1], [2], { full: "a1" }, 1, 1, [3, 2], 2, 0, [1], [1]])
    expect(await state("acme", "a1")).toEqual({ last: 3, cursor: 1 })
    expect(await state("acme", "a2")).toEqual({ last: 1, cursor: 0 })
    expect(await state("other", "a1")).toEqual({ last: 1, cursor: 0 })
    expect(await seqs("acme", "a1")).toEqual([{ seq: 1, message_id: "m1" }, { seq: 2, message_id: "m2" }, { seq: 3, message_id: "m4" }])
    expect(await seqs("acme", "a2")).toEqual([{ seq: 1, message_id: "m5" }])
    // The next batch continues from the committed counters.
    expect(await commit([append("acme", ["a1"], "m7"), { k: "d", t: "acme", p: "nobody" }], 2)).toEqual([{ full: "a1" }, 0])
    expect(await commit([{ k: "k", t: "acme", p: "a1", u: 3 }, append("acme", ["a1"], "m8")], 2)).toEqual([3, [4]])
  })

  it("a team send with one full recipient among others writes to none of them, and their seqs go on without a gap", async () => {
    const append = (r: Array<string>, id: string) => ({ k: "a", t: "teamfull", r, id, at: NOW, d: JSON.stringify({ id }) })
    const out = await commit(
      [
        append(["b2"], "m1"),
        append(["b2"], "m2"), // b2 full at capacity 2
        append(["b1", "b2", "b3"], "m3"), // refused for all three: b2 is full (not the first)
        append(["b1"], "m4"), // b1 seq 1: m3 took nothing
        append(["b3", "b1"], "m5"), // b3 seq 1, b1 seq 2
        { k: "k", t: "teamfull", p: "b2", u: 1 },
        append(["b1", "b2", "b3"], "m6") // b1 full now (2 unacked): refused again
      ],
      2
    )
    expect(out).toEqual([[1], [2], { full: "b2" }, [1], [1, 2], 1, { full: "b1" }])
    expect(await seqs("teamfull", "b1")).toEqual([{ seq: 1, message_id: "m4" }, { seq: 2, message_id: "m5" }])
    expect(await seqs("teamfull", "b2")).toEqual([{ seq: 1, message_id: "m1" }, { seq: 2, message_id: "m2" }])
    expect(await seqs("teamfull", "b3")).toEqual([{ seq: 1, message_id: "m5" }])
    expect(await state("teamfull", "b2")).toEqual({ last: 2, cursor: 1 })
    const notices = (await noticesOf(["teamfull"], 5)).map((r) => r.notice.d.map((e) => [e[0], e[1]]))
    expect(notices).toEqual([[["b2", 1], ["b2", 2], ["b1", 1], ["b3", 1], ["b1", 2]]])
  })

  it("a drop between appends and acks to the same peer: what precedes it is written and woken, then deleted; what follows starts afresh", async () => {
    const append = (r: Array<string>, id: string) => ({ k: "a", t: "dropmid", r, id, at: NOW, d: JSON.stringify({ id }) })
    const out = await commit([
      append(["c1"], "m1"),
      append(["c1", "c2"], "m2"),
      { k: "k", t: "dropmid", p: "c1", u: 1 },
      append(["c2"], "m3"),
      { k: "d", t: "dropmid", p: "c1" }, // c1's rows and counters go; c2 keeps m2 and m3
      { k: "k", t: "dropmid", p: "c1", u: 5 }, // nothing to ack in the fresh inbox
      append(["c1"], "m4"), // seq 1 again
      append(["c2", "c1"], "m5"), // c2 seq 3, c1 seq 2
      { k: "k", t: "dropmid", p: "c1", u: 9 } // clamped to 2
    ])
    expect(out).toEqual([[1], [2, 1], 1, [2], 0, 0, [1], [3, 2], 2])
    expect(await seqs("dropmid", "c1")).toEqual([{ seq: 1, message_id: "m4" }, { seq: 2, message_id: "m5" }])
    expect(await seqs("dropmid", "c2")).toEqual([{ seq: 1, message_id: "m2" }, { seq: 2, message_id: "m3" }, { seq: 3, message_id: "m5" }])
    expect(await state("dropmid", "c1")).toEqual({ last: 2, cursor: 2 })
    expect(await state("dropmid", "c2")).toEqual({ last: 3, cursor: 0 })
    // The part before the drop was woken before the part after it.
    const notices = (await noticesOf(["dropmid"], 7)).map((r) => r.notice.d.map((e) => [e[0], e[1]]))
    expect(notices).toEqual([
      [["c1", 1], ["c1", 2], ["c2", 1], ["c2", 2]],
      [["c1", 1], ["c2", 3], ["c1", 2]]
    ])
    // A drop of an inbox the batch does not otherwise touch, and a batch of nothing but a drop.
    expect(await commit([append(["c2"], "m6"), { k: "d", t: "dropmid", p: "c1" }])).toEqual([[4], 0])
    expect(await state("dropmid", "c1")).toBeUndefined()
    expect(await commit([{ k: "d", t: "dropmid", p: "c2" }])).toEqual([0])
    expect(await seqs("dropmid", "c2")).toEqual([])
  })

  it("splits a tenant's wake-ups exactly where the next entry would pass notify_bytes", async () => {
    // Entries of a known size, `["p1",seq,"<d>"]`; three tenants whose names have the same
    // length, so their notices' prefixes do too.
    const prefix = `{"i":"test","t":"splitA","d":[`
    const entry = (seq: number, d: string) => JSON.stringify(["p1", seq, d])
    const ops = (t: string) => [1, 2, 3].map((n) => ({ k: "a", t, r: ["p1"], id: `m${n}`, at: NOW, d: JSON.stringify({ b: "y".repeat(100 + n) }) }))
    const [o1, o2] = ops("splitA")
    const two = Buffer.byteLength(prefix + entry(1, o1!.d) + "," + entry(2, o2!.d) + "]}")
    // The count reserves a comma for every entry, the first too: a notice stays under
    // notify_bytes by at least one byte. Two entries fit in two + 1 bytes; the third starts the
    // next notice.
    await commit(ops("splitA"), 1_000, two + 1)
    const fit = await noticesOf(["splitA"], 3)
    expect(fit.map((r) => r.notice.d.map((e) => e[1]))).toEqual([[1, 2], [3]])
    expect(Buffer.byteLength(fit[0]!.payload)).toBe(two)
    // One byte less and each entry goes alone; a first entry always goes, whatever its size.
    await commit(ops("splitB"), 1_000, two)
    expect((await noticesOf(["splitB"], 3)).map((r) => r.notice.d.map((e) => e[1]))).toEqual([[1], [2], [3]])
    await commit(ops("splitC"), 1_000, 10)
    expect((await noticesOf(["splitC"], 3)).map((r) => r.notice.d.map((e) => e[1]))).toEqual([[1], [2], [3]])
  })

  it("refuses a direct message to a peer that is gone (and creates no inbox for it); team messages are not checked", async () => {
    const res = await http(broker, broker.adminToken, "POST", "/api/peers", { name: "still-here" })
    expect(res.status, res.text).toBe(201)
    const here = res.json.peer.id as string
    const direct = (r: string, id: string) => ({ k: "a", t: "default", r: [r], id, at: NOW, d: "{}", x: true })
    const out = await commit([direct("p_gone", "g1"), direct(here, "h1"), { k: "a", t: "default", r: ["p_gone2"], id: "t1", at: NOW, d: "{}", x: false }, direct(here, "h2")])
    expect(out).toEqual([{ gone: "p_gone" }, [1], [1], [2]])
    expect(await state("default", "p_gone")).toBeUndefined()
    expect(await seqs("default", "p_gone")).toEqual([])
    expect(await seqs("default", here)).toEqual([{ seq: 1, message_id: "h1" }, { seq: 2, message_id: "h2" }])
    // A peer in another tenant with that id does not count.
    expect(await commit([{ ...direct(here, "o1"), t: "other-tenant" }])).toEqual([{ gone: here }])
  })

  it("wakes with small messages inline and large ones announced, one notice per tenant, in order", async () => {
    const small = JSON.stringify({ body: "hi \"there\"\n" })
    const large = JSON.stringify({ body: "x".repeat(INLINE_MESSAGE_BYTES) })
    const op = (t: string, r: Array<string>, d: string) => ({ k: "a", t, r, id: "m", at: NOW, d })
    await commit([op("w1", ["p1"], small), op("w2", ["p9"], small), op("w1", ["p2"], large), op("w1", ["p1"], small)])
    const notices = (await noticesOf(["w1", "w2"], 4)).map((r) => r.notice)
    expect(notices).toEqual([
      { i: "test", t: "w1", d: [["p1", 1, small], ["p2", 1], ["p1", 2, small]] },
      { i: "test", t: "w2", d: [["p9", 1, small]] }
    ])
  })

  it("counts bytes, not characters: multi-byte and escaped messages never push a notice past the limit", async () => {
    const ops: Array<Record<string, unknown>> = []
    // Characters of 3–4 bytes each, and control characters JSON escapes to six: a size counted
    // in characters would pass PostgreSQL's limit (and "notify payload too long" fails the batch).
    for (let n = 1; n <= 400; n++) {
      const body = n % 2 === 0 ? "€🚀".repeat(60) : "\u0001".repeat(300)
      ops.push({ k: "a", t: "bytes", r: [`p${n % 7}`], id: `m${n}`, at: NOW, d: JSON.stringify({ body }) })
    }
    const out = (await commit(ops)) as Array<Array<number>>
    const got = await noticesOf(["bytes"], 400)
    expect(got.length).toBeGreaterThan(1)
    for (const r of got) expect(Buffer.byteLength(r.payload)).toBeLessThanOrEqual(7_500)
    const entries = got.flatMap((r) => r.notice.d)
    // Every append once, in batch order, with the seq the function answered.
    expect(entries.map((e) => [e[0], e[1]])).toEqual(ops.map((o, n) => [(o.r as Array<string>)[0], out[n]![0]]))
    for (const [n, e] of entries.entries()) {
      if (e[2] === undefined) continue
      expect(e[2]).toBe(ops[n]!.d)
      expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThanOrEqual(INLINE_MESSAGE_BYTES)
    }
    // The escaped bodies (300 × 6 bytes) pass the inline limit and are announced only.
    expect(entries.filter((e) => e[2] === undefined).length).toBe(200)
    expect(entries.filter((e) => e[2] !== undefined).length).toBe(200)
  })
})
