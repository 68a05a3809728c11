/**
 * The Effect part of the `a2a-mcp` bin, loaded by cli.ts (a chunk of its own, imported
 * dynamically) once the front is already serving `initialize` and `tools/list`: reads the
 * configuration, builds the broker client and the session on the front's SDK server
 * (McpServer.attach), hands the front the tools to call, and runs until the agent is gone.
 */
import { BrokerClient } from "@mks/a2a"
// Subpaths, not the package index: the index would pull every platform module into the bin.
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Layer, Logger, LogLevel, Option } from "effect"
import type { CallTool, Front } from "./Front.js"
import * as McpConfig from "./McpConfig.js"
import * as McpServer from "./McpServer.js"
import { VERSION } from "./version.js"

export interface Started {
  readonly front: Front
  /** Resolves (with the reason) when the agent is gone: stdin closed, or the parent process died. */
  readonly gone: Promise<string>
  /** The agent that started us (for the log). */
  readonly agentPid: number
  /** Gives the front what its tool calls run (they wait for it). */
  readonly ready: (call: CallTool) => void
}

const program = (started: Started) =>
  Effect.gen(function*() {
    // The front's server is connected already: close it (and stdin with it) whatever ends us.
    yield* Effect.addFinalizer(() => Effect.promise(() => started.front.server.close()).pipe(Effect.ignore))
    const config = yield* McpConfig.read
    // node:http rather than the fetch-based client of BrokerClient.layer: Node's fetch (undici)
    // costs tens of milliseconds and several MiB when it loads on the first request.
    const broker = yield* Layer.build(
      Layer.effect(BrokerClient.BrokerClient, BrokerClient.make(config.broker)).pipe(Layer.provide(NodeHttpClient.layer))
    )
    const { call } = yield* McpServer.attach(config, started.front.server, started.front.initialized).pipe(Effect.provide(broker))
    started.ready(call)
    yield* Effect.logDebug(`a2a-mcp ${VERSION} serving on stdio for broker ${config.broker.url}, agent pid ${started.agentPid}`)
    const why = yield* Effect.promise(() => started.gone)
    yield* Effect.logDebug(`shutting down: ${why}`)
  }).pipe(
    Effect.scoped,
    Effect.catchTag("ConfigError", (error) =>
      Effect.sync(() => {
        process.stderr.write(`a2a-mcp: ${String(error)}\n`)
        process.exitCode = 2
      })
    ),
    Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause))),
    Effect.provide(Layer.merge(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)), Logger.minimumLogLevel(
      Option.getOrElse(Option.fromNullable(process.env.A2A_LOG_LEVEL === "debug" ? LogLevel.Debug : undefined), () => LogLevel.Info)
    )))
  )

/** Run the Effect part until the agent is gone (or SIGINT/SIGTERM), then let the process exit. */
export const run = (started: Started): void => NodeRuntime.runMain(program(started), { disableErrorReporting: true, disablePrettyLogger: true })
