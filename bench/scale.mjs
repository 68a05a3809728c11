/**
 * Scale-out benchmarks (issue 7), all in one run so the figures share the machine's load:
 *
 *  1. delivery throughput and latency (p50/p99, send → push) with one broker on SQLite (the
 *     baseline), one broker on PostgreSQL, and two brokers on one PostgreSQL database with
 *     every sender on one instance and its receiver on the other;
 *  2. the proxy's quota check (reserve + settle of one request) with the PostgreSQL store
 *     against the file store (the memory meter behind `UsageFile`), sequential and 50 at once.
 *
 * Each delivery run: `pairs` senders keep at most `window` messages in flight to their
 * receiver (a message is done when the receiver got it); receivers ack every 100 messages.
 * PostgreSQL is the local server (`A2A_TEST_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres);
 * a database is created for the run and dropped after it. Without a server the PostgreSQL rows
 * are reported as not run. Results: bench/results/scale.json.
 *
 *   node bench/scale.mjs [--quick]
 */
import { WebSocket } from "ws"
import { createRequire } from "node:module"
import { parseArgs } from "node:util"
import { join } from "node:path"
import { readFileSync } from "node:fs"
import { BROKER_CLI, DIE_WITH_PARENT, log, machine, printTable, result, roundAll, ROOT, startProcess, summarize, tempDir, writeResults } from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false } } })
const CONFIG = flags.quick
  ? { pairs: 10, window: 20, warmupMs: 500, durationMs: 2_000, quotaOps: 300 }
  : { pairs: 20, window: 20, warmupMs: 1_000, durationMs: 5_000, quotaOps: 2_000 }

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
  const name = `a2a_bench_${process.pid}_${databases.length}`
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
  const home = tempDir("a2a-bench-scale-")
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

const open = (url, token, peer) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws/broker/peer/${peer}`, { headers: { authorization: `Bearer ${token}` } })
    ws.once("message", () => resolve(ws)) // the hello
    ws.once("error", reject)
  })

/** Closed-loop delivery: senders on instance 0, their receivers on the last instance. */
const delivery = async (label, cluster) => {
  const { brokers, token } = cluster
  const first = brokers[0].url
  const last = brokers[brokers.length - 1].url
  const senders = []
  const receivers = []
  for (let i = 0; i < CONFIG.pairs; i++) {
    const s = (await post(first, token, "/api/peers", { name: `s${i}` })).peer.id
    const r = (await post(first, token, "/api/peers", { name: `r${i}` })).peer.id
    senders.push({ id: s, ws: await open(first, token, s), inflight: 0 })
    receivers.push({ id: r, ws: await open(last, token, r) })
  }
  const latencies = []
  let running = true
  let windowStart = Infinity
  let windowEnd = Infinity
  let done = 0
  const pump = (i) => {
    const s = senders[i]
    while (running && s.inflight < CONFIG.window) {
      s.inflight++
      s.ws.send(JSON.stringify({ type: "send", to: receivers[i].id, body: `${i} ${performance.now().toFixed(3)}` }))
    }
  }
  receivers.forEach((r, i) =>
    r.ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      if (frame.type !== "message") return
      const now = performance.now()
      const [from, at] = frame.message.body.split(" ")
      if (now >= windowStart && now < windowEnd) {
        done++
        latencies.push(now - Number(at))
      }
      if (frame.message.seq % 100 === 0) r.ws.send(JSON.stringify({ type: "ack", upTo: frame.message.seq }))
      senders[Number(from)].inflight--
      pump(Number(from))
    })
  )
  const started = performance.now()
  windowStart = started + CONFIG.warmupMs
  windowEnd = windowStart + CONFIG.durationMs
  senders.forEach((_, i) => pump(i))
  await new Promise((r) => setTimeout(r, CONFIG.warmupMs + CONFIG.durationMs))
  running = false
  for (const p of [...senders, ...receivers]) p.ws.close()
  const stats = summarize(latencies.sort((a, b) => a - b))
  const row = { label, instances: brokers.length, msgPerS: Math.round(done / (CONFIG.durationMs / 1000)), ...roundAll({ p50Ms: stats.p50, p99Ms: stats.p99, maxMs: stats.max }) }
  log(`${label}: ${row.msgPerS} msg/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms`)
  return row
}

// ---- 2. the proxy's quota check ------------------------------------------------------------------

const proxyQuota = async (label, build) => {
  const { Effect, Layer, Context, Scope, Exit } = await import(require.resolve("effect"))
  const { UsageMeter } = await import(join(ROOT, "packages", "core", "dist", "index.js"))
  const scope = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(Layer.buildWithScope(build(), scope))
  const meter = Context.get(ctx, UsageMeter.UsageMeter)
  const limits = { tokensPer5h: 1e12, requestsPerMinute: 1e9 }
  const usage = { inputTokens: 10, outputTokens: 20, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }
  const once = (key) => Effect.flatMap(meter.reserve(key, limits, 100), (r) => meter.settle(r, "m", usage))
  const times = []
  for (let i = 0; i < CONFIG.quotaOps; i++) {
    const t = performance.now()
    await Effect.runPromise(once(`k_seq_${i % 10}`))
    times.push(performance.now() - t)
  }
  const t0 = performance.now()
  await Effect.runPromise(Effect.forEach(Array.from({ length: CONFIG.quotaOps }, (_, i) => i), (i) => once(`k_par_${i % 10}`), { concurrency: 50, discard: true }))
  const parallelPerS = CONFIG.quotaOps / ((performance.now() - t0) / 1000)
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const stats = summarize(times.sort((a, b) => a - b))
  const row = { label, ...roundAll({ meanMs: stats.mean, p50Ms: stats.p50, p99Ms: stats.p99, checksPerS50: parallelPerS }) }
  log(`${label}: reserve+settle mean ${row.meanMs} ms, p99 ${row.p99Ms} ms; ${row.checksPerS50}/s with 50 at once`)
  return row
}

const runs = []
const quota = []
try {
  log(`delivery: ${CONFIG.pairs} pairs x window ${CONFIG.window}, ${CONFIG.durationMs} ms after ${CONFIG.warmupMs} ms warm-up`)
  for (const [label, db, instances] of [
    ["sqlite, 1 broker", "sqlite", 1],
    ...(pgReachable ? [["postgres, 1 broker", "pg", 1], ["postgres, 2 brokers (cross-instance)", "pg", 2]] : [])
  ]) {
    const cluster = await startCluster(db === "pg" ? await createDatabase() : "sqlite", instances)
    try {
      runs.push(await delivery(label, cluster))
    } finally {
      await cluster.stop()
    }
  }
  const { UsageFile, PgStore } = await import(join(ROOT, "packages", "proxy", "dist", "index.js"))
  const dir = tempDir("a2a-bench-usage-")
  quota.push(await proxyQuota("file store (memory meter, flushed to a file)", () => UsageFile.layer({ path: join(dir, "usage.json") })))
  if (pgReachable) {
    const url = await createDatabase()
    quota.push(await proxyQuota("postgres store (one conditional UPDATE each)", () => PgStore.layer(url)))
  }
} finally {
  await dropDatabases()
}

const base = runs.find((r) => r.label.startsWith("sqlite"))
const rows = runs.map((r) =>
  result({ name: `delivery ${r.label}: msg/s`, ours: r.msgPerS, baseline: base.msgPerS, unit: "msg/s", target: "reported", met: true, p50Ms: r.p50Ms, p99Ms: r.p99Ms })
)
const fileQuota = quota.find((q) => q.label.startsWith("file"))
for (const q of quota) rows.push(result({ name: `quota check ${q.label}: mean`, ours: q.meanMs, baseline: fileQuota.meanMs, unit: "ms", target: "reported", met: true, p99Ms: q.p99Ms, checksPerS50: q.checksPerS50 }))

printTable(runs, [["label", "delivery"], ["instances", "instances"], ["msgPerS", "msg/s"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["maxMs", "max ms"]])
printTable(quota, [["label", "quota check"], ["meanMs", "mean ms"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["checksPerS50", "/s, 50 at once"]])
const file = writeResults("scale", { machine: machine(), config: CONFIG, postgres: pgReachable ? "ran" : "NOT RUN (no server)", results: rows, delivery: runs, quota })
log(`wrote ${file}`)
