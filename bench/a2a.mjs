/**
 * A2A benchmark (issue 20): an A2A `SendMessage` round trip through the broker's gateway to a
 * bus peer and back, against a direct `@a2a-js/sdk` client → server round trip on loopback in
 * the same run.
 *
 * - ours: the official `@a2a-js/sdk` client (protocol 1.0, JSON-RPC) in this process sends
 *   `SendMessage` to `/a2a/peers/bench-echo` of the built broker (child process); the broker
 *   turns it into a bus message to the peer `bench-echo`, whose channel is a raw `ws` socket in
 *   this process that answers each message with a reply (and acks it); the reply becomes the
 *   A2A answer (a Message).
 * - baseline: the same client and calls against the official SDK server (`DefaultRequestHandler`
 *   behind its Express JSON-RPC handler) in this process, whose executor answers each message
 *   with a Message at once: A2A without a bus.
 * Closed loop (one call at a time), warm-up excluded; latency = the client's call, start to answer.
 *
 *   node bench/a2a.mjs [--quick]
 */
import { Role } from "@a2a-js/sdk"
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client"
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server"
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express"
import express from "express"
import { randomUUID } from "node:crypto"
import { parseArgs } from "node:util"
import { WebSocket } from "ws"
import { log, machine, printTable, result, roundAll, startBroker, summarize, writeResults } from "./lib.mjs"

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false } } })
const CONFIG = flags.quick ? { warmup: 50, calls: 300 } : { warmup: 200, calls: 2_000 }

const text = (value) => ({ content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "text/plain" })
const request = (value) => ({
  tenant: "",
  message: { messageId: randomUUID(), role: Role.ROLE_USER, parts: [text(value)], contextId: "", taskId: "", metadata: undefined, extensions: [], referenceTaskIds: [] },
  configuration: undefined,
  metadata: undefined
})

const clientFor = (base, path, token) => {
  const fetchImpl = token === undefined ? fetch : (input, init) => {
    const headers = new Headers(init?.headers)
    headers.set("authorization", `Bearer ${token}`)
    return fetch(input, { ...init, headers })
  }
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
      transports: [new JsonRpcTransportFactory({ fetchImpl })]
    })
  )
  return factory.createFromUrl(base, path)
}

/** Closed loop: `warmup` + `calls` SendMessage calls, one at a time; latencies of the measured ones (ms). */
const measure = async (label, client) => {
  const latencies = []
  for (let i = 0; i < CONFIG.warmup + CONFIG.calls; i++) {
    const started = performance.now()
    const answer = await client.sendMessage(request(`ping ${i}`))
    const took = performance.now() - started
    const said = answer.parts?.map((p) => p.content?.value).join("")
    if (said !== `pong ping ${i}`) throw new Error(`${label}: unexpected answer ${JSON.stringify(answer).slice(0, 300)}`)
    if (i >= CONFIG.warmup) latencies.push(took)
  }
  const stats = roundAll(summarize(latencies))
  log(`${label}: p50 ${stats.p50} ms, p99 ${stats.p99} ms (${stats.count} calls)`)
  return stats
}

/** The baseline: the official SDK server answering at once. */
const startSdkServer = async () => {
  const app = express()
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s))
  })
  const base = `http://127.0.0.1:${server.address().port}`
  const card = {
    name: "bench-direct",
    description: "direct SDK server",
    supportedInterfaces: [{ url: `${base}/rpc`, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text"],
    defaultOutputModes: ["text"],
    skills: [],
    documentationUrl: "",
    signatures: []
  }
  const executor = {
    execute: async (ctx, bus) => {
      const said = ctx.userMessage.parts.map((p) => p.content?.value ?? "").join("")
      bus.publish(AgentEvent.message({ messageId: randomUUID(), role: Role.ROLE_AGENT, parts: [text(`pong ${said}`)], contextId: ctx.contextId, taskId: "", metadata: undefined, extensions: [], referenceTaskIds: [] }))
      bus.finished()
    },
    cancelTask: async () => {}
  }
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor)
  app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: async () => card }))
  app.use("/rpc", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  return { base, close: () => new Promise((r) => server.close(r)) }
}

/** The bus peer: a raw broker channel that answers every message with `pong <body>` and acks it. */
const startEchoPeer = async (broker) => {
  const res = await fetch(`${broker.url}/api/peers`, {
    method: "POST",
    headers: { authorization: `Bearer ${broker.token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench-echo", summary: "answers pong", meta: { a2a: true } })
  })
  const { peer } = await res.json()
  const ws = await new Promise((resolve, reject) => {
    const socket = new WebSocket(`${broker.url.replace(/^http/, "ws")}/ws/broker/peer/${peer.id}`, { headers: { authorization: `Bearer ${broker.token}` }, perMessageDeflate: false })
    socket.once("error", reject)
    socket.on("message", function first(data) {
      if (JSON.parse(String(data)).type === "hello") {
        socket.off("message", first)
        resolve(socket)
      }
    })
  })
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data))
    if (frame.type !== "message") return
    const m = frame.message
    ws.send(JSON.stringify({ type: "send", to: m.from, body: `pong ${m.body}`, replyTo: m.id }))
    ws.send(JSON.stringify({ type: "ack", upTo: m.seq }))
  })
  return ws
}

const loadavgAtStart = machine().loadavg
const broker = await startBroker({ db: ":memory:" })
const sdk = await startSdkServer()
try {
  const peer = await startEchoPeer(broker)
  const direct = await clientFor(sdk.base, "/.well-known/agent-card.json")
  const baseline = await measure("direct SDK client→server", direct)
  const bridged = await clientFor(broker.url, "/a2a/peers/bench-echo/.well-known/agent-card.json", broker.token)
  const ours = await measure("SDK client→broker gateway→bus peer→back", bridged)
  peer.close()

  const rows = [
    result({ name: "A2A SendMessage round trip p50 (ours: via broker + bus peer; baseline: direct SDK server)", ours: ours.p50, baseline: baseline.p50, unit: "ms", target: null, met: null }),
    result({ name: "A2A SendMessage round trip p99 (ours: via broker + bus peer; baseline: direct SDK server)", ours: ours.p99, baseline: baseline.p99, unit: "ms", target: null, met: null }),
    result({ name: "A2A SendMessage round trip max", ours: ours.max, baseline: baseline.max, unit: "ms", target: null, met: null })
  ]
  printTable(rows, [["name", "figure"], ["ours", "ours"], ["baseline", "baseline"], ["ratio", "ratio"], ["unit", "unit"]])
  const file = writeResults("a2a", {
    machine: machine(),
    loadavgAtStart,
    config: { ...CONFIG, quick: flags.quick },
    definitions: {
      roundTrip:
        "closed loop, one call at a time, official @a2a-js/sdk client (1.0, JSON-RPC) sendMessage from call to answer; " +
        "ours = built broker child process: gateway → bus message → raw ws peer in the bench process replies → A2A Message; " +
        "baseline = official SDK server (DefaultRequestHandler + Express JSON-RPC handler) in the bench process answering at once; warm-up excluded"
    },
    results: rows,
    raw: { ours, baseline }
  })
  log(`results: ${file}`)
} finally {
  await sdk.close()
  await broker.stop()
}
