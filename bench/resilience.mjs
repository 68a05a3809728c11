/**
 * Resilience at fleet scale, each against a same-run baseline:
 *
 *  1. Reconnect wave: N peers (10,000) connected with `?presence=none`, plus two watchers with
 *     `?presence=batched`, all drop their sockets at once and all reconnect at once. Time until
 *     every peer has its hello again and the watchers saw every peer online, peak broker RSS,
 *     `/healthz` latency during the wave, presence frames per watcher. Baseline: the same wave
 *     against the raw `ws` relay (no auth, no store, no presence).
 *  2. Flood: 20,000 connections (half silent, half a slow-loris request head), held by two
 *     child processes, while a real client makes requests: its success rate and latency.
 *     Baseline: the same client against the same broker without the flood.
 *  3. RSS per idle connected peer at N peers (from 1), against the raw `ws` relay.
 *
 * Writes bench/results/resilience.json. `--quick`: 1,000 peers and a 2,000-connection flood.
 * `node bench/resilience.mjs flood PORT COUNT` is the flood child (internal).
 */
import { connect } from "node:net"
import WebSocket from "ws"
import {
  guardProcess,
  log,
  machine,
  mapLimit,
  openFileLimit,
  printTable,
  result,
  rssKiB,
  sampleRss,
  settledRss,
  sleep,
  startBroker,
  startProcess,
  startRelay,
  summarize,
  waitFor,
  writeResults
} from "./lib.mjs"
import { fileURLToPath } from "node:url"

// ---- the flood child ------------------------------------------------------------------------------

if (process.argv[2] === "flood") {
  const port = Number(process.argv[3])
  const count = Number(process.argv[4])
  const sockets = []
  let open = 0
  let refused = 0
  for (let i = 0; i < count; i++) {
    const s = connect(port, "127.0.0.1")
    s.on("error", () => {})
    s.on("data", (d) => {
      if (d.toString("latin1").startsWith("HTTP/1.1 503")) refused++
    })
    s.on("connect", () => {
      open++
      if (i % 2 === 0) s.write("GET /api/peers HTTP/1.1\r\nhost: x\r\n")
    })
    s.on("close", () => open--)
    sockets.push(s)
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve))
  }
  setInterval(() => {
    for (let i = 0; i < sockets.length; i += 2) if (!sockets[i].destroyed) sockets[i].write(`x-drip: ${i}\r\n`)
  }, 5_000)
  process.stdout.write(`flood started ${count}\n`)
  setInterval(() => process.stdout.write(`flood open ${open} refused ${refused}\n`), 1_000)
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
} else {
  await main()
}

async function main() {
  guardProcess()
  const QUICK = process.argv.includes("--quick")
  const fdLimit = openFileLimit()
  const CONFIG = QUICK ? { peers: 1_000, flood: 2_000, requests: 100 } : { peers: 10_000, flood: 20_000, requests: 300 }
  // Each peer is one descriptor here and one in the server.
  const peers = Math.min(CONFIG.peers, Number.isFinite(fdLimit) ? fdLimit - 1_000 : CONFIG.peers)
  if (peers < CONFIG.peers) log(`open-file limit ${fdLimit}: ${peers} peers instead of ${CONFIG.peers}`)
  const details = { machine: machine(), config: { ...CONFIG, peers, fdLimit: String(fdLimit) } }
  const rows = []

  // ---- 1 + 3: the wave and memory --------------------------------------------------------------

  const openSocket = (url, headers, onFrame) =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { headers, perMessageDeflate: false })
      let hello = false
      ws.on("message", (data) => {
        const text = data.toString()
        if (!hello && text.startsWith('{"type":"hello"')) {
          hello = true
          resolve(ws)
        }
        onFrame?.(text)
      })
      ws.on("error", () => {})
      ws.on("close", () => {
        if (!hello) resolve(undefined)
      })
    })
  /** Open every url, `width` at a time (or all at once), retrying refused ones until all are open. */
  const openAll = async (urls, headers, width) => {
    const sockets = new Array(urls.length)
    let pending = urls.map((_, i) => i)
    while (pending.length > 0) {
      const failed = []
      await mapLimit(pending, width, async (i) => {
        const ws = await openSocket(urls[i], headers)
        if (ws === undefined) failed.push(i)
        else sockets[i] = ws
      })
      pending = failed
      if (failed.length > 0) await sleep(100)
    }
    return sockets
  }
  const closeAll = async (sockets) => {
    await Promise.all(sockets.map((ws) => new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      ws.once("close", resolve)
      ws.terminate()
    })))
  }

  const waveOn = async (target) => {
    const settledBefore = await settledRss(target.pid)
    const initial = await openAll(target.urls, target.headers, 128)
    await sleep(2_000)
    const settledAfter = await settledRss(target.pid)
    const perPeerKiB = (settledAfter - settledBefore) / target.urls.length
    // Watchers count presence frames and the peers listed in them from here on.
    let frames = 0
    const joined = new Set()
    const watchers = []
    for (const url of target.watcherUrls ?? []) {
      watchers.push(await openSocket(url, target.headers, (text) => {
        if (!text.includes('"peers_changed"')) return
        frames++
        for (const p of JSON.parse(text).event.joined) joined.add(p.id)
      }))
    }
    await closeAll(initial)
    if (target.offline !== undefined) await waitFor(target.offline, 120_000, 200)
    frames = 0
    joined.clear()
    const rss = sampleRss(target.pid, 50)
    const health = []
    let waving = true
    const poller = target.healthUrl === undefined
      ? Promise.resolve()
      : (async () => {
          while (waving) {
            const t = performance.now()
            const res = await fetch(target.healthUrl, { signal: AbortSignal.timeout(60_000) }).catch(() => undefined)
            if (res !== undefined) await res.text()
            health.push(res?.status === 200 ? performance.now() - t : Infinity)
            await sleep(20)
          }
        })()
    const started = performance.now()
    const again = await openAll(target.urls, target.headers, target.urls.length)
    const allHello = performance.now() - started
    if (watchers.length > 0) await waitFor(() => target.ids.every((id) => joined.has(id)), 120_000, 20)
    const allOnline = performance.now() - started
    waving = false
    await poller
    const memory = rss.stop()
    const framesPerWatcher = watchers.length === 0 ? 0 : frames / watchers.length
    await closeAll([...again, ...watchers.filter((w) => w !== undefined)])
    return { peers: target.urls.length, allHelloMs: allHello, allOnlineMs: allOnline, peakRssKiB: memory.maxKiB, health: summarize(health), framesPerWatcher, perPeerKiB, settledBefore, settledAfter }
  }

  log(`relay: ${peers} idle sockets, then a reconnect wave`)
  const relay = await startRelay()
  let relayWave
  try {
    const ids = Array.from({ length: peers }, (_, i) => `p${i}`)
    relayWave = await waveOn({ pid: relay.pid, ids, urls: ids.map((id) => `${relay.url}/peer/${id}`), headers: {} })
  } finally {
    await relay.stop()
  }

  log(`broker: registering ${peers} peers`)
  const broker = await startBroker({ env: { A2A_BROKER_MAX_PENDING_CONNECTIONS: "100000" } })
  let brokerWave
  try {
    const auth = { authorization: `Bearer ${broker.token}`, "content-type": "application/json" }
    const register = async (name) => {
      const res = await fetch(`${broker.url}/api/peers`, { method: "POST", headers: auth, body: JSON.stringify({ name }) })
      return (await res.json()).peer.id
    }
    const ids = await mapLimit(Array.from({ length: peers }, (_, i) => `p${i}`), 32, register)
    const watcherIds = [await register("watch-1"), await register("watch-2")]
    const ws = broker.url.replace(/^http/, "ws")
    const onlineCount = async () => {
      const res = await fetch(`${broker.url}/api/peers?status=online`, { headers: auth })
      return (await res.json()).peers.length
    }
    log(`broker: ${peers} idle peers, then a reconnect wave`)
    brokerWave = await waveOn({
      pid: broker.pid,
      ids,
      urls: ids.map((id) => `${ws}/ws/broker/peer/${id}?presence=none`),
      watcherUrls: watcherIds.map((id) => `${ws}/ws/broker/peer/${id}?presence=batched`),
      headers: { authorization: `Bearer ${broker.token}` },
      healthUrl: `${broker.url}/healthz`,
      offline: async () => (await onlineCount()) <= watcherIds.length
    })
  } finally {
    await broker.stop()
  }
  details.wave = { broker: brokerWave, relay: relayWave }
  rows.push(
    result({ name: `reconnect wave: all ${peers} online again`, ours: brokerWave.allOnlineMs, baseline: relayWave.allHelloMs, unit: "ms", target: "≤ 15,000", met: brokerWave.allOnlineMs <= 15_000 }),
    result({ name: "healthz p99 during the wave", ours: brokerWave.health.p99, baseline: NaN, unit: "ms", target: "≤ 100", met: brokerWave.health.p99 <= 100 }),
    result({ name: "peak RSS during the wave", ours: brokerWave.peakRssKiB / 1024, baseline: relayWave.peakRssKiB / 1024, unit: "MiB", target: "≤ 1,024", met: brokerWave.peakRssKiB <= 1024 * 1024 }),
    result({ name: "presence frames per watcher in the wave", ours: brokerWave.framesPerWatcher, baseline: peers, unit: "frames", target: "O(N): ≤ N", met: brokerWave.framesPerWatcher <= peers }),
    result({ name: `RSS per idle peer at ${peers}`, ours: brokerWave.perPeerKiB, baseline: relayWave.perPeerKiB, unit: "KiB", target: "≤ 30", met: brokerWave.perPeerKiB <= 30 })
  )

  // ---- 2: the flood ------------------------------------------------------------------------------

  log(`flood: ${CONFIG.flood} connections while a real client works`)
  const flooded = await startBroker()
  try {
    const auth = { authorization: `Bearer ${flooded.token}`, "content-type": "application/json" }
    const client = async (label) => {
      const latencies = []
      let ok = 0
      for (let i = 0; i < CONFIG.requests; i++) {
        const t = performance.now()
        const res = await fetch(`${flooded.url}/api/peers`, { method: "POST", headers: auth, body: JSON.stringify({ name: `${label}-${i % 50}` }), signal: AbortSignal.timeout(30_000) }).catch(() => undefined)
        if (res !== undefined) await res.text()
        if (res?.status === 200 || res?.status === 201) ok++
        latencies.push(performance.now() - t)
      }
      return { success: ok / CONFIG.requests, latency: summarize(latencies) }
    }
    const quiet = await client("quiet")
    const self = fileURLToPath(import.meta.url)
    const children = []
    for (let i = 0; i < 2; i++) {
      children.push(await startProcess(process.execPath, [self, "flood", String(flooded.port), String(CONFIG.flood / 2)], { ready: /flood started/, timeoutMs: 120_000, name: `flood-${i}` }))
    }
    const during = await client("flood")
    const refusedNow = rssKiB(flooded.pid)
    for (const c of children) await c.stop()
    details.flood = { quiet, during, brokerRssKiB: refusedNow }
    rows.push(
      result({ name: `real client success during a ${CONFIG.flood}-connection flood`, ours: during.success * 100, baseline: quiet.success * 100, unit: "%", target: "100", met: during.success === 1 }),
      result({ name: "real client p99 latency during the flood", ours: during.latency.p99, baseline: quiet.latency.p99, unit: "ms", target: "served", met: during.success === 1 })
    )
  } finally {
    await flooded.stop()
  }

  printTable(rows, [["name", "benchmark"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"], ["target", "target"], ["met", "met"]])
  const file = writeResults("resilience", { ...details, results: rows })
  log(`wrote ${file}`)
  process.exit(0)
}
