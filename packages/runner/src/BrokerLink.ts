/**
 * The runner's control link to the broker, `GET /ws/runner/:id`: `hello` with the spawn
 * agents it runs (the broker reconciles), spawn and stop orders in, `spawn_status` reports out.
 * The link itself (dialling, `hello` then the reports made while it was down, heartbeats,
 * reconnects on a `Schedule`, 4009) is core's `RunnerLink`; this module is what the orders mean
 * to this runner. Agents keep running while the broker is away.
 *
 * It also answers the broker's relay streams (`features: ["relay"]` in `hello`): the log tail
 * and live lines of a spawn's agent, and its pseudo-terminal, multiplexed by stream id.
 */
import { Errors, RunnerFrame, RunnerLink, RunnerPolicy } from "@mks/a2a"
import { Context, Effect, Layer, Runtime, Schema } from "effect"
import { hostname } from "node:os"
import type { Agent, AgentStatus } from "./Agent.js"
import * as OrderPolicy from "./OrderPolicy.js"
import { RunnerConfig } from "./RunnerConfig.js"
import { specOfOrder, Supervisor, type SupervisorService } from "./Supervisor.js"

export type LinkState = "disabled" | RunnerLink.LinkState

export interface BrokerLinkService {
  readonly state: () => LinkState
  /** Resolves when the link is open and `hello` was sent (immediately when it is). */
  readonly whenOpen: () => Promise<void>
}

export class BrokerLink extends Context.Tag("@mks/a2a-runner/BrokerLink")<BrokerLink, BrokerLinkService>() {}

type UpFrame = RunnerLink.UpFrame

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

    let closing = false
    // Added before the link, so it runs after the link's socket is closed.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closing = true
        offStatus()
        relay.closeAll()
      })
    )
    // The transport and protocol are core's; what the orders mean is this runner's (the host
    // callbacks run only once a socket opened, after everything below is defined).
    const link = yield* RunnerLink.make(
      { url: broker.url, token: broker.token, runnerId: config.id, heartbeatMs: config.heartbeatMs, reconnect: config.reconnect },
      { hello: () => hello(), onFrame: (frame) => onOrder(frame), onClose: () => relay.closeAll() }
    )
    const report = link.report

    const log = (message: string, level: "info" | "warn" | "error" = "info") =>
      run(level === "error" ? Effect.logError(message) : level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).catch(() => undefined)

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

    const hello = (): RunnerLink.Hello => ({
      runner: {
        id: config.id,
        host: hostname(),
        labels: { ...config.labels },
        capacity: config.capacity,
        presets: config.policy?.presets ?? ["command", "claude"],
        version: config.version,
        ...(config.policy !== undefined ? { policy: Schema.encodeSync(RunnerPolicy.RunnerPolicy)(config.policy) } : {})
      },
      agents: [
        ...sup.spawnAgents().flatMap((agent) => {
          const status = spawnStatusOf(agent, sup.restartPending(agent.id))
          return status === undefined ? [] : [{ spawnId: agent.spawnId!, status, ...(agent.pid !== undefined ? { pid: agent.pid } : {}) }]
        }),
        // Records of agents the runner's restart ended: `lost`, the broker answers with the order or a stop.
        ...sup.interrupted().map((agent) => ({ spawnId: agent.spawnId!, status: "lost" as const }))
      ],
      features: ["relay"]
    })

    const relay = makeRelay(sup, runtime, (frame) => void link.send(frame))

    const onOrder = (frame: RunnerFrame.RunnerDownFrame) => {
      switch (frame.type) {
        case "spawn": {
          const order = frame.spawn
          if (sup.interrupted().some((a) => a.spawnId === order.id)) {
            // Still wanted after the runner restarted: start it again, reaching the broker at the
            // URL this runner is configured with now (the order's may be from before a move).
            const resumed: RunnerFrame.SpawnOrder = { ...order, brokerUrl: broker.url }
            run(Effect.either(sup.resume(resumed))).then((result) => {
              if (result._tag === "Left") report({ spawnId: order.id, status: "failed", error: result.left.message })
            })
            return
          }
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
          const refused = OrderPolicy.refusal(config, sup, order)
          if (refused !== undefined) return report({ spawnId: order.id, status: "failed", error: refused })
          run(Effect.either(sup.create(specOfOrder(order, config.policy), { spawn: order }))).then((result) => {
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
          if (sup.interrupted().some((a) => a.spawnId === frame.spawnId)) {
            // Not wanted any more (the broker stopped it, or does not know it): forget it, never relaunch.
            run(Effect.ignore(sup.remove(agent.id))).catch(() => undefined)
            return report({ spawnId: frame.spawnId, status: "exited" })
          }
          run(Effect.ignore(sup.stop(agent.id, frame.graceMs ?? config.graceMs))).catch(() => undefined)
          return
        }
        case "error":
          log(`broker refused a frame: ${frame.error._tag}: ${frame.error.message}`, "warn")
          return
        default:
          return relay.onFrame(frame)
      }
    }

    return { state: link.state, whenOpen: link.whenOpen }
  })
)

// ---- relay: logs and terminals of spawn agents, for the broker ---------------------------------

type RelayDown = Extract<RunnerFrame.RunnerDownFrame, { readonly type: "logs_open" | "term_open" | "term_input" | "term_resize" | "stream_close" }>

/** Most characters of log lines in one `log` frame (the broker's frame limit is about 1 MiB). */
const LOG_FRAME_CHARS = 256 * 1024
/** Most characters of history a `logs_open` sends (its last lines that fit), whatever its `n`. */
export const LOG_TAIL_CHARS = 1024 * 1024
const ENDED: ReadonlyArray<AgentStatus> = ["stopped", "exited", "crashed"]

/** `text` in pieces of at most `size` characters, never splitting a surrogate pair. */
const chunks = (text: string, size: number): Array<string> => {
  const out: Array<string> = []
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + size)
    if (end < text.length && /[\uD800-\uDBFF]/.test(text[end - 1]!)) end--
    out.push(text.slice(at, end))
    at = end
  }
  return out
}

interface OpenStream {
  readonly close: () => void
  readonly input?: (data: string) => void
  readonly resize?: (cols: number, rows: number) => void
}

/**
 * The runner's side of the relay: `logs_open` follows a spawn agent's log (the last `n` lines,
 * then each new line, batched per turn of the event loop, until the agent ends for good),
 * `term_open` attaches to its pseudo-terminal (backlog, then live output, until it exits).
 */
const makeRelay = (sup: SupervisorService, runtime: Runtime.Runtime<never>, send: (frame: UpFrame) => void) => {
  const streams = new Map<number, OpenStream>()
  const runSync = Runtime.runSync(runtime)

  const ended = (id: string) => {
    const agent = runSync(Effect.option(sup.get(id)))
    return agent._tag === "Some" && ENDED.includes(agent.value.status) && !sup.restartPending(id) ? agent.value : undefined
  }
  const end = (stream: number, reason: string, status?: AgentStatus, exitCode?: number) => {
    streams.get(stream)?.close()
    streams.delete(stream)
    send({ type: "stream_end", stream, reason, ...(status !== undefined ? { status } : {}), ...(exitCode !== undefined ? { exitCode } : {}) })
  }
  const notFound = (stream: number, spawnId: string) =>
    send({ type: "stream_error", stream, error: Schema.encodeSync(Errors.WireError)(new Errors.SpawnNotFound({ message: `spawn ${spawnId} does not run on this runner`, spawn: spawnId })) })

  const openLogs = (stream: number, spawnId: string, n: number) => {
    const agent = sup.bySpawn(spawnId)
    if (agent === undefined) return notFound(stream, spawnId)
    const id = agent.id
    let batch: Array<string> = []
    let chars = 0
    let scheduled = false
    const flush = () => {
      scheduled = false
      if (batch.length === 0) return
      send({ type: "log", stream, lines: batch })
      batch = []
      chars = 0
    }
    const push = (line: string) => {
      if (batch.length >= RunnerFrame.MAX_LOG_LINES || chars + line.length > LOG_FRAME_CHARS) flush()
      batch.push(line.length > LOG_FRAME_CHARS ? line.slice(0, LOG_FRAME_CHARS) : line)
      chars += line.length
      if (!scheduled) {
        scheduled = true
        setImmediate(() => streams.has(stream) && flush())
      }
    }
    // Read the tail and subscribe in one synchronous step: no line falls in between.
    const tail = runSync(Effect.orElseSucceed(sup.logs(id, n), () => [] as ReadonlyArray<string>))
    let first = tail.length
    for (let size = 0; first > 0 && size + tail[first - 1]!.length <= LOG_TAIL_CHARS; first--) size += tail[first - 1]!.length
    for (const line of tail.slice(first)) push(line)
    const offLine = runSync(Effect.orElseSucceed(sup.onLine(id, push), () => () => {}))
    const offStatus = sup.onStatus((change, view) => {
      if (change.agent_id !== id || !ENDED.includes(change.new_status) || sup.restartPending(id)) return
      flush()
      end(stream, `the agent ${change.new_status}`, change.new_status, view.exitCode)
    })
    streams.set(stream, {
      close: () => {
        offLine()
        offStatus()
      }
    })
    const over = ended(id)
    if (over !== undefined) {
      flush()
      end(stream, `the agent ${over.status}`, over.status, over.exitCode)
    }
  }

  const openTerminal = (stream: number, spawnId: string, cols: number, rows: number) => {
    const agent = sup.bySpawn(spawnId)
    if (agent === undefined) return notFound(stream, spawnId)
    const id = agent.id
    const found = runSync(Effect.option(sup.terminal(id)))
    if (found._tag === "None") return notFound(stream, spawnId)
    const terminal = found.value
    const output = (data: string) => {
      for (const piece of chunks(data, RunnerFrame.MAX_TERMINAL_DATA)) send({ type: "term_output", stream, data: piece })
    }
    if (terminal.backlog.length > 0) output(terminal.backlog)
    const offData = terminal.onData(output)
    const offExit = terminal.onExit((status) => end(stream, `the agent ${status}`, status, runSync(Effect.option(sup.get(id))).pipe((a) => (a._tag === "Some" ? a.value.exitCode : undefined))))
    streams.set(stream, {
      close: () => {
        offData()
        offExit()
      },
      input: (data) => terminal.write(data),
      resize: (c, r) => terminal.resize(c, r)
    })
    const over = ended(id)
    if (over !== undefined) return end(stream, `the agent ${over.status}`, over.status, over.exitCode)
    terminal.resize(cols, rows)
  }

  return {
    onFrame: (frame: RelayDown) => {
      switch (frame.type) {
        case "logs_open":
          return openLogs(frame.stream, frame.spawnId, frame.n)
        case "term_open":
          return openTerminal(frame.stream, frame.spawnId, frame.cols, frame.rows)
        case "term_input":
          return streams.get(frame.stream)?.input?.(frame.data)
        case "term_resize":
          return streams.get(frame.stream)?.resize?.(frame.cols, frame.rows)
        case "stream_close": {
          streams.get(frame.stream)?.close()
          streams.delete(frame.stream)
          return
        }
      }
    },
    closeAll: () => {
      for (const stream of streams.values()) stream.close()
      streams.clear()
    }
  }
}
