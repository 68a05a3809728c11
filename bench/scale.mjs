/**
 * Scale-out benchmarks (issue 7), all in one run so the figures share the machine's load:
 *
 *  1. delivery throughput and latency (p50/p99, send → push) with one broker on SQLite (the
 *     baseline), one broker on PostgreSQL, and two and three brokers on one PostgreSQL database
 *     with every sender on the first instance and the receivers spread over the others (every
 *     message crosses instances); for each, the CPU that every broker process and the
 *     PostgreSQL server spent per message delivered, and the capacity model of
 *     docs/scaling.md checked against the measured 2- and 3-broker rates;
 *  2. cross-instance send → push latency at a fixed open-loop rate (200 msg/s) between two
 *     brokers on PostgreSQL: the send time is in the body, the receiver on the other instance;
 *  3. the proxy's quota check (reserve + settle of one request) with the PostgreSQL store
 *     against the file store (the memory meter behind `UsageFile`), sequential and 50 at once,
 *     and a key whose quota is smaller than the attempts made on it 50 at once (admitted
 *     requests must never hold more than the quota).
 *
 * Each delivery run: `pairs` senders keep at most `window` messages in flight to their
 * receiver (a message is done when the receiver got it); receivers ack every 100 messages.
 * CPU is read from /proc/<pid>/stat at the start and end of the measured window: every broker
 * process, every process of this machine whose comm or cmdline is postgres (minus backends
 * connected to databases other than this run's, e.g. tests running meanwhile), and this process
 * (the load generator).
 * PostgreSQL is the local server (`A2A_TEST_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres);
 * a database is created for the run and dropped after it. Without a server the PostgreSQL rows
 * are reported as not run. Results: bench/results/scale.json.
 *
 *   node bench/scale.mjs [--quick] [--only quota]
 *
 * `--only quota` runs section 3 alone and merges its figures into the existing
 * bench/results/scale.json (the delivery and latency figures of the last full run are kept).
 */
import { WebSocket } from "ws"
import { createRequire } from "node:module"
import { parseArgs } from "node:util"
import { join } from "node:path"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { BROKER_CLI, cpuTimeMs, DIE_WITH_PARENT, log, machine, printTable, result, round, roundAll, ROOT, sleep, startProcess, summarize, tempDir, writeResults } from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false }, only: { type: "string" } } })
if (flags.only !== undefined && flags.only !== "quota" && flags.only !== "capacity") throw new Error(`--only ${flags.only}: only "quota" or "capacity" can be run alone`)
const ONLY_QUOTA = flags.only === "quota"
// Section 1b alone, printed and not written (for trying a change; the file keeps full runs).
const ONLY_CAPACITY = flags.only === "capacity"
const CONFIG = flags.quick
  ? { pairs: 10, cappedPairs: 12, brokerCores: 0.25, window: 20, warmupMs: 500, durationMs: 2_000, cappedWarmupMs: 2_000, cappedDurationMs: 2_000, quotaOps: 300, leaseOps: 5_000, leaseCapChecks: 5_000, latencyRate: 200, latencyMs: 3_000, quotaCap: 50 }
  : { pairs: 20, cappedPairs: 24, brokerCores: 0.25, window: 20, warmupMs: 1_000, durationMs: 5_000, cappedWarmupMs: 4_000, cappedDurationMs: 8_000, quotaOps: 2_000, leaseOps: 40_000, leaseCapChecks: 40_000, latencyRate: 200, latencyMs: 10_000, quotaCap: 200 }
const CORES = cpus().length

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

// ---- CPU quotas (section 1b) -----------------------------------------------------------------------

/**
 * A CPU cgroup per broker, so that N brokers on this machine stand in for N machines' worth of
 * broker CPU: each gets `cores` of CPU time (CFS bandwidth: `cores × period` per `period`), the
 * database and the load generator keep the rest. cgroup v1's `cpu` controller
 * (/sys/fs/cgroup/cpu) or cgroup v2's `cpu.max`; needs the right to create cgroups (root).
 * `undefined` when neither can be used: the capped rows are then reported as not run.
 */
const CGROUP_PERIOD_US = 20_000
const cpuCgroups = (() => {
  const probe = (root, write) => {
    const dir = join(root, `a2a-bench-probe-${process.pid}`)
    try {
      mkdirSync(dir)
      write(dir, 0.5)
      rmdirSync(dir)
      return true
    } catch {
      try {
        rmdirSync(dir)
      } catch {}
      return false
    }
  }
  const v1 = "/sys/fs/cgroup/cpu"
  const writeV1 = (dir, cores) => {
    writeFileSync(join(dir, "cpu.cfs_period_us"), String(CGROUP_PERIOD_US))
    writeFileSync(join(dir, "cpu.cfs_quota_us"), String(Math.round(cores * CGROUP_PERIOD_US)))
  }
  if (existsSync(join(v1, "cpu.cfs_quota_us")) && probe(v1, writeV1)) return { kind: "cgroup v1 cpu.cfs_quota_us", root: v1, write: writeV1 }
  const v2 = "/sys/fs/cgroup"
  const writeV2 = (dir, cores) => writeFileSync(join(dir, "cpu.max"), `${Math.round(cores * CGROUP_PERIOD_US)} ${CGROUP_PERIOD_US}`)
  try {
    if (readFileSync(join(v2, "cgroup.controllers"), "utf8").split(/\s+/).includes("cpu")) {
      writeFileSync(join(v2, "cgroup.subtree_control"), "+cpu")
      if (probe(v2, writeV2)) return { kind: "cgroup v2 cpu.max", root: v2, write: writeV2 }
    }
  } catch {}
  return undefined
})()

let cgroupCount = 0
/** A new cgroup limited to `cores` CPUs; returns its directory (removed by `removeCgroup` once its process is gone). */
const makeCgroup = (name, cores) => {
  const dir = join(cpuCgroups.root, name)
  mkdirSync(dir)
  cpuCgroups.write(dir, cores)
  return dir
}
const removeCgroup = (dir) => {
  try {
    rmdirSync(dir)
  } catch {}
}

/** Time a cgroup's processes were held back by its quota so far (ms), when the kernel reports it. */
const throttledMs = (dir) => {
  try {
    const stat = readFileSync(join(dir, "cpu.stat"), "utf8")
    const v1 = /throttled_time (\d+)/.exec(stat) // ns
    if (v1 !== null) return Number(v1[1]) / 1e6
    const v2 = /throttled_usec (\d+)/.exec(stat)
    return v2 === null ? NaN : Number(v2[1]) / 1e3
  } catch {
    return NaN
  }
}

/**
 * `instances` brokers on `db`, sharing one home (the tokens file): one broker to clients. With
 * `cpuQuota` (cores), each broker runs in a cgroup of its own limited to that much CPU (it is
 * started by a shell that enters the cgroup and then execs node, so the pid is the broker's).
 */
const startCluster = async (db, instances, { cpuQuota } = {}) => {
  const home = tempDir("a2a-bench-scale-")
  const brokers = []
  for (let i = 0; i < instances; i++) {
    const args = [DIE_WITH_PARENT, BROKER_CLI, "--port", "0", "--home", home, "--db", db === "sqlite" ? join(home, "broker.db") : db]
    const cgroup = cpuQuota === undefined ? undefined : makeCgroup(`a2a-bench-${process.pid}-${cgroupCount++}`, cpuQuota)
    const [command, argv] = cgroup === undefined ? [process.execPath, args] : ["/bin/sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, process.execPath, ...args]]
    const proc = await startProcess(command, argv, {
      ready: /a2a-broker listening on (http:\/\/\S+)/,
      env: { ...process.env, A2A_HOME: home },
      name: "a2a-broker"
    })
    brokers.push({ ...proc, url: proc.match[1], cgroup })
  }
  const token = readFileSync(join(home, "broker.token"), "utf8").trim()
  return {
    brokers,
    token,
    cpuQuota,
    stop: async () => {
      await Promise.all(brokers.map((b) => b.stop()))
      for (const b of brokers) if (b.cgroup !== undefined) removeCgroup(b.cgroup)
    }
  }
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

// ---- CPU accounting -------------------------------------------------------------------------------

/** CPU time (ms) of every process on this machine whose comm or cmdline is postgres, by pid. */
const postgresCpu = () => {
  const byPid = new Map()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim()
      const isPg = comm === "postgres" || /^postgres(\0|:|\s|$)|\/postgres(\0|\s|$)/.test(readFileSync(`/proc/${entry}/cmdline`, "utf8"))
      if (!isPg) continue
      const ms = cpuTimeMs(entry)
      if (Number.isFinite(ms)) byPid.set(Number(entry), ms)
    } catch {}
  }
  return byPid
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
const machineCpu = () => {
  const [, ...fields] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/)
  const n = fields.map(Number)
  const idle = n[3] + (n[4] ?? 0)
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

/** Everything the CPU figures of a window need, read at one instant. */
const cpuSnapshot = (brokers) => ({
  brokers: brokers.map((b) => cpuTimeMs(b.pid)),
  throttled: brokers.map((b) => (b.cgroup === undefined ? NaN : throttledMs(b.cgroup))),
  postgres: pgReachable ? postgresCpu() : new Map(),
  self: process.cpuUsage(),
  machine: machineCpu()
})

/**
 * CPU of a window in ms: brokers (sum), postgres (every postgres process present at the end,
 * minus what it had at the start; backends connected to other databases than this run's are
 * left out and their CPU reported as `otherDbMs`), the load generator and the machine's busy share.
 */
const cpuDelta = async (start, end) => {
  const perBrokerMs = end.brokers.map((v, i) => v - start.brokers[i])
  const brokerMs = perBrokerMs.reduce((sum, v) => sum + v, 0)
  let postgresMs = null
  let otherDbMs = null
  if (pgReachable) {
    const foreign = new Set()
    const activity = await admin("SELECT pid, datname FROM pg_stat_activity").catch(() => ({ rows: [] }))
    for (const row of activity.rows) if (row.datname !== null && row.datname !== "postgres" && !databases.includes(row.datname)) foreign.add(Number(row.pid))
    postgresMs = 0
    otherDbMs = 0
    for (const [pid, ms] of end.postgres) {
      const d = ms - (start.postgres.get(pid) ?? 0)
      if (foreign.has(pid)) otherDbMs += d
      else postgresMs += d
    }
  }
  const selfMs = (end.self.user - start.self.user + end.self.system - start.self.system) / 1000
  const busyPct = (100 * (end.machine.busy - start.machine.busy)) / Math.max(1, end.machine.total - start.machine.total)
  // The rest of the machine's busy time (10 ms jiffies): other processes and kernel work (e.g.
  // loopback networking in softirq) that no process above was charged for.
  const otherMs = (end.machine.busy - start.machine.busy) * 10 - brokerMs - (postgresMs ?? 0) - (otherDbMs ?? 0) - selfMs
  return { brokerMs, perBrokerMs, postgresMs, otherDbMs, selfMs, busyPct, otherMs }
}

/**
 * Closed-loop delivery. By default senders on instance 0 and their receivers spread over the
 * others (all on instance 0 when alone). With `spread`, the clients are spread over every
 * instance as a fleet's would be: pair i's sender on instance i mod N and its receiver on the
 * next one, (i + 1) mod N, so every message still crosses instances and each instance does the
 * same share of sending and of delivering.
 */
const delivery = async (label, cluster, { pairs = CONFIG.pairs, spread = false, warmupMs = CONFIG.warmupMs, durationMs = CONFIG.durationMs } = {}) => {
  const { brokers, token } = cluster
  const first = brokers[0].url
  const n = brokers.length
  const senderUrl = (i) => (spread ? brokers[i % n].url : first)
  const receiverUrl = (i) => (n === 1 ? first : spread ? brokers[(i + 1) % n].url : brokers[1 + (i % (n - 1))].url)
  const senders = []
  const receivers = []
  for (let i = 0; i < pairs; i++) {
    const s = (await post(first, token, "/api/peers", { name: `s${i}` })).peer.id
    const r = (await post(first, token, "/api/peers", { name: `r${i}` })).peer.id
    senders.push({ id: s, ws: await open(senderUrl(i), token, s), inflight: 0 })
    receivers.push({ id: r, ws: await open(receiverUrl(i), token, r) })
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
  windowStart = started + warmupMs
  windowEnd = windowStart + durationMs
  let cpuStart
  let cpuEnd
  setTimeout(() => (cpuStart = cpuSnapshot(brokers)), windowStart - performance.now())
  setTimeout(() => (cpuEnd = cpuSnapshot(brokers)), windowEnd - performance.now())
  senders.forEach((_, i) => pump(i))
  await sleep(warmupMs + durationMs + 50)
  running = false
  const cpu = await cpuDelta(cpuStart, cpuEnd)
  for (const p of [...senders, ...receivers]) p.ws.close()
  const stats = summarize(latencies.sort((a, b) => a - b))
  const perMsgUs = (ms) => (ms === null || done === 0 ? null : (ms * 1000) / done)
  const windowS = durationMs / 1000
  const row = {
    label,
    db: cluster.db,
    instances: brokers.length,
    ...(spread ? { clients: "spread: pair i's sender on instance i mod N, its receiver on (i + 1) mod N" } : {}),
    ...(cluster.cpuQuota === undefined
      ? {}
      : {
          cpuQuotaCoresPerBroker: cluster.cpuQuota,
          // How much of its quota each broker used, and how long the quota held it back: a broker
          // at ~100 % of its quota is the bottleneck the capped rows are meant to have.
          brokerCoresUsed: cpu.perBrokerMs.map((ms) => round(ms / 1000 / windowS)),
          brokerThrottledMsPerS: brokers.map((b, i) => round((cpuEnd.throttled[i] - cpuStart.throttled[i]) / windowS))
        }),
    msgPerS: Math.round(done / windowS),
    delivered: done,
    ...roundAll({
      p50Ms: stats.p50,
      p99Ms: stats.p99,
      maxMs: stats.max,
      brokerCpuUsPerMsg: perMsgUs(cpu.brokerMs),
      dbCpuUsPerMsg: perMsgUs(cluster.db === "postgres" ? cpu.postgresMs : null),
      loadGenCpuUsPerMsg: perMsgUs(cpu.selfMs),
      brokerCpuMs: cpu.brokerMs,
      dbCpuMs: cpu.postgresMs,
      dbCpuOtherDatabasesMs: cpu.otherDbMs,
      loadGenCpuMs: cpu.selfMs,
      otherCpuMs: cpu.otherMs,
      machineBusyPct: cpu.busyPct
    })
  }
  log(
    `${label}: ${row.msgPerS} msg/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms; CPU/msg broker ${row.brokerCpuUsPerMsg} µs, db ${row.dbCpuUsPerMsg} µs, load generator ${row.loadGenCpuUsPerMsg} µs; machine ${row.machineBusyPct} % busy`
  )
  return row
}

/** Open-loop cross-instance latency: `rate` msg/s from senders on instance 0 to receivers on instance 1. */
const openLoopLatency = async (cluster, rate, durationMs, pairs = 4) => {
  const { brokers, token } = cluster
  const senders = []
  const receivers = []
  for (let i = 0; i < pairs; i++) {
    const s = (await post(brokers[0].url, token, "/api/peers", { name: `ls${i}` })).peer.id
    const r = (await post(brokers[0].url, token, "/api/peers", { name: `lr${i}` })).peer.id
    senders.push(await open(brokers[0].url, token, s))
    receivers.push({ id: r, ws: await open(brokers[1].url, token, r) })
  }
  const warmupMs = 1_000
  const latencies = []
  let windowStart = Infinity
  let windowEnd = Infinity
  let sentInWindow = 0
  receivers.forEach((r) =>
    r.ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      if (frame.type !== "message") return
      const now = performance.now()
      const at = Number(frame.message.body.split(" ")[1])
      if (at >= windowStart && at < windowEnd) latencies.push(now - at)
      if (frame.message.seq % 100 === 0) r.ws.send(JSON.stringify({ type: "ack", upTo: frame.message.seq }))
    })
  )
  const t0 = performance.now()
  windowStart = t0 + warmupMs
  windowEnd = windowStart + durationMs
  let sent = 0
  // Every millisecond, send what the schedule says is due (rate × elapsed): the rate does not
  // slow down when the broker does.
  while (performance.now() < windowEnd) {
    const due = Math.floor(((performance.now() - t0) * rate) / 1000)
    while (sent < due) {
      const now = performance.now()
      senders[sent % pairs].send(JSON.stringify({ type: "send", to: receivers[sent % pairs].id, body: `${sent} ${now.toFixed(3)}` }))
      if (now >= windowStart && now < windowEnd) sentInWindow++
      sent++
    }
    await sleep(1)
  }
  await sleep(1_000) // the last ones arrive
  for (const ws of [...senders, ...receivers.map((r) => r.ws)]) ws.close()
  const stats = summarize(latencies)
  const row = {
    label: `postgres, 2 brokers, ${rate} msg/s open loop (cross-instance)`,
    instances: 2,
    rateMsgPerS: rate,
    sent: sentInWindow,
    received: latencies.length,
    ...roundAll({ p50Ms: stats.p50, p99Ms: stats.p99, maxMs: stats.max })
  }
  log(`${row.label}: ${row.received}/${row.sent} received, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, max ${row.maxMs} ms`)
  return row
}

// ---- 2. the proxy's quota check ------------------------------------------------------------------

const proxyQuota = async (label, build, { limits = { tokensPer5h: 1e12, requestsPerMinute: 1e9 }, parallelOps = CONFIG.quotaOps } = {}) => {
  const { Effect, Layer, Context, Scope, Exit } = await import(require.resolve("effect"))
  const { UsageMeter } = await import(join(ROOT, "packages", "core", "dist", "index.js"))
  const scope = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(Layer.buildWithScope(build(), scope))
  const meter = Context.get(ctx, UsageMeter.UsageMeter)
  const usage = { inputTokens: 10, outputTokens: 20, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }
  const once = (key) => Effect.flatMap(meter.reserve(key, limits, 100), (r) => meter.settle(r, "m", usage))
  const times = []
  for (let i = 0; i < CONFIG.quotaOps; i++) {
    const t = performance.now()
    await Effect.runPromise(once(`k_seq_${i % 10}`))
    times.push(performance.now() - t)
  }
  const t0 = performance.now()
  await Effect.runPromise(Effect.forEach(Array.from({ length: parallelOps }, (_, i) => i), (i) => once(`k_par_${i % 10}`), { concurrency: 50, discard: true }))
  const parallelPerS = parallelOps / ((performance.now() - t0) / 1000)
  // One key whose quota (tokensPer5h) fits `quotaCap` holds of 100 tokens, and 4× as many
  // attempts on it, 50 at once, each holding its bound until all are done: at most quotaCap
  // may be admitted, and the tokens held may never exceed the quota.
  const capKey = "k_cap"
  const capLimits = { ...limits, tokensPer5h: CONFIG.quotaCap * 100 }
  const attempts = CONFIG.quotaCap * 4
  const outcomes = await Effect.runPromise(
    Effect.forEach(Array.from({ length: attempts }, (_, i) => i), () => Effect.either(meter.reserve(capKey, capLimits, 100)), { concurrency: 50 })
  )
  const admitted = outcomes.filter((o) => o._tag === "Right").map((o) => o.right)
  const refused = outcomes.filter((o) => o._tag === "Left" && o.left._tag === "RateLimited").length
  const held = (await Effect.runPromise(meter.snapshot(capKey))).reservedTokens
  await Effect.runPromise(Effect.forEach(admitted, (r) => meter.release(r), { concurrency: 50, discard: true }))
  const leaseStats = leaseStatsOf(ctx, Context)
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const stats = summarize(times.sort((a, b) => a - b))
  const cap = { quotaTokens: capLimits.tokensPer5h, attempts, admitted: admitted.length, refused, heldTokens: held, withinQuota: admitted.length * 100 <= capLimits.tokensPer5h && held <= capLimits.tokensPer5h }
  const row = { label, limits, parallelOps, ...roundAll({ meanMs: stats.mean, p50Ms: stats.p50, p99Ms: stats.p99, checksPerS50: parallelPerS }), cap, ...(leaseStats === undefined ? {} : { leaseStats }) }
  log(
    `${label}: reserve+settle mean ${row.meanMs} ms, p99 ${row.p99Ms} ms; ${row.checksPerS50}/s with 50 at once; cap ${cap.quotaTokens} tokens: ${cap.admitted}/${attempts} admitted, ${cap.refused} refused, ${cap.heldTokens} held`
  )
  return row
}

/** The lease path's counters (local admissions, exact ones, transactions), when the store has them. */
const leaseStatsOf = (ctx, Context) => {
  const tag = ctx.unsafeMap.get("@mks/a2a-proxy/PgLeaseStats")
  return tag === undefined ? undefined : tag.stats()
}

/**
 * The lease path across instances: two PostgreSQL stores (two proxies) on one key whose token
 * quota fits `leaseCapChecks` requests of 100 tokens, 25 checks in flight on each (50 in all),
 * every admitted request settled with its whole bound, until each worker is refused. The total
 * admitted must not exceed the quota, nor the tokens the database counts once both closed
 * (closing writes what each settled); checks/s is over the whole run (slices, flushes, the
 * exact tail below `minFree` and the refusals included).
 */
const leaseCap = async (url, PgStore) => {
  const { Effect, Layer, Context, Scope, Exit } = await import(require.resolve("effect"))
  const { UsageMeter } = await import(join(ROOT, "packages", "core", "dist", "index.js"))
  const quotaTokens = CONFIG.leaseCapChecks * 100
  const limits = { tokensPer5h: quotaTokens }
  const usage = { inputTokens: 70, outputTokens: 30, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }
  const stores = []
  for (let i = 0; i < 2; i++) {
    const scope = Effect.runSync(Scope.make())
    const ctx = await Effect.runPromise(Layer.buildWithScope(PgStore.layer(url, { leases: { enabled: true } }), scope))
    stores.push({ scope, ctx, meter: Context.get(ctx, UsageMeter.UsageMeter), admitted: 0, checks: 0 })
  }
  const t0 = performance.now()
  // The lease regime: until 80 % of the quota is admitted the free budget is far above
  // `minFree`; the rest includes the exact tail and the refusals.
  let at80 = null
  const mark80 = () => {
    if (at80 !== null || stores.reduce((n, s) => n + s.admitted, 0) < 0.8 * CONFIG.leaseCapChecks) return
    at80 = { ms: performance.now() - t0, checks: stores.reduce((n, s) => n + s.checks, 0) }
  }
  await Promise.all(
    stores.flatMap((s) =>
      Array.from({ length: 25 }, async () => {
        for (;;) {
          s.checks++
          const r = await Effect.runPromise(Effect.either(s.meter.reserve("k_lease_cap", limits, 100)))
          if (r._tag === "Left") return
          s.admitted++
          mark80()
          await Effect.runPromise(s.meter.settle(r.right, "m", usage))
        }
      })
    )
  )
  const seconds = (performance.now() - t0) / 1000
  const perStore = stores.map((s) => ({ admitted: s.admitted, checks: s.checks, ...leaseStatsOf(s.ctx, Context) }))
  for (const s of stores) await Effect.runPromise(Scope.close(s.scope, Exit.void))
  const [row] = (await (async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query("SELECT tokens, leased FROM a2a_proxy_usage WHERE key_id = 'k_lease_cap'")).rows
    } finally {
      await client.end()
    }
  })())
  const admitted = stores.reduce((n, s) => n + s.admitted, 0)
  const checks = stores.reduce((n, s) => n + s.checks, 0)
  const out = {
    label: "postgres store, quota leases, 2 instances on one key until refused",
    quotaTokens,
    admitted,
    admittedTokens: admitted * 100,
    usedTokensInDb: Number(row?.tokens ?? 0),
    leasedAfterClose: Number(row?.leased ?? 0),
    checks,
    seconds: round(seconds),
    checksPerS50: round(checks / seconds),
    checksPerS50Until80Pct: at80 === null ? null : round(at80.checks / (at80.ms / 1000)),
    perStore,
    withinQuota: admitted * 100 <= quotaTokens && Number(row?.tokens ?? 0) <= quotaTokens
  }
  log(`${out.label}: ${admitted} admitted (${out.admittedTokens} of ${quotaTokens} tokens; ${out.usedTokensInDb} in the database), ${out.checksPerS50} checks/s over the run, ${out.checksPerS50Until80Pct} checks/s until 80 % of the quota`)
  return out
}

const runs = []
const capped = []
const quota = []
let leaseRun = null
let latency = null
try {
  if (!ONLY_QUOTA) log(`delivery: ${CONFIG.pairs} pairs x window ${CONFIG.window}, ${CONFIG.durationMs} ms after ${CONFIG.warmupMs} ms warm-up`)
  for (const [label, db, instances] of ONLY_QUOTA || ONLY_CAPACITY ? [] : [
    ["sqlite, 1 broker", "sqlite", 1],
    ...(pgReachable
      ? [
          ["postgres, 1 broker", "pg", 1],
          ["postgres, 2 brokers (cross-instance)", "pg", 2],
          ["postgres, 3 brokers (cross-instance)", "pg", 3]
        ]
      : [])
  ]) {
    const cluster = await startCluster(db === "pg" ? await createDatabase() : "sqlite", instances)
    cluster.db = db === "pg" ? "postgres" : "sqlite"
    try {
      runs.push(await delivery(label, cluster))
    } finally {
      await cluster.stop()
    }
  }
  // 1b. The capacity model with each broker given a fixed share of a core (a cgroup CPU quota):
  // N brokers stand in for N machines' worth of broker CPU, the database and the load
  // generator keep the rest of this machine, and the clients are spread over the instances.
  // A capped broker gets a quarter of the CPU time of the warm-up, so the warm-up is longer: after
  // 1 s (250 ms of CPU) it was still compiling, and one broker's rate moved 1,468-2,736 msg/s
  // between runs (90-169 µs per message); after 4 s, 3,151-3,973 (62-78 µs). The 1-broker run
  // is made first and last and r1 is their mean, so a drift of the machine during the series
  // does not all land on the 2- and 3-broker predictions.
  if (pgReachable && !ONLY_QUOTA && cpuCgroups !== undefined) {
    log(`capacity: each broker limited to ${CONFIG.brokerCores} cores (${cpuCgroups.kind}), ${CONFIG.cappedPairs} pairs spread over the instances`)
    for (const instances of [1, 2, 3, 1]) {
      const cluster = await startCluster(await createDatabase(), instances, { cpuQuota: CONFIG.brokerCores })
      cluster.db = "postgres"
      try {
        const label = `postgres, ${instances} broker${instances > 1 ? "s" : ""} at ${CONFIG.brokerCores} cores each${instances > 1 ? " (cross-instance, clients spread)" : capped.length > 0 ? ", again after the 2- and 3-broker runs" : ""}`
        capped.push(await delivery(label, cluster, { pairs: CONFIG.cappedPairs, spread: true, warmupMs: CONFIG.cappedWarmupMs, durationMs: CONFIG.cappedDurationMs }))
      } finally {
        await cluster.stop()
      }
    }
  } else if (!ONLY_QUOTA) log(`NOT RUN: capacity rows with CPU-limited brokers (${pgReachable ? "no writable cgroup cpu controller: needs root and cgroup v1 cpu or v2 cpu.max" : "no PostgreSQL"})`)
  if (pgReachable && !ONLY_QUOTA && !ONLY_CAPACITY) {
    const cluster = await startCluster(await createDatabase(), 2)
    try {
      latency = await openLoopLatency(cluster, CONFIG.latencyRate, CONFIG.latencyMs)
    } finally {
      await cluster.stop()
    }
  }
  // 3. The proxy's quota check (not with `--only capacity`).
  if (!ONLY_CAPACITY) {
    const { UsageFile, PgStore } = await import(join(ROOT, "packages", "proxy", "dist", "index.js"))
    const dir = tempDir("a2a-bench-usage-")
    quota.push(await proxyQuota("file store (memory meter, flushed to a file)", () => UsageFile.layer({ path: join(dir, "usage.json") })))
    if (pgReachable) {
      const url = await createDatabase()
      // Same run, same database server: the exact path (leases off) with the limits it was
      // always measured with, then with the lease path's limits (a token quota only), then the
      // lease path (A2A_PROXY_QUOTA_LEASES), then the lease path across two instances until refused.
      quota.push(await proxyQuota("postgres store, exact path (one conditional UPDATE each)", () => PgStore.layer(url, { leases: { enabled: false } })))
      quota.push(
        await proxyQuota("postgres store, exact path, token quota only", () => PgStore.layer(url, { leases: { enabled: false } }), { limits: { tokensPer5h: 1e12 } })
      )
      quota.push(
        await proxyQuota("postgres store, quota leases, token quota only", () => PgStore.layer(url, { leases: { enabled: true } }), { limits: { tokensPer5h: 1e12 }, parallelOps: CONFIG.leaseOps })
      )
      leaseRun = await leaseCap(await createDatabase(), PgStore)
    }
  }
} finally {
  await dropDatabases()
}

const base = runs.find((r) => r.label.startsWith("sqlite")) ?? { msgPerS: NaN }
const rows = runs.map((r) =>
  result({ name: `delivery ${r.label}: msg/s`, ours: r.msgPerS, baseline: base.msgPerS, unit: "msg/s", target: "reported", met: true, p50Ms: r.p50Ms, p99Ms: r.p99Ms })
)
const fileQuota = quota.find((q) => q.label.startsWith("file"))
for (const r of capped) rows.push(result({ name: `delivery ${r.label}: msg/s`, ours: r.msgPerS, baseline: capped[0].msgPerS, unit: "msg/s", target: "reported", met: true, brokerCoresUsed: r.brokerCoresUsed }))
for (const q of quota) rows.push(result({ name: `quota check ${q.label}: mean`, ours: q.meanMs, baseline: fileQuota.meanMs, unit: "ms", target: "reported", met: true, p99Ms: q.p99Ms, checksPerS50: q.checksPerS50 }))

// ---- targets ---------------------------------------------------------------------------------------

const pgRun = (n) => runs.find((r) => r.db === "postgres" && r.instances === n)
const pg1 = pgRun(1)
let capacity = null
if (pg1 !== undefined) {
  rows.push(result({ name: "delivery postgres, 1 broker vs sqlite, 1 broker: msg/s", ours: pg1.msgPerS, baseline: base.msgPerS, unit: "msg/s", target: ">= 0.6x sqlite", met: pg1.msgPerS >= 0.6 * base.msgPerS }))
  for (const n of [2, 3]) {
    const r = pgRun(n)
    rows.push(
      result({ name: `broker CPU per message, ${n} brokers vs 1 (postgres)`, ours: r.brokerCpuUsPerMsg, baseline: pg1.brokerCpuUsPerMsg, unit: "µs/msg", target: "<= 1.3x 1 broker", met: r.brokerCpuUsPerMsg <= 1.3 * pg1.brokerCpuUsPerMsg })
    )
  }
  for (const n of [1, 2, 3]) {
    const r = pgRun(n)
    rows.push(
      result({ name: `database CPU per message vs broker CPU per message, ${n} broker${n > 1 ? "s" : ""}`, ours: r.dbCpuUsPerMsg, baseline: r.brokerCpuUsPerMsg, unit: "µs/msg", target: "<= 0.25x broker", met: r.dbCpuUsPerMsg <= 0.25 * r.brokerCpuUsPerMsg })
    )
  }
  // The uncapped runs: brokers, PostgreSQL and the load generator share this machine's cores,
  // so the rate is the machine's CPU over the whole cost of a message (b + d + the load
  // generator's g), the same for every N when the costs do not grow. Reported, not the target.
  const b = pg1.brokerCpuUsPerMsg
  const d = pg1.dbCpuUsPerMsg
  const g = pg1.loadGenCpuUsPerMsg
  const oneMachine = (CORES * 1e6) / (b + d + g)
  capacity = {
    cores: CORES,
    uncapped: {
      bUsPerMsg: b,
      dUsPerMsg: d,
      loadGenUsPerMsg: g,
      formula: "cores x 1e6 / (b + d + g), the 1-broker costs",
      rows: [1, 2, 3].map((n) => ({ instances: n, measuredMsgPerS: pgRun(n).msgPerS, ...roundAll({ predictedMsgPerS: oneMachine, error: oneMachine / pgRun(n).msgPerS - 1 }) }))
    }
  }
  for (const n of [2, 3]) {
    const measured = pgRun(n).msgPerS
    rows.push(result({ name: `one-machine prediction (uncapped brokers) vs measured, ${n} brokers: msg/s`, ours: oneMachine, baseline: measured, unit: "msg/s", target: "reported", met: true }))
  }
}
// docs/scaling.md, "Capacity model": capacity(N) = min(N × r1, the database's rate), with r1 one
// broker's rate and the database's rate its cores over its CPU per message. In the capped runs
// each broker has q cores; the database and the load generator share what the brokers' quotas
// leave of this machine, so its bound here is (cores − N·q) / (d + g), with d and g per message
// measured in the 1-broker capped runs (the first and the last of the series, averaged).
const cappedRun = (n) => capped.find((r) => r.instances === n)
if (cappedRun(1) !== undefined && cappedRun(3) !== undefined) {
  const ones = capped.filter((r) => r.instances === 1)
  const mean = (f) => ones.reduce((sum, r) => sum + f(r), 0) / ones.length
  const one = { msgPerS: mean((r) => r.msgPerS), brokerCpuUsPerMsg: mean((r) => r.brokerCpuUsPerMsg), dbCpuUsPerMsg: mean((r) => r.dbCpuUsPerMsg), loadGenCpuUsPerMsg: mean((r) => r.loadGenCpuUsPerMsg) }
  const q = CONFIG.brokerCores
  const dbBound = (n) => ((CORES - n * q) * 1e6) / (one.dbCpuUsPerMsg + one.loadGenCpuUsPerMsg)
  const predict = (n) => Math.min(n * one.msgPerS, dbBound(n))
  capacity = {
    ...(capacity ?? { cores: CORES }),
    capped: {
      brokerCoresEach: q,
      r1MsgPerS: Math.round(one.msgPerS),
      r1Runs: ones.map((r) => r.msgPerS),
      bUsPerMsg: round(one.brokerCpuUsPerMsg),
      dUsPerMsg: round(one.dbCpuUsPerMsg),
      loadGenUsPerMsg: round(one.loadGenCpuUsPerMsg),
      formula: "min(N x r1, (cores - N x q) x 1e6 / (d + g)); on machines of their own: min(N x r1, db cores x 1e6 / d)",
      rows: [1, 2, 3].map((n) => ({
        instances: n,
        measuredMsgPerS: cappedRun(n).msgPerS,
        ...roundAll({ predictedMsgPerS: predict(n), dbBoundMsgPerS: dbBound(n), error: predict(n) / cappedRun(n).msgPerS - 1 }),
        brokerCoresUsed: cappedRun(n).brokerCoresUsed
      }))
    }
  }
  for (const n of [2, 3]) {
    const measured = cappedRun(n).msgPerS
    rows.push(
      result({
        name: `capacity model vs measured, ${n} brokers at ${q} cores each (cross-instance): msg/s`,
        ours: predict(n),
        baseline: measured,
        unit: "msg/s",
        target: "within 25 % of measured",
        met: Math.abs(predict(n) / measured - 1) <= 0.25,
        r1MsgPerS: Math.round(one.msgPerS)
      })
    )
    rows.push(
      result({ name: `broker CPU per message, ${n} brokers vs 1, each at ${q} cores (postgres)`, ours: cappedRun(n).brokerCpuUsPerMsg, baseline: one.brokerCpuUsPerMsg, unit: "µs/msg", target: "reported", met: true })
    )
  }
}
if (latency !== null)
  rows.push(
    result({ name: `cross-instance send→push p99 at ${latency.rateMsgPerS} msg/s (2 brokers, postgres)`, ours: latency.p99Ms, baseline: 10, unit: "ms", target: "p99 <= 10 ms", met: latency.p99Ms <= 10 && latency.received === latency.sent, p50Ms: latency.p50Ms, sent: latency.sent, received: latency.received })
  )
const pgQuota = quota.find((q) => q.label.startsWith("postgres store, exact path (one"))
const pgExactTokens = quota.find((q) => q.label.startsWith("postgres store, exact path, token"))
const pgLease = quota.find((q) => q.label.startsWith("postgres store, quota leases"))
if (pgLease !== undefined) {
  rows.push(
    result({ name: "proxy quota checks per second, postgres, 50 in flight", ours: pgLease.checksPerS50, baseline: 10_000, unit: "checks/s", target: ">= 10,000", met: pgLease.checksPerS50 >= 10_000, path: "quota leases", exactPathChecksPerS50: pgExactTokens?.checksPerS50, leaseStats: pgLease.leaseStats })
  )
  rows.push(result({ name: "quota checks per second, 50 in flight: postgres leases vs exact path, token quota only (same run)", ours: pgLease.checksPerS50, baseline: pgExactTokens.checksPerS50, unit: "checks/s", target: "reported", met: true }))
}
if (leaseRun !== null) {
  rows.push(
    result({ name: `quota never exceeded, postgres quota leases, 2 instances: admitted of quota ${leaseRun.quotaTokens / 100}`, ours: leaseRun.admitted, baseline: leaseRun.quotaTokens / 100, unit: "requests", target: "admitted <= quota, used tokens <= quota", met: leaseRun.withinQuota, usedTokensInDb: leaseRun.usedTokensInDb, checksPerS50: leaseRun.checksPerS50, checksPerS50Until80Pct: leaseRun.checksPerS50Until80Pct })
  )
}
for (const q of quota)
  rows.push(
    result({ name: `quota never exceeded, ${q.label}: admitted of ${q.cap.attempts} (quota fits ${q.cap.quotaTokens / 100})`, ours: q.cap.admitted, baseline: q.cap.quotaTokens / 100, unit: "requests", target: "admitted <= quota, held tokens <= quota", met: q.cap.withinQuota, heldTokens: q.cap.heldTokens, refused: q.cap.refused })
  )

if (pgQuota !== undefined && fileQuota !== undefined)
  rows.push(result({ name: "quota checks per second, 50 in flight: postgres vs file store (same run)", ours: pgQuota.checksPerS50, baseline: fileQuota.checksPerS50, unit: "checks/s", target: "reported", met: true }))

if (runs.length + capped.length > 0) printTable([...runs, ...capped], [["label", "delivery"], ["instances", "instances"], ["msgPerS", "msg/s"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["maxMs", "max ms"], ["brokerCpuUsPerMsg", "broker µs/msg"], ["dbCpuUsPerMsg", "db µs/msg"], ["loadGenCpuUsPerMsg", "loadgen µs/msg"], ["otherCpuMs", "other CPU ms"], ["machineBusyPct", "busy %"], ["brokerCoresUsed", "cores used"]])
if (latency !== null) printTable([latency], [["label", "latency"], ["sent", "sent"], ["received", "received"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["maxMs", "max ms"]])
printTable(quota, [["label", "quota check"], ["meanMs", "mean ms"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"], ["checksPerS50", "/s, 50 at once"]])
if (leaseRun !== null) printTable([leaseRun], [["label", "leases across instances"], ["quotaTokens", "quota"], ["admittedTokens", "admitted tokens"], ["usedTokensInDb", "used (db)"], ["checksPerS50Until80Pct", "checks/s to 80 %"], ["checksPerS50", "checks/s, whole run"], ["withinQuota", "within quota"]])
printTable(rows.filter((r) => r.target !== "reported" || r.name.includes("same run")), [["name", "target row"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["target", "target"], ["met", "met"]])
if (capacity?.capped !== undefined) printTable(capacity.capped.rows, [["instances", "capacity: brokers"], ["measuredMsgPerS", "measured msg/s"], ["predictedMsgPerS", "predicted"], ["dbBoundMsgPerS", "db bound"], ["error", "error"], ["brokerCoresUsed", "cores used"]])
if (ONLY_CAPACITY) process.exit(0)
const isQuotaRow = (name) => name.startsWith("quota ") || name.startsWith("proxy quota ")
const previous = ONLY_QUOTA && existsSync(join(ROOT, "bench", "results", "scale.json")) ? JSON.parse(readFileSync(join(ROOT, "bench", "results", "scale.json"), "utf8")) : undefined
const file = writeResults(
  "scale",
  previous !== undefined
    ? // Section 3 alone: keep the last full run's other figures, replace the quota ones.
      { ...previous, results: [...previous.results.filter((r) => !isQuotaRow(r.name)), ...rows], quota, leaseRun, quotaRun: { machine: machine(), config: CONFIG, postgres: pgReachable ? "ran" : "NOT RUN (no server)", at: new Date().toISOString() } }
    : { machine: machine(), config: CONFIG, postgres: pgReachable ? "ran" : "NOT RUN (no server)", results: rows, delivery: [...runs, ...capped], latency, capacity, quota, leaseRun }
)
log(`wrote ${file}`)
