/**
 * RunnerServer: the whole runner as one Layer, to run from the CLI or embed in any Effect
 * program: `Layer.launch(RunnerServer.layer(RunnerConfig.make({ port: 0, apiKey })))`; or as an
 * `HttpApp` (`layerApp`) that a host mounts beside its own routes on its own server.
 * Supervisor, local HTTP API (core's `RunnerApi`, with SSE and the terminal WebSocket), and the
 * broker link when a broker is configured.
 */
import { Etag } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpPlatform from "@effect/platform-node/NodeHttpPlatform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodePath from "@effect/platform-node/NodePath"
import { ServerLimits } from "@mks/a2a"
import { Context, Data, Effect, Layer } from "effect"
import { createServer, type Server } from "node:http"
import * as BrokerLink from "./BrokerLink.js"
import * as HttpApi from "./internal/httpApi.js"
import { RunnerConfig, type RunnerConfigShape } from "./RunnerConfig.js"
import * as Supervisor from "./Supervisor.js"

/** The address the local API listens on, once started. */
export class RunnerAddress extends Context.Tag("@mks/a2a-runner/RunnerAddress")<RunnerAddress, { readonly url: string; readonly port: number }>() {}

/** The local API could not listen (port taken, address not available, no permission). */
export class ListenError extends Data.TaggedError("ListenError")<{ readonly message: string; readonly code?: string | undefined }> {}

/** The runner's local API as an `HttpApp`, for a host to mount (see `layerApp`). */
export type RunnerAppService = HttpApi.RunnerAppService

export class RunnerApp extends Context.Tag("@mks/a2a-runner/RunnerApp")<RunnerApp, RunnerAppService>() {}

/**
 * The local API as an `HttpApp` (`RunnerApp`) over the `Supervisor` and `RunnerConfig` (its
 * `apiKey`, `id`, `version`, `maxBodyBytes`; not `host`/`port`). Open streams and terminals end
 * when the layer closes.
 */
export const layerRoutes: Layer.Layer<RunnerApp, never, RunnerConfig | Supervisor.Supervisor> = HttpApi.layerApp(RunnerApp)

/**
 * The runner as an `HttpApp` over a server the host provides: the local API (`RunnerApp`: mount
 * it under a prefix with `HttpRouter.mountApp("/runner", app)`, or beside the host's routes),
 * the `Supervisor` and, when `config.broker` is set, the broker link. It needs nothing from the
 * host; `config.host`/`config.port` are not used. The terminal WebSocket needs a Node server
 * (`NodeHttpServer.layer`). Closing the layer stops every agent.
 */
export const layerApp = (config: RunnerConfigShape): Layer.Layer<RunnerApp | BrokerLink.BrokerLink | Supervisor.Supervisor | RunnerConfig> =>
  Layer.mergeAll(layerRoutes, BrokerLink.layer).pipe(Layer.provideMerge(Supervisor.layer), Layer.provideMerge(Layer.succeed(RunnerConfig, config)))

/**
 * What serving an `HttpApp` needs (`HttpRouter.DefaultServices`): the platform's `NodeHttpServer.layerContext`
 * without the rest of `NodeContext` (command executor, terminal, workers), which the runner's start would pay for.
 */
const ServeContext = Layer.mergeAll(NodeHttpPlatform.layer, Etag.layerWeak).pipe(Layer.provideMerge(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)))

/**
 * The local HTTP API on `config.host:config.port`: `layerRoutes` served on a Node server with
 * the runner's `ServerLimits`.
 */
export const layerHttp: Layer.Layer<RunnerAddress | RunnerApp, ListenError, RunnerConfig | Supervisor.Supervisor> = Layer.scoped(
  RunnerAddress,
  Effect.gen(function* () {
    const config = yield* RunnerConfig
    const { app } = yield* RunnerApp
    const limits = config.limits ?? ServerLimits.defaults
    let server: Server | undefined
    const http = yield* NodeHttpServer.make(
      () => {
        server = createServer(ServerLimits.serverOptions(limits))
        ServerLimits.apply(server, limits, { upgrades: true })
        return server
      },
      { port: config.port, host: config.host, backlog: ServerLimits.backlog(limits) }
    ).pipe(
      Effect.mapError((error) => {
        const cause = error.cause as NodeJS.ErrnoException | undefined
        const code = cause?.code
        return new ListenError({
          message: `cannot listen on ${config.host}:${config.port}: ${code ?? cause?.message ?? String(cause)}${code === "EADDRINUSE" ? " (the port is taken; choose another with --port)" : ""}`,
          code
        })
      })
    )
    // Runs before the platform's own close, which waits for every connection: open SSE streams
    // and keep-alive connections are cut instead of holding the runner open.
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        if (server === undefined || !server.listening) return resume(Effect.void)
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    yield* http.serve(app)
    const port = http.address._tag === "TcpAddress" ? http.address.port : 0
    const host = config.host.includes(":") ? `[${config.host}]` : config.host
    const url = `http://${host}:${port}`
    yield* Effect.logInfo(`a2a-runner listening on ${url}`)
    return { url, port }
  })
).pipe(Layer.provideMerge(layerRoutes), Layer.provide(ServeContext))

/** The runner: supervisor, local API and broker link. */
export const layer = (config: RunnerConfigShape) =>
  Layer.mergeAll(layerHttp, BrokerLink.layer).pipe(
    Layer.provideMerge(Supervisor.layer),
    Layer.provideMerge(Layer.succeed(RunnerConfig, config))
  )
