/**
 * Footprint benchmark (issue 13): how fast each bin starts and how much memory it holds idle,
 * against same-run baselines.
 *
 * - MCP server: spawn → `initialize` → first `tools/list` answered (official SDK client over
 *   stdio, as Claude Code starts it), then idle RSS. Baseline: a bare `@modelcontextprotocol/sdk`
 *   stdio server with one tool (this file, mode `bare-mcp`), started and measured the same way.
 * - broker, proxy, runner: spawn → the "listening" line on stdout, then RSS (median of five
 *   readings 200 ms apart) one second after ready.
 * - Idle RSS, settled: every process above stays up, idle, until the newest is 30 s past ready,
 *   then its RSS is read the same way. A Node process holds the young generation that start-up
 *   grew (up to 32 MiB) until V8's memory reducer runs, ~8–18 s after start-up's last
 *   collection; what an idle server costs a machine is what it holds after that. Both figures
 *   are reported, for every process and baseline alike; the targets use the settled one.
 * - Servers whose bin starts through the compile cache (packages/core/src/CompileCache.ts) also
 *   report their first start with an empty cache (as after an install or upgrade).
 * - `--help` of every bin (broker, proxy, runner, MCP server, CLI): spawn → exit.
 * - Baseline for start and exit times: `node -e ''` (the floor of any Node process here).
 * Each figure is the median of `--runs` starts (default 5; `--quick` 2).
 *
 *   node bench/footprint.mjs [--quick] [--runs N] [--only mcp]
 *
 * `--only mcp` measures the two MCP rows alone (with their bare-server baseline) and prints them
 * without writing bench/results/footprint.json: a quick check while working on the MCP server.
 */
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import {
  BROKER_CLI,
  DIE_WITH_PARENT,
  log,
  machine,
  percentile,
  printTable,
  result,
  ROOT,
  rssKiB,
  settledRss,
  sleep,
  startBroker,
  startProcess,
  tempDir,
  writeResults
} from "./lib.mjs"

const SELF = fileURLToPath(import.meta.url)

// ---- mode: the bare MCP SDK stdio server with one tool (the baseline) ----------------------------
if (process.argv[2] === "bare-mcp") {
  const { McpServer } = await import("@modelcontextprotocol/sdk/server/mcp.js")
  const { StdioServerTransport } = await import("@modelcontextprotocol/sdk/server/stdio.js")
  const server = new McpServer({ name: "bare", version: "1.0.0" })
  server.tool("ping", "Answers pong.", async () => ({ content: [{ type: "text", text: "pong" }] }))
  await server.connect(new StdioServerTransport())
} else {
  await main()
}

async function main() {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, runs: { type: "string" }, only: { type: "string" } } })
  const onlyMcp = values.only === "mcp"
  if (values.only !== undefined && !onlyMcp) throw new Error(`--only takes mcp, not ${values.only}`)
  const RUNS = Number(values.runs ?? (values.quick ? 2 : 5))
  const loadavgAtStart = machine().loadavg
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js")
  const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js")
  const bin = (pkg) => join(ROOT, "packages", pkg, "dist", "cli.js")
  const median = (xs) => percentile([...xs].sort((a, b) => a - b), 50)

  /** Spawn → exit, in ms. */
  const runToExit = (args) =>
    new Promise((resolve, reject) => {
      const started = performance.now()
      const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] })
      let stderr = ""
      child.stderr.on("data", (c) => (stderr += c))
      child.once("exit", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${args.join(" ")} exited ${code}: ${stderr}`))))
    })
  const exitTimes = async (args) => {
    const times = []
    for (let i = 0; i < RUNS; i++) times.push(await runToExit(args))
    return median(times)
  }

  // Processes kept up until they have been idle for SETTLE_MS, then measured (`readSettled`).
  const SETTLE_MS = 30_000
  const idle = []
  const keepIdle = (pid, stop, into) => idle.push({ pid, readyAt: performance.now(), stop, into })
  const readSettled = async () => {
    const wait = Math.max(...idle.map((p) => p.readyAt)) + SETTLE_MS - performance.now()
    if (wait > 0) {
      log(`${idle.length} processes idle: reading their RSS in ${(wait / 1000).toFixed(0)} s`)
      await sleep(wait)
    }
    for (const p of idle) {
      p.into.push(await settledRss(p.pid))
      await p.stop()
    }
  }
  const settledMiB = (kibs) => median(kibs) / 1024

  /** Spawn → `tools/list` answered, then RSS 1 s after (and settled, later). */
  const mcpStart = async (args, env) => {
    const starts = []
    const rss = []
    const settled = []
    for (let i = 0; i < RUNS; i++) {
      const transport = new StdioClientTransport({ command: process.execPath, args, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stderr: "ignore" })
      const client = new Client({ name: "footprint", version: "1.0.0" })
      const started = performance.now()
      await client.connect(transport)
      const { tools } = await client.listTools()
      starts.push(performance.now() - started)
      if (tools.length === 0) throw new Error("no tools listed")
      await sleep(1_000)
      rss.push(await settledRss(transport.pid))
      keepIdle(transport.pid, () => client.close(), settled)
    }
    return { startMs: median(starts), startsMs: starts, rss1sMiB: median(rss) / 1024, settled }
  }

  /**
   * Spawn → the ready line, then RSS 1 s after (and settled, later). With `coldCache`, one more
   * start first with an empty compile-cache directory (reported apart, not in the median).
   */
  const serverStart = async (name, start, { coldCache = false } = {}) => {
    let coldStartMs
    if (coldCache) {
      const proc = await start({ A2A_COMPILE_CACHE: tempDir("a2a-bench-compile-cache-") })
      coldStartMs = performance.now() - proc.startedAt
      await proc.stop()
    }
    const starts = []
    const rss = []
    const settled = []
    for (let i = 0; i < RUNS; i++) {
      const proc = await start()
      starts.push(performance.now() - proc.startedAt)
      await sleep(1_000)
      rss.push(await settledRss(proc.pid))
      keepIdle(proc.pid, () => proc.stop(), settled)
    }
    log(`${name}: start ${median(starts).toFixed(0)} ms${coldStartMs === undefined ? "" : ` (empty compile cache: ${coldStartMs.toFixed(0)} ms)`}, RSS 1 s after ready ${(median(rss) / 1024).toFixed(1)} MiB`)
    return { startMs: median(starts), startsMs: starts, coldStartMs, rss1sMiB: median(rss) / 1024, settled }
  }

  log("node -e ''")
  const nodeStartMs = await exitTimes(["-e", ""])
  const nodeSettled = []
  const nodeRss = await (async () => {
    const proc = await startProcess(process.execPath, ["-e", 'console.log("ready");setInterval(()=>{},1e9)'], { ready: /ready/, name: "node" })
    await sleep(1_000)
    const kib = await settledRss(proc.pid)
    keepIdle(proc.pid, () => proc.stop(), nodeSettled)
    return kib / 1024
  })()

  log("bare MCP SDK server")
  const bare = await mcpStart([SELF, "bare-mcp"], {})
  // Imported here, not at the top: this file is also the bare server, which must load nothing else.
  const { RunnerConfig } = await import("@mks/a2a-runner")
  // The same bare server with the Node flags our launchers give a2a-mcp (reported, not the target's baseline).
  const [, ...launchArgs] = RunnerConfig.defaultMcpCommand()
  const nodeFlags = launchArgs.slice(0, -1)
  const bareFlagged = await mcpStart([...nodeFlags, SELF, "bare-mcp"], {})

  const broker = await startBroker()
  log("a2a-mcp")
  // Started as the runner and `a2a up` start it (its Node flags included).
  if (launchArgs.at(-1) !== bin("mcp")) throw new Error(`the runner's MCP command ${launchArgs.join(" ")} is not this checkout's build`)
  const mcp = await mcpStart(launchArgs, { A2A_BROKER_URL: broker.url, A2A_TOKEN: broker.token, A2A_PEER_NAME: "footprint" })
  const mcpRows = () => [
    result({ name: "MCP server start → tools/list", ours: mcp.startMs, baseline: bare.startMs, unit: "ms", target: "≤ 1.3× bare SDK server", met: mcp.startMs <= 1.3 * bare.startMs }),
    result({ name: "MCP server idle RSS (settled)", ours: settledMiB(mcp.settled), baseline: settledMiB(bare.settled), unit: "MiB", target: "≤ 1.2× bare SDK server", met: settledMiB(mcp.settled) <= 1.2 * settledMiB(bare.settled) }),
    result({ name: "MCP server RSS 1 s after tools/list", ours: mcp.rss1sMiB, baseline: bare.rss1sMiB, unit: "MiB" }),
    result({ name: `MCP idle RSS (settled), bare with ${nodeFlags.join(" ")}`, ours: settledMiB(mcp.settled), baseline: settledMiB(bareFlagged.settled), unit: "MiB" })
  ]
  if (onlyMcp) {
    await readSettled()
    await broker.stop()
    const rows = mcpRows()
    printTable(rows, [["name", "figure"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
    log(`load average at start ${loadavgAtStart.join(" ")}, now ${machine().loadavg.join(" ")}`)
    process.exit(0)
  }

  const brokerStart = await serverStart(
    "a2a-broker",
    (env = {}) => {
      const home = tempDir("a2a-bench-footprint-broker-")
      return startProcess(process.execPath, [DIE_WITH_PARENT, BROKER_CLI, "--port", "0", "--home", home], {
        ready: /a2a-broker listening on/,
        env: { ...process.env, A2A_HOME: home, ...env },
        name: "a2a-broker"
      })
    },
    { coldCache: true }
  )
  const proxyStart = await serverStart("a2a-proxy", () => {
    const home = tempDir("a2a-bench-footprint-proxy-")
    const config = join(home, "proxy.json")
    writeFileSync(config, JSON.stringify({ providers: [{ name: "fake", baseUrl: "http://127.0.0.1:9", apiKeyEnv: "BENCH_PROVIDER_KEY" }], default: "fake" }))
    return startProcess(process.execPath, [DIE_WITH_PARENT, bin("proxy"), "--port", "0", "--config", config], {
      ready: /a2a-proxy listening on/,
      env: { ...process.env, A2A_HOME: home, A2A_PROXY_ADMIN_TOKEN: "bench-admin", BENCH_PROVIDER_KEY: "sk-bench" },
      name: "a2a-proxy"
    })
  })
  const runnerStart = await serverStart("a2a-runner", () =>
    startProcess(process.execPath, [DIE_WITH_PARENT, bin("runner"), "--port", "0", "--data-dir", tempDir("a2a-bench-footprint-runner-"), "--api-key", "bench-key", "--broker", broker.url, "--token", broker.token, "--id", `fp-${Date.now()}`], {
      ready: /listening on/,
      name: "a2a-runner"
    })
  )
  await readSettled()
  await broker.stop()

  const help = {}
  for (const pkg of ["broker", "proxy", "runner", "mcp", "cli"]) {
    log(`${pkg} --help`)
    help[pkg] = await exitTimes([bin(pkg), "--help"])
  }

  const nodeSettledMiB = settledMiB(nodeSettled)
  const serverRows = (label, server, target = {}) => [
    result({ name: `${label} start → listening`, ours: server.startMs, baseline: nodeStartMs, unit: "ms", ...target.start, startsMs: server.startsMs }),
    ...(server.coldStartMs === undefined ? [] : [result({ name: `${label} start → listening, empty compile cache (first start after install)`, ours: server.coldStartMs, baseline: nodeStartMs, unit: "ms" })]),
    result({ name: `${label} idle RSS (settled)`, ours: settledMiB(server.settled), baseline: nodeSettledMiB, unit: "MiB", ...target.rss }),
    result({ name: `${label} RSS 1 s after ready`, ours: server.rss1sMiB, baseline: nodeRss, unit: "MiB" })
  ]
  const results = [
    ...mcpRows(),
    ...serverRows("broker", brokerStart, {
      start: { target: "≤ 400 ms", met: brokerStart.startMs <= 400 },
      rss: { target: "≤ 80 MiB", met: settledMiB(brokerStart.settled) <= 80 }
    }),
    ...serverRows("proxy", proxyStart),
    ...serverRows("runner", runnerStart),
    ...Object.entries(help).map(([pkg, ms]) => result({ name: `${pkg === "cli" ? "a2a" : pkg} --help → exit`, ours: ms, baseline: nodeStartMs, unit: "ms" }))
  ]
  printTable(results, [["name", "figure"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
  const file = writeResults("footprint", {
    benchmark: "footprint",
    description: "Start → ready and idle RSS of each bin (median of runs; idle RSS settled: read once the newest process has been idle 30 s, and 1 s after ready); baselines: a bare @modelcontextprotocol/sdk stdio server with one tool (MCP rows), `node -e ''` (other rows)",
    config: { runs: RUNS },
    machine: { ...machine(), loadavgAtStart },
    baselines: { nodeStartMs, nodeRss1sMiB: nodeRss, nodeIdleRssSettledMiB: nodeSettledMiB, bareMcp: bare, bareMcpWithOurNodeFlags: { nodeFlags, ...bareFlagged } },
    results
  })
  log(`wrote ${file}`)
  process.exit(0)
}
