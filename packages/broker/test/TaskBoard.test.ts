/**
 * Property test of the task board on every layer (memory, SQLite, PostgreSQL): random batches
 * of operations run concurrently (claim-next, claim, heartbeat, complete, fail, release,
 * cancel), with a controlled clock moved between batches and tiny leases so they lapse, and
 * sweeps. After every batch the outcomes are checked against a model of who holds what:
 * - no task is ever held by two peers (a claim succeeds only when no live lease is held on it);
 * - only the holder with a live lease can heartbeat, complete, fail or release (a lapsed lease
 *   is refused), and a lone such request by that holder is never refused;
 * - a claimed task's dependencies are done; claim-next honours labels and priority order
 *   (every better claimable task was taken by another operation of the same batch), and
 *   answers "none" only when everything claimable was taken;
 * - final states never change, a task is completed at most once;
 * and at the end no task is lost: after the leases lapse, a drain claims and completes every
 * task that is not blocked by a failed or cancelled dependency.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as SqliteClient from "../src/SqliteClient.js"
import { Ids, Task, TaskBoard } from "@mks/a2a"
import { Clock, Duration, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import * as SqlTaskBoard from "../src/SqlTaskBoard.js"

// ---- a clock the test moves -------------------------------------------------------------------

let now = 1_800_000_000_000
const real = Clock.make()
const testClock: Clock.Clock = {
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => now,
  currentTimeMillis: Effect.sync(() => now),
  unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
  currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
  sleep: (d: Duration.Duration) => real.sleep(d)
}

// ---- commands -----------------------------------------------------------------------------------

const WORKERS = ["p_w0", "p_w1", "p_w2"] as Array<Ids.PeerId>
const LABELS = ["a", "b"]
const TEAM = "crew" as Ids.TeamName

type Cmd =
  | { op: "next"; w: number; labels: Array<string>; lease: number }
  | { op: "claim"; w: number; t: number; lease: number }
  | { op: "heartbeat" | "complete" | "fail" | "release"; w: number; t: number; own: boolean; lease: number }
  | { op: "cancel"; t: number }
  | { op: "tick"; ms: number }
  | { op: "sweep" }

const w = fc.nat({ max: WORKERS.length - 1 })
const lease = fc.integer({ min: 1, max: 40 })
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("next" as const), w, labels: fc.subarray(LABELS, { maxLength: 1 }), lease }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("claim" as const), w, t: fc.nat(), lease }) },
  ...(["heartbeat", "complete", "fail", "release"] as const).map((op) => ({
    weight: op === "complete" ? 4 : 1,
    arbitrary: fc.record({ op: fc.constant(op), w, t: fc.nat(), own: fc.boolean(), lease })
  })),
  { weight: 1, arbitrary: fc.record({ op: fc.constant("cancel" as const), t: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 50 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "sweep" as const }) }
)

interface Spec {
  readonly priority: number
  readonly labels: Array<string>
  readonly deps: Array<number>
  readonly maxAttempts: number
}
const specs = fc.array(
  fc.record({ priority: fc.integer({ min: 0, max: 3 }), labels: fc.subarray(LABELS), deps: fc.array(fc.nat(), { maxLength: 2 }), maxAttempts: fc.integer({ min: 1, max: 3 }) }),
  { minLength: 1, maxLength: 10 }
)
const scenario = fc.record({ specs, batches: fc.array(fc.array(cmd, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 14 }) })

// ---- the run ------------------------------------------------------------------------------------

type Outcome = { ok: true; task: Task.Task | undefined } | { ok: false; tag: string; reason?: string }

let runs = 0

const check = async (board: TaskBoard.TaskBoardService, runtime: ManagedRuntime.ManagedRuntime<never, never>, input: { specs: Array<Spec>; batches: Array<Array<Cmd>> }) => {
  const tenant = `run${runs++}`
  const run = <A, E>(e: Effect.Effect<A, E>) => runtime.runPromise(Effect.withClock(e, testClock))
  const attempt = <E extends { _tag: string; reason?: string }>(e: Effect.Effect<Task.Task | undefined, E>): Promise<Outcome> =>
    run(e.pipe(Effect.match({ onFailure: (err): Outcome => ({ ok: false, tag: err._tag, reason: err.reason }), onSuccess: (task): Outcome => ({ ok: true, task }) })))

  const ids: Array<Task.TaskId> = []
  for (const [i, spec] of input.specs.entries()) {
    const deps = [...new Set(spec.deps.filter((d) => d < i))].map((d) => ids[d]!)
    const task = await run(board.create(tenant, { team: TEAM, title: `task ${i}`, priority: spec.priority, labels: spec.labels, dependsOn: deps, maxAttempts: spec.maxAttempts, createdBy: "test" }))
    expect(task.state).toBe("open")
    ids.push(task.id)
    now += 1
  }
  const snapshot = async () => new Map((await run(board.list(tenant, { team: TEAM }))).map((t) => [t.id as string, t]))

  const holding = new Map<string, { worker: Ids.PeerId; expires: number }>()
  const completed = new Map<string, number>()
  const held = (worker: Ids.PeerId) => [...holding.entries()].filter(([, h]) => h.worker === worker).map(([id]) => id as Task.TaskId)

  for (const batch of input.batches) {
    for (const c of batch) if (c.op === "tick") now += c.ms
    const before = await snapshot()
    expect(before.size).toBe(ids.length)
    const at = now
    // Resolve which task each command aims at, from the model as it is before the batch.
    const planned = batch
      .filter((c) => c.op !== "tick")
      .map((c) => {
        if (c.op === "next" || c.op === "sweep") return { c, id: undefined as Task.TaskId | undefined }
        if (c.op === "claim" || c.op === "cancel") return { c, id: ids[c.t % ids.length]! }
        const mine = held(WORKERS[c.w]!)
        return { c, id: c.own && mine.length > 0 ? mine[c.t % mine.length]! : ids[c.t % ids.length]! }
      })
    const outcomes = await Promise.all(
      planned.map(({ c, id }): Promise<Outcome> => {
        switch (c.op) {
          case "next":
            return attempt(board.claimNext(tenant, { team: TEAM, claimant: WORKERS[c.w]!, labels: c.labels, leaseMs: c.lease }))
          case "claim":
            return attempt(board.claim(tenant, id!, { claimant: WORKERS[c.w]!, leaseMs: c.lease }))
          case "heartbeat":
            return attempt(board.heartbeat(tenant, id!, { holder: WORKERS[c.w]!, leaseMs: c.lease, note: "working" }))
          case "complete":
            return attempt(board.complete(tenant, id!, { holder: WORKERS[c.w]!, result: `done by ${WORKERS[c.w]}` }))
          case "fail":
            return attempt(board.fail(tenant, id!, { holder: WORKERS[c.w]!, reason: "boom" }))
          case "release":
            return attempt(board.release(tenant, id!, { holder: WORKERS[c.w]! }))
          case "cancel":
            return attempt(board.cancel(tenant, id!, { reason: "no longer needed" }))
          case "sweep":
            return run(board.sweep).then(() => ({ ok: true, task: undefined }))
        }
      })
    )
    const results = planned.map((p, i) => ({ ...p, out: outcomes[i]!, target: p.id ?? (outcomes[i]!.ok ? outcomes[i]!.task?.id : undefined) }))
    const succeeded = (op: Cmd["op"], id: string) => results.filter((r) => r.c.op === op && r.out.ok && r.target === id)
    const claimedInBatch = new Set(results.filter((r) => (r.c.op === "next" || r.c.op === "claim") && r.out.ok && r.target !== undefined).map((r) => r.target as string))
    const touched = (id: string) => results.filter((r) => r.target === id || r.c.op === "next" || r.c.op === "sweep")
    const takenInBatch = (id: string) => claimedInBatch.has(id) || succeeded("cancel", id).length > 0
    const reopenedInBatch = (id: string) => ["release", "fail", "heartbeat"].some((op) => succeeded(op as Cmd["op"], id).length > 0)
    const depsDoneBy = (task: Task.Task) => task.dependsOn.every((d) => before.get(d)!.state === "done" || succeeded("complete", d).length > 0)
    // A sweep in the batch locks the rows it writes down, and claim-next skips locked rows (SKIP LOCKED).
    const sweeping = batch.some((c) => c.op === "sweep")
    const claimableBefore = (labels: ReadonlyArray<string>) =>
      [...before.values()].filter((t) => t.state === "open" && t.dependsOn.every((d) => before.get(d)!.state === "done") && labels.every((l) => t.labels.includes(l)))

    for (const r of results) {
      const id = r.target
      const prior = id === undefined ? undefined : before.get(id)
      if ((r.c.op === "next" || r.c.op === "claim") && r.out.ok && r.out.task !== undefined) {
        const task = r.out.task
        const worker = WORKERS[r.c.w]!
        const h = holding.get(task.id)
        // Never two holders: the previous lease (if any) lapsed, and no other claim in this batch won it.
        const endedInBatch = succeeded("release", task.id).length + succeeded("fail", task.id).length > 0
        expect(h === undefined || h.expires <= at || endedInBatch, `task ${task.id} claimed by ${worker} while ${h?.worker} holds it until ${h?.expires} (now ${at})`).toBe(true)
        // Several claims of one task in a batch only with as many ends (release, fail) between them.
        const claims = results.filter((x) => (x.c.op === "next" || x.c.op === "claim") && x.out.ok && x.target === task.id).length
        expect(claims, `task ${task.id} claimed ${claims} times in one batch`).toBeLessThanOrEqual(1 + succeeded("release", task.id).length + succeeded("fail", task.id).length)
        expect(Task.isFinal(prior!.state)).toBe(false)
        expect(task.state).toBe("claimed")
        expect(task.assignee).toBe(worker)
        expect(task.leaseExpiresAt).toBe(Ids.nowIso(at + r.c.lease))
        expect(depsDoneBy(task), `task ${task.id} claimed before its dependencies were done`).toBe(true)
        if (r.c.op === "next") {
          for (const l of r.c.labels) expect(task.labels).toContain(l)
          // Priority order: every better claimable task was taken by another operation of this batch.
          for (const better of sweeping ? [] : claimableBefore(r.c.labels)) {
            if (better.id !== task.id && Task.claimOrder(better, task) < 0) expect(takenInBatch(better.id), `claim-next gave ${task.id} (priority ${task.priority}) while ${better.id} (priority ${better.priority}) was claimable`).toBe(true)
          }
          const wasClaimable = claimableBefore(r.c.labels).some((t) => t.id === task.id)
          expect(wasClaimable || reopenedInBatch(task.id) || task.dependsOn.some((d) => succeeded("complete", d).length > 0)).toBe(true)
        }
      }
      if (r.c.op === "next" && r.out.ok && r.out.task === undefined && !sweeping) {
        for (const t of claimableBefore(r.c.labels)) expect(takenInBatch(t.id), `claim-next found nothing while ${t.id} was claimable`).toBe(true)
      }
      if (r.c.op === "heartbeat" || r.c.op === "complete" || r.c.op === "fail" || r.c.op === "release") {
        const worker = WORKERS[r.c.w]!
        const h = holding.get(id!)
        const holds = h !== undefined && h.worker === worker && h.expires > at
        const claimedNow = results.some((x) => (x.c.op === "next" || x.c.op === "claim") && x.out.ok && x.target === id && (x.c as { w: number }).w === (r.c as { w: number }).w)
        if (r.out.ok) {
          expect(holds || claimedNow, `${r.c.op} of ${id} by ${worker} accepted without a live lease`).toBe(true)
          expect(r.out.task!.id).toBe(id)
        } else {
          expect(r.out.tag).toBe("TaskConflict")
          // Refused although it holds a live lease: only if another operation of the batch got there first.
          if (holds) expect(touched(id!).length, `${r.c.op} of ${id} by its holder ${worker} refused (${r.out.reason})`).toBeGreaterThan(1)
          if (h !== undefined && h.worker === worker && h.expires <= at) expect(["lease", "state", "holder"]).toContain(r.out.reason)
        }
      }
      if (r.c.op === "claim" && !r.out.ok) {
        expect(r.out.tag).toBe("TaskConflict")
        const lone = touched(id!).length === 1
        if (lone && claimableBefore([]).some((t) => t.id === id)) expect.fail(`claim of claimable ${id} refused (${r.out.reason})`)
      }
      if (r.c.op === "cancel" && r.out.ok) expect(Task.isFinal(prior!.state)).toBe(false)
    }

    for (const r of results) if (r.c.op === "complete" && r.out.ok) completed.set(r.target!, (completed.get(r.target!) ?? 0) + 1)
    for (const n of completed.values()) expect(n).toBe(1)

    // Every lease held after the batch is one held before it, or one a claim or heartbeat of the batch granted.
    const after = await snapshot()
    for (const [id, t] of before) if (Task.isFinal(t.state)) expect(after.get(id)!.state, `final task ${id} left ${t.state}`).toBe(t.state)
    holding.clear()
    for (const [id, t] of after) {
      if (t.state === "claimed") {
        const expires = Date.parse(t.leaseExpiresAt!)
        const old = before.get(id)!
        const kept = old.state === "claimed" && old.assignee === t.assignee && old.leaseExpiresAt === t.leaseExpiresAt
        const granted = results.some(
          (r) => r.out.ok && r.target === id && ["next", "claim", "heartbeat"].includes(r.c.op) && WORKERS[(r.c as { w: number }).w] === t.assignee && at + (r.c as { lease: number }).lease === expires
        )
        expect(kept || granted, `task ${id} held by ${t.assignee} until ${t.leaseExpiresAt} without a claim`).toBe(true)
        holding.set(id, { worker: t.assignee!, expires })
      }
      if (t.state === "done") expect(completed.get(id)).toBe(1)
    }
    now += 1
  }

  // No task lost: once every lease lapsed, a drain takes everything that is not blocked for good.
  now += 1_000
  await run(board.sweep)
  const swept = await snapshot()
  expect(swept.size).toBe(ids.length)
  for (const t of swept.values()) expect(t.state).not.toBe("claimed")
  const drainer = "p_drain" as Ids.PeerId
  for (let i = 0; i < ids.length * 4; i++) {
    const task = await run(board.claimNext(tenant, { team: TEAM, claimant: drainer, leaseMs: 1_000 }))
    if (task === undefined) break
    await run(board.complete(tenant, task.id, { holder: drainer, result: "drained" }))
    completed.set(task.id, (completed.get(task.id) ?? 0) + 1)
  }
  const end = await snapshot()
  for (const t of end.values()) {
    expect(completed.get(t.id) ?? 0).toBe(t.state === "done" ? 1 : 0)
    if (!Task.isFinal(t.state)) {
      expect(t.state).toBe("open")
      // Open at the end only behind a dependency that will never be done.
      expect(t.dependsOn.some((d) => end.get(d)!.state !== "done"), `task ${t.id} left open with its dependencies done`).toBe(true)
    }
  }
}

const property = (make: () => { board: TaskBoard.TaskBoardService; runtime: ManagedRuntime.ManagedRuntime<never, never> }, numRuns: number) => async () => {
  const { board, runtime } = make()
  await fc.assert(
    fc.asyncProperty(scenario, (input) => check(board, runtime, input)),
    { numRuns, endOnFailure: true }
  )
}

/** A board over an SQL client layer, in a runtime of its own. */
const sqlBoard = (dialect: SqlTaskBoard.Dialect, client: Layer.Layer<SqlClient.SqlClient, unknown>) => ({
  boardRuntime: ManagedRuntime.make(Layer.effect(TaskBoard.TaskBoard, SqlTaskBoard.make(dialect)).pipe(Layer.provide(client), Layer.orDie))
})

describe("TaskBoard property: no double holders, no lost tasks, dependencies and priority", () => {
  it("memory layer", property(() => ({ board: Effect.runSync(TaskBoard.makeMemory), runtime: ManagedRuntime.make(Layer.empty) }), 150), 120_000)

  it("SQLite layer", async () => {
    const { boardRuntime } = sqlBoard("sqlite", SqliteClient.layer(":memory:"))
    const board = await boardRuntime.runPromise(TaskBoard.TaskBoard)
    try {
      await property(() => ({ board, runtime: boardRuntime as unknown as ManagedRuntime.ManagedRuntime<never, never> }), 80)()
    } finally {
      await boardRuntime.dispose()
    }
  }, 120_000)

  let database: TestDatabase | undefined
  afterAll(async () => {
    await database?.drop()
  })
  it("PostgreSQL layer (concurrent batches on a pool of connections)", async () => {
    if (!(await pgEnabled("TaskBoard property on PostgreSQL"))) return
    database = await createDatabase("a2a_taskboard")
    const { boardRuntime } = sqlBoard("pg", PgClient.layer({ url: Redacted.make(database.url), maxConnections: 8 }))
    const board = await boardRuntime.runPromise(TaskBoard.TaskBoard)
    try {
      await property(() => ({ board, runtime: boardRuntime as unknown as ManagedRuntime.ManagedRuntime<never, never> }), 40)()
    } finally {
      await boardRuntime.dispose()
    }
  }, 180_000)
})
