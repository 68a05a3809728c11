/**
 * Shared helpers of the benchmarks: statistics, tables, result files, RSS sampling, child
 * processes (started here, always killed on exit, error or signal) and the raw `ws` relay
 * baseline.
 *
 * `node bench/lib.mjs ws-relay` runs the relay alone (a child process of a benchmark): it
 * prints `ws-relay listening on PORT` and serves `ws://127.0.0.1:PORT/peer/:id`.
 */
import { spawn } from "node:child_process"
import Module from "node:module"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath, pathToFileURL } from "node:url"

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
export const ROOT = dirname(BENCH_DIR)
export const RESULTS_DIR = join(BENCH_DIR, "results")

// ---- statistics ---------------------------------------------------------------------------------

/** The p-th percentile (0..100) of an ascending array, nearest-rank; NaN when empty. */
export const percentile = (sorted, p) => {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** count, mean, p50, p90, p99, p99.9, max of a list of numbers (not modified). */
export const summarize = (values) => {
  const sorted = Float64Array.from(values).sort()
  const sum = sorted.reduce((a, b) => a + b, 0)
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? NaN : sum / sorted.length,
    min: sorted.length === 0 ? NaN : sorted[0],
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]
  }
}

/** Round for humans and JSON: 3 significant decimals below 10, 1 below 1000, else integers. */
export const round = (x) => {
  if (typeof x !== "number" || !Number.isFinite(x)) return x
  const a = Math.abs(x)
  if (a >= 1000) return Math.round(x)
  if (a >= 10) return Math.round(x * 10) / 10
  return Math.round(x * 1000) / 1000
}

export const roundAll = (obj) => Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, round(v)]))

// ---- output -------------------------------------------------------------------------------------

/** Print rows (objects) as an aligned text table with the given columns ([key, title]). */
export const printTable = (rows, columns, out = process.stdout) => {
  const cells = rows.map((row) => columns.map(([key]) => formatCell(row[key])))
  const titles = columns.map(([, title]) => title)
  const widths = titles.map((t, i) => Math.max(t.length, ...cells.map((r) => r[i].length)))
  const line = (values) => values.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ")
  out.write(line(titles) + "\n")
  out.write(widths.map((w) => "-".repeat(w)).join("  ") + "\n")
  for (const r of cells) out.write(line(r) + "\n")
}

const formatCell = (v) => {
  if (v === undefined || v === null) return "-"
  if (typeof v === "boolean") return v ? "yes" : "NO"
  if (typeof v === "number") return Number.isFinite(v) ? String(round(v)) : String(v)
  return String(v)
}

/** What the results were measured on. */
export const machine = () => ({
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? "unknown",
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  memoryMiB: Math.round(totalmem() / 2 ** 20),
  // Other work on the machine skews every figure; the 1-minute load average says how much there was.
  loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  date: new Date().toISOString()
})

/** Write `bench/results/<name>.json` atomically (temp file + rename); returns the path. */
export const writeResults = (name, data) => {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${name}.json`)
  const temp = `${file}.${process.pid}.tmp`
  writeFileSync(temp, JSON.stringify(data, null, 2) + "\n")
  renameSync(temp, file)
  return file
}

/** One result row: `ours` against `baseline`, with `ratio = ours / baseline` and the target check. */
export const result = ({ name, ours, baseline, unit, target, met, ...rest }) => ({
  name,
  ours: round(ours),
  baseline: round(baseline),
  ratio: baseline > 0 && Number.isFinite(ours) ? round(ours / baseline) : null,
  unit,
  target,
  met,
  ...rest
})

export const log = (...parts) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${parts.join(" ")}\n`)

// ---- memory -------------------------------------------------------------------------------------

/** Resident set size of a process in KiB (`VmRSS` of /proc/<pid>/status); NaN if unreadable. */
export const rssKiB = (pid) => {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match ? Number(match[1]) : NaN
  } catch {
    return NaN
  }
}

/** Sample a process's RSS every `intervalMs` until `stop()`, which returns {min, max, last, samples}. */
export const sampleRss = (pid, intervalMs = 100) => {
  const samples = []
  const timer = setInterval(() => {
    const v = rssKiB(pid)
    if (Number.isFinite(v)) samples.push(v)
  }, intervalMs)
  timer.unref()
  return {
    stop: () => {
      clearInterval(timer)
      return { minKiB: Math.min(...samples), maxKiB: Math.max(...samples), lastKiB: samples.at(-1), samples: samples.length }
    }
  }
}

/** The median of `count` RSS readings `gapMs` apart: a steadier figure than one reading. */
export const settledRss = async (pid, count = 5, gapMs = 200) => {
  const values = []
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(gapMs)
    values.push(rssKiB(pid))
  }
  return percentile(values.filter(Number.isFinite).sort((a, b) => a - b), 50)
}

/** CPU time (user + system) a process has used so far, in ms (from /proc/<pid>/stat); NaN if unreadable. */
export const cpuTimeMs = (pid) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields[11] and [12] are utime and stime (fields 14 and 15 of the line), in clock ticks (100 Hz on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

/** The soft limit on open files of this process (children inherit it). */
export const openFileLimit = () => {
  try {
    const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"))
    if (!match) return NaN
    return match[1] === "unlimited" ? Infinity : Number(match[1])
  } catch {
    return NaN
  }
}

// ---- time ---------------------------------------------------------------------------------------

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolve when `predicate()` holds, checking every `everyMs`; false after `timeoutMs`. */
export const waitFor = async (predicate, timeoutMs, everyMs = 10) => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() >= deadline) return false
    await sleep(everyMs)
  }
  return true
}

/** Run `task(item)` for every item with at most `concurrency` at a time; results in order. */
export const mapLimit = async (items, concurrency, task) => {
  const results = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await task(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  return results
}

// ---- child processes ----------------------------------------------------------------------------

const children = new Set()
const tempDirs = new Set()

/** A temporary directory removed when this process exits. */
export const tempDir = (prefix = "a2a-bench-") => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

const killAllNow = () => {
  for (const child of children) {
    try {
      child.kill("SIGKILL")
    } catch {}
  }
  children.clear()
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
  tempDirs.clear()
}

let guarded = false
/** Kill every child started here and remove temp dirs on exit, errors and signals (installed once). */
export const guardProcess = () => {
  if (guarded) return
  guarded = true
  process.on("exit", killAllNow)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      log(`${signal}: stopping children`)
      killAllNow()
      process.exit(130)
    })
  }
  process.on("uncaughtException", (e) => {
    process.stderr.write(`uncaught: ${e?.stack ?? e}\n`)
    killAllNow()
    process.exit(1)
  })
  process.on("unhandledRejection", (e) => {
    process.stderr.write(`unhandled rejection: ${e?.stack ?? e}\n`)
    killAllNow()
    process.exit(1)
  })
}

/**
 * Start `command args` and resolve once a stdout line matches `ready` (a RegExp); rejects if
 * it exits first or `timeoutMs` passes (and kills it). The handle's `stop()` sends SIGTERM,
 * then SIGKILL after `graceMs`, and resolves when the process is gone.
 */
export const startProcess = (command, args, { ready, timeoutMs = 15_000, env = process.env, cwd = ROOT, name = command } = {}) =>
  new Promise((resolve, reject) => {
    guardProcess()
    // stdin is a pipe nobody writes to: a child that watches it sees its end when we die.
    const child = spawn(command, args, { cwd, env, stdio: ["pipe", "pipe", "pipe"] })
    const startedAt = performance.now()
    children.add(child)
    let stderr = ""
    child.stderr.on("data", (chunk) => {
      stderr += chunk
      if (stderr.length > 64_000) stderr = stderr.slice(-32_000)
    })
    const exited = new Promise((done) =>
      child.once("exit", (code, signal) => {
        children.delete(child)
        done(signal ?? code)
      })
    )
    const stop = async (graceMs = 5_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
      const how = await exited
      clearTimeout(timer)
      return how
    }
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${name} not ready after ${timeoutMs} ms: ${stderr.slice(-2000)}`))
    }, timeoutMs)
    const lines = createInterface({ input: child.stdout })
    lines.on("line", (line) => {
      const match = ready.exec(line)
      if (match) {
        clearTimeout(timer)
        resolve({ child, pid: child.pid, startedAt, match, exited, stop, stderr: () => stderr })
      }
    })
    child.once("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    exited.then((how) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited (${how}) before it was ready: ${stderr.slice(-2000)}`))
    })
  })

export const BROKER_CLI = join(ROOT, "packages", "broker", "dist", "cli.js")

/**
 * A node flag for child servers we do not own: preload a two-line watchdog that exits when
 * stdin (a pipe from us) ends, so the child dies with this process even on SIGKILL.
 */
export const DIE_WITH_PARENT = `--import=data:text/javascript,${encodeURIComponent('process.stdin.on("end",()=>process.exit(0));process.stdin.resume()')}`

/**
 * The V8 code cache file the built broker bin reads and writes (`CompileCache` in
 * `@mks/a2a/internal`, by the rule the bin uses); undefined when the cache is off.
 */
const brokerCacheFile = async () => {
  const { CompileCache } = await import("@mks/a2a/internal")
  const dir = CompileCache.directory()
  if (dir === undefined) return undefined
  const source = readFileSync(join(dirname(BROKER_CLI), "cli.cjs"), "utf8").replace(/^#!.*/, "")
  return CompileCache.fileFor(dir, "a2a-broker", source)
}

let cacheWarmed
/**
 * Make sure the broker's code cache exists before a broker is measured. The first start of a
 * fresh build compiles the bundle and, 2 s in, writes the cache on the main thread: a ~20 ms
 * pause, once per install. Measuring steady-state latency across it would put a one-time
 * event into a p99, so one throwaway broker writes it first (footprint.mjs measures the
 * first start on its own).
 */
const warmBrokerCache = () =>
  (cacheWarmed ??= (async () => {
    const file = await brokerCacheFile()
    if (file === undefined || existsSync(file)) return
    // Node ≥ 22.1 has its own compile cache (written at exit), which the bin uses instead.
    const platformCache = typeof Module.enableCompileCache === "function"
    const home = tempDir("a2a-bench-cache-")
    const proc = await startProcess(process.execPath, [DIE_WITH_PARENT, BROKER_CLI, "--port", "0", "--home", home], {
      ready: /a2a-broker listening on/,
      env: { ...process.env, A2A_HOME: home },
      name: "a2a-broker (code cache)"
    })
    const written = platformCache || (await waitFor(() => existsSync(file), 15_000))
    await proc.stop()
    if (!written) log(`note: the broker wrote no code cache at ${file}`)
  })())

/**
 * The built `a2a-broker` CLI as a child process with its own temp home. `db` is a file path,
 * `:memory:` or `memory`; default a SQLite file in the home. `nodeArgs` go before the script
 * (e.g. `--cpu-prof`), after any in `A2A_BENCH_BROKER_NODE_ARGS` (space-separated, e.g.
 * `--single-threaded-gc`: how a run with V8 flags is made). Resolves to {url, port, pid, token, home, stop, ...}.
 */
export const startBroker = async ({ db, nodeArgs = [], env = {} } = {}) => {
  await warmBrokerCache()
  const home = tempDir("a2a-bench-broker-")
  const dbArg = db ?? join(home, "broker.db")
  const extra = (process.env.A2A_BENCH_BROKER_NODE_ARGS ?? "").split(/\s+/).filter((arg) => arg !== "")
  const proc = await startProcess(process.execPath, [DIE_WITH_PARENT, ...extra, ...nodeArgs, BROKER_CLI, "--port", "0", "--home", home, "--db", dbArg], {
    ready: /a2a-broker listening on (http:\/\/\S+)/,
    env: { ...process.env, A2A_HOME: home, ...env },
    name: "a2a-broker"
  })
  const url = proc.match[1]
  const token = readFileSync(join(home, "broker.token"), "utf8").trim()
  return { ...proc, url, port: Number(new URL(url).port), token, home, db: dbArg }
}

/** The raw `ws` relay (below) as a child process. Resolves to {url, port, pid, stop, ...}. */
export const startRelay = async ({ nodeArgs = [] } = {}) => {
  const proc = await startProcess(process.execPath, [...nodeArgs, fileURLToPath(import.meta.url), "ws-relay"], {
    ready: /ws-relay listening on (\d+)/,
    name: "ws-relay"
  })
  const port = Number(proc.match[1])
  return { ...proc, port, url: `ws://127.0.0.1:${port}` }
}

// ---- the raw ws relay ---------------------------------------------------------------------------

/**
 * The baseline for "one WebSocket hop": a `ws` server where each socket is a peer
 * (`/peer/:id`); `{"type":"send","to":id,"body":…}` is forwarded to that peer's socket as
 * `{"type":"message","message":{from,to,seq,body}}`; `{"type":"ack","upTo":n}` is read and
 * dropped. No persistence, no auth, no answers: the lower bound for what the broker does.
 */
export const runRelay = async () => {
  const { WebSocketServer } = await import("ws")
  const sockets = new Map()
  const seqs = new Map()
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 1024 * 1024 })
  wss.on("connection", (ws, request) => {
    const id = decodeURIComponent((request.url ?? "").replace(/^\/peer\//, "").split("?")[0])
    sockets.get(id)?.close(4009, "replaced")
    sockets.set(id, ws)
    if (!seqs.has(id)) seqs.set(id, 0)
    ws.on("message", (data, isBinary) => {
      if (isBinary) return
      let frame
      try {
        frame = JSON.parse(data.toString())
      } catch {
        return
      }
      if (frame.type === "send") {
        const target = sockets.get(frame.to)
        if (target === undefined) return
        const seq = seqs.get(frame.to) + 1
        seqs.set(frame.to, seq)
        target.send(JSON.stringify({ type: "message", message: { from: id, to: frame.to, seq, body: frame.body } }))
      }
    })
    ws.on("close", () => {
      if (sockets.get(id) === ws) sockets.delete(id)
    })
    ws.on("error", () => {})
    ws.send(JSON.stringify({ type: "hello", peer: { id }, cursor: 0 }))
  })
  await new Promise((resolve) => wss.once("listening", resolve))
  process.stdout.write(`ws-relay listening on ${wss.address().port}\n`)
  const close = () => {
    for (const ws of wss.clients) ws.terminate()
    wss.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 1000).unref()
  }
  process.on("SIGTERM", close)
  process.on("SIGINT", close)
  // Never outlive the benchmark that started us: our stdin ends when it exits.
  process.stdin.on("end", close)
  process.stdin.resume()
}

// ---- CPU profiles -------------------------------------------------------------------------------

/**
 * Where a V8 `.cpuprofile` (from `node --cpu-prof`) spent its time, optionally only between
 * `fromMs` and `toMs` after the profile started: the heaviest functions by self time and by
 * inclusive time (self + callees), and self time per package (`node_modules/<pkg>`, `node:…`,
 * or the repository folder). Entries: {key, selfMs | totalMs, share (% of the window)}.
 */
export const summarizeCpuProfile = (file, { top = 25, fromMs = 0, toMs = Infinity } = {}) => {
  const profile = JSON.parse(readFileSync(file, "utf8"))
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const keyOf = (id) => {
    const { callFrame } = byId.get(id)
    const where = (callFrame.url ?? "").replace(/^file:\/\//, "").replace(ROOT + "/", "")
    return where === "" ? callFrame.functionName || "(anonymous)" : `${callFrame.functionName || "(anonymous)"} ${where}:${callFrame.lineNumber + 1}`
  }
  const pkgOf = (id) => {
    const { callFrame } = byId.get(id)
    const where = (callFrame.url ?? "").replace(/^file:\/\//, "").replace(ROOT + "/", "")
    if (where === "") return callFrame.functionName || "(native)"
    return /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where)?.[1] ?? (where.startsWith("node:") ? "node:internal" : where.split("/").slice(0, 3).join("/"))
  }
  const self = new Map()
  const total = new Map()
  const pkgs = new Map()
  let windowUs = 0
  let t = 0
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    const us = profile.timeDeltas[i + 1] ?? 0
    if (t / 1000 < fromMs || t / 1000 > toMs) continue
    windowUs += us
    const id = profile.samples[i]
    const key = keyOf(id)
    self.set(key, (self.get(key) ?? 0) + us)
    pkgs.set(pkgOf(id), (pkgs.get(pkgOf(id)) ?? 0) + us)
    const seen = new Set()
    for (let n = id; n !== undefined; n = parent.get(n)) {
      const k = keyOf(n)
      if (seen.has(k)) continue
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + us)
    }
  }
  const rank = (map, field) =>
    [...map.entries()]
      .filter(([key]) => field === "selfMs" || !["(root)", "(program)", "(idle)", "(garbage collector)"].includes(key))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => ({ key, [field]: Math.round(us / 100) / 10, share: Math.round((us / windowUs) * 1000) / 10 }))
  return { windowMs: Math.round(windowUs / 1000), self: rank(self, "selfMs"), inclusive: rank(total, "totalMs"), packages: rank(pkgs, "selfMs") }
}

// ---- entry point (child roles) ------------------------------------------------------------------

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const role = process.argv[2]
  if (role === "ws-relay") await runRelay()
  else {
    process.stderr.write("usage: node bench/lib.mjs ws-relay\n")
    process.exit(2)
  }
}
