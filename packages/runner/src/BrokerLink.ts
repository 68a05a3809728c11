/**
 * The runner's control link to the broker, `GET /ws/runner/:id`: `hello` with the spawn
 * agents it runs (the broker reconciles), spawn and stop orders in, `spawn_status` reports and
 * heartbeats out, reconnects with backoff. Agents keep running while the broker is away;
 * reports made meanwhile are sent after the next `hello`.
 */
import { Codec, RunnerFrame } from "@mks/a2a"
import { Context, Effect, Layer, Runtime } from "effect"
import { hostname } from "node:os"
import WebSocket from "ws"
import type { Agent, AgentStatus } from "./Agent.js"
import { RunnerConfig } from "./RunnerConfig.js"
import { specOfOrder, Supervisor } from "./Supervisor.js"

export type LinkState = "disabled" | "connecting" | "open" | "closed"

export interface BrokerLinkService {
  readonly state: () => LinkState
  /** Resolves when the link is open and `hello` was sent (immediately when it is). */
  readonly whenOpen: () => Promise<void>
}

export class BrokerLink extends Context.Tag("@mks/a2a-runner/BrokerLink")<BrokerLink, BrokerLinkService>() {}

type UpFrame = typeof RunnerFrame.RunnerUpFrame.Encoded
type Report = Omit<Extract<UpFrame, { type: "spawn_status" }>, "type">

const decodeDown = Codec.decodeJson(RunnerFrame.RunnerDownFrame)

/** The spawn status a runner agent stands for, for `hello`; undefined once it is over. */
const spawnStatusOf = (agent: Agent, restartPending: boolean): RunnerFrame.RunnerAgent["status"] | undefined => {
  switch (agent.status) {
    case "starting":
    case "running":
    case "stopping":
      return agent.status
    default:
      return restartPending ? "running" : undefined
  }
}

const FINAL: ReadonlyArray<AgentStatus> = ["stopped", "exited", "crashed"]

export const layer: Layer.Layer<BrokerLink, never, RunnerConfig | Supervisor> = Layer.scoped(
  BrokerLink,
  Effect.gen(function* () {
    const config = yield* RunnerConfig
    const sup = yield* Supervisor
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const broker = config.broker
    if (broker === undefined) return { state: () => "disabled" as const, whenOpen: () => Promise.resolve() }

    let state: LinkState = "connecting"
    let ws: WebSocket | undefined
    let closing = false
    let attempt = 0
    let reconnectTimer: ReturnType<typeof setTimeout> | undefined
    let heartbeat: ReturnType<typeof setInterval> | undefined
    let openWaiters: Array<() => void> = []
    /** Reports made while the link was down, last one per spawn. */
    const pending = new Map<string, UpFrame>()

    const log = (message: string, level: "info" | "warn" = "info") =>
      run(level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).catch(() => undefined)

    const sendNow = (frame: UpFrame): boolean => {
      if (ws === undefined || state !== "open" || ws.readyState !== WebSocket.OPEN) return false
      ws.send(JSON.stringify(frame))
      return true
    }

    const report = (frame: Report) => {
      const up: UpFrame = { type: "spawn_status", ...frame }
      if (!sendNow(up)) pending.set(frame.spawnId, up)
    }

    // Status changes of spawn agents become reports.
    const offStatus = sup.onStatus((change, agent) => {
      if (closing || agent.spawnId === undefined) return
      const spawnId = agent.spawnId
      const to = change.new_status
      if (to === "starting" || to === "stopping") return report({ spawnId, status: to, pid: agent.pid })
      if (to === "running") return report({ spawnId, status: "running", pid: agent.pid })
      if (FINAL.includes(to)) {
        // A crash its restart policy brings back is not the end of the spawn.
        if (sup.restartPending(agent.id)) return
        report({ spawnId, status: "exited", exitCode: agent.exitCode, error: to === "crashed" ? `exited with code ${agent.exitCode}` : undefined })
        run(sup.forgetSpawn(spawnId)).catch(() => undefined)
      }
    })

    const hello = (): UpFrame => ({
      type: "hello",
      runner: { id: config.id, host: hostname(), labels: { ...config.labels }, capacity: config.capacity, presets: ["command", "claude"], version: config.version },
      agents: sup.spawnAgents().flatMap((agent) => {
        const status = spawnStatusOf(agent, sup.restartPending(agent.id))
        return status === undefined ? [] : [{ spawnId: agent.spawnId!, status, ...(agent.pid !== undefined ? { pid: agent.pid } : {}) }]
      })
    })

    const onOrder = (frame: RunnerFrame.RunnerDownFrame) => {
      switch (frame.type) {
        case "spawn": {
          const order = frame.spawn
          const existing = sup.bySpawn(order.id)
          if (existing !== undefined) {
            const status = spawnStatusOf(existing, sup.restartPending(existing.id))
            if (status !== undefined) report({ spawnId: order.id, status, pid: existing.pid })
            return
          }
          const active = sup.spawnAgents().filter((a) => spawnStatusOf(a, sup.restartPending(a.id)) !== undefined).length
          if (active >= config.capacity) {
            return report({ spawnId: order.id, status: "failed", error: `runner ${config.id} is at capacity (${config.capacity})` })
          }
          run(Effect.either(sup.create(specOfOrder(order), { spawn: order }))).then((result) => {
            if (result._tag === "Left") {
              report({ spawnId: order.id, status: "failed", error: result.left.message })
              run(sup.forgetSpawn(order.id)).catch(() => undefined)
            }
          })
          return
        }
        case "stop": {
          const agent = sup.bySpawn(frame.spawnId)
          if (agent === undefined) return report({ spawnId: frame.spawnId, status: "exited" })
          run(Effect.ignore(sup.stop(agent.id, frame.graceMs ?? config.graceMs))).catch(() => undefined)
          return
        }
        case "error":
          log(`broker refused a frame: ${frame.error._tag}: ${frame.error.message}`, "warn")
          return
      }
    }

    const scheduleReconnect = () => {
      if (closing) return
      const wait = Math.min(config.reconnect.maxMs, config.reconnect.initialMs * 2 ** attempt) * (0.8 + Math.random() * 0.4)
      attempt = Math.min(attempt + 1, 16)
      reconnectTimer = setTimeout(connect, wait)
    }

    const connect = () => {
      reconnectTimer = undefined
      if (closing) return
      state = "connecting"
      const url = `${broker.url.replace(/^http/, "ws").replace(/\/+$/, "")}/ws/runner/${encodeURIComponent(config.id)}`
      const socket = new WebSocket(url, { headers: { authorization: `Bearer ${broker.token}` } })
      ws = socket
      socket.on("open", () => {
        attempt = 0
        state = "open"
        socket.send(JSON.stringify(hello()))
        for (const frame of pending.values()) socket.send(JSON.stringify(frame))
        pending.clear()
        heartbeat = setInterval(() => sendNow({ type: "heartbeat" }), config.heartbeatMs)
        log(`linked to broker ${broker.url} as runner ${config.id}`)
        const waiters = openWaiters
        openWaiters = []
        for (const resolve of waiters) resolve()
      })
      socket.on("message", (data) => {
        run(Effect.either(decodeDown(String(data)))).then((decoded) => {
          if (decoded._tag === "Left") return log(`undecodable frame from the broker: ${decoded.left.message}`, "warn")
          onOrder(decoded.right)
        })
      })
      socket.on("unexpected-response", (_req, res) => {
        log(`broker refused the runner link: HTTP ${res.statusCode}`, "warn")
      })
      socket.on("error", () => undefined)
      socket.on("close", () => {
        if (heartbeat !== undefined) clearInterval(heartbeat)
        heartbeat = undefined
        if (ws === socket) {
          ws = undefined
          state = closing ? "closed" : "connecting"
        }
        scheduleReconnect()
      })
    }

    connect()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closing = true
        state = "closed"
        offStatus()
        if (reconnectTimer !== undefined) clearTimeout(reconnectTimer)
        if (heartbeat !== undefined) clearInterval(heartbeat)
        ws?.close(1001, "runner shutting down")
      })
    )
    return {
      state: () => state,
      whenOpen: () => (state === "open" ? Promise.resolve() : new Promise<void>((resolve) => openWaiters.push(resolve)))
    }
  })
)
