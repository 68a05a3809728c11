/**
 * Proxy benchmarks (issue 4): the same open-loop load sent to a fake Anthropic upstream
 * directly, through a raw node:http pass-through (the lower bound of one Node proxy hop), and
 * through the built a2a-proxy (`packages/proxy/dist/cli.js`), in one run.
 *
 *   node bench/proxy.mjs [--seconds 4] [--rounds 3] [--rates 200,1000] [--stream-rates 200,1000] [--quick]
 *                        [--proxy-node-args=--max-semi-space-size=4]
 *
 * Measures: added latency p50/p99 at each rate (non-streaming), added time to first byte
 * (streaming), the proxy's own `x-a2a-proxy-overhead-ms`, its CPU time per request and its
 * peak RSS. Prints a table and writes bench/results/proxy.json.
 *
 * Processes: this one generates the load (node:http, keep-alive agent, paced by the clock,
 * not by answers) and measures; the fake upstream, the raw pass-through and the a2a-proxy each
 * run in their own child process (`node bench/proxy.mjs fake-upstream | raw-proxy PORT`).
 */
import { readFileSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import {
  cpuTimeMs,
  DIE_WITH_PARENT,
  log,
  machine,
  printTable,
  result,
  ROOT,
  round,
  roundAll,
  rssKiB,
  sampleRss,
  startProcess,
  summarize,
  tempDir,
  writeResults
} from "./lib.mjs"

const SELF = fileURLToPath(import.meta.url)
const PROXY_CLI = join(ROOT, "packages", "proxy", "dist", "cli.js")

// ---- child roles --------------------------------------------------------------------------------

/** The fake Anthropic upstream: answers /v1/messages at once, JSON or SSE (first event at once). */
const runFakeUpstream = () => {
  const usage = { input_tokens: 25, output_tokens: 17, cache_creation_input_tokens: 300, cache_read_input_tokens: 4000 }
  const text = "Hello from the benchmark upstream. "
  const message = JSON.stringify({
    id: "msg_bench",
    type: "message",
    role: "assistant",
    model: "claude-bench",
    content: [{ type: "text", text: text.repeat(8) }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage
  })
  const events = [
    ["message_start", { type: "message_start", message: { id: "msg_bench", type: "message", role: "assistant", model: "claude-bench", content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }],
    ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }],
    ...Array.from({ length: 8 }, () => ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } }]),
    ["content_block_stop", { type: "content_block_stop", index: 0 }],
    ["message_delta", { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage }],
    ["message_stop", { type: "message_stop" }]
  ].map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`)
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let stream = false
    req.on("data", (chunk) => {
      if (!stream && chunk.includes('"stream":true')) stream = true
    })
    req.on("end", () => {
      if (!stream) {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(message), "request-id": "req_bench" })
        return res.end(message)
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
      // The first event goes out with the headers (what TTFB measures); the rest on later turns, like a model.
      res.write(events[0])
      let i = 1
      const next = () => {
        if (i < events.length) {
          res.write(events[i++])
          setImmediate(next)
        } else res.end()
      }
      setImmediate(next)
    })
  })
  server.listen(0, "127.0.0.1", () => process.stdout.write(`fake-upstream listening on ${server.address().port}\n`))
}

/**
 * The baseline for "one Node proxy hop": a node:http pass-through with a keep-alive agent that
 * parses the JSON body (to route) and relays status, headers and body as they arrive. No keys,
 * no metering, no usage parsing, no metrics.
 */
const runRawProxy = (upstreamPort) => {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: "lifo" })
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on("data", (c) => chunks.push(c))
    req.on("end", () => {
      const body = Buffer.concat(chunks)
      JSON.parse(body.toString("utf8"))
      const headers = { ...req.headers, "content-length": body.length }
      delete headers.host
      delete headers.connection
      delete headers["x-api-key"]
      const upstream = http.request({ host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers, agent }, (response) => {
        res.writeHead(response.statusCode, response.headers)
        response.pipe(res)
      })
      upstream.end(body)
    })
  })
  server.listen(0, "127.0.0.1", () => process.stdout.write(`raw-proxy listening on ${server.address().port}\n`))
}

// ---- load ---------------------------------------------------------------------------------------

const bodyOf = (stream) =>
  JSON.stringify({
    model: "claude-bench",
    max_tokens: 256,
    ...(stream ? { stream: true } : {}),
    messages: [{ role: "user", content: "Say hello in one short sentence, please." }]
  })

const send = (agent, port, headers, body) =>
  new Promise((resolve) => {
    const started = process.hrtime.bigint()
    let first
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/v1/messages", agent, headers }, (res) => {
      const overhead = res.headers["x-a2a-proxy-overhead-ms"]
      res.on("data", () => {
        first ??= process.hrtime.bigint()
      })
      res.on("end", () => {
        const ended = process.hrtime.bigint()
        resolve({
          ok: res.statusCode === 200,
          ms: Number(ended - started) / 1e6,
          ttfb: first === undefined ? NaN : Number(first - started) / 1e6,
          overhead: overhead === undefined ? NaN : Number(overhead)
        })
      })
    })
    req.on("error", () => resolve({ ok: false, ms: NaN, ttfb: NaN, overhead: NaN }))
    req.end(body)
  })

/** Open loop: request i leaves at start + i / rate, whatever the answers do. */
const openLoop = async ({ port, key, rate, seconds, stream, pid }) => {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1024, scheduling: "lifo" })
  const body = bodyOf(stream)
  const headers = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "content-length": Buffer.byteLength(body),
    ...(key === undefined ? {} : { "x-api-key": key })
  }
  const total = Math.round(rate * seconds)
  const results = []
  const pending = []
  const cpuBefore = pid === undefined ? NaN : cpuTimeMs(pid)
  const start = performance.now()
  let sent = 0
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1)
      while (sent < due) {
        sent++
        pending.push(send(agent, port, headers, body).then((r) => results.push(r)))
      }
      if (sent < total) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await Promise.all(pending)
  const elapsed = (performance.now() - start) / 1000
  agent.destroy()
  const ok = results.filter((r) => r.ok)
  return {
    rate,
    seconds,
    sent: total,
    errors: results.length - ok.length,
    achievedRate: round(total / elapsed),
    latency: roundAll(summarize(ok.map((r) => r.ms))),
    ttfb: roundAll(summarize(ok.map((r) => r.ttfb))),
    overhead: roundAll(summarize(ok.map((r) => r.overhead).filter((x) => !Number.isNaN(x)))),
    cpuMsPerRequest: pid === undefined ? null : round((cpuTimeMs(pid) - cpuBefore) / total)
  }
}

// ---- main ---------------------------------------------------------------------------------------

/** CPU ticks of the whole machine from /proc/stat: [steal, total]; steal is time the hypervisor gave to others. */
const cpuTicks = () => {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number)
    return [fields[7], fields.reduce((a, b) => a + b, 0)]
  } catch {
    return [NaN, NaN]
  }
}

const main = async () => {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "4" },
      /** Rounds of the whole matrix; each figure is the median over rounds (this VM is noisy). */
      rounds: { type: "string", default: "3" },
      rates: { type: "string", default: "200,1000" },
      "stream-rates": { type: "string", default: "200,1000" },
      /** Extra node flags for the a2a-proxy process, e.g. "--max-semi-space-size=4". */
      "proxy-node-args": { type: "string", default: "" },
      quick: { type: "boolean", default: false }
    }
  })
  const seconds = values.quick ? 1 : Number(values.seconds)
  const rounds = values.quick ? 1 : Number(values.rounds)
  const rates = values.rates.split(",").map(Number)
  const streamRates = values["stream-rates"].split(",").map(Number)
  const proxyNodeArgs = values["proxy-node-args"].split(" ").filter((a) => a !== "")
  const loadavgAtStart = machine().loadavg

  const fake = await startProcess(process.execPath, [DIE_WITH_PARENT, SELF, "fake-upstream"], { ready: /fake-upstream listening on (\d+)/, name: "fake-upstream" })
  const upstreamPort = Number(fake.match[1])
  const raw = await startProcess(process.execPath, [DIE_WITH_PARENT, SELF, "raw-proxy", String(upstreamPort)], { ready: /raw-proxy listening on (\d+)/, name: "raw-proxy" })
  const home = tempDir("a2a-bench-proxy-")
  const config = join(home, "proxy.json")
  writeFileSync(config, JSON.stringify({ providers: [{ name: "fake", baseUrl: `http://127.0.0.1:${upstreamPort}`, apiKeyEnv: "BENCH_PROVIDER_KEY" }], default: "fake" }))
  const proxy = await startProcess(process.execPath, [DIE_WITH_PARENT, ...proxyNodeArgs, PROXY_CLI, "--port", "0", "--config", config], {
    ready: /a2a-proxy listening on http:\/\/127\.0\.0\.1:(\d+)/,
    env: { ...process.env, A2A_HOME: home, A2A_PROXY_ADMIN_TOKEN: "bench-admin", BENCH_PROVIDER_KEY: "sk-bench-provider" },
    name: "a2a-proxy"
  })
  const proxyPort = Number(proxy.match[1])
  const idleRssMiB = rssKiB(proxy.pid) / 1024
  // Limits on: every measured request goes through the reservation and the settlement.
  const created = await fetch(`http://127.0.0.1:${proxyPort}/v1/keys`, {
    method: "POST",
    headers: { authorization: "Bearer bench-admin", "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", limits: { requestsPerMinute: 10_000_000, tokensPer5h: 1_000_000_000_000 } })
  }).then((r) => r.json())
  const key = created.key

  const targets = [
    { name: "direct", port: upstreamPort, key: undefined, pid: fake.pid },
    { name: "raw", port: Number(raw.match[1]), key: undefined, pid: raw.pid },
    { name: "a2a", port: proxyPort, key, pid: proxy.pid }
  ]
  const rss = sampleRss(proxy.pid, 50)
  log("warming up")
  for (const t of targets) {
    await openLoop({ ...t, rate: 500, seconds: values.quick ? 0.5 : 2, stream: false })
    await openLoop({ ...t, rate: 200, seconds: values.quick ? 0.5 : 1, stream: true })
  }
  const [stealBefore, ticksBefore] = cpuTicks()
  const perRound = []
  for (let round = 0; round < rounds; round++) {
    const runs = { nonStreaming: [], streaming: [] }
    for (const [kind, list, stream] of [["nonStreaming", rates, false], ["streaming", streamRates, true]]) {
      for (const rate of list) {
        const row = { rate }
        // Rotate the order each round, so drift of the machine does not favour one target.
        for (const t of [...targets.slice(round % 3), ...targets.slice(0, round % 3)]) {
          log(`round ${round + 1}/${rounds}: ${stream ? "streaming" : "non-streaming"} ${rate} req/s ${t.name}`)
          row[t.name] = await openLoop({ ...t, rate, seconds, stream })
        }
        runs[kind].push(row)
      }
    }
    perRound.push(runs)
  }
  // Each statistic: the median over rounds.
  const median = (xs) => {
    const sorted = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b)
    return sorted.length === 0 ? NaN : sorted[(sorted.length - 1) >> 1]
  }
  const medianOf = (items) =>
    Array.isArray(items[0])
      ? items[0].map((_, i) => medianOf(items.map((x) => x[i])))
      : typeof items[0] === "object" && items[0] !== null
      ? Object.fromEntries(Object.keys(items[0]).map((k) => [k, medianOf(items.map((i) => i[k]))]))
      : typeof items[0] === "number"
        ? median(items)
        : items[0]
  const runs = medianOf(perRound)
  const peak = rss.stop()
  const [stealAfter, ticksAfter] = cpuTicks()
  const stealPercent = round((100 * (stealAfter - stealBefore)) / (ticksAfter - ticksBefore))
  const peakRssMiB = peak.maxKiB / 1024

  const results = []
  for (const r of runs.nonStreaming) {
    const addedA2a = { p50: r.a2a.latency.p50 - r.direct.latency.p50, p99: r.a2a.latency.p99 - r.direct.latency.p99 }
    const addedRaw = { p50: r.raw.latency.p50 - r.direct.latency.p50, p99: r.raw.latency.p99 - r.direct.latency.p99 }
    const isTarget = r.rate === 1000
    for (const p of ["p50", "p99"]) {
      results.push(
        result({
          name: `latency ${p} @ ${r.rate} req/s, through the proxy vs direct`,
          ours: r.a2a.latency[p],
          baseline: r.direct.latency[p],
          unit: "ms",
          target: null,
          met: null
        })
      )
      const limit = p === "p50" ? 1 : 5
      results.push(
        result({
          name: `added latency ${p} @ ${r.rate} req/s (baseline: raw node pass-through's added latency)`,
          ours: addedA2a[p],
          baseline: addedRaw[p],
          unit: "ms",
          target: isTarget ? `≤ ${limit} ms` : null,
          met: isTarget ? addedA2a[p] <= limit : null
        })
      )
    }
    results.push(
      result({
        name: `proxy CPU per request @ ${r.rate} req/s (baseline: raw pass-through)`,
        ours: r.a2a.cpuMsPerRequest,
        baseline: r.raw.cpuMsPerRequest,
        unit: "ms",
        target: null,
        met: null
      })
    )
  }
  for (const s of runs.streaming) {
    const addedTtfb = s.a2a.ttfb.p50 - s.direct.ttfb.p50
    results.push(result({ name: `TTFB p50 @ ${s.rate} req/s streaming, through the proxy vs direct`, ours: s.a2a.ttfb.p50, baseline: s.direct.ttfb.p50, unit: "ms", target: null, met: null }))
    results.push(
      result({
        name: `added TTFB p50 @ ${s.rate} req/s streaming (baseline: raw pass-through's)`,
        ours: addedTtfb,
        baseline: s.raw.ttfb.p50 - s.direct.ttfb.p50,
        unit: "ms",
        target: "≤ 1 ms",
        met: addedTtfb <= 1
      })
    )
    results.push(
      result({
        name: `added TTFB p99 @ ${s.rate} req/s streaming (baseline: raw pass-through's)`,
        ours: s.a2a.ttfb.p99 - s.direct.ttfb.p99,
        baseline: s.raw.ttfb.p99 - s.direct.ttfb.p99,
        unit: "ms",
        target: null,
        met: null
      })
    )
  }
  results.push(result({ name: "proxy peak RSS under load (baseline: idle after start)", ours: peakRssMiB, baseline: idleRssMiB, unit: "MiB", target: "≤ 150 MiB", met: peakRssMiB <= 150 }))

  const errors = [...runs.nonStreaming, ...runs.streaming].flatMap((r) => targets.map((t) => r[t.name].errors)).reduce((a, b) => a + b, 0)
  printTable(results, [
    ["name", "benchmark"],
    ["ours", "ours"],
    ["baseline", "baseline"],
    ["ratio", "ratio"],
    ["unit", "unit"],
    ["target", "target"],
    ["met", "met"]
  ])
  const detail = []
  for (const r of runs.nonStreaming) {
    for (const t of targets) detail.push({ run: `${r.rate} req/s ${t.name}`, p50: r[t.name].latency.p50, p90: r[t.name].latency.p90, p99: r[t.name].latency.p99, max: r[t.name].latency.max, rate: r[t.name].achievedRate, errors: r[t.name].errors, overheadP50: r[t.name].overhead.p50, overheadP99: r[t.name].overhead.p99 })
  }
  for (const s of runs.streaming) {
    for (const t of targets) detail.push({ run: `stream ${s.rate} req/s ${t.name} (TTFB)`, p50: s[t.name].ttfb.p50, p90: s[t.name].ttfb.p90, p99: s[t.name].ttfb.p99, max: s[t.name].ttfb.max, rate: s[t.name].achievedRate, errors: s[t.name].errors, overheadP50: s[t.name].overhead.p50, overheadP99: s[t.name].overhead.p99 })
  }
  process.stdout.write("\n")
  printTable(detail, [
    ["run", "run (ms)"],
    ["p50", "p50"],
    ["p90", "p90"],
    ["p99", "p99"],
    ["max", "max"],
    ["rate", "req/s"],
    ["errors", "errors"],
    ["overheadP50", "x-a2a-overhead p50"],
    ["overheadP99", "p99"]
  ])
  const file = writeResults("proxy", {
    machine: machine(),
    loadavgAtStart,
    // Share of the machine's CPU time the hypervisor gave to other guests while we measured.
    cpuStealPercent: stealPercent,
    setup: {
      load: `open loop (paced by the clock) from this process, node:http keep-alive agent; ${seconds} s per run; warm-up first; ${rounds} rounds (target order rotated), every figure is the median over rounds`,
      upstream: "fake Anthropic upstream in its own process, answers at once (JSON ~550 B, or SSE with the first event at once)",
      baselines: "direct = client → upstream; raw = a node:http pass-through in its own process (the lower bound of one Node hop)",
      ours: "the built a2a-proxy CLI in its own process, file key store and usage file, a key with rpm and token limits (reserve → settle on every request)",
      proxyNodeArgs,
      errors
    },
    results,
    runs,
    perRound,
    proxy: { idleRssMiB: round(idleRssMiB), peakRssMiB: round(peakRssMiB), rssSamples: peak.samples },
    reference: {
      note: "published figures of other gateways (not measured here), from notes/anthropic-api.md",
      bifrost: "11–59 µs at 5k RPS (Go)",
      tensorzero: "p99 0.94 ms at 10k QPS (Rust)",
      helicone: "< 1 ms (Rust)",
      litellm: "p50 2–12 ms, p99 13–43 ms at ~1k RPS (Python)",
      portkey: "~2.4 ms sequential (TypeScript)"
    }
  })
  process.stdout.write(`\nCPU steal while measuring: ${stealPercent} % (time the hypervisor gave to other guests; figures above a few % are noisy)\nwrote ${file}\n`)
  await Promise.all([proxy.stop(), raw.stop(), fake.stop()])
}

const role = process.argv[2]
if (role === "fake-upstream" || role === "raw-proxy") {
  if (role === "fake-upstream") runFakeUpstream()
  else runRawProxy(Number(process.argv[3]))
  process.on("SIGTERM", () => process.exit(0))
} else {
  await main()
}
