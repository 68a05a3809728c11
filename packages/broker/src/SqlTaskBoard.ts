/**
 * The TaskBoard over `@effect/sql`, one implementation for SQLite and PostgreSQL (docs/tasks.md).
 *
 * Every state change is one conditional `UPDATE … RETURNING` whose `WHERE` is the rule of the
 * change (e.g. complete: `state = 'claimed' AND assignee = holder AND lease_expires_at > now`),
 * so it either applies whole or not at all, whatever runs concurrently; when it does not apply,
 * the row is read to say why (`TaskBoard.holderConflict` / `claimConflict`). A lapsed lease is
 * claimable at once (the `claimable` condition), without waiting for the sweep.
 *
 * Claim-next on PostgreSQL picks its row with `SELECT … FOR UPDATE SKIP LOCKED` inside the
 * `UPDATE`, so concurrent claimants on any number of broker instances each lock a different
 * row instead of queueing on the first one. SQLite has one writer at a time, so the same
 * statement without the locking clause is already atomic.
 */
import { SqlClient } from "@effect/sql"
import type { Fragment } from "@effect/sql/Statement"
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Ids, Task, TaskBoard } from "@mks/a2a"
import { Clock, Effect } from "effect"

export type Dialect = "sqlite" | "pg"

/** How many open (and lapsed) tasks claim-next considers per attempt. */
const CANDIDATES = 64

/** Advisory lock for the DDL below on PostgreSQL (the store's migration lock). */
const MIGRATION_LOCK = 0x0a2a0001

const DDL = [
  `CREATE TABLE IF NOT EXISTS a2a_tasks (
    tenant TEXT NOT NULL, id TEXT NOT NULL, team TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    priority INTEGER NOT NULL, labels TEXT NOT NULL, depends_on TEXT NOT NULL, state TEXT NOT NULL,
    assignee TEXT, lease_expires_at BIGINT, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    result TEXT, error TEXT, note TEXT, created_by TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id))`,
  // Claim-next walks the open tasks of a team in claim order and stops at the first that qualifies.
  `CREATE INDEX IF NOT EXISTS a2a_tasks_next ON a2a_tasks (tenant, team, state, priority DESC, created_at, id)`,
  `CREATE INDEX IF NOT EXISTS a2a_tasks_list ON a2a_tasks (tenant, created_at, id)`,
  `CREATE INDEX IF NOT EXISTS a2a_tasks_lease ON a2a_tasks (state, lease_expires_at)`,
  `CREATE TABLE IF NOT EXISTS a2a_task_labels (tenant TEXT NOT NULL, task_id TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (tenant, task_id, label))`,
  `CREATE INDEX IF NOT EXISTS a2a_task_labels_label ON a2a_task_labels (tenant, label)`,
  `CREATE TABLE IF NOT EXISTS a2a_task_deps (tenant TEXT NOT NULL, task_id TEXT NOT NULL, depends_on TEXT NOT NULL, PRIMARY KEY (tenant, task_id, depends_on))`
]

interface Row {
  readonly tenant: string
  readonly id: string
  readonly team: string
  readonly title: string
  readonly body: string
  readonly priority: number | string
  readonly labels: string
  readonly depends_on: string
  readonly state: string
  readonly assignee: string | null
  readonly lease_expires_at: number | string | null
  readonly attempts: number | string
  readonly max_attempts: number | string
  readonly result: string | null
  readonly error: string | null
  readonly note: string | null
  readonly created_by: string
  readonly created_at: number | string
  readonly updated_at: number | string
}

const toTask = (row: Row): Task.Task =>
  new Task.Task(
    {
      id: row.id as Task.TaskId,
      team: row.team as Ids.TeamName,
      title: row.title,
      body: row.body,
      priority: Number(row.priority),
      labels: JSON.parse(row.labels) as Array<string>,
      state: row.state as Task.TaskState,
      assignee: (row.assignee ?? undefined) as Ids.PeerId | undefined,
      leaseExpiresAt: row.lease_expires_at === null ? undefined : Ids.nowIso(Number(row.lease_expires_at)),
      attempts: Number(row.attempts),
      maxAttempts: Number(row.max_attempts),
      dependsOn: JSON.parse(row.depends_on) as Array<Task.TaskId>,
      result: row.result ?? undefined,
      error: row.error ?? undefined,
      note: row.note ?? undefined,
      createdBy: row.created_by,
      createdAt: Ids.nowIso(Number(row.created_at)),
      updatedAt: Ids.nowIso(Number(row.updated_at))
    },
    true
  )

const unavailable = (e: SqlError) => new Errors.ServiceUnavailable({ message: `store unavailable: ${e.message}` })
/** Store failures are defects of the request (answered 503 by the server's guard), never silent. */
const orDie = <A, E, R>(self: Effect.Effect<A, E | SqlError, R>) =>
  self.pipe(Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.die(unavailable(e)))) as Effect.Effect<A, Exclude<E, SqlError>, R>

/** Create the tables (idempotent; serialized across PostgreSQL instances). */
export const migrate = (dialect: Dialect) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(
      Effect.gen(function* () {
        if (dialect === "pg") yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
        for (const statement of DDL) yield* sql.unsafe(statement)
      })
    )
  })

export const make = (dialect: Dialect): Effect.Effect<TaskBoard.TaskBoardService, never, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* orDie(migrate(dialect))

    const skipLocked = dialect === "pg" ? sql.unsafe("FOR UPDATE SKIP LOCKED") : sql.unsafe("")

    /**
     * Every dependency of `t` is done. Driven from the dependency rows (usually none) with a
     * primary-key lookup of each: a join here let SQLite's planner scan every task of the tenant
     * for every candidate.
     */
    const depsDone = sql`NOT EXISTS (SELECT 1 FROM a2a_task_deps d WHERE d.tenant = t.tenant AND d.task_id = t.id
      AND (SELECT p.state FROM a2a_tasks p WHERE p.tenant = d.tenant AND p.id = d.depends_on) <> 'done')`
    /** `t` is open at `now`: open, or claimed with a lapsed lease and attempts left. */
    const openAt = (now: number) => sql`(t.state = 'open' OR (t.state = 'claimed' AND t.lease_expires_at <= ${now} AND t.attempts < t.max_attempts))`
    const failedAt = (now: number) => sql`(t.state = 'failed' OR (t.state = 'claimed' AND t.lease_expires_at <= ${now} AND t.attempts >= t.max_attempts))`
    const claimedAt = (now: number) => sql`(t.state = 'claimed' AND t.lease_expires_at > ${now})`
    /** `t` is neither done, failed nor cancelled at `now`. */
    const liveAt = (now: number) => sql`(t.state = 'open' OR (t.state = 'claimed' AND (t.lease_expires_at > ${now} OR t.attempts < t.max_attempts)))`
    const hasLabels = (labels: ReadonlyArray<string> | undefined): Array<Fragment> =>
      (labels ?? []).map((label) => sql`EXISTS (SELECT 1 FROM a2a_task_labels l WHERE l.tenant = t.tenant AND l.task_id = t.id AND l.label = ${label})`)
    /** `t` is held by `holder` with a live lease at `now`. */
    const heldBy = (holder: string, now: number) => sql`t.state = 'claimed' AND t.assignee = ${holder} AND t.lease_expires_at > ${now}`

    const read = (tenant: string, id: string) =>
      sql<Row>`SELECT * FROM a2a_tasks WHERE tenant = ${tenant} AND id = ${id}`.pipe(Effect.map((rows) => (rows[0] === undefined ? undefined : toTask(rows[0]))))

    const depStates = (tenant: string, task: Task.Task) =>
      task.dependsOn.length === 0
        ? Effect.succeed([] as Array<Task.TaskState>)
        : sql<{ id: string; state: string }>`SELECT id, state FROM a2a_tasks WHERE tenant = ${tenant} AND ${sql.in("id", task.dependsOn)}`.pipe(
            Effect.map((rows) => task.dependsOn.map((d) => (rows.find((r) => r.id === d)?.state ?? "open") as Task.TaskState))
          )

    /**
     * Run the conditional update `change` (which names the row `t`); when it applied nothing,
     * read the row and fail with why (`explain`), or `TaskNotFound`.
     */
    const conditional = (
      tenant: string,
      id: Task.TaskId,
      change: (now: number) => Effect.Effect<ReadonlyArray<Row>, SqlError>,
      explain: (task: Task.Task, now: number) => Effect.Effect<Errors.TaskConflict | undefined, SqlError>
    ): Effect.Effect<Task.Task, Errors.TaskNotFound | Errors.TaskConflict> =>
      orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const rows = yield* change(now)
          if (rows[0] !== undefined) return toTask(rows[0])
          const task = yield* read(tenant, id)
          if (task === undefined) return yield* Effect.fail(TaskBoard.notFound(id))
          const why = yield* explain(task, now)
          return yield* Effect.fail(
            why ?? new Errors.TaskConflict({ message: `task ${id} changed meanwhile; try again`, task: id, reason: "state", state: Task.atTime(task, now).state })
          )
        })
      )

    const asHolder = (tenant: string, id: Task.TaskId, holder: Ids.PeerId, set: (now: number) => Fragment) =>
      conditional(
        tenant,
        id,
        (now) => sql<Row>`UPDATE a2a_tasks AS t SET ${set(now)} WHERE t.tenant = ${tenant} AND t.id = ${id} AND ${heldBy(holder, now)} RETURNING *`,
        (task, now) => Effect.succeed(TaskBoard.holderConflict(task, now, holder))
      )

    /**
     * One claim-next attempt, in two statements. First the candidates: the first `CANDIDATES`
     * open tasks of the team in claim order and the first lapsed ones (two index walks that stop
     * early, no locks; one `state = 'open' OR …` condition would make the database sort the whole
     * board). Then one `UPDATE` claims the best candidate that is still claimable and not locked
     * by another transaction (`FOR UPDATE SKIP LOCKED` re-reads a row changed since the
     * candidates were read), so only the winner is ever locked and the claim itself is atomic.
     * `undefined`: there were no candidates. SQLite (one writer at a time) does it in one statement.
     */
    const claimOnce = (tenant: string, input: { readonly team: string; readonly claimant: string; readonly labels?: ReadonlyArray<string> | undefined; readonly leaseMs: number }, now: number) =>
      Effect.gen(function* () {
        const common = [sql`t.tenant = ${tenant}`, sql`t.team = ${input.team}`, depsDone, ...hasLabels(input.labels)]
        const open = sql.and([...common, sql`t.state = 'open'`])
        const lapsed = sql.and([...common, sql`t.state = 'claimed'`, sql`t.lease_expires_at <= ${now}`, sql`t.attempts < t.max_attempts`])
        if (dialect === "sqlite") {
          // One writer at a time: one statement that takes the better of the two walks' first rows is atomic as it is.
          return yield* sql<Row>`UPDATE a2a_tasks SET state = 'claimed', assignee = ${input.claimant}, lease_expires_at = ${now + input.leaseMs},
            attempts = attempts + 1, error = NULL, note = NULL, updated_at = ${now}
            WHERE tenant = ${tenant} AND id = (SELECT c.id FROM (
              SELECT * FROM (SELECT t.id, t.priority, t.created_at FROM a2a_tasks t WHERE ${open} ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT 1)
              UNION ALL SELECT * FROM (SELECT t.id, t.priority, t.created_at FROM a2a_tasks t WHERE ${lapsed} ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT 1)
            ) c ORDER BY c.priority DESC, c.created_at ASC, c.id ASC LIMIT 1)
            RETURNING *`.pipe(Effect.map((rows) => (rows.length === 0 ? undefined : rows)))
        }
        const candidates = yield* sql<{ id: string }>`SELECT id FROM (SELECT t.id FROM a2a_tasks t WHERE ${open} ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT ${CANDIDATES}) x
          UNION ALL SELECT id FROM (SELECT t.id FROM a2a_tasks t WHERE ${lapsed} ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT ${CANDIDATES}) y`
        if (candidates.length === 0) return undefined
        const claimable = sql.and([sql`t.tenant = ${tenant}`, sql.in("t.id", candidates.map((c) => c.id)), sql`t.team = ${input.team}`, openAt(now), depsDone])
        return yield* sql<Row>`UPDATE a2a_tasks SET state = 'claimed', assignee = ${input.claimant}, lease_expires_at = ${now + input.leaseMs},
          attempts = attempts + 1, error = NULL, note = NULL, updated_at = ${now}
          WHERE tenant = ${tenant} AND id = (SELECT t.id FROM a2a_tasks t WHERE ${claimable}
            ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT 1 ${skipLocked})
          RETURNING *`
      })

    const service: TaskBoard.TaskBoardService = {
      create: (tenant, input) =>
        orDie(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const task = TaskBoard.newTask(input, now)
            return yield* sql.withTransaction(
              Effect.gen(function* () {
                if (task.dependsOn.length > 0) {
                  const found = yield* sql<{ id: string }>`SELECT id FROM a2a_tasks WHERE tenant = ${tenant} AND ${sql.in("id", task.dependsOn)}`
                  const missing = task.dependsOn.find((d) => !found.some((r) => r.id === d))
                  if (missing !== undefined) return yield* Effect.fail(TaskBoard.notFound(missing))
                }
                yield* sql`INSERT INTO a2a_tasks (tenant, id, team, title, body, priority, labels, depends_on, state, assignee, lease_expires_at,
                  attempts, max_attempts, result, error, note, created_by, created_at, updated_at)
                  VALUES (${tenant}, ${task.id}, ${task.team}, ${task.title}, ${task.body}, ${task.priority}, ${JSON.stringify(task.labels)},
                  ${JSON.stringify(task.dependsOn)}, 'open', NULL, NULL, 0, ${task.maxAttempts}, NULL, NULL, NULL, ${task.createdBy}, ${now}, ${now})`
                for (const label of task.labels) yield* sql`INSERT INTO a2a_task_labels (tenant, task_id, label) VALUES (${tenant}, ${task.id}, ${label})`
                for (const dep of task.dependsOn) yield* sql`INSERT INTO a2a_task_deps (tenant, task_id, depends_on) VALUES (${tenant}, ${task.id}, ${dep})`
                return task
              })
            )
          })
        ),
      list: (tenant, filter) =>
        orDie(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const where: Array<Fragment> = [sql`t.tenant = ${tenant}`, ...hasLabels(filter.labels)]
            if (filter.team !== undefined) where.push(sql`t.team = ${filter.team}`)
            if (filter.assignee !== undefined) where.push(sql`t.assignee = ${filter.assignee} AND (t.state <> 'claimed' OR t.lease_expires_at > ${now})`)
            if (filter.state === "open") where.push(openAt(now))
            else if (filter.state === "failed") where.push(failedAt(now))
            else if (filter.state === "claimed") where.push(claimedAt(now))
            else if (filter.state !== undefined) where.push(sql`t.state = ${filter.state}`)
            const rows = yield* sql<Row>`SELECT * FROM a2a_tasks t WHERE ${sql.and(where)} ORDER BY t.created_at, t.id LIMIT ${filter.limit ?? 1_000}`
            return rows.map((r) => Task.atTime(toTask(r), now))
          })
        ),
      get: (tenant, id) =>
        orDie(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const task = yield* read(tenant, id)
            return task === undefined ? yield* Effect.fail(TaskBoard.notFound(id)) : Task.atTime(task, now)
          })
        ),
      claimNext: (tenant, input) =>
        orDie(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            // Every candidate was taken or locked by concurrent claimants meanwhile: look again (a few times).
            for (let attempt = 0; attempt < 5; attempt++) {
              const rows = yield* claimOnce(tenant, input, now)
              if (rows === undefined) return undefined
              if (rows[0] !== undefined) return toTask(rows[0])
            }
            return undefined
          })
        ),
      claim: (tenant, id, input) =>
        conditional(
          tenant,
          id,
          (now) => sql<Row>`UPDATE a2a_tasks AS t SET state = 'claimed', assignee = ${input.claimant}, lease_expires_at = ${now + input.leaseMs},
            attempts = attempts + 1, error = NULL, note = NULL, updated_at = ${now}
            WHERE t.tenant = ${tenant} AND t.id = ${id} AND ${openAt(now)} AND ${depsDone} RETURNING *`,
          (task, now) => Effect.map(depStates(tenant, task), (states) => TaskBoard.claimConflict(task, now, states))
        ),
      heartbeat: (tenant, id, input) =>
        asHolder(tenant, id, input.holder, (now) => sql`lease_expires_at = ${now + input.leaseMs}, note = COALESCE(${input.note ?? null}, note), updated_at = ${now}`),
      complete: (tenant, id, input) =>
        asHolder(tenant, id, input.holder, (now) => sql`state = 'done', lease_expires_at = NULL, result = ${input.result ?? null}, updated_at = ${now}`),
      fail: (tenant, id, input) =>
        asHolder(
          tenant,
          id,
          input.holder,
          (now) => sql`state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'open' END,
            assignee = CASE WHEN attempts >= max_attempts THEN assignee ELSE NULL END,
            lease_expires_at = NULL, error = ${input.reason ?? "failed"}, updated_at = ${now}`
        ),
      release: (tenant, id, input) =>
        asHolder(
          tenant,
          id,
          input.holder,
          (now) => sql`state = 'open', assignee = NULL, lease_expires_at = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ${now}`
        ),
      cancel: (tenant, id, input) =>
        conditional(
          tenant,
          id,
          (now) => sql<Row>`UPDATE a2a_tasks AS t SET state = 'cancelled', assignee = NULL, lease_expires_at = NULL, error = ${input.reason ?? "cancelled"}, updated_at = ${now}
            WHERE t.tenant = ${tenant} AND t.id = ${id} AND ${liveAt(now)} RETURNING *`,
          (task, now) => Effect.succeed(TaskBoard.liveConflict(task, now))
        ),
      reassign: (tenant, id, input) =>
        conditional(
          tenant,
          id,
          (now) =>
            input.assignee === undefined
              ? sql<Row>`UPDATE a2a_tasks AS t SET state = 'open', assignee = NULL, lease_expires_at = NULL, updated_at = ${now}
                WHERE t.tenant = ${tenant} AND t.id = ${id} AND ${liveAt(now)} RETURNING *`
              : sql<Row>`UPDATE a2a_tasks AS t SET state = 'claimed', assignee = ${input.assignee}, lease_expires_at = ${now + input.leaseMs},
                attempts = attempts + 1, updated_at = ${now}
                WHERE t.tenant = ${tenant} AND t.id = ${id} AND ${liveAt(now)} RETURNING *`,
          (task, now) => Effect.succeed(TaskBoard.liveConflict(task, now))
        ),
      sweep: orDie(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const rows = yield* sql<Row>`UPDATE a2a_tasks SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'open' END,
            assignee = NULL, error = 'lease expired', updated_at = lease_expires_at, lease_expires_at = NULL
            WHERE state = 'claimed' AND lease_expires_at <= ${now} RETURNING *`
          return rows.map((row) => ({ tenant: row.tenant, task: toTask(row) }))
        })
      )
    }
    return service
  })
