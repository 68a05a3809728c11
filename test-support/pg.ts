/**
 * PostgreSQL for tests: one uniquely named database per call, created on the local server
 * (`A2A_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, trust auth) and
 * dropped afterwards.
 *
 * Without a reachable server the PostgreSQL suites are reported as not run (one clear line);
 * with `A2A_REQUIRE_PG=1` (set by `.ci/run`) an unreachable server fails the run instead.
 */
import pg from "pg"

export const ADMIN_URL = process.env.A2A_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

let probe: Promise<string | undefined> | undefined

/** `undefined` when the server answers, else why not. Probed once per test file. */
export const pgUnavailable = (): Promise<string | undefined> =>
  (probe ??= (async () => {
    const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 2_000 })
    try {
      await client.connect()
      await client.query("select 1")
      return undefined
    } catch (error) {
      return `PostgreSQL at ${ADMIN_URL} is not reachable: ${(error as Error).message}`
    } finally {
      await client.end().catch(() => {})
    }
  })())

/**
 * Whether to run the PostgreSQL suites. Prints the reason when they are not run; throws when
 * CI requires them (`A2A_REQUIRE_PG=1`).
 */
export const pgEnabled = async (suite: string): Promise<boolean> => {
  const why = await pgUnavailable()
  if (why === undefined) return true
  if (process.env.A2A_REQUIRE_PG === "1") throw new Error(`${suite}: ${why} (A2A_REQUIRE_PG=1)`)
  process.stderr.write(`NOT RUN: ${suite}: ${why}\n`)
  return false
}

export interface TestDatabase {
  readonly url: string
  readonly name: string
  readonly drop: () => Promise<void>
}

let counter = 0

/** A fresh empty database; `drop()` terminates its connections and drops it. */
export const createDatabase = async (prefix = "a2a_test"): Promise<TestDatabase> => {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`
  const admin = new pg.Client({ connectionString: ADMIN_URL })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end()
  }
  const url = new URL(ADMIN_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const c = new pg.Client({ connectionString: ADMIN_URL })
      await c.connect()
      try {
        await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name])
        await c.query(`DROP DATABASE IF EXISTS "${name}"`)
      } finally {
        await c.end()
      }
    }
  }
}
