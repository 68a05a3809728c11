/**
 * The broker's SQLite client: `@effect/sql`'s `SqlClient` over one better-sqlite3 connection (as
 * `@effect/sql-sqlite-node` builds it: WAL, a prepared-statement cache, one permit for the
 * connection, transactions holding it), plus `SqliteDirect`, which runs a synchronous function
 * on that same connection inside one transaction while holding the permit.
 *
 * Why our own and not `@effect/sql-sqlite-node`'s layer: that client does not hand out its
 * connection, and the inbox's group commit needs it. Measured on the 2-core reference VM
 * (docs/benchmarks.md): a two-statement transaction through `@effect/sql` costs ~120 µs of CPU
 * (a span, a compile, an Effect cache lookup and fiber steps per statement, BEGIN and COMMIT
 * prepared afresh) against ~40 µs for the same statements on better-sqlite3 directly, and its
 * allocations (~240 KiB per message at 300 msg/s) drive the scavenges behind the broker's tail
 * latency. A second connection to the same file cannot do it: SQLite has one writer per file, and
 * a synchronous write waiting on the other connection's open transaction would block the event
 * loop that transaction needs to finish.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import Sqlite from "better-sqlite3"
import { Cache, Context, Duration, Effect, Layer, Scope } from "effect"

/** Synchronous work on the broker's SQLite connection (the inbox's group commit and its counters). */
export interface SqliteDirectService {
  /**
   * Run `f` in one transaction (`BEGIN` … `COMMIT`, rolled back if it throws) while
   * holding the connection, so no other statement or transaction of this client interleaves.
   * `prepare` caches statements by text.
   */
  readonly transaction: <A>(f: (prepare: (sql: string) => Sqlite.Statement) => A) => Effect.Effect<A, SqlError>
}

export class SqliteDirect extends Context.Tag("@mks/a2a-broker/SqliteDirect")<SqliteDirect, SqliteDirectService>() {}

const ATTR_DB_SYSTEM_NAME = "db.system.name"

const make = (filename: string) =>
  Effect.gen(function* () {
    const db = new Sqlite(filename)
    yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
    db.pragma("journal_mode = WAL")

    const prepareCache = yield* Cache.make({
      capacity: 200,
      timeToLive: Duration.minutes(10),
      lookup: (sql: string) => Effect.try({ try: () => db.prepare(sql), catch: (cause) => new SqlError({ cause, message: "Failed to prepare statement " }) })
    })
    const runStatement = (statement: Sqlite.Statement, params: ReadonlyArray<unknown>, raw: boolean) =>
      Effect.withFiberRuntime<ReadonlyArray<any>, SqlError>((fiber) => {
        if (Context.get(fiber.currentContext, SqlClient.SafeIntegers)) statement.safeIntegers(true)
        try {
          if (statement.reader) return Effect.succeed(statement.all(...params))
          const result = statement.run(...params)
          return Effect.succeed(raw ? (result as unknown as ReadonlyArray<any>) : [])
        } catch (cause) {
          return Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
        }
      })
    const run = (sql: string, params: ReadonlyArray<unknown>, raw = false) => Effect.flatMap(prepareCache.get(sql), (s) => runStatement(s, params, raw))
    const runValues = (sql: string, params: ReadonlyArray<unknown>) =>
      Effect.acquireUseRelease(
        prepareCache.get(sql),
        (statement) =>
          Effect.try({
            try: () => {
              if (statement.reader) {
                statement.raw(true)
                return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
              }
              statement.run(...params)
              return []
            },
            catch: (cause) => new SqlError({ cause, message: "Failed to execute statement" })
          }),
        (statement) => Effect.sync(() => statement.reader && statement.raw(false))
      )
    const connection = {
      execute: (sql: string, params: ReadonlyArray<unknown>, transformRows?: (rows: ReadonlyArray<any>) => ReadonlyArray<any>) =>
        transformRows ? Effect.map(run(sql, params), transformRows) : run(sql, params),
      executeRaw: (sql: string, params: ReadonlyArray<unknown>) => run(sql, params, true),
      executeValues: runValues,
      executeUnprepared: (sql: string, params: ReadonlyArray<unknown> | undefined, transformRows?: (rows: ReadonlyArray<any>) => ReadonlyArray<any>) => {
        const effect = Effect.suspend(() => runStatement(db.prepare(sql), params ?? [], false))
        return transformRows ? Effect.map(effect, transformRows) : effect
      },
      executeStream: () => Effect.dieMessage("executeStream not implemented")
    }

    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )
    const client = yield* SqlClient.make({
      acquirer: acquirer as never,
      compiler: Statement.makeCompilerSqlite(),
      transactionAcquirer: transactionAcquirer as never,
      spanAttributes: [[ATTR_DB_SYSTEM_NAME, "sqlite"]]
    })

    // The direct path's statements, by text (the group commit has a handful).
    const direct = new Map<string, Sqlite.Statement>()
    const prepare = (sql: string) => {
      let statement = direct.get(sql)
      if (statement === undefined) direct.set(sql, (statement = db.prepare(sql)))
      return statement
    }
    const inTransaction = db.transaction((f: (prepare: (sql: string) => Sqlite.Statement) => unknown) => f(prepare))
    const transaction: SqliteDirectService["transaction"] = <A>(f: (prepare: (sql: string) => Sqlite.Statement) => A) =>
      semaphore.withPermits(1)(
        Effect.try({
          try: () => inTransaction(f) as A,
          catch: (cause) => new SqlError({ cause, message: "Failed to run a transaction" })
        })
      )
    return { client, direct: { transaction } satisfies SqliteDirectService }
  })

/** `SqlClient` and `SqliteDirect` on the SQLite database at `filename` (WAL). */
export const layer = (filename: string): Layer.Layer<SqlClient.SqlClient | SqliteDirect, never> =>
  Layer.scopedContext(Effect.map(make(filename), ({ client, direct }) => Context.make(SqlClient.SqlClient, client).pipe(Context.add(SqliteDirect, direct)))).pipe(
    Layer.provide(Reactivity.layer)
  )
