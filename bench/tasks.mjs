/**
 * Task board claims (issue 19), all in one run so the figures share the machine's load:
 *
 *  - claims per second and claim latency (p50/p99) with `claimants` concurrent claimants, each
 *    looping `POST /api/tasks/claim` until the board is empty, against one broker on SQLite, one
 *    broker on PostgreSQL, and two brokers on one PostgreSQL database (claimants alternate
 *    between the instances);
 *  - the same-run baseline: a plain `SELECT … FOR UPDATE SKIP LOCKED` + `UPDATE` loop (one
 *    transaction per claim) with the same number of claimants on the same PostgreSQL server,
 *    through a pool of 10 connections (a broker instance's pool size), no HTTP, no auth, no
 *    JSON: the floor of a claim on that database.
 *
 * For scale, each broker run also measures its HTTP floor: as many authenticated
 * `GET /api/peers/:id` with the same concurrency (a claim is an HTTP request plus its SQL).
 *
 * The board holds `tasks` open tasks (priorities 0-2) before each run; claims are not completed
 * (the figure is the claim path alone). Latency counts only claims that got a task.
 * PostgreSQL is the local server (`A2A_TEST_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres);
 * a database is created per run and dropped after it. Without a server the PostgreSQL rows are
 * reported as not run. Results: bench/results/tasks.json.
 *
 *   node bench/tasks.mjs [--quick]
 */
import { createRequire } from "node:module"
import { parseArgs } from "node:util"
import { join } from "node:path"
import { readFileSync } from "node:fs"
import { BROKER_CLI, DIE_WITH_PARENT, log, machine, mapLimit, printTable, result, roundAll, ROOT, startProcess, summarize, tempDir, writeResults } from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false } } })
const CONFIG = flags.quick ? { claimants: 50, tasks: 1_000 } : { claimants: 50, tasks: 5_000 }
const TEAM = "bench"

const require = createRequire(join(ROOT, "packages", "broker", "package.json"))
const pg = require(createRequire(require.resolve("@effect/sql-pg")).resolve("pg"))
const ADMIN_URL = process.env.A2A_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const admin = async (sql) => {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 2_000 })
  await client.connect()
  try {
    return await client.query(sql)
  } finally {
    await client.end()
  }
}

const pgReachable = await admin("select 1").then(
  () => true,
  (e) => {
    log(`NOT RUN: PostgreSQL rows: ${ADMIN_URL} is not reachable (${e.message})`)
    return false
  }
)
const databases = []
const createDatabase = async () => {
  const name = `a2a_bench_tasks_${process.pid}_${databases.length}`
  await admin(`CREATE DATABASE "${name}"`)
  databases.push(name)
  const url = new URL(ADMIN_URL)
  url.pathname = `/${name}`
  return url.toString()
}
const dropDatabases = async () => {
  for (const name of databases) {
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`).catch(() => {})
    await admin(`DROP DATABASE IF EXISTS "${name}"`).catch(() => {})
  }
}

/** `instances` brokers on `db`, sharing one home (the tokens file): one broker to clients. */
const startCluster = async (db, instances) => {
  const home = tempDir("a2a-bench-tasks-")
  const brokers = []
  for (let i = 0; i < instances; i++) {
    const proc = await startProcess(process.execPath, [DIE_WITH_PARENT, BROKER_CLI, "--port", "0", "--home", home, "--db", db === "sqlite" ? join(home, "broker.db") : db], {
      ready: /a2a-broker listening on (http:\/\/\S+)/,
      env: { ...process.env, A2A_HOME: home },
      name: "a2a-broker"
    })
    brokers.push({ ...proc, url: proc.match[1] })
  }
  const token = readFileSync(join(home, "broker.token"), "utf8").trim()
  return { brokers, token, stop: () => Promise.all(brokers.map((b) => b.stop())) }
}

const post = async (url, token, path, body) => {
  const res = await fetch(url + path, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) })
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  return res.json()
}

const stats = (label, instances, claimed, seconds, latencies) => {
  const s = summarize(latencies.sort((a, b) => a - b))
  const row = { label, instances, claims: claimed, claimsPerS: Math.round(claimed / seconds), ...roundAll({ p50Ms: s.p50, p99Ms: s.p99, maxMs: s.max }) }
  log(`${label}: ${row.claimsPerS} claims/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms`)
  return row
}

/** Fill the board, then `claimants` loops claim until it is empty. */
const claims = async (label, cluster) => {
  const { brokers, token } = cluster
  const peers = await mapLimit(Array.from({ length: CONFIG.claimants }, (_, i) => i), 16, async (i) =>
    (await post(brokers[i % brokers.length].url, token, "/api/peers", { name: `claimant-${i}`, teams: [TEAM] })).peer.id
  )
  await mapLimit(Array.from({ length: CONFIG.tasks }, (_, i) => i), 20, (i) =>
    post(brokers[i % brokers.length].url, token, "/api/tasks", { team: TEAM, title: `task ${i}`, priority: i % 3 })
  )
  const latencies = []
  let claimed = 0
  const started = performance.now()
  await Promise.all(
    peers.map(async (peer, i) => {
      const url = brokers[i % brokers.length].url
      for (;;) {
        const t = performance.now()
        const { task } = await post(url, token, "/api/tasks/claim", { team: TEAM, peer, leaseMs: 600_000 })
        if (task === null) return
        latencies.push(performance.now() - t)
        claimed++
      }
    })
  )
  const seconds = (performance.now() - started) / 1000
  if (claimed !== CONFIG.tasks) throw new Error(`${label}: ${claimed} claims for ${CONFIG.tasks} tasks`)
  const row = stats(label, brokers.length, claimed, seconds, latencies)
  // The HTTP floor of the same brokers: as many authenticated GET /api/peers/:id, same concurrency.
  const gets = []
  let left = CONFIG.tasks
  const t0 = performance.now()
  await Promise.all(
    peers.map(async (peer, i) => {
      const url = brokers[i % brokers.length].url
      while (left-- > 0) {
        const t = performance.now()
        const res = await fetch(`${url}/api/peers/${peer}`, { headers: { authorization: `Bearer ${token}` } })
        await res.text()
        gets.push(performance.now() - t)
      }
    })
  )
  const floor = summarize(gets.sort((a, b) => a - b))
  return { ...row, ...roundAll({ httpFloorPerS: CONFIG.tasks / ((performance.now() - t0) / 1000), httpFloorP50Ms: floor.p50, httpFloorP99Ms: floor.p99 }) }
}

/** The floor: SELECT … FOR UPDATE SKIP LOCKED + UPDATE per claim, straight on the database. */
const skipLockedBaseline = async (url) => {
  const pool = new pg.Pool({ connectionString: url, max: 10 })
  try {
    await pool.query(`CREATE TABLE queue (id BIGSERIAL PRIMARY KEY, priority INT NOT NULL, state TEXT NOT NULL, holder TEXT, lease BIGINT)`)
    await pool.query(`CREATE INDEX queue_claim ON queue (state, priority DESC, id)`)
    await pool.query(`INSERT INTO queue (priority, state) SELECT g % 3, 'open' FROM generate_series(1, ${CONFIG.tasks}) g`)
    const latencies = []
    let claimed = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: CONFIG.claimants }, async (_, i) => {
        for (;;) {
          const t = performance.now()
          const client = await pool.connect()
          let got
          try {
            await client.query("BEGIN")
            const rows = await client.query(`SELECT id FROM queue WHERE state = 'open' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED`)
            got = rows.rows[0]
            if (got !== undefined) await client.query(`UPDATE queue SET state = 'claimed', holder = $1, lease = $2 WHERE id = $3`, [`c${i}`, Date.now() + 600_000, got.id])
            await client.query("COMMIT")
          } finally {
            client.release()
          }
          if (got === undefined) return
          latencies.push(performance.now() - t)
          claimed++
        }
      })
    )
    return stats("plain SELECT … FOR UPDATE SKIP LOCKED loop (PostgreSQL, pool of 10)", 0, claimed, (performance.now() - started) / 1000, latencies)
  } finally {
    await pool.end()
  }
}

const runs = []
let baseline
try {
  log(`claims: ${CONFIG.claimants} claimants, ${CONFIG.tasks} tasks per run`)
  if (pgReachable) baseline = await skipLockedBaseline(await createDatabase())
  for (const [label, db, instances] of [
    ["sqlite, 1 broker", "sqlite", 1],
    ...(pgReachable ? [["postgres, 1 broker", "pg", 1], ["postgres, 2 brokers", "pg", 2]] : [])
  ]) {
    const cluster = await startCluster(db === "pg" ? await createDatabase() : "sqlite", instances)
    try {
      runs.push(await claims(label, cluster))
    } finally {
      await cluster.stop()
    }
  }
} finally {
  await dropDatabases()
}

const rows = runs.map((r) =>
  result({
    name: `claim-next ${r.label}: claims/s`,
    ours: r.claimsPerS,
    baseline: baseline?.claimsPerS ?? NaN,
    unit: "claims/s",
    target: "reported",
    met: true,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    baselineP50Ms: baseline?.p50Ms,
    baselineP99Ms: baseline?.p99Ms,
    httpFloorPerS: r.httpFloorPerS
  })
)

printTable([...runs, ...(baseline === undefined ? [] : [baseline])], [["label", "claims"], ["instances", "brokers"], ["claimsPerS", "claims/s"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["maxMs", "max ms"], ["httpFloorPerS", "GET /api/peers/:id per s"]])
const file = writeResults("tasks", {
  machine: machine(),
  config: { ...CONFIG, quick: flags.quick },
  postgres: pgReachable ? "ran" : "NOT RUN (no server)",
  results: rows,
  runs,
  baseline: baseline ?? "NOT RUN (no PostgreSQL server)"
})
log(`wrote ${file}`)
