/**
 * Group commit of inbox writes on PostgreSQL (see docs/scaling.md, "Group commit").
 *
 * Appends (direct and team), acks and drops that arrive while a batch is in flight are queued;
 * the single writer of this instance then hands the whole queue to ONE call of the server-side
 * function `a2a_inbox_commit_v1` (`COMMIT_FUNCTION`), a statement of its own and so one
 * transaction and one round trip:
 *
 *  1. parse and lock: one statement parses the batch's JSON (once), checks that the recipients
 *     of direct messages still exist, and upserts every inbox the batch appends to or acks
 *     (`ON CONFLICT DO UPDATE` that changes nothing, sorted by key so two instances lock in the
 *     same order), reading each inbox's `last_seq` and `cursor` and holding its row lock until
 *     commit — seqs of one recipient are still assigned and committed in order whichever
 *     instance writes;
 *  2. the batch is applied in queue order (capacity checked per send, all or nothing across a
 *     team send's recipients; an ack moves the cursor forward only), a PL/pgSQL loop that only
 *     assigns seqs and answers into arrays;
 *  3. write: one multi-row insert of the message rows, one upsert of the changed counters and
 *     the batch's wake-up notification(s) (`pg_notify`, delivered at commit), statements over
 *     those arrays; a drop in the batch first writes what precedes it, then deletes the inbox.
 *
 * It answers one JSON array, an element per operation: an append's seqs (one per recipient),
 * `{"full": peer}` or, for a direct message to a peer that no longer exists, `{"gone": peer}`;
 * an ack's cursor; a drop's `0`. Checking a direct message's recipient here (one index probe)
 * lets senders skip reading a peer they resolved before (`PgStore`, `resolveId`). Every caller is answered only after the
 * commit. The function replaced BEGIN, lock, write and COMMIT sent one by one (four round trips
 * per batch, each paid in latency by every send and in CPU by the broker and the database);
 * instances of the earlier version lock the same rows in the same order, so both can share a
 * database during an upgrade. A deadlock (cannot happen with sorted keys, but PostgreSQL may
 * still pick a victim) retries the whole batch.
 */
import { SqlError } from "@effect/sql/SqlError"
import { Errors, Message } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { Cause, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import pg from "pg"
import * as WriteQueue from "./WriteQueue.js"
import type { PendingWrite } from "./WriteQueue.js"

/** Largest notification payload we send, in bytes (PostgreSQL refuses 8,000 bytes and more). */
const NOTIFY_BYTES = 7_500
/**
 * A message whose wake-up entry (`[peer, seq, data]` serialized) is at most this many bytes
 * travels in the wake-up itself, so the instance holding the recipient's socket can push it
 * without reading the table (docs/scaling.md, "Wake-ups carry small messages"); larger ones are
 * only announced (`[peer, seq]`) and read.
 */
export const INLINE_MESSAGE_BYTES = 2_000

/**
 * The batch as one server-side function (created with the PostgreSQL store's tables; the name
 * is versioned so that instances of another version keep their own). Operations arrive as one
 * JSON array (`k`: `a` append, `k` ack, `d` drop; `t` tenant; `r` recipients, `id`, `at`, `d`
 * the stored message of an append, `x` true for a direct message, whose one recipient must
 * still exist; `p` the peer and `u` the cursor of an ack or drop).
 * Wake-up entries are `[peer, seq, data]` when that text is at most `inline_bytes` bytes, else
 * `[peer, seq]`, in notifications of at most `notify_bytes` bytes, one (or more) per tenant.
 * Its statements use generic plans: left to choose, PostgreSQL planned them again on every call
 * (their JSON parameter looks different each time), which made a one-message batch cost
 * 0.66–0.87 ms instead of 0.43–0.59 ms (p50 of 500 calls each, alternated, same session setup).
 *
 * The batch is parsed once, into arrays (`json_to_recordset` builds a hash table per object:
 * 0.22–0.26 ms for 60 messages of ~300 bytes on the 2-core VM; the previous version parsed it
 * three times), each slot carries the index of its inbox (the previous version looked inboxes
 * up in a `jsonb` map per operation), and the loop only fills arrays by subscript, which
 * PostgreSQL 15 changes in place (the previous version appended each message's row to six
 * arrays, `arr := arr || x`, which copies the whole array before PostgreSQL 18: 97 µs per 60
 * messages against 29 in a loop of nothing else) and built the notifications by string
 * concatenation. Same answers, rows, counters, locks and notifications as before, so the name
 * stays `_v1`. Measured on a scratch database (100 peers, one session calling the old and the
 * new function alternately, 25 calls each, 1,000 calls of each per variant, tables emptied
 * every 250; the backend's CPU from `/proc/<pid>/schedstat`; three repetitions, on a VM that
 * another benchmark kept busy, so absolute figures are 2–3× the 23–26 µs per message measured
 * for the old function on an idle machine): 60 direct messages of ~300 bytes to random peers,
 * 63.7 / 45.2 / 55.7 µs of database CPU per message against 72.0 / 52.0 / 65.8 (−12 to −15 %;
 * 4.46 / 3.07 / 3.71 ms per call against 4.97 / 3.45 / 4.35); 30 messages and 30 acks,
 * 81.8 / 63.4 / 77.1 against 95.5 / 73.5 / 85.3 (−10 to −14 %); six team sends to ten peers
 * each, 38.9 / 32.4 / 37.4 against 44.4 / 37.4 / 44.2 (−12 to −15 %). What remains of a batch
 * of 60 direct messages (removing one part at a time): the message insert ~25 %, the
 * notifications ~15 % (a quarter of that escaping the bodies with `to_json`), the inbox upsert
 * ~13 %, the parse ~10 %, the counters' upsert ~7 %, the call itself ~6 %. Tried and dropped
 * (no difference beyond the runs' spread, or worse): the answers as one `string_agg` statement
 * after the loop (+0.23 ms), the insert, counters and notification entries as one statement of
 * CTEs with the splits found by `width_bucket` (5–10 % worse), counters written by `UPDATE`
 * instead of an upsert, locking with `FOR UPDATE` instead of the no-op upsert.
 */
export const COMMIT_FUNCTION = `CREATE OR REPLACE FUNCTION a2a_inbox_commit_v1(ops json, capacity bigint, instance text, channel text, inline_bytes int, notify_bytes int)
  RETURNS text LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET jit = off AS $fn$
DECLARE
  -- Per operation, in batch order (plus a last kind 5, the end): kind (0 a direct message to a
  -- peer that is gone, 1 an append to one recipient, 2 to several, 3 an ack, 4 a drop), slot
  -- count, ack cursor, tenant, message id, time and data.
  kc int[]; ns int[]; u bigint[]; ot text[]; oid text[]; oat bigint[]; od text[];
  -- Per slot (a recipient of an append, or the peer of an ack or drop), in batch order: its
  -- operation, locked inbox (NULL when not locked), peer, and the seq written (NULL if none).
  so int[]; sj int[]; sp text[]; sq bigint[];
  -- Per locked inbox, in key order: tenant, peer, counters now and as last written.
  kt text[]; kp text[]; last bigint[]; cur bigint[]; last0 bigint[]; cur0 bigint[];
  res text[];
  n int; i int; j int; a int := 1; b int; lo int := 1; full_peer text;
  tn text; prefix text; ents text[]; lens int[]; size int;
BEGIN
  -- 1. One statement parses the batch (once), checks that the recipients of direct messages
  -- (\`x\`) still exist (one that is gone is refused and its inbox not created again), locks
  -- every inbox the batch appends to or acks in key order and reads its counters. (The OFFSET 0
  -- keeps the existence check an index probe per message: without it PostgreSQL may hash the
  -- whole peers table instead, which its generic plan then does on every call: 10.8 ms of
  -- database CPU per batch of 60 at 20,000 peers, 3.95 ms with the probes, 4.52 ms for the
  -- previous version of this function.)
  WITH o AS (
    SELECT x.n::int AS n, x.k, x.t, x.r, x.id, x.at, x.d, x.p, x.u,
      CASE WHEN x.k = 'a' THEN
          CASE WHEN x.x AND x.r ->> 0 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM a2a_peers p WHERE p.id = x.r ->> 0 AND p.tenant = x.t OFFSET 0) THEN 0
               WHEN json_array_length(x.r) = 1 THEN 1 ELSE 2 END
        WHEN x.k = 'k' THEN 3 ELSE 4 END AS c
    FROM ROWS FROM (json_to_recordset(ops) AS (k text, t text, r json, id text, at bigint, d text, p text, u bigint, x boolean)) WITH ORDINALITY AS x(k, t, r, id, at, d, p, u, x, n)
  ), s AS (
    SELECT o.n, e.m, o.t, e.peer, o.c
    FROM o CROSS JOIN LATERAL json_array_elements_text(CASE WHEN o.k = 'a' THEN o.r ELSE json_build_array(o.p) END) WITH ORDINALITY AS e(peer, m)
  ), locked AS (
    INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
    SELECT DISTINCT s.t, s.peer, 0::bigint, 0::bigint FROM s WHERE s.c IN (1, 2, 3) ORDER BY 1, 2
    ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = a2a_inbox_state.last_seq
    RETURNING tenant, peer_id, last_seq, cursor
  ), l AS (SELECT locked.*, row_number() OVER (ORDER BY tenant, peer_id)::int AS j FROM locked)
  SELECT oa.*, sa.*, la.* FROM
    (SELECT array_append(array_agg(z.c), 5), array_agg(z.ns), array_agg(z.u), array_agg(z.t), array_agg(z.id), array_agg(z.at), array_agg(z.d)
     FROM (SELECT o.c, CASE WHEN o.k = 'a' THEN json_array_length(o.r) ELSE 1 END AS ns, o.u, o.t, o.id, o.at, o.d FROM o ORDER BY o.n) z) oa,
    (SELECT array_agg(z.n), array_agg(z.j), array_agg(z.peer) FROM (SELECT s.n, l.j, s.peer FROM s LEFT JOIN l ON l.tenant = s.t AND l.peer_id = s.peer ORDER BY s.n, s.m) z) sa,
    (SELECT array_agg(z.tenant), array_agg(z.peer_id), array_agg(z.last_seq), array_agg(z.cursor) FROM (SELECT * FROM l ORDER BY l.j) z) la
  INTO kc, ns, u, ot, oid, oat, od, so, sj, sp, kt, kp, last, cur;

  -- 2. Apply the batch in order, recording only each slot's seq and each operation's answer
  -- (arrays assigned by subscript are changed in place; appending copies the whole array).
  n := cardinality(kc) - 1;
  last0 := last; cur0 := cur;
  sq := array_fill(NULL::bigint, ARRAY[coalesce(cardinality(sj), 0)]);
  res := array_fill(NULL::text, ARRAY[n]);
  FOR i IN 1 .. n + 1 LOOP
    CASE kc[i]
    WHEN 1 THEN
      j := sj[a];
      IF last[j] - cur[j] >= capacity THEN
        res[i] := json_build_object('full', sp[a])::text;
      ELSE
        last[j] := last[j] + 1; sq[a] := last[j]; res[i] := '[' || last[j] || ']';
      END IF;
      a := a + 1;
    WHEN 3 THEN
      j := sj[a];
      IF u[i] > cur[j] AND cur[j] < last[j] THEN cur[j] := least(u[i], last[j]); END IF;
      res[i] := cur[j]::text;
      a := a + 1;
    WHEN 0 THEN
      res[i] := json_build_object('gone', sp[a])::text;
      a := a + ns[i];
    WHEN 2 THEN
      -- A team send: all of its recipients or none.
      full_peer := NULL;
      FOR b IN a .. a + ns[i] - 1 LOOP
        j := sj[b];
        IF last[j] - cur[j] >= capacity THEN full_peer := sp[b]; EXIT; END IF;
      END LOOP;
      IF full_peer IS NOT NULL THEN
        res[i] := json_build_object('full', full_peer)::text;
      ELSE
        FOR b IN a .. a + ns[i] - 1 LOOP
          j := sj[b];
          last[j] := last[j] + 1; sq[b] := last[j];
        END LOOP;
        res[i] := '[' || coalesce(array_to_string(sq[a : a + ns[i] - 1], ','), '') || ']';
      END IF;
      a := a + ns[i];
    ELSE
      -- 3. A drop, or the end: first write the slots since the last write (lo .. a - 1), as
      -- statements over the arrays: the message rows, the changed counters, the wake-ups
      -- (delivered at commit).
      IF a > lo THEN
        INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data)
        SELECT ot[s.o], s.p, s.q, oid[s.o], oat[s.o], od[s.o]
        FROM unnest(so[lo : a - 1], sp[lo : a - 1], sq[lo : a - 1]) AS s(o, p, q) WHERE s.q IS NOT NULL;
      END IF;
      IF last <> last0 OR cur <> cur0 THEN
        INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
        SELECT x.t, x.p, x.l, x.c FROM unnest(kt, kp, last, cur, last0, cur0) AS x(t, p, l, c, l0, c0) WHERE x.l <> x.l0 OR x.c <> x.c0
        ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = excluded.last_seq, cursor = excluded.cursor;
        last0 := last; cur0 := cur;
      END IF;
      -- One notification per tenant (in order of first appearance), split only past
      -- notify_bytes; small messages ride along. (OFFSET 0 keeps each entry computed once.)
      IF a > lo THEN
        FOR tn, ents, lens IN
          SELECT e.t, array_agg(e.entry ORDER BY e.sn), array_agg(octet_length(e.entry) ORDER BY e.sn) FROM (
            SELECT v.sn, v.t, CASE WHEN octet_length(v.e) > inline_bytes THEN '[' || to_json(v.p)::text || ',' || v.q || ']' ELSE v.e END AS entry FROM (
              SELECT s.sn, ot[s.o] AS t, s.p, s.q, '[' || to_json(s.p)::text || ',' || s.q || ',' || to_json(od[s.o])::text || ']' AS e
              FROM unnest(so[lo : a - 1], sp[lo : a - 1], sq[lo : a - 1]) WITH ORDINALITY AS s(o, p, q, sn)
              WHERE s.q IS NOT NULL OFFSET 0) v OFFSET 0) e
          GROUP BY e.t ORDER BY min(e.sn)
        LOOP
          prefix := '{"i":' || to_json(instance)::text || ',"t":' || to_json(tn)::text || ',"d":[';
          size := octet_length(prefix) + 2;
          b := 1;
          FOR j IN 1 .. cardinality(lens) LOOP
            IF j > b AND size + lens[j] + 1 > notify_bytes THEN
              PERFORM pg_notify(channel, prefix || array_to_string(ents[b : j - 1], ',') || ']}');
              b := j;
              size := octet_length(prefix) + 2;
            END IF;
            size := size + lens[j] + 1;
          END LOOP;
          PERFORM pg_notify(channel, prefix || array_to_string(ents[b :], ',') || ']}');
        END LOOP;
      END IF;
      EXIT WHEN i > n;
      DELETE FROM a2a_inbox WHERE tenant = ot[i] AND peer_id = sp[a];
      DELETE FROM a2a_inbox_state WHERE tenant = ot[i] AND peer_id = sp[a];
      j := sj[a];
      IF j IS NOT NULL THEN last[j] := 0; cur[j] := 0; last0[j] := 0; cur0[j] := 0; END IF;
      res[i] := '0';
      a := a + 1;
      lo := a;
    END CASE;
  END LOOP;
  RETURN '[' || array_to_string(res, ',') || ']';
END
$fn$`

/** An append of a batch: tenant, recipient and seq (for the local wake-ups). */
export type Appended = readonly [tenant: string, peer: string, seq: number]

export interface Options {
  /** The database (with the session settings of the store's pool, `PostgresUrl.withSessionDefaults`), for the writer's own connection. */
  readonly url: string
  readonly capacity: number
  /** This instance's id, carried in every notification. */
  readonly instance: string
  /** The notification channel (`a2a_inbox`). */
  readonly channel: string
  /** After each commit, with the inboxes appended to (tenant, peer, seq): local wake-ups. */
  readonly committed: (appended: ReadonlyArray<Appended>) => void
  /** A direct message was refused because its recipient no longer exists. */
  readonly gone: (tenant: string, peer: string) => void
}

/** Counters for measurement (bench and tests): batches committed, writes in them, writes queued or in flight. */
export interface Stats {
  batches: number
  writes: number
  waiting: number
}

const unavailable = (e: unknown) =>
  new Errors.ServiceUnavailable({ message: `store unavailable: ${(e as { message?: string }).message ?? String(e)}` })

/** PostgreSQL's deadlock_detected and serialization_failure: the batch is retried as a whole. */
const isRetryable = (e: SqlError) => {
  const code = (e.cause as { code?: string } | undefined)?.code
  return code === "40P01" || code === "40001"
}

/** A batch's operations in the function's input form (see `COMMIT_FUNCTION`). */
const opsOf = (batch: ReadonlyArray<PendingWrite>) =>
  batch.map((op) => {
    switch (op.kind) {
      case "append":
        return { k: "a", t: op.tenant, r: op.recipients, id: op.draft.id, at: op.now, d: op.data, x: op.draft.to !== undefined }
      case "ack":
        return { k: "k", t: op.tenant, p: op.peer, u: op.upTo }
      case "drop":
        return { k: "d", t: op.tenant, p: op.peer }
    }
  })

/** The function's answer for one operation (see `COMMIT_FUNCTION`). */
type Outcome = ReadonlyArray<number> | { readonly full: string } | { readonly gone: string } | number

/** The call of the commit function, as the writer's named prepared statement. */
const CALL_TEXT = "SELECT a2a_inbox_commit_v1($1::json, $2, $3, $4, $5, $6) AS r"
const CALL_NAME = "a2a_inbox_commit_v1"
/** How long the writer waits to (re)connect before the batch fails (503 to its callers). */
const WRITER_CONNECT_TIMEOUT_MS = 2_000

/**
 * The writer's own connection (a plain `pg.Client`, opened on first use and again after it
 * failed), on which every batch is one call of a named prepared statement. Why not the
 * `SqlClient` pool: a call through `@effect/sql-pg` cost this process ~236 µs of CPU against
 * ~93–110 µs for the same statement on a `pg.Client` (3,000 sequential calls with a batch-sized
 * JSON parameter, 2-core VM), and a cluster's brokers commit more, smaller batches than one
 * broker (each instance's sends and its receivers' acks are separate batches), so that fixed
 * cost was what grew the broker's CPU per message with the number of instances
 * (docs/scaling.md). Being named, the statement is also parsed once per connection by the server.
 */
const writerConnection = (url: string): Effect.Effect<(values: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<{ r: string }>, SqlError>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let client: pg.Client | undefined
    let opening: Promise<pg.Client> | undefined
    let closed = false
    const drop = (c: pg.Client) => {
      if (client === c) client = undefined
      c.removeAllListeners()
      c.on("error", () => {})
      void c.end().catch(() => {})
    }
    const connected = (): Promise<pg.Client> => {
      if (client !== undefined) return Promise.resolve(client)
      opening ??= (async () => {
        const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: WRITER_CONNECT_TIMEOUT_MS, application_name: "a2a-broker-writer", keepAlive: true })
        c.on("error", () => drop(c))
        c.on("end", () => drop(c))
        try {
          await c.connect()
        } catch (e) {
          drop(c)
          throw e
        }
        if (closed) {
          drop(c)
          throw new Error("the store is closing")
        }
        client = c
        return c
      })().finally(() => {
        opening = undefined
      })
      return opening
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true
        const c = client ?? (await opening?.catch(() => undefined))
        if (c !== undefined) {
          client = undefined
          await c.end().catch(() => {})
        }
      }).pipe(Effect.timeoutOption(1_000))
    )
    return (values: ReadonlyArray<unknown>) =>
      Effect.tryPromise({
        try: async () => {
          const c = await connected()
          try {
            return (await c.query<{ r: string }>({ name: CALL_NAME, text: CALL_TEXT, values: values as Array<unknown> })).rows
          } catch (e) {
            // A statement the server refused leaves the connection usable; anything else (the
            // connection broke, the server went down) opens a new one for the next batch.
            if (typeof (e as { code?: unknown }).code !== "string" || /^(08|57|53)/.test((e as { code: string }).code)) drop(c)
            throw e
          }
        },
        catch: (cause) => new SqlError({ cause, message: "Failed to commit a batch" })
      })
  })

export const make = (options: Options) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const stats: Stats = { batches: 0, writes: 0, waiting: 0 }
    const { capacity } = options
    const direct = yield* writerConnection(options.url)

    const call = (batch: ReadonlyArray<PendingWrite>) =>
      direct([JSON.stringify(opsOf(batch)), capacity, options.instance, options.channel, INLINE_MESSAGE_BYTES, NOTIFY_BYTES])

    /** Answers every operation of a committed batch from the function's outcomes. */
    const settle = (batch: ReadonlyArray<PendingWrite>, outcomes: ReadonlyArray<Outcome>) => {
      const appended: Array<Appended> = []
      batch.forEach((op, n) => {
        const outcome = outcomes[n]
        switch (op.kind) {
          case "append": {
            if (!Array.isArray(outcome)) {
              if (typeof outcome === "object" && "gone" in outcome) {
                options.gone(op.tenant, outcome.gone)
                return op.done(Effect.fail(new Errors.PeerNotFound({ message: `no peer ${outcome.gone}`, peer: outcome.gone })))
              }
              const peer = (outcome as { full: string }).full
              return op.done(Effect.fail(new Errors.InboxFull({ message: `the inbox of ${peer} holds ${capacity} unacked messages`, peer: peer as Ids.PeerId, capacity })))
            }
            const deliveries = op.recipients.map((recipient, i): Message.Delivery => {
              const seq = outcome[i]!
              appended.push([op.tenant, recipient, seq])
              return { recipient, message: new Message.Message({ ...op.draft, seq }, true) }
            })
            return op.done(Effect.succeed(deliveries))
          }
          case "ack":
            return op.done(Effect.succeed({ cursor: outcome as number }))
          case "drop":
            return op.done(Effect.void)
        }
      })
      return appended
    }

    const commit = (batch: ReadonlyArray<PendingWrite>) =>
      call(batch).pipe(
        Effect.retry({ while: isRetryable, schedule: Schedule.recurs(3) }),
        Effect.matchCauseEffect({
          onSuccess: (rows) =>
            Effect.sync(() => {
              stats.waiting -= batch.length
              stats.batches++
              stats.writes += batch.length
              options.committed(settle(batch, JSON.parse(rows[0]!.r) as ReadonlyArray<Outcome>))
            }),
          onFailure: (cause) =>
            Effect.sync(() => {
              stats.waiting -= batch.length
              // Nothing of the batch is durable: every write of it fails (503 to its caller).
              const failure = Cause.squash(cause)
              const error = (failure as { _tag?: string })._tag === "SqlError" ? unavailable(failure) : failure
              for (const op of batch) op.done(Effect.die(error))
            })
        })
      )

    const queue = WriteQueue.make(commit, runtime)
    const counted =
      <A, E>(write: (done: WriteQueue.Answer<A, E>) => PendingWrite) =>
      (done: WriteQueue.Answer<A, E>) => {
        stats.waiting++
        return write(done)
      }
    const enqueue = Object.assign(<A, E>(write: (done: WriteQueue.Answer<A, E>) => PendingWrite) => queue(counted(write)), {
      stage: <A, E>(write: (done: WriteQueue.Answer<A, E>) => PendingWrite) => queue.stage(counted(write))
    })

    return {
      stats,
      append: (tenant: string, recipients: ReadonlyArray<Ids.PeerId>, draft: Message.MessageDraft, now: number) =>
        enqueue<ReadonlyArray<Message.Delivery>, Errors.InboxFull | Errors.PeerNotFound>((done) => ({ kind: "append", tenant, recipients, draft, data: JSON.stringify(draft), now, done })),
      /** `append` queued now; returns its outcome to await (staged appends commit in staging order). */
      appendStaged: (tenant: string, recipients: ReadonlyArray<Ids.PeerId>, draft: Message.MessageDraft, now: number) =>
        enqueue.stage<ReadonlyArray<Message.Delivery>, Errors.InboxFull | Errors.PeerNotFound>((done) => ({ kind: "append", tenant, recipients, draft, data: JSON.stringify(draft), now, done })),
      ack: (tenant: string, peer: Ids.PeerId, upTo: number) => enqueue<Message.InboxCursor, never>((done) => ({ kind: "ack", tenant, peer, upTo, done })),
      drop: (tenant: string, peer: Ids.PeerId) => enqueue<void, never>((done) => ({ kind: "drop", tenant, peer, done }))
    }
  })
