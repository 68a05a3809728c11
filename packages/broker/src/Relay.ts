/**
 * Relay: agent logs and terminals carried from runners to browsers and the CLI through the
 * broker. Every runner link that announced `features: ["relay"]` in its `hello` is registered
 * here for its lifetime; a client socket (`RelaySockets.ts`) opens a stream on the link of the
 * spawn's runner, and the runner's answers (`log`, `term_output`, `stream_end`, `stream_error`)
 * are routed back to it by stream id. A link that goes away ends its streams with an error.
 *
 * Links are those of this broker process: with several broker instances (PostgreSQL), a client
 * socket on an instance without the runner's link is piped to the instance holding it
 * (`RelayForward.ts`); this service only ever opens streams on local links.
 */
import { Errors, Ids, RunnerFrame } from "@mks/a2a"
import { Context, Effect, Layer, Runtime, Scope } from "effect"
import { keyOf } from "./TenantKey.js"

/** The runner frames that answer relay streams (the link hands them to `fromRunner`). */
export type RunnerRelayFrame = Extract<RunnerFrame.RunnerUpFrame, { readonly type: "log" | "term_output" | "stream_end" | "stream_error" }>

/** What a client socket wants from the runner. */
export type OpenRequest =
  | { readonly kind: "logs"; readonly spawnId: Ids.SpawnId; readonly n: number }
  | { readonly kind: "terminal"; readonly spawnId: Ids.SpawnId; readonly cols: number; readonly rows: number }

/** Where a stream's frames go (called synchronously, in the order the runner sent them). */
export interface StreamSink {
  readonly lines: (lines: ReadonlyArray<string>) => void
  readonly output: (data: string) => void
  /** The stream is over (called at most once, then nothing more arrives). */
  readonly end: (reason: string, status: string | undefined, exitCode: number | undefined) => void
  /** The stream failed (called at most once, then nothing more arrives). */
  readonly error: (error: Errors.WireError) => void
}

/** An open stream, as its client socket drives it. */
export interface RelayStream {
  readonly id: RunnerFrame.StreamId
  readonly input: (data: string) => void
  readonly resize: (cols: number, rows: number) => void
  /** Tell the runner to stop the stream (idempotent; nothing after an end). */
  readonly close: () => void
}

export interface RelayService {
  /**
   * Register a runner link for the scope. `send` writes a frame on it; `relays` is whether the
   * runner announced the relay feature. Closing the scope fails the link's open streams.
   */
  readonly attach: (
    tenant: string,
    runner: Ids.RunnerId,
    relays: boolean,
    send: (frame: RunnerFrame.RunnerDownFrame) => Effect.Effect<void, unknown>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** A relay frame from a runner link: routed to its stream (frames of closed streams are dropped). */
  readonly fromRunner: (tenant: string, runner: Ids.RunnerId, frame: RunnerRelayFrame) => Effect.Effect<void>
  /** Open a stream on the runner's link; `ServiceUnavailable` when it is not linked here or does not relay. */
  readonly open: (tenant: string, runner: Ids.RunnerId, request: OpenRequest, sink: StreamSink) => Effect.Effect<RelayStream, Errors.ServiceUnavailable>
  /** Open streams (all links). */
  readonly streams: Effect.Effect<number>
}

export class Relay extends Context.Tag("@mks/a2a-broker/Relay")<Relay, RelayService>() {}

/** Whether a runner frame belongs to the relay (for the link's dispatch). */
export const isRelayFrame = (frame: RunnerFrame.RunnerUpFrame): frame is RunnerRelayFrame =>
  frame.type === "log" || frame.type === "term_output" || frame.type === "stream_end" || frame.type === "stream_error"

/** The feature a runner announces in `hello` when it answers relay frames. */
export const FEATURE = "relay"

interface Link {
  readonly relays: boolean
  readonly send: (frame: RunnerFrame.RunnerDownFrame) => void
  readonly streams: Map<number, StreamSink>
}

export const make = Effect.gen(function* () {
  const links = new Map<string, Link>()
  let nextStream = 1

  const attach: RelayService["attach"] = (tenant, runner, relays, send) =>
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const link: Link = {
        relays,
        // Writes on the link are synchronous once it is open: forked writes keep their order.
        send: (frame) => void Runtime.runFork(runtime)(Effect.ignore(send(frame))),
        streams: new Map()
      }
      const key = keyOf(tenant, runner)
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          // A reconnect replaces the old link; its streams are failed when its scope closes.
          links.set(key, link)
        }),
        () =>
          Effect.sync(() => {
            if (links.get(key) === link) links.delete(key)
            const open = Array.from(link.streams.values())
            link.streams.clear()
            const error = new Errors.ServiceUnavailable({ message: `runner ${runner} disconnected from the broker` })
            for (const sink of open) sink.error(error)
          })
      )
    })

  const fromRunner: RelayService["fromRunner"] = (tenant, runner, frame) =>
    Effect.sync(() => {
      const link = links.get(keyOf(tenant, runner))
      const sink = link?.streams.get(frame.stream)
      if (link === undefined || sink === undefined) return
      switch (frame.type) {
        case "log":
          return sink.lines(frame.lines)
        case "term_output":
          return sink.output(frame.data)
        case "stream_end":
          link.streams.delete(frame.stream)
          return sink.end(frame.reason, frame.status, frame.exitCode)
        case "stream_error":
          link.streams.delete(frame.stream)
          return sink.error(frame.error)
      }
    })

  const open: RelayService["open"] = (tenant, runner, request, sink) =>
    Effect.suspend(() => {
      const link = links.get(keyOf(tenant, runner))
      if (link === undefined) {
        return Effect.fail(new Errors.ServiceUnavailable({ message: `runner ${runner} is not linked to this broker (offline, or linked to another broker instance)` }))
      }
      if (!link.relays) {
        return Effect.fail(new Errors.ServiceUnavailable({ message: `runner ${runner} does not relay logs and terminals (update a2a-runner)` }))
      }
      const stream = nextStream++
      link.streams.set(stream, sink)
      link.send(
        request.kind === "logs"
          ? { type: "logs_open", stream, spawnId: request.spawnId, n: request.n }
          : { type: "term_open", stream, spawnId: request.spawnId, cols: request.cols, rows: request.rows }
      )
      const live = () => link.streams.get(stream) === sink
      return Effect.succeed<RelayStream>({
        id: stream,
        input: (data) => {
          if (live()) link.send({ type: "term_input", stream, data })
        },
        resize: (cols, rows) => {
          if (live()) link.send({ type: "term_resize", stream, cols, rows })
        },
        close: () => {
          if (!live()) return
          link.streams.delete(stream)
          link.send({ type: "stream_close", stream })
        }
      })
    })

  return {
    attach,
    fromRunner,
    open,
    streams: Effect.sync(() => {
      let n = 0
      for (const link of links.values()) n += link.streams.size
      return n
    })
  } satisfies RelayService
})

export const layer: Layer.Layer<Relay> = Layer.effect(Relay, make)
