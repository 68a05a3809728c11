/**
 * Broker benchmarks (issue 3), each against a raw `ws` relay (bench/lib.mjs) in the same run:
 *
 *  1. send→push latency at 1,000 msg/s between 100 connected peers (open loop);
 *  2. maximum sustained durable messages per second, received and acked (closed loop);
 *  3. RSS per idle connected peer with 5,000 peers.
 *
 * The broker is the built CLI (packages/broker/dist/cli.js) as a child process with SQLite in
 * a temp dir; the load generator is this process. Results: bench/results/broker.json.
 *
 *   node bench/broker.mjs [--quick] [--profile] [--only latency,throughput,memory] [--window N]
 *
 * --quick     shorter runs and 1,000 idle peers (a smoke test, not the figures to report)
 * --profile   afterwards, run the throughput load once more against a broker started with
 *             `node --cpu-prof` and add where its time went to the results (and print it);
 *             BENCH_KEEP_PROFILE=1 also copies the .cpuprofile to bench/results/
 * --only      a subset of the three benchmarks
 * --window N  messages in flight per sender in the throughput run (default 50)
 * --claude-peers DIR
 *             a checkout of claude-peers-mcp (github.com/louislva/claude-peers-mcp): its broker.ts runs
 *             under Bun (`A2A_BENCH_BUN`, else `bun` on the PATH) as a second baseline of the HTTP
 *             run; also `A2A_BENCH_CLAUDE_PEERS`. Nothing of it is part of this repository.
 */
import { WebSocket } from "ws"
import { parseArgs } from "node:util"
import { spawn, spawnSync } from "node:child_process"
import { copyFileSync, existsSync, readdirSync } from "node:fs"
import { Agent, request } from "node:http"
import { createServer } from "node:net"
import { join } from "node:path"
import {
  cpuTimeMs,
  log,
  machine,
  mapLimit,
  openFileLimit,
  printTable,
  RESULTS_DIR,
  result,
  roundAll,
  rssKiB,
  sampleRss,
  settledRss,
  sleep,
  startBroker,
  startProcess,
  startRelay,
  summarize,
  summarizeCpuProfile,
  tempDir,
  waitFor,
  writeResults
} from "./lib.mjs"

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    window: { type: "string" },
    profile: { type: "boolean", default: false },
    only: { type: "string" },
    "claude-peers": { type: "string" }
  }
})
const only = new Set((flags.only ?? "latency,throughput,memory,http").split(","))

const CONFIG = flags.quick
  ? { peers: 100, rate: 1000, lowRate: 100, warmupMs: 500, durationMs: 2000, senders: 10, window: 50, idlePeers: 1000, drainMs: 5000 }
  : { peers: 100, rate: 1000, lowRate: 100, warmupMs: 1000, durationMs: 5000, senders: 10, window: 50, idlePeers: 5000, drainMs: 10_000 }
/** The HTTP send path: sequential sends, then 16 senders flat out to one receiver. */
const HTTP = flags.quick ? { sequential: 500, warmup: 100, senders: 16, durationMs: 3_000 } : { sequential: 2_000, warmup: 200, senders: 16, durationMs: 8_000 }

if (flags.window !== undefined) CONFIG.window = Number(flags.window)

const TARGETS = { latencyP99Ms: 5, durableMsgPerSec: 5000, relayShare: 0.3, kibPerIdlePeer: 100 }

/** What each figure means, written into the results next to them. */
const DEFINITIONS = {
  latency:
    "open loop: `rate` msg/s for warmupMs + durationMs between random pairs of the connected peers, paced by the clock; " +
    "latency = time the receiver got the message frame - time the sender wrote its send frame (one clock, this process); " +
    "only messages sent after the warm-up count; every message is acked by its receiver; `undelivered` = not received " +
    "within drainMs after the last send (latency then only covers the delivered ones and the target counts as missed)",
  throughput:
    "closed loop: `senders` peers keep `window` messages each in flight to random peers; a message is done when its " +
    "receiver acked it and (broker) an `acked` frame confirmed it, (relay) the receiver wrote its ack; msg/s = messages " +
    "done during durationMs after warmupMs",
  memory:
    "fresh server; register N peers, warm the channel path with 50 sockets, RSS (median of 5 readings of VmRSS), connect " +
    "N idle channels, wait 2 s, RSS again; KiB per peer = difference / connected",
  relay:
    "bench/lib.mjs ws-relay: a `ws` server in its own process that forwards each send frame to the target socket by id " +
    "as a message frame and drops acks; no persistence, auth, answers or schema decoding",
  http:
    "HTTP send path, keep-alive `http.request` from this process (an Agent with a socket per sender; `fetch` cost the " +
    "load generator 3-4x the CPU per request and capped both servers near 2,800 req/s on 2 cores). sequential: one sender, `POST /api/messages` one at a time " +
    "(answered after the message is durable), latency from request to answer; flat out: 16 senders each looping " +
    "sends for durationMs to ONE receiver that holds a channel and acks every message as the SDK channel does (cumulative: " +
    "one ack frame with the highest seq per event-loop turn); " +
    "msg/s = messages the receiver got / durationMs; refused = answers other than 201 (InboxFull would show here); " +
    "CPU per message = the server's user+system CPU during the run / messages accepted. Baseline: bench/http-sqlite.mjs, " +
    "an HTTP server in front of SQLite (the shape of claude-peers-mcp): one prepared INSERT per POST, same senders " +
    "(the floor of the shape: no auth, no push). claude-peers (when given --claude-peers DIR and bun): its own broker.ts " +
    "under Bun, the receiver registered and polling /poll-messages every 1,000 ms as its MCP server does, senders " +
    "posting /send-message; msg/s = messages the polls returned for sends of the window (one last poll after it) / durationMs",
  loadGenerator: "this process (one Node thread) for both servers; the servers and it share the machine's CPUs"
}

// ---- targets: the broker and the relay behind one interface -------------------------------------

/** The broker child process: peers registered over HTTP, channels at /ws/broker/peer/:id. */
const brokerTarget = async (options = {}) => {
  const broker = await startBroker(options)
  const auth = { authorization: `Bearer ${broker.token}` }
  return {
    kind: "broker",
    proc: broker,
    pid: broker.pid,
    /** Register `count` peers named `${prefix}-<i>` over HTTP (keep-alive, `concurrency` at a time). */
    register: async (count, prefix = "bench", concurrency = 16) =>
      mapLimit(Array.from({ length: count }, (_, i) => i), concurrency, async (i) => {
        const res = await fetch(`${broker.url}/api/peers`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ name: `${prefix}-${i}`, agent: "bench" })
        })
        const body = await res.json()
        if (res.status !== 201 && res.status !== 200) throw new Error(`register ${prefix}-${i}: ${res.status} ${JSON.stringify(body)}`)
        return body.peer.id
      }),
    socketUrl: (id) => `${broker.url.replace(/^http/, "ws")}/ws/broker/peer/${encodeURIComponent(id)}`,
    headers: auth,
    stop: () => broker.stop()
  }
}

/** The raw relay child process: any id is a peer, nothing to register. */
const relayTarget = async () => {
  const relay = await startRelay()
  return {
    kind: "relay",
    proc: relay,
    pid: relay.pid,
    register: async (count, prefix = "bench") => Array.from({ length: count }, (_, i) => `${prefix}-${i}`),
    socketUrl: (id) => `${relay.url}/peer/${encodeURIComponent(id)}`,
    headers: {},
    stop: () => relay.stop()
  }
}

// ---- a fleet of connected peers in this process ------------------------------------------------

/**
 * One WebSocket per peer id; `onFrame(index, frame)` gets every decoded server frame after the
 * hello. `connect` resolves once every socket got its hello.
 */
class Fleet {
  constructor(target, ids) {
    this.target = target
    this.ids = ids
    this.index = new Map(ids.map((id, i) => [id, i]))
    this.sockets = new Array(ids.length)
    this.onFrame = () => {}
    this.closedUnexpectedly = 0
    this.closing = false
  }

  get size() {
    return this.ids.length
  }

  connectOne(i, timeoutMs = 30_000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.target.socketUrl(this.ids[i]), { headers: this.target.headers, perMessageDeflate: false })
      const timer = setTimeout(() => {
        ws.terminate()
        reject(new Error(`peer ${this.ids[i]}: no hello after ${timeoutMs} ms`))
      }, timeoutMs)
      let hello = false
      ws.on("message", (data) => {
        const frame = JSON.parse(data.toString())
        if (!hello) {
          if (frame.type !== "hello") return reject(new Error(`peer ${this.ids[i]}: first frame ${frame.type}`))
          hello = true
          clearTimeout(timer)
          this.sockets[i] = ws
          return resolve(ws)
        }
        this.onFrame(i, frame)
      })
      ws.on("unexpected-response", (_req, res) => {
        clearTimeout(timer)
        reject(new Error(`peer ${this.ids[i]}: upgrade refused with ${res.statusCode}`))
      })
      ws.on("error", (e) => {
        clearTimeout(timer)
        if (!hello) reject(e)
      })
      ws.on("close", (code) => {
        clearTimeout(timer)
        if (!hello) reject(new Error(`peer ${this.ids[i]}: closed (${code}) before hello`))
        else if (!this.closing) this.closedUnexpectedly++
      })
    })
  }

  async connect(concurrency = 64) {
    const started = performance.now()
    await mapLimit(this.ids.map((_, i) => i), concurrency, (i) => this.connectOne(i))
    return performance.now() - started
  }

  send(i, frame) {
    this.sockets[i].send(JSON.stringify(frame))
  }

  /** Close every socket and wait (bounded) until they are closed. */
  async close(timeoutMs = 10_000) {
    this.closing = true
    const open = this.sockets.filter((ws) => ws !== undefined && ws.readyState !== WebSocket.CLOSED)
    const closed = Promise.all(open.map((ws) => new Promise((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve() : ws.once("close", resolve)))))
    for (const ws of open) ws.close(1000)
    const timer = sleep(timeoutMs).then(() => "timeout")
    if ((await Promise.race([closed, timer])) === "timeout") for (const ws of open) ws.terminate()
  }
}

/** A frame sink shared by both loads: counts errors and answers every message with an ack. */
const frameCounters = () => ({ messages: 0, sent: 0, acked: 0, events: 0, errors: 0, firstError: undefined })

const PAD = "x".repeat(64)

/** A uniformly random peer index other than `not`. */
const otherThan = (not, n) => {
  const r = Math.floor(Math.random() * (n - 1))
  return r >= not ? r + 1 : r
}

// ---- 1. latency at a fixed rate (open loop) -----------------------------------------------------

/**
 * Send `rate` msg/s for warmup + duration between random pairs, paced by the clock (not by
 * answers); latency = receive time − send time (both `performance.now()` in this process, the
 * send time travels in the body). Only messages sent after the warm-up count.
 */
const latencyRun = async (fleet, { rate, warmupMs, durationMs, drainMs }) => {
  const n = fleet.size
  const counters = frameCounters()
  const latencies = []
  let measuredSent = 0
  let measuredReceived = 0
  let received = 0
  let maxLagMs = 0
  fleet.onFrame = (i, frame) => {
    switch (frame.type) {
      case "message": {
        const now = performance.now()
        const body = frame.message.body
        const sentAt = Number(body.slice(2, body.indexOf(" ", 2)))
        if (body[0] === "m") {
          latencies.push(now - sentAt)
          measuredReceived++
        }
        received++
        counters.messages++
        fleet.send(i, { type: "ack", upTo: frame.message.seq })
        return
      }
      case "sent":
        counters.sent++
        return
      case "acked":
        counters.acked++
        return
      case "event":
        counters.events++
        return
      case "error":
        counters.errors++
        counters.firstError ??= frame.error
        return
    }
  }

  const total = Math.round((rate * (warmupMs + durationMs)) / 1000)
  const warmupCount = Math.round((rate * warmupMs) / 1000)
  const interval = 1000 / rate
  const start = performance.now()
  let sent = 0
  const deadline = start + warmupMs + durationMs + 5_000
  while (sent < total && performance.now() < deadline) {
    const now = performance.now()
    const due = Math.min(total, Math.floor((now - start) / interval) + 1)
    while (sent < due) {
      const intended = start + sent * interval
      const t = performance.now()
      maxLagMs = Math.max(maxLagMs, t - intended)
      const measured = sent >= warmupCount
      const from = Math.floor(Math.random() * n)
      const to = otherThan(from, n)
      fleet.send(from, { type: "send", to: fleet.ids[to], body: `${measured ? "m" : "w"} ${t.toFixed(4)} ${sent} ${PAD}` })
      if (measured) measuredSent++
      sent++
    }
    await sleep(1)
  }
  const sendSeconds = (performance.now() - start) / 1000
  const drained = await waitFor(() => received >= sent, drainMs)
  return {
    rate,
    achievedRate: sent / sendSeconds,
    maxPacingLagMs: maxLagMs,
    measuredSent,
    measuredReceived,
    // Not received within the drain time after the last send (a backlog, not necessarily lost).
    undelivered: measuredSent - measuredReceived,
    drained,
    latencyMs: roundAll(summarize(latencies)),
    frames: counters
  }
}

// ---- 2. maximum durable throughput (closed loop) ------------------------------------------------

/**
 * `senders` peers each keep at most `window` messages in flight to random peers. A message is
 * in flight until it is done: received and acked by its receiver (which acks every message at
 * once) and, on the broker, that ack confirmed by an `acked` frame whose cursor covers it —
 * the message has then gone through the whole durable cycle (appended, pushed, acked). The
 * relay has no confirmations: there a message is done when its receiver sent the ack.
 * Counts messages done during `durationMs` after `warmupMs`.
 */
const throughputRun = async (fleet, { senders, window, warmupMs, durationMs, drainMs }) => {
  const n = fleet.size
  const confirms = fleet.target.kind === "broker"
  const counters = frameCounters()
  const inflight = new Array(senders).fill(0)
  // Per receiver: [seq, sender, sentAt] of messages received but not yet confirmed as acked.
  const unconfirmed = Array.from({ length: n }, () => [])
  const latencies = []
  let running = true
  let windowStart = Infinity
  let windowEnd = Infinity
  let received = 0
  let done = 0
  let sentTotal = 0
  let receivedTotal = 0

  const pump = (s) => {
    while (running && inflight[s] < window) {
      inflight[s]++
      sentTotal++
      const to = otherThan(s, n)
      fleet.send(s, { type: "send", to: fleet.ids[to], body: `${s} ${performance.now().toFixed(4)} ${PAD}` })
    }
  }
  const complete = (s, sentAt, now) => {
    if (now >= windowStart && now < windowEnd) {
      done++
      latencies.push(now - sentAt)
    }
    inflight[s]--
    pump(s)
  }

  fleet.onFrame = (i, frame) => {
    const now = performance.now()
    switch (frame.type) {
      case "message": {
        const body = frame.message.body
        const first = body.indexOf(" ")
        const s = Number(body.slice(0, first))
        const sentAt = Number(body.slice(first + 1, body.indexOf(" ", first + 1)))
        receivedTotal++
        counters.messages++
        if (now >= windowStart && now < windowEnd) received++
        fleet.send(i, { type: "ack", upTo: frame.message.seq })
        if (confirms) unconfirmed[i].push([frame.message.seq, s, sentAt])
        else complete(s, sentAt, now)
        return
      }
      case "acked": {
        counters.acked++
        const queue = unconfirmed[i]
        let k = 0
        while (k < queue.length && queue[k][0] <= frame.cursor) k++
        for (const [, s, sentAt] of queue.splice(0, k)) complete(s, sentAt, now)
        return
      }
      case "sent":
        counters.sent++
        return
      case "event":
        counters.events++
        return
      case "error":
        counters.errors++
        counters.firstError ??= frame.error
        return
    }
  }

  const cpuBefore = cpuTimeMs(fleet.target.pid)
  const start = performance.now()
  windowStart = start + warmupMs
  windowEnd = windowStart + durationMs
  for (let s = 0; s < senders; s++) pump(s)
  await sleep(warmupMs)
  const cpuWindowStart = cpuTimeMs(fleet.target.pid)
  await sleep(durationMs)
  const cpuWindowEnd = cpuTimeMs(fleet.target.pid)
  running = false
  const drainStart = performance.now()
  const drained = await waitFor(() => inflight.every((x) => x === 0), drainMs)
  const seconds = durationMs / 1000
  return {
    windowStart,
    windowEnd,
    senders,
    window,
    completion: confirms ? "ack confirmed by the broker" : "ack sent by the receiver",
    msgPerSec: done / seconds,
    receivedPerSec: received / seconds,
    sentTotal,
    receivedTotal,
    drained,
    drainMs: Math.round(performance.now() - drainStart),
    notDoneAfterDrain: inflight.reduce((a, b) => a + b, 0),
    serverCpuShare: (cpuWindowEnd - cpuWindowStart) / durationMs,
    serverCpuMsPerMsg: done > 0 ? (cpuWindowEnd - cpuWindowStart) / done : null,
    serverCpuMsTotal: cpuWindowEnd - cpuBefore,
    latencyMs: roundAll(summarize(latencies)),
    frames: counters
  }
}

// ---- 3. memory per idle connected peer ----------------------------------------------------------

/**
 * A fresh target: register `count` peers, warm the channel code path with a few sockets,
 * read RSS, connect all `count` channels, let it settle, read RSS again.
 */
const memoryRun = async (makeTarget, count) => {
  const target = await makeTarget()
  try {
    const startRss = rssKiB(target.pid)
    const registerStart = performance.now()
    const ids = await target.register(count, "idle")
    const registerMs = performance.now() - registerStart
    const warm = new Fleet(target, ids.slice(0, 50))
    await warm.connect()
    await warm.close()
    await sleep(1000)
    const before = await settledRss(target.pid)
    const fleet = new Fleet(target, ids)
    const connectMs = await fleet.connect(64)
    await sleep(2000)
    const after = await settledRss(target.pid)
    const connected = fleet.sockets.filter((ws) => ws?.readyState === WebSocket.OPEN).length
    await fleet.close()
    return {
      peers: count,
      connected,
      dropped: fleet.closedUnexpectedly,
      registerMs: Math.round(registerMs),
      connectMs: Math.round(connectMs),
      rssStartKiB: startRss,
      rssBeforeKiB: before,
      rssAfterKiB: after,
      kibPerPeer: (after - before) / connected
    }
  } finally {
    await target.stop()
  }
}

// ---- 4. the HTTP send path ----------------------------------------------------------------------

/**
 * One keep-alive HTTP connection per sender (an Agent, not `fetch`: undici's fetch cost this
 * process 3-4x the CPU per request, which capped both servers near 2,800 req/s on 2 cores and
 * measured the load generator, not the server). Resolves to {status, body}.
 */
const httpAgent = new Agent({ keepAlive: true, maxSockets: 64 })
const postJson = (url, headers, body) =>
  new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", agent: httpAgent, headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks = []
      res.on("data", (chunk) => chunks.push(chunk))
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end(body)
  })

/**
 * Sequential sends, then `HTTP.senders` flat out; `send(i)` posts one message and resolves to its
 * status (201 = accepted). `afterWindow` runs once the senders stopped, before `delivered()` is read.
 */
const httpLoad = async (pid, send, delivered, afterWindow) => {
  for (let i = 0; i < HTTP.warmup; i++) await send(0)
  const latencies = []
  for (let i = 0; i < HTTP.sequential; i++) {
    const t = performance.now()
    const status = await send(0)
    latencies.push(performance.now() - t)
    if (status !== 201) throw new Error(`sequential send answered ${status}`)
  }
  const statuses = new Map()
  let accepted = 0
  const before = delivered()
  const cpuBefore = cpuTimeMs(pid)
  const started = performance.now()
  const deadline = started + HTTP.durationMs
  await Promise.all(
    Array.from({ length: HTTP.senders }, async (_, i) => {
      while (performance.now() < deadline) {
        const status = await send(i)
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (status === 201) accepted++
      }
    })
  )
  const elapsed = performance.now() - started
  const cpu = cpuTimeMs(pid) - cpuBefore
  await afterWindow?.()
  return {
    sequential: summarize(latencies),
    senders: HTTP.senders,
    accepted,
    refused: [...statuses].filter(([s]) => s !== 201).reduce((n, [, c]) => n + c, 0),
    statuses: Object.fromEntries(statuses),
    msgPerSec: ((delivered() - before) * 1000) / elapsed,
    acceptedPerSec: (accepted * 1000) / elapsed,
    cpuMsPerMsg: accepted > 0 ? cpu / accepted : NaN
  }
}

/** The broker: senders and one receiver registered, the receiver's channel acks every message. */
const httpBroker = async () => {
  const target = await brokerTarget()
  try {
    const [receiver, ...senders] = await target.register(HTTP.senders + 1, "http")
    let received = 0
    let lastSeq = 0 // the highest seq received and not yet acked
    const flushAck = () => {
      if (ws.readyState === WebSocket.OPEN) ws.send(`{"type":"ack","upTo":${lastSeq}}`)
      lastSeq = 0
    }
    const ws = new WebSocket(target.socketUrl(receiver), { headers: target.headers, perMessageDeflate: false })
    await new Promise((resolve, reject) => {
      ws.on("message", (data) => {
        const frame = JSON.parse(data.toString())
        if (frame.type === "hello") return resolve()
        if (frame.type === "message") {
          // Every message is acked as the SDK's channel (and so the MCP server) acks: acks are
          // cumulative, so one frame with the highest seq leaves per event-loop turn.
          received++
          if (lastSeq === 0) setImmediate(flushAck)
          lastSeq = frame.message.seq
        }
      })
      ws.once("error", reject)
    })
    const headers = target.headers
    const url = `${target.proc.url}/api/messages`
    const send = async (i) => (await postJson(url, headers, JSON.stringify({ from: senders[i], to: receiver, body: PAD }))).status
    const out = await httpLoad(target.pid, send, () => received)
    ws.close()
    return out
  } finally {
    await target.stop()
  }
}

/** Where claude-peers and Bun are, or why the claude-peers baseline cannot run. */
const claudePeersSetup = () => {
  const dir = flags["claude-peers"] ?? process.env.A2A_BENCH_CLAUDE_PEERS
  if (dir === undefined) return { skip: "not run: no --claude-peers DIR (a checkout of claude-peers-mcp)" }
  const script = join(dir, "broker.ts")
  if (!existsSync(script)) return { skip: `not run: ${script} does not exist` }
  const bun = process.env.A2A_BENCH_BUN ?? "bun"
  const version = spawnSync(bun, ["--version"], { encoding: "utf8" })
  if (version.status !== 0) return { skip: `not run: ${bun} --version failed (set A2A_BENCH_BUN to a Bun binary)` }
  return { script, bun, bunVersion: version.stdout.trim() }
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })

/**
 * claude-peers' own broker (Bun + bun:sqlite) in the same run, driven the way its MCP server
 * drives it: the receiver registers and polls `/poll-messages` every 1,000 ms; senders post
 * `/send-message` (it checks only the recipient, so they need no registration — one
 * registration per pid is all it keeps). Accepted = answers `{ok: true}`.
 */
const httpClaudePeers = async ({ script, bun, bunVersion }) => {
  const dir = tempDir("a2a-bench-claude-peers-")
  const port = await freePort()
  const child = spawn(bun, [script], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, CLAUDE_PEERS_PORT: String(port), CLAUDE_PEERS_DB: join(dir, "peers.db") }
  })
  const exited = new Promise((resolve) => child.once("exit", resolve))
  try {
    // It prints "[claude-peers broker] listening on …" to stderr once Bun.serve is up.
    await new Promise((resolve, reject) => {
      let text = ""
      const timer = setTimeout(() => reject(new Error(`claude-peers broker not listening after 15 s: ${text.slice(-500)}`)), 15_000)
      child.stderr.on("data", (chunk) => {
        text += chunk
        if (/listening on/.test(text)) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once("exit", (code) => reject(new Error(`claude-peers broker exited (${code}): ${text.slice(-500)}`)))
    })
    const base = `http://127.0.0.1:${port}`
    const registered = await postJson(`${base}/register`, {}, JSON.stringify({ pid: process.pid, cwd: dir, git_root: null, tty: null, summary: "bench receiver" }))
    const receiver = JSON.parse(registered.body).id
    let delivered = 0
    const poll = async () => {
      const { body } = await postJson(`${base}/poll-messages`, {}, JSON.stringify({ id: receiver }))
      delivered += JSON.parse(body).messages.length
    }
    let polling = true
    const poller = (async () => {
      while (polling) {
        await poll()
        await sleep(1_000)
      }
    })()
    const send = async (i) => {
      const { status, body } = await postJson(`${base}/send-message`, {}, JSON.stringify({ from_id: `sender-${i}`, to_id: receiver, text: PAD }))
      return status === 200 && JSON.parse(body).ok === true ? 201 : status
    }
    const out = await httpLoad(child.pid, send, () => delivered, async () => {
      polling = false
      await poller
      await poll()
    })
    return { ...out, bunVersion }
  } finally {
    child.kill("SIGTERM")
    await exited
  }
}

/** The baseline: the same senders against bench/http-sqlite.mjs (durable inserts, nobody pushed). */
const httpBaseline = async () => {
  const dir = tempDir("a2a-bench-http-sqlite-")
  const server = await startProcess(process.execPath, [join(import.meta.dirname, "http-sqlite.mjs"), join(dir, "relay.db")], {
    ready: /http-sqlite listening on (\d+)/,
    name: "http-sqlite"
  })
  try {
    const url = `http://127.0.0.1:${server.match[1]}/send`
    let inserted = 0
    const send = async (i) => {
      const { status } = await postJson(url, {}, JSON.stringify({ from: `s${i}`, to: "receiver", body: PAD }))
      if (status === 201) inserted++
      return status
    }
    return await httpLoad(server.pid, send, () => inserted)
  } finally {
    await server.stop()
  }
}

// ---- the latency and throughput loads, each on a fresh target ---------------------------------

/** Start a target, register and connect `CONFIG.peers` peers, run `load(fleet)`, stop it. */
const withFleet = async (makeTarget, load) => {
  const target = await makeTarget()
  try {
    const rss = sampleRss(target.pid)
    const fleet = new Fleet(target, await target.register(CONFIG.peers))
    await fleet.connect()
    const out = await load(fleet)
    await fleet.close()
    return { ...out, serverRss: rss.stop(), unexpectedCloses: fleet.closedUnexpectedly }
  } finally {
    await target.stop()
  }
}

const loadRuns = async (makeTarget, kind) => {
  const out = {}
  if (only.has("latency")) {
    log(`${kind}: latency at ${CONFIG.rate} msg/s, ${CONFIG.peers} peers`)
    out.latency = await withFleet(makeTarget, (fleet) => latencyRun(fleet, CONFIG))
    // The same at a tenth of the rate: the cost of one hop when nothing queues.
    log(`${kind}: latency at ${CONFIG.lowRate} msg/s`)
    out.latencyLow = await withFleet(makeTarget, (fleet) => latencyRun(fleet, { ...CONFIG, rate: CONFIG.lowRate }))
  }
  if (only.has("throughput")) {
    log(`${kind}: throughput, ${CONFIG.senders} senders x window ${CONFIG.window}`)
    out.throughput = await withFleet(makeTarget, (fleet) => throughputRun(fleet, CONFIG))
  }
  return out
}

/** The throughput load against a broker under `node --cpu-prof`; where its time went. */
const profileBroker = async () => {
  const dir = tempDir("a2a-bench-prof-")
  const target = await brokerTarget({ nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`] })
  let throughput
  try {
    const fleet = new Fleet(target, await target.register(CONFIG.peers))
    await fleet.connect()
    throughput = await throughputRun(fleet, CONFIG)
    await fleet.close()
  } finally {
    await target.stop(15_000)
  }
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))
  if (file === undefined) return { error: "no .cpuprofile written (the broker did not exit cleanly)" }
  const fromMs = throughput.windowStart - target.proc.startedAt
  const toMs = throughput.windowEnd - target.proc.startedAt
  if (process.env.BENCH_KEEP_PROFILE) copyFileSync(join(dir, file), join(RESULTS_DIR, "broker-throughput.cpuprofile"))
  return { msgPerSecUnderProfiler: Math.round(throughput.msgPerSec), ...summarizeCpuProfile(join(dir, file), { top: 30, fromMs, toMs }) }
}

// ---- main ---------------------------------------------------------------------------------------

const main = async () => {
  const fdLimit = openFileLimit()
  // Each idle peer costs one descriptor here and one in the server; keep a margin.
  const idlePeers = Math.min(CONFIG.idlePeers, Number.isFinite(fdLimit) ? fdLimit - 500 : CONFIG.idlePeers)
  if (idlePeers < CONFIG.idlePeers) log(`open-file limit ${fdLimit}: measuring ${idlePeers} idle peers instead of ${CONFIG.idlePeers}`)

  const details = { config: { ...CONFIG, idlePeers, fdLimit: String(fdLimit) }, definitions: DEFINITIONS, loadavgAtStart: machine().loadavg }
  if (only.has("latency") || only.has("throughput")) {
    details.relay = await loadRuns(relayTarget, "relay")
    details.broker = await loadRuns(brokerTarget, "broker")
  }
  if (only.has("memory")) {
    log(`relay: ${idlePeers} idle sockets`)
    details.relayMemory = await memoryRun(relayTarget, idlePeers)
    log(`broker: ${idlePeers} idle peers`)
    details.brokerMemory = await memoryRun(brokerTarget, idlePeers)
  }

  if (only.has("http")) {
    log(`http-sqlite baseline: ${HTTP.sequential} sequential sends, then ${HTTP.senders} senders for ${HTTP.durationMs} ms`)
    details.httpBaseline = await httpBaseline()
    const claudePeers = claudePeersSetup()
    if (claudePeers.skip === undefined) {
      log(`claude-peers (Bun ${claudePeers.bunVersion}): ${HTTP.sequential} sequential sends, then ${HTTP.senders} senders for ${HTTP.durationMs} ms`)
      details.httpClaudePeers = await httpClaudePeers(claudePeers)
    } else {
      log(`claude-peers baseline ${claudePeers.skip}`)
      details.httpClaudePeers = { notRun: claudePeers.skip }
    }
    log(`broker: ${HTTP.sequential} sequential HTTP sends, then ${HTTP.senders} senders to one acking receiver for ${HTTP.durationMs} ms`)
    details.http = await httpBroker()
  }

  const results = []
  if (details.http) {
    const ours = details.http
    const base = details.httpBaseline
    for (const p of ["p50", "p99"]) {
      results.push(result({ name: `sequential HTTP send latency ${p}`, ours: ours.sequential[p], baseline: base.sequential[p], unit: "ms", target: null, met: null }))
    }
    const cp = details.httpClaudePeers
    const cpRan = cp !== undefined && cp.notRun === undefined
    results.push(
      result({
        name: `${HTTP.senders} HTTP senders → 1 acking receiver: msg/s delivered, vs claude-peers (same senders, its 1-s poll)`,
        ours: ours.msgPerSec,
        baseline: cpRan ? cp.msgPerSec : null,
        unit: "msg/s",
        target: "≥ 2× claude-peers, none refused",
        met: cpRan ? ours.msgPerSec >= 2 * cp.msgPerSec && ours.refused === 0 : null,
        refused: ours.refused,
        ...(cpRan ? {} : { note: cp?.notRun ?? "not run" })
      }),
      result({
        name: `${HTTP.senders} HTTP senders: msg/s vs http-sqlite (durable inserts, no auth, no push: the floor of the shape)`,
        ours: ours.msgPerSec,
        baseline: base.msgPerSec,
        unit: "msg/s",
        target: null,
        met: null
      }),
      result({ name: "server CPU per HTTP message (baseline: claude-peers, else http-sqlite)", ours: ours.cpuMsPerMsg, baseline: cpRan ? cp.cpuMsPerMsg : base.cpuMsPerMsg, unit: "ms", target: "≤ 0.2 ms", met: ours.cpuMsPerMsg <= 0.2 })
    )
  }
  if (details.broker?.latency) {
    const ours = details.broker.latency.latencyMs
    const base = details.relay.latency.latencyMs
    const honest = details.broker.latency.undelivered === 0
    for (const p of ["p50", "p90", "p99", "max"]) {
      results.push(
        result({
          name: `send→push latency ${p} @ ${CONFIG.rate} msg/s, ${CONFIG.peers} peers`,
          ours: ours[p],
          baseline: base[p],
          unit: "ms",
          target: p === "p99" ? `≤ ${TARGETS.latencyP99Ms} ms` : null,
          met: p === "p99" ? honest && ours.p99 <= TARGETS.latencyP99Ms : null
        })
      )
    }
  }
  if (details.broker?.latencyLow) {
    const ours = details.broker.latencyLow.latencyMs
    const base = details.relay.latencyLow.latencyMs
    for (const p of ["p50", "p99"]) {
      results.push(result({ name: `send→push latency ${p} @ ${CONFIG.lowRate} msg/s (informative)`, ours: ours[p], baseline: base[p], unit: "ms", target: null, met: null }))
    }
  }
  if (details.broker?.throughput) {
    const ours = details.broker.throughput.msgPerSec
    const base = details.relay.throughput.msgPerSec
    results.push(
      result({
        name: `durable msg/s (SQLite, acked), ${CONFIG.senders}x${CONFIG.window} in flight`,
        ours,
        baseline: base,
        unit: "msg/s",
        target: `≥ ${TARGETS.durableMsgPerSec} msg/s and ≥ ${TARGETS.relayShare * 100}% of relay`,
        met: ours >= TARGETS.durableMsgPerSec && ours >= TARGETS.relayShare * base
      })
    )
  }
  if (details.brokerMemory) {
    const ours = details.brokerMemory.kibPerPeer
    results.push(
      result({
        name: `RSS per idle connected peer (${details.brokerMemory.connected} peers)`,
        ours,
        baseline: details.relayMemory.kibPerPeer,
        unit: "KiB",
        target: `≤ ${TARGETS.kibPerIdlePeer} KiB`,
        met: details.brokerMemory.connected === idlePeers && ours <= TARGETS.kibPerIdlePeer
      })
    )
  }

  if (flags.profile) {
    log("profiling the broker under the throughput load (node --cpu-prof)")
    details.profile = await profileBroker()
  }

  const file = writeResults("broker", { machine: machine(), results, ...details })
  process.stdout.write(`\nbroker vs raw ws relay (${flags.quick ? "QUICK run, " : ""}${new Date().toISOString()})\n`)
  printTable(results, [
    ["name", "benchmark"],
    ["ours", "broker"],
    ["baseline", "relay / http-sqlite"],
    ["ratio", "ratio"],
    ["unit", "unit"],
    ["target", "target"],
    ["met", "met"]
  ])
  const t = details.broker?.throughput
  if (t) {
    process.stdout.write(
      `\nbroker throughput detail: ${Math.round(t.receivedPerSec)} msg/s received, ${Math.round(t.msgPerSec)} msg/s acked and confirmed; broker CPU ${Math.round(t.serverCpuShare * 100)}% of one core, ` +
        `${t.serverCpuMsPerMsg?.toFixed(3)} ms CPU per message; send→ack-confirmed p50 ${t.latencyMs.p50} ms, p99 ${t.latencyMs.p99} ms\n`
    )
  }
  if (details.profile?.self) {
    process.stdout.write(`\nbroker CPU profile, ${details.profile.windowMs} ms of throughput load at ${details.profile.msgPerSecUnderProfiler} msg/s; self time:\n`)
    printTable(details.profile.self.slice(0, 15), [["key", "function"], ["selfMs", "ms"], ["share", "%"]])
    process.stdout.write("\ninclusive time:\n")
    printTable(details.profile.inclusive.slice(0, 25), [["key", "function"], ["totalMs", "ms"], ["share", "%"]])
    process.stdout.write("\nby package:\n")
    printTable(details.profile.packages.slice(0, 12), [["key", "package"], ["selfMs", "ms"], ["share", "%"]])
  }
  process.stdout.write(`\nwritten ${file}\n`)
}

// Sockets or timers left by a failed peer must not keep us alive; the exit hook kills children.
await main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`broker bench failed: ${e?.stack ?? e}\n`)
    process.exit(1)
  }
)
