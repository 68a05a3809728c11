/**
 * CLI benchmark (issue 18): how long a person waits for the `a2a` command line and for a warm
 * `npm start`, against `node -e ''` (the floor of any Node process here) in the same run.
 *
 * - `a2a --version`, `a2a --help`: spawn → exit.
 * - `a2a peers` and `a2a runners` against a running broker (one HTTP round trip each): spawn → exit.
 * - `a2a send <peer> hi` (registers the CLI's peer, then one send): spawn → exit.
 * - warm `npm start`: everything built and up to date (nothing rebuilt), `npm start` → the
 *   "Ctrl-C stops everything." line, on free ports with an empty HOME; then SIGINT.
 * Each figure is the median of `--runs` (default 7; `--quick` 3; `npm start` 3 / 1).
 *
 *   node bench/cli.mjs [--quick] [--runs N]
 */
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { log, machine, percentile, printTable, result, ROOT, startBroker, startProcess, tempDir, writeResults } from "./lib.mjs"

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, runs: { type: "string" } } })
const RUNS = Number(values.runs ?? (values.quick ? 3 : 7))
const START_RUNS = values.quick ? 1 : 3
const loadavgAtStart = machine().loadavg
const A2A = join(ROOT, "packages", "cli", "bin", "a2a.js")
const median = (xs) => percentile([...xs].sort((a, b) => a - b), 50)

/** Spawn → exit, in ms (exit code 0 required). */
const runToExit = (args, env = process.env) =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env })
    let stderr = ""
    child.stderr.on("data", (c) => (stderr += c))
    child.once("exit", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${args.join(" ")} exited ${code}: ${stderr}`))))
  })
const times = async (args, env) => {
  const all = []
  for (let i = 0; i < RUNS; i++) all.push(await runToExit(args, env))
  return { median: median(all), min: Math.min(...all), max: Math.max(...all) }
}

const broker = await startBroker()
const env = { PATH: process.env.PATH ?? "", HOME: tempDir("a2a-bench-cli-home-"), A2A_BROKER_URL: broker.url, A2A_TOKEN: broker.token, A2A_PEER_NAME: "bench-cli" }

// The floors run with the commands' environment: an inherited NODE_EXTRA_CA_CERTS (set on
// this machine) alone adds ~30 ms to every node start.
log("node -e ''")
const node = await times(["-e", ""], env)
// A second floor: node running an empty module file (`-e` sets up an eval context a file does not).
const emptyFile = join(tempDir("a2a-bench-cli-empty-"), "empty.mjs")
writeFileSync(emptyFile, "")
log("node empty.mjs")
const nodeFile = await times([emptyFile], env)
const rows = {}
for (const [name, args] of [
  ["a2a --version", ["--version"]],
  ["a2a --help", ["--help"]],
  ["a2a peers", ["peers"]],
  ["a2a runners", ["runners"]],
  ["a2a send bench-cli hi", ["send", "bench-cli", "hi"]]
]) {
  log(name)
  rows[name] = await times([A2A, ...args], env)
}
await broker.stop()

// Warm npm start: nothing to rebuild (the bench builds first), free ports, an empty HOME.
log("npm start (warm)")
const starts = []
for (let i = 0; i < START_RUNS; i++) {
  const home = tempDir("a2a-bench-npm-start-")
  const proc = await startProcess("npm", ["start", "--silent"], {
    ready: /^Ctrl-C stops everything\.$/,
    timeoutMs: 120_000,
    env: { ...process.env, HOME: home, A2A_BROKER_PORT: "0", A2A_RUNNER_PORT: "0", A2A_PROXY_PORT: "0" },
    name: "npm start"
  })
  starts.push(performance.now() - proc.startedAt)
  if (/building/.test(proc.stderr())) throw new Error(`npm start rebuilt something, not a warm start: ${proc.stderr()}`)
  proc.child.kill("SIGINT")
  await proc.exited
}
const npmStart = median(starts)

/** The targets: `a2a --version` ≤ 200 ms, `a2a peers` ≤ 500 ms (spawn → exit). */
const TARGETS = {
  "a2a --version": (ms) => ({ target: "≤ 200 ms", met: ms <= 200 }),
  "a2a peers": (ms) => ({ target: "≤ 500 ms", met: ms <= 500 })
}
const results = [
  ...Object.entries(rows).map(([name, t]) =>
    result({ name: `${name} → exit`, ours: t.median, baseline: node.median, unit: "ms", min: Math.round(t.min), max: Math.round(t.max), emptyFileMs: Math.round(nodeFile.median * 10) / 10, ...TARGETS[name]?.(t.median) })
  ),
  result({ name: "npm start (warm) → stack ready", ours: npmStart, baseline: node.median, unit: "ms", runs: starts.map(Math.round), target: "≤ 5,000 ms", met: npmStart <= 5_000 })
]
printTable(results, [["name", "figure"], ["ours", "ours"], ["baseline", "node -e ''"], ["ratio", "ratio"], ["emptyFileMs", "node empty.mjs"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
const file = writeResults("cli", {
  benchmark: "cli",
  description: "Start → exit of a2a commands (median of runs) and a warm `npm start` → stack ready; baseline `node -e ''` in the same run",
  config: { runs: RUNS, npmStartRuns: START_RUNS },
  machine: { ...machine(), loadavgAtStart },
  baselines: { nodeStartMs: node.median, nodeEmptyFileMs: nodeFile.median },
  results
})
log(`wrote ${file}`)
process.exit(0)
