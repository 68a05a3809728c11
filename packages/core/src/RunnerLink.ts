/**
 * The runner's side of the runner link (`GET /ws/runner/:id`, docs/protocol.md "Runner link"),
 * transport and protocol only: dial with the runner's bearer token, send `hello` first and
 * then the reports made while the link was down (the last one per spawn), heartbeat while
 * open, decode what the broker sends and hand it on in arrival order, redial on a `Schedule`
 * (exponential from `initialMs`, capped at `maxMs`, jittered so a fleet does not redial in
 * lockstep; a link that opened starts the backoff over), and stay down for good when the broker
 * closes with 4009 (another runner took over the id).
 *
 * What the orders mean (starting agents, stopping them, relaying logs and terminals) is the
 * host's: `a2a-runner` is one host, a test or another runner implementation is another.
 */
import { Duration, Effect, Fiber, Runtime, Schedule, type Scope } from "effect"
import WebSocket from "ws"
import { decodeJson } from "./Codec.js"
import * as RunnerFrame from "./RunnerFrame.js"

export type LinkState = "connecting" | "open" | "closed"

/** A frame the runner sends, in its JSON form. */
export type UpFrame = typeof RunnerFrame.RunnerUpFrame.Encoded
/** A `spawn_status` report without its `type`. */
export type Report = Omit<Extract<UpFrame, { type: "spawn_status" }>, "type">
/** The `hello` frame's content (without `type`). */
export type Hello = Omit<Extract<UpFrame, { type: "hello" }>, "type">

export interface RunnerLinkOptions {
  /** The broker's base URL (`http://…` or `https://…`). */
  readonly url: string
  /** A runner token of the broker. */
  readonly token: string
  readonly runnerId: string
  readonly heartbeatMs: number
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number }
}

/** What the host does with the link. */
export interface RunnerLinkHost {
  /** The `hello` to send when a link opens (the agents the runner has now). */
  readonly hello: () => Hello
  /** A frame from the broker, decoded; called in arrival order. */
  readonly onFrame: (frame: RunnerFrame.RunnerDownFrame) => void
  /** A link closed (the broker forgets the link's relay streams then). */
  readonly onClose?: () => void
}

export interface RunnerLink {
  readonly state: () => LinkState
  /** Resolves when a link is open and its `hello` was sent (at once if it is). */
  readonly whenOpen: () => Promise<void>
  /** Send now if the link is open; false if it is not (the frame is not kept). */
  readonly send: (frame: UpFrame) => boolean
  /** A spawn's status: sent now, or after the next `hello` (only the last report per spawn is kept). */
  readonly report: (report: Report) => void
}

const decodeDown = decodeJson(RunnerFrame.RunnerDownFrame)

/**
 * The link, redialled until the scope closes (which closes an open socket with 1001). Log lines
 * go through Effect's logger.
 */
export const make = (options: RunnerLinkOptions, host: RunnerLinkHost): Effect.Effect<RunnerLink, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const log = (effect: Effect.Effect<void>) => void runFork(effect)

    let state: LinkState = "connecting"
    let ws: WebSocket | undefined
    let openWaiters: Array<() => void> = []
    /** Reports made while the link was down, last one per spawn. */
    const pending = new Map<string, UpFrame>()

    const send = (frame: UpFrame): boolean => {
      if (ws === undefined || state !== "open" || ws.readyState !== WebSocket.OPEN) return false
      ws.send(JSON.stringify(frame))
      return true
    }
    const report = (fields: Report) => {
      const up: UpFrame = { type: "spawn_status", ...fields }
      if (!send(up)) pending.set(fields.spawnId, up)
    }
    const heartbeat = Effect.sync(() => void send({ type: "heartbeat" })).pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(options.heartbeatMs))),
      Effect.delay(Duration.millis(options.heartbeatMs))
    )

    /** One link, from dialling to close: succeeds with how it ended. Interrupting it closes the socket with 1001. */
    const linkOnce = Effect.async<{ readonly opened: boolean; readonly code: number }>((resume) => {
      state = "connecting"
      let opened = false
      let beating: Fiber.RuntimeFiber<unknown> | undefined
      const url = `${options.url.replace(/^http/, "ws").replace(/\/+$/, "")}/ws/runner/${encodeURIComponent(options.runnerId)}`
      const socket = new WebSocket(url, { headers: { authorization: `Bearer ${options.token}` } })
      ws = socket
      socket.on("open", () => {
        opened = true
        state = "open"
        socket.send(JSON.stringify({ type: "hello", ...host.hello() } satisfies UpFrame))
        for (const frame of pending.values()) socket.send(JSON.stringify(frame))
        pending.clear()
        beating = runFork(heartbeat)
        log(Effect.logInfo(`linked to broker ${options.url} as runner ${options.runnerId}`))
        const waiters = openWaiters
        openWaiters = []
        for (const resolve of waiters) resolve()
      })
      socket.on("message", (data) => {
        // Decoding is synchronous: frames reach the host in arrival order.
        const decoded = Effect.runSync(Effect.either(decodeDown(String(data))))
        if (decoded._tag === "Left") return log(Effect.logWarning(`undecodable frame from the broker: ${decoded.left.message}`))
        host.onFrame(decoded.right)
      })
      socket.on("unexpected-response", (_request, response) => {
        log(Effect.logWarning(`broker refused the runner link: HTTP ${response.statusCode}`))
        // With this listener ws leaves the socket CONNECTING: close it, so `close` redials.
        response.resume()
        socket.terminate()
      })
      socket.on("error", () => undefined)
      socket.on("close", (code) => {
        host.onClose?.()
        if (beating !== undefined) runFork(Fiber.interrupt(beating))
        if (ws === socket) ws = undefined
        resume(Effect.succeed({ opened, code }))
      })
      return Effect.sync(() => socket.close(1001, "runner shutting down"))
    })

    const backoff = Schedule.exponential(Duration.millis(options.reconnect.initialMs)).pipe(
      Schedule.union(Schedule.spaced(Duration.millis(options.reconnect.maxMs))),
      Schedule.jittered
    )
    const links = Effect.gen(function* () {
      let driver = yield* Schedule.driver(backoff)
      for (;;) {
        const outcome = yield* linkOnce
        if (outcome.code === RunnerFrame.LinkCloseCode.replaced) {
          // Another runner linked with this id: linking again would evict it in turn, for ever.
          yield* Effect.logError(
            `another runner linked to ${options.url} as runner ${options.runnerId} and took over; this runner stays unlinked (its agents keep running): give each runner its own --id`
          )
          state = "closed"
          return
        }
        state = "connecting"
        if (outcome.opened) driver = yield* Schedule.driver(backoff)
        yield* Effect.ignore(driver.next(outcome))
      }
    })

    yield* Effect.addFinalizer(() => Effect.sync(() => void (state = "closed")))
    // Forked after the finalizer above, so it is interrupted (closing the socket) before that runs.
    yield* Effect.forkScoped(links)
    return {
      state: () => state,
      whenOpen: () => (state === "open" ? Promise.resolve() : new Promise<void>((resolve) => openWaiters.push(resolve))),
      send,
      report
    }
  })
