/**
 * MCP server benchmark (issue 5): send→notification latency through broker + MCP server, at
 * 200 msg/s, against the broker-only send→push latency measured in the same run.
 *
 * - ours: a sender peer writes `send` frames on its broker channel (raw `ws`) to a peer held
 *   by the built `a2a-mcp` server (child process, stdio); the official MCP SDK client in this
 *   process declares `claude/channel` and timestamps each `notifications/claude/channel`.
 *   The MCP server acks each message after pushing it, as it does for Claude Code.
 * - baseline: the same sender, rate and duration to a peer whose broker channel is a raw `ws`
 *   socket in this process that acks every message (broker only, no MCP hop).
 * Latency = receive time - time the send frame was written (one clock, this process). Open
 * loop, paced by the clock; only messages after the warm-up count.
 *
 *   node bench/mcp.mjs [--quick]
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { WebSocket } from "ws"
import { log, machine, printTable, result, ROOT, roundAll, sleep, startBroker, summarize, writeResults } from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false } } })
const CONFIG = flags.quick ? { rate: 200, warmupMs: 500, durationMs: 2_000, drainMs: 3_000 } : { rate: 200, warmupMs: 2_000, durationMs: 10_000, drainMs: 5_000 }
const TARGET_P99_MS = 10
const MCP_CLI = join(ROOT, "packages", "mcp", "dist", "cli.js")

const api = async (broker, method, path, body) => {
  const res = await fetch(broker.url + path, {
    method,
    headers: { authorization: `Bearer ${broker.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const json = await res.json()
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`)
  return json
}

const channel = (broker, id) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`${broker.url.replace(/^http/, "ws")}/ws/broker/peer/${id}`, { headers: { authorization: `Bearer ${broker.token}` }, perMessageDeflate: false })
    ws.once("error", reject)
    ws.on("message", function first(data) {
      if (JSON.parse(String(data)).type === "hello") {
        ws.off("message", first)
        resolve(ws)
      }
    })
  })

/** Open-loop sender: `rate` msg/s to `to`; returns the write times by index. */
const drive = async (sender, to, sentAt) => {
  const total = Math.round((CONFIG.rate * (CONFIG.warmupMs + CONFIG.durationMs)) / 1000)
  const start = performance.now()
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / CONFIG.rate
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    sentAt[i] = performance.now()
    sender.send(JSON.stringify({ type: "send", to, body: `${i}` }))
  }
  return total
}

const measure = async (label, sender, to, subscribe) => {
  const sentAt = []
  const latencies = []
  let received = 0
  let total = Infinity
  let done
  const finished = new Promise((resolve) => (done = resolve))
  const warmupCount = Math.round((CONFIG.rate * CONFIG.warmupMs) / 1000)
  subscribe((body, at) => {
    const i = Number(body)
    received++
    if (i >= warmupCount && sentAt[i] !== undefined) latencies.push(at - sentAt[i])
    if (received >= total) done()
  })
  log(`${label}: ${CONFIG.rate} msg/s for ${(CONFIG.warmupMs + CONFIG.durationMs) / 1000} s`)
  total = await drive(sender, to, sentAt)
  if (received < total) await Promise.race([finished, sleep(CONFIG.drainMs)])
  const s = summarize(latencies)
  log(`${label}: received ${received}/${total}, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms`)
  return { ...roundAll(s), received, sent: total, undelivered: total - received }
}

const broker = await startBroker()
try {
  const { peer: sender } = await api(broker, "POST", "/api/peers", { name: "bench-sender" })
  const { peer: direct } = await api(broker, "POST", "/api/peers", { name: "bench-direct" })
  const senderWs = await channel(broker, sender.id)

  // baseline: broker only
  const directWs = await channel(broker, direct.id)
  const baseline = await measure("broker only", senderWs, direct.id, (onMessage) =>
    directWs.on("message", (data) => {
      const at = performance.now()
      const frame = JSON.parse(String(data))
      if (frame.type !== "message") return
      directWs.send(JSON.stringify({ type: "ack", upTo: frame.message.seq }))
      onMessage(frame.message.body, at)
    })
  )
  directWs.close()

  // ours: broker + MCP server + stdio notification
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MCP_CLI],
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", A2A_BROKER_URL: broker.url, A2A_TOKEN: broker.token, A2A_PEER_NAME: "bench-mcp" },
    stderr: "inherit"
  })
  const client = new Client({ name: "bench", version: "1" }, { capabilities: { experimental: { "claude/channel": {} } } })
  let onNotify = () => {}
  client.fallbackNotificationHandler = async (n) => {
    const at = performance.now()
    if (n.method === "notifications/claude/channel") onNotify(n.params.content, at)
  }
  await client.connect(transport)
  const who = await client.callTool({ name: "whoami" })
  const mcpPeer = who.structuredContent.peer
  // the channel is open once a message round-trips
  const ready = new Promise((resolve) => (onNotify = resolve))
  senderWs.send(JSON.stringify({ type: "send", to: mcpPeer.id, body: "warm" }))
  await ready
  const ours = await measure("broker + MCP", senderWs, mcpPeer.id, (onMessage) => (onNotify = onMessage))
  await client.close()
  senderWs.close()

  const rows = [
    result({ name: `send→notification p50 @ ${CONFIG.rate} msg/s (baseline: broker-only send→push)`, ours: ours.p50, baseline: baseline.p50, unit: "ms", target: null, met: null }),
    result({ name: `send→notification p99 @ ${CONFIG.rate} msg/s (baseline: broker-only send→push)`, ours: ours.p99, baseline: baseline.p99, unit: "ms", target: `≤ ${TARGET_P99_MS} ms`, met: ours.p99 <= TARGET_P99_MS && ours.undelivered === 0 }),
    result({ name: `send→notification max @ ${CONFIG.rate} msg/s`, ours: ours.max, baseline: baseline.max, unit: "ms", target: null, met: null })
  ]
  printTable(rows, [["name", "figure"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
  const file = writeResults("mcp", {
    machine: machine(),
    config: { ...CONFIG, quick: flags.quick },
    definitions: {
      latency:
        "open loop at `rate` msg/s from a raw broker channel; ours = until the MCP SDK client in the bench process got " +
        "notifications/claude/channel from the built a2a-mcp child (which acks after pushing); baseline = until a raw broker " +
        "channel socket in the bench process got the message frame (and acked it); warm-up excluded"
    },
    results: rows,
    raw: { ours, baseline }
  })
  log(`results: ${file}`)
} finally {
  await broker.stop()
}
