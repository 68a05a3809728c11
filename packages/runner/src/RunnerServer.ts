/**
 * RunnerServer: the whole runner as one Layer, to run from the CLI or embed in any Effect
 * program: `Layer.launch(RunnerServer.layer(RunnerConfig.make({ port: 0, apiKey })))`.
 * Supervisor, local HTTP API (with SSE and the terminal WebSocket), and the broker link when
 * a broker is configured.
 */
import { ServerLimits } from "@mks/a2a"
import { Context, Data, Effect, Layer } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as BrokerLink from "./BrokerLink.js"
import * as HttpApi from "./internal/httpApi.js"
import { RunnerConfig, type RunnerConfigShape } from "./RunnerConfig.js"
import * as Supervisor from "./Supervisor.js"

/** The address the local API listens on, once started. */
export class RunnerAddress extends Context.Tag("@mks/a2a-runner/RunnerAddress")<RunnerAddress, { readonly url: string; readonly port: number }>() {}

/** The local API could not listen (port taken, address not available, no permission). */
export class ListenError extends Data.TaggedError("ListenError")<{ readonly message: string; readonly code?: string | undefined }> {}

/** The local HTTP API on `config.host:config.port`. */
export const layerHttp: Layer.Layer<RunnerAddress, ListenError, RunnerConfig | Supervisor.Supervisor> = Layer.scoped(
  RunnerAddress,
  Effect.gen(function* () {
    const config = yield* RunnerConfig
    const supervisor = yield* Supervisor.Supervisor
    const runtime = yield* Effect.runtime<never>()
    const api = HttpApi.make({ apiKey: config.apiKey, version: config.version, maxBodyBytes: config.maxBodyBytes, runnerId: config.id, supervisor, runtime })
    const limits = config.limits ?? ServerLimits.defaults
    const server = createServer(ServerLimits.serverOptions(limits), api.onRequest)
    server.on("upgrade", api.onUpgrade)
    ServerLimits.apply(server, limits, { upgrades: true })
    const port = yield* Effect.async<number, ListenError>((resume) => {
      const onError = (error: NodeJS.ErrnoException) =>
        resume(Effect.fail(new ListenError({ message: `cannot listen on ${config.host}:${config.port}: ${error.code ?? error.message}${error.code === "EADDRINUSE" ? " (the port is taken; choose another with --port)" : ""}`, code: error.code })))
      server.once("error", onError)
      server.listen({ port: config.port, host: config.host, backlog: ServerLimits.backlog(limits) }, () => {
        server.off("error", onError)
        resume(Effect.succeed((server.address() as AddressInfo).port))
      })
    })
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        api.close()
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const host = config.host.includes(":") ? `[${config.host}]` : config.host
    const url = `http://${host}:${port}`
    yield* Effect.logInfo(`a2a-runner listening on ${url}`)
    return { url, port }
  })
)

/** The runner: supervisor, local API and broker link. */
export const layer = (config: RunnerConfigShape) =>
  Layer.mergeAll(layerHttp, BrokerLink.layer).pipe(
    Layer.provideMerge(Supervisor.layer),
    Layer.provideMerge(Layer.succeed(RunnerConfig, config))
  )
