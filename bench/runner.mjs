/**
 * Runner benchmarks (issue 6), each with a baseline measured in the same run:
 *
 *  1. spawn order → running and spawn order → registered for the small Node echo agent
 *     (packages/runner/test/fixtures/echo-agent.mjs), through broker + runner; baseline: a raw
 *     `child_process.spawn` of the same agent registering directly (spawn → first output,
 *     spawn → "registered" line);
 *  2. SSE log lag: a line written by an agent → the event on `GET /sse/agents/:id/logs`;
 *     baseline: the same script under a raw `child_process.spawn` with a stdout pipe;
 *  3. SSE status lag: `POST /agents/:id/stop|start` sent → its status event on `GET /sse/status`;
 *     baseline: a `GET /health` round trip of the same server;
 *  4. `GET /agents` latency with 50 running agents; baseline: `GET /health` of the same server.
 *
 * The broker and the runner are the built CLIs as child processes; the load generator is
 * this process. Results: bench/results/runner.json.
 *
 *   node bench/runner.mjs [--quick]
 */
import { createBrokerClient } from "@mks/a2a"
import { spawn } from "node:child_process"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import {
  log,
  machine,
  printTable,
  result,
  roundAll,
  ROOT,
  startBroker,
  startProcess,
  summarize,
  tempDir,
  writeResults
} from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false } } })
const CONFIG = flags.quick ? { spawns: 5, lines: 100, listAgents: 50, listRequests: 100 } : { spawns: 20, lines: 500, listAgents: 50, listRequests: 500 }

const RUNNER_CLI = join(ROOT, "packages", "runner", "dist", "cli.js")
const ECHO = join(ROOT, "packages", "runner", "test", "fixtures", "echo-agent.mjs")
const KEY = "bench-runner-key-0123456789"
// Prints a wall-clock stamp (sub-millisecond) per line, every 5 ms.
const STAMPER = `let n=0;const t=setInterval(()=>{console.log("t "+(performance.timeOrigin+performance.now()));if(++n>=${CONFIG.lines}){clearInterval(t);setTimeout(()=>{},1e9)}},5)`
const now = () => performance.timeOrigin + performance.now()
const loadavgAtStart = machine().loadavg

const broker = await startBroker()
const runner = await startProcess(process.execPath, [RUNNER_CLI, "--port", "0", "--data-dir", tempDir("a2a-bench-runner-"), "--api-key", KEY, "--broker", broker.url, "--token", broker.token, "--id", "bench"], {
  ready: /listening on (http:\/\/\S+)/,
  name: "a2a-runner"
})
const runnerUrl = runner.match[1]
const api = async (method, path, body) => {
  const res = await fetch(runnerUrl + path, { method, headers: { authorization: `Bearer ${KEY}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined })
  return { status: res.status, json: await res.json() }
}

// ---- 1. spawn latency ----------------------------------------------------------------------------
const client = createBrokerClient({ url: broker.url, token: broker.token })
const watcher = (await client.peers.register({ name: "bench-watcher" })).peer
const channel = client.connect(watcher.id, { autoAck: true })
await new Promise((resolve) => channel.on("open", resolve))
const statusWaiters = []
channel.on("event", (e) => {
  if (e.type !== "spawn_status") return
  for (const w of [...statusWaiters]) if (w.id === e.spawn.id && w.status === e.spawn.status) {
    statusWaiters.splice(statusWaiters.indexOf(w), 1)
    w.resolve(now())
  }
})
const statusOf = (id, status) => new Promise((resolve) => statusWaiters.push({ id, status, resolve }))
for (let i = 0; i < 50 && !(await client.runners.list()).runners.some((r) => r.id === "bench" && r.status === "online"); i++) await new Promise((r) => setTimeout(r, 50))

const toRunning = []
const toRegistered = []
const rawRunning = []
const rawRegistered = []
// Baseline: the same agent, spawned raw, registering with the admin token. Runs alternate with
// the runner's, so machine load hits both alike.
const rawOnce = async (i) => {
  const t0 = now()
  const child = spawn(process.execPath, [ECHO], { env: { ...process.env, A2A_BROKER_URL: broker.url, A2A_TOKEN: broker.token, A2A_PEER_NAME: `raw-echo-${i}` }, stdio: ["ignore", "pipe", "inherit"] })
  await new Promise((resolve) => child.once("spawn", resolve))
  rawRunning.push(now() - t0)
  const lines = createInterface({ input: child.stdout })
  await new Promise((resolve) => lines.on("line", (l) => l.startsWith("registered") && resolve()))
  rawRegistered.push(now() - t0)
  child.kill("SIGTERM")
  await new Promise((resolve) => child.once("exit", resolve))
}
const runnerOnce = async (i) => {
  const t0 = now()
  const { spawn: s } = await client.spawn.create({ runner: "bench", command: process.execPath, args: [ECHO], name: `bench-echo-${i}`, requestedBy: watcher.id })
  const [running, registered] = await Promise.all([statusOf(s.id, "running"), statusOf(s.id, "registered")])
  toRunning.push(running - t0)
  toRegistered.push(registered - t0)
  const exited = statusOf(s.id, "exited")
  await client.spawn.stop(s.id)
  await exited
}
for (let i = 0; i < CONFIG.spawns; i++) {
  if (i % 2 === 0) {
    await runnerOnce(i)
    await rawOnce(i)
  } else {
    await rawOnce(i)
    await runnerOnce(i)
  }
}
log(`spawn: ${CONFIG.spawns} orders and raw spawns done`)

// ---- 2. SSE log lag ------------------------------------------------------------------------------
const lagRun = async () => {
  // Definition with a start gate: the agent waits for a newline on its terminal, so the SSE
  // subscription is in place before the first stamp.
  const gated = `process.stdin.once("data",()=>{${STAMPER}})`
  await api("POST", "/agents", { name: "stamper", command: process.execPath, args: ["-e", gated], restart: "never" })
  const controller = new AbortController()
  const res = await fetch(`${runnerUrl}/sse/agents/stamper/logs`, { headers: { authorization: `Bearer ${KEY}` }, signal: controller.signal })
  const ws = new (await import("ws")).WebSocket(`${runnerUrl.replace("http", "ws")}/ws/agents/stamper/terminal`, { headers: { authorization: `Bearer ${KEY}` } })
  await new Promise((resolve) => ws.once("open", resolve))
  ws.send(JSON.stringify({ type: "input", data: "go\r" }))
  const lags = []
  const decoder = new TextDecoder()
  let buffer = ""
  for await (const chunk of res.body) {
    const at = now()
    buffer += decoder.decode(chunk, { stream: true })
    let i
    while ((i = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, i)
      buffer = buffer.slice(i + 2)
      const data = block.split("\n").find((l) => l.startsWith("data: "))
      if (data === undefined) continue
      const line = JSON.parse(data.slice(6)).line
      if (/^t \d/.test(line)) lags.push(at - Number(line.slice(2)))
    }
    if (lags.length >= CONFIG.lines) break
  }
  controller.abort()
  ws.close()
  await api("DELETE", "/agents/stamper")
  return lags
}
const lags = await lagRun()
const rawLags = await new Promise((resolve) => {
  const out = []
  const child = spawn(process.execPath, ["-e", STAMPER], { stdio: ["ignore", "pipe", "inherit"] })
  createInterface({ input: child.stdout }).on("line", (line) => {
    out.push(now() - Number(line.slice(2)))
    if (out.length >= CONFIG.lines) {
      child.kill("SIGKILL")
      resolve(out)
    }
  })
})
log(`sse: ${lags.length} lines`)

// ---- 2b. SSE status lag: POST stop/start → the status event ---------------------------------------
const statusLags = await (async () => {
  await api("POST", "/agents", { name: "flipper", command: "sleep", args: ["1000"] })
  const controller = new AbortController()
  const res = await fetch(`${runnerUrl}/sse/status`, { headers: { authorization: `Bearer ${KEY}` }, signal: controller.signal })
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  const nextStatus = async (want) => {
    for (;;) {
      let i
      while ((i = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, i)
        buffer = buffer.slice(i + 2)
        const data = block.split("\n").find((l) => l.startsWith("data: "))
        if (data !== undefined && JSON.parse(data.slice(6)).new_status === want) return now()
      }
      const { value } = await reader.read()
      buffer += decoder.decode(value, { stream: true })
    }
  }
  const lags = []
  for (let i = 0; i < CONFIG.spawns; i++) {
    let t0 = now()
    const stopped = api("POST", "/agents/flipper/stop")
    lags.push((await nextStatus("stopping")) - t0)
    await stopped
    t0 = now()
    const started = api("POST", "/agents/flipper/start")
    lags.push((await nextStatus("running")) - t0)
    await started
  }
  controller.abort()
  await api("DELETE", "/agents/flipper")
  return lags
})()

// ---- 3. list latency with 50 agents --------------------------------------------------------------
for (let i = 0; i < CONFIG.listAgents; i++) await api("POST", "/agents", { name: `idle-${i}`, command: "sleep", args: ["1000"] })
const timeGet = async (path) => {
  const times = []
  for (let i = 0; i < CONFIG.listRequests; i++) {
    const t0 = now()
    const res = await fetch(runnerUrl + path, { headers: { authorization: `Bearer ${KEY}` } })
    const body = await res.json()
    times.push(now() - t0)
    if (path === "/agents" && body.agents.length < CONFIG.listAgents) throw new Error("list incomplete")
  }
  return times
}
await timeGet("/agents") // warm-up
const listTimes = await timeGet("/agents")
const healthTimes = await timeGet("/health")
for (let i = 0; i < CONFIG.listAgents; i++) await api("DELETE", `/agents/idle-${i}`)

await channel.close()
await client.close()
await runner.stop()
await broker.stop()

// ---- results -------------------------------------------------------------------------------------
const s = {
  toRunning: summarize(toRunning),
  toRegistered: summarize(toRegistered),
  rawRunning: summarize(rawRunning),
  rawRegistered: summarize(rawRegistered),
  sseLag: summarize(lags),
  statusLag: summarize(statusLags),
  rawLag: summarize(rawLags),
  list: summarize(listTimes),
  health: summarize(healthTimes)
}
const results = [
  result({ name: "spawn order → running p50", ours: s.toRunning.p50, baseline: s.rawRunning.p50, unit: "ms", target: "-", met: true }),
  result({ name: "spawn order → registered p50", ours: s.toRegistered.p50, baseline: s.rawRegistered.p50, unit: "ms", target: "≤ 500 ms", met: s.toRegistered.p50 <= 500 }),
  result({ name: "spawn order → registered p99", ours: s.toRegistered.p99, baseline: s.rawRegistered.p99, unit: "ms", target: "≤ 500 ms", met: s.toRegistered.p99 <= 500 }),
  result({ name: "SSE log lag p50", ours: s.sseLag.p50, baseline: s.rawLag.p50, unit: "ms", target: "≤ 50 ms", met: s.sseLag.p50 <= 50 }),
  result({ name: "SSE log lag p99", ours: s.sseLag.p99, baseline: s.rawLag.p99, unit: "ms", target: "≤ 1000 ms (aim 50)", met: s.sseLag.p99 <= 1000 }),
  result({ name: "POST stop/start → SSE status p50", ours: s.statusLag.p50, baseline: s.health.p50, unit: "ms", target: "≤ 50 ms", met: s.statusLag.p50 <= 50 }),
  result({ name: "POST stop/start → SSE status p99", ours: s.statusLag.p99, baseline: s.health.p99, unit: "ms", target: "≤ 1000 ms (aim 50)", met: s.statusLag.p99 <= 1000 }),
  result({ name: "GET /agents with 50 agents p50", ours: s.list.p50, baseline: s.health.p50, unit: "ms", target: "≤ 5 ms", met: s.list.p50 <= 5 }),
  result({ name: "GET /agents with 50 agents p99", ours: s.list.p99, baseline: s.health.p99, unit: "ms", target: "≤ 200 ms", met: s.list.p99 <= 200 })
]
printTable(results, [["name", "benchmark"], ["ours", "runner"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
const file = writeResults("runner", {
  machine: machine(),
  loadavgAtStart,
  config: CONFIG,
  baselines: {
    spawn: "raw child_process.spawn of the same echo agent, registering directly with the admin token (spawn event / its 'registered' line)",
    sse: "the same stamping script under raw child_process.spawn, lines read from a stdout pipe",
    status: "a GET /health round trip of the same runner",
    list: "GET /health of the same runner (auth-free, no work)"
  },
  results,
  details: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, roundAll(v)]))
})
log(`wrote ${file}`)
process.exit(0)
