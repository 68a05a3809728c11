/**
 * Group commit of inbox writes on PostgreSQL (see docs/scaling.md, "Group commit").
 *
 * Appends (direct and team), acks and drops that arrive while a batch is in flight are queued;
 * the single writer of this instance then hands the whole queue to ONE call of the server-side
 * function `a2a_inbox_commit_v1` (`COMMIT_FUNCTION`), a statement of its own and so one
 * transaction and one round trip:
 *
 *  1. lock: one upsert over every inbox the batch appends to or acks (`ON CONFLICT DO UPDATE`
 *     that changes nothing, sorted by key so two instances lock in the same order) reads each
 *     inbox's `last_seq` and `cursor` and holds its row lock until commit — seqs of one
 *     recipient are still assigned and committed in order whichever instance writes;
 *  2. the batch is applied in queue order (capacity checked per send, all or nothing across a
 *     team send's recipients; an ack moves the cursor forward only);
 *  3. write: one multi-row insert of the message rows, one upsert of the changed counters and
 *     the batch's wake-up notification(s) (`pg_notify`, delivered at commit); a drop in the
 *     batch first writes what precedes it, then deletes the inbox.
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
 */
export const COMMIT_FUNCTION = `CREATE OR REPLACE FUNCTION a2a_inbox_commit_v1(ops json, capacity bigint, instance text, channel text, inline_bytes int, notify_bytes int)
  RETURNS text LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET jit = off AS $fn$
DECLARE
  ix jsonb;
  known jsonb;
  k_tenant text[]; k_peer text[]; last bigint[]; cur bigint[]; dirty boolean[];
  o record; r text; i int; j int; full_peer text; seqs bigint[]; entry text;
  results text[] := '{}';
  w_tenant text[] := '{}'; w_peer text[] := '{}'; w_seq bigint[] := '{}'; w_id text[] := '{}'; w_at bigint[] := '{}'; w_data text[] := '{}';
  tn text; prefix text; part text; size int;
BEGIN
  -- 0. The recipients of direct messages (\`x\`) that still exist: a message to one that is
  -- gone is refused, and its inbox is not created again.
  SELECT COALESCE(jsonb_object_agg(q.t || chr(31) || q.id, true), '{}') INTO known
  FROM (SELECT DISTINCT x.t, x.r ->> 0 AS id FROM json_to_recordset(ops) AS x(k text, t text, r json, x boolean) WHERE x.k = 'a' AND x.x) q
  WHERE EXISTS (SELECT 1 FROM a2a_peers p WHERE p.id = q.id AND p.tenant = q.t);

  -- 1. Lock every inbox the batch appends to or acks, in key order, and read its counters.
  WITH wanted AS (
    SELECT DISTINCT x.t AS tenant, p.peer AS peer_id
    FROM json_to_recordset(ops) AS x(k text, t text, r json, p text, x boolean)
    CROSS JOIN LATERAL json_array_elements_text(CASE
      WHEN x.k = 'a' AND (x.x IS NOT TRUE OR known ? (x.t || chr(31) || (x.r ->> 0))) THEN x.r
      WHEN x.k = 'k' THEN json_build_array(x.p) ELSE '[]'::json END) AS p(peer)
  ), locked AS (
    INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
    SELECT tenant, peer_id, 0, 0 FROM wanted ORDER BY tenant, peer_id
    ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = a2a_inbox_state.last_seq
    RETURNING tenant, peer_id, last_seq, cursor
  ), numbered AS (SELECT l.*, row_number() OVER () AS n FROM locked l)
  SELECT COALESCE(jsonb_object_agg(tenant || chr(31) || peer_id, n), '{}'), array_agg(tenant ORDER BY n), array_agg(peer_id ORDER BY n),
    array_agg(last_seq ORDER BY n), array_agg(cursor ORDER BY n), array_agg(false ORDER BY n)
  INTO ix, k_tenant, k_peer, last, cur, dirty FROM numbered;

  -- 2. Apply the batch in order; a drop (and the end) first writes what precedes it.
  FOR o IN SELECT * FROM ROWS FROM (json_to_recordset(ops) AS (k text, t text, r json, id text, at bigint, d text, p text, u bigint, x boolean)) WITH ORDINALITY AS x(k, t, r, id, at, d, p, u, x, n)
           UNION ALL SELECT 'end', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 9223372036854775807
           ORDER BY n LOOP
    IF o.k = 'a' AND o.x AND NOT known ? (o.t || chr(31) || (o.r ->> 0)) THEN
      results := results || json_build_object('gone', o.r ->> 0)::text;
    ELSIF o.k = 'a' AND json_array_length(o.r) = 1 THEN
      -- A direct message (or a team of one) without a query per recipient: the loops below run
      -- a statement each, which made a batch's messages cost ~40 % more database CPU.
      r := o.r ->> 0;
      i := (ix ->> (o.t || chr(31) || r))::int;
      IF last[i] - cur[i] >= capacity THEN
        results := results || json_build_object('full', r)::text;
      ELSE
        last[i] := last[i] + 1;
        dirty[i] := true;
        w_tenant := w_tenant || o.t; w_peer := w_peer || r; w_seq := w_seq || last[i];
        w_id := w_id || o.id; w_at := w_at || o.at; w_data := w_data || o.d;
        results := results || ('[' || last[i] || ']');
      END IF;
    ELSIF o.k = 'a' THEN
      full_peer := NULL;
      FOR r IN SELECT json_array_elements_text(o.r) LOOP
        i := (ix ->> (o.t || chr(31) || r))::int;
        IF last[i] - cur[i] >= capacity THEN full_peer := r; EXIT; END IF;
      END LOOP;
      IF full_peer IS NOT NULL THEN
        results := results || json_build_object('full', full_peer)::text;
      ELSE
        seqs := '{}';
        FOR r IN SELECT json_array_elements_text(o.r) LOOP
          i := (ix ->> (o.t || chr(31) || r))::int;
          last[i] := last[i] + 1;
          dirty[i] := true;
          w_tenant := w_tenant || o.t; w_peer := w_peer || r; w_seq := w_seq || last[i];
          w_id := w_id || o.id; w_at := w_at || o.at; w_data := w_data || o.d;
          seqs := seqs || last[i];
        END LOOP;
        results := results || array_to_json(seqs)::text;
      END IF;
    ELSIF o.k = 'k' THEN
      i := (ix ->> (o.t || chr(31) || o.p))::int;
      IF o.u > cur[i] AND cur[i] < last[i] THEN
        cur[i] := least(o.u, last[i]);
        dirty[i] := true;
      END IF;
      results := results || cur[i]::text;
    ELSE
      -- 3. Write: the message rows, the changed counters, the wake-ups (delivered at commit).
      IF cardinality(w_seq) > 0 THEN
        INSERT INTO a2a_inbox (tenant, peer_id, seq, message_id, appended_at, data)
        SELECT * FROM unnest(w_tenant, w_peer, w_seq, w_id, w_at, w_data);
      END IF;
      IF true = ANY(dirty) THEN
        INSERT INTO a2a_inbox_state (tenant, peer_id, last_seq, cursor)
        SELECT x.t, x.p, x.l, x.c FROM unnest(k_tenant, k_peer, last, cur, dirty) AS x(t, p, l, c, w) WHERE x.w
        ON CONFLICT (tenant, peer_id) DO UPDATE SET last_seq = excluded.last_seq, cursor = excluded.cursor;
        dirty := array_fill(false, ARRAY[cardinality(dirty)]);
      END IF;
      -- One notification per tenant, split only past notify_bytes; small messages ride along.
      FOR tn IN SELECT x.t FROM unnest(w_tenant) WITH ORDINALITY AS x(t, n) GROUP BY x.t ORDER BY min(x.n) LOOP
        prefix := '{"i":' || to_json(instance)::text || ',"t":' || to_json(tn)::text || ',"d":[';
        part := NULL;
        size := octet_length(prefix) + 2;
        FOR j IN 1 .. cardinality(w_seq) LOOP
          CONTINUE WHEN w_tenant[j] <> tn;
          entry := '[' || to_json(w_peer[j])::text || ',' || w_seq[j] || ',' || to_json(w_data[j])::text || ']';
          IF octet_length(entry) > inline_bytes THEN entry := '[' || to_json(w_peer[j])::text || ',' || w_seq[j] || ']'; END IF;
          IF part IS NOT NULL AND size + octet_length(entry) + 1 > notify_bytes THEN
            PERFORM pg_notify(channel, prefix || part || ']}');
            part := NULL;
            size := octet_length(prefix) + 2;
          END IF;
          part := CASE WHEN part IS NULL THEN entry ELSE part || ',' || entry END;
          size := size + octet_length(entry) + 1;
        END LOOP;
        IF part IS NOT NULL THEN PERFORM pg_notify(channel, prefix || part || ']}'); END IF;
      END LOOP;
      w_tenant := '{}'; w_peer := '{}'; w_seq := '{}'; w_id := '{}'; w_at := '{}'; w_data := '{}';
      IF o.k = 'd' THEN
        DELETE FROM a2a_inbox WHERE tenant = o.t AND peer_id = o.p;
        DELETE FROM a2a_inbox_state WHERE tenant = o.t AND peer_id = o.p;
        i := (ix ->> (o.t || chr(31) || o.p))::int;
        IF i IS NOT NULL THEN last[i] := 0; cur[i] := 0; END IF;
        results := results || '0'::text;
      END IF;
    END IF;
  END LOOP;
  RETURN '[' || array_to_string(results, ',') || ']';
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
