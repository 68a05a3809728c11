/**
 * BrokerServer: the whole broker as one Layer, to run from the CLI or embed in any Effect
 * program: `Layer.launch(BrokerServer.layer(BrokerConfig.make({ port: 0 })))`.
 */
import { HttpApiBuilder, HttpApiError, HttpApp, HttpIncomingMessage, HttpRouter, HttpServer, HttpServerError, HttpServerRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Authenticator, Errors } from "@mks/a2a"
import { Context, Effect, Layer, Option } from "effect"
import { createServer } from "node:http"
import { join } from "node:path"
import * as BrokerConfig from "./BrokerConfig.js"
import * as Bus from "./Bus.js"
import * as Channels from "./Channels.js"
import * as Connections from "./Connections.js"
import * as Http from "./Http.js"
import * as Metrics from "./Metrics.js"
import * as Oidc from "./Oidc.js"
import * as Relay from "./Relay.js"
import * as RelaySockets from "./RelaySockets.js"
import * as Store from "./Store.js"
import * as TokenStore from "./TokenStore.js"
import * as Ui from "./Ui.js"

export interface Options {
  /** Replace the store (default: chosen from `config.db`). */
  readonly store?: Layer.Layer<Store.Stores, Errors.ServiceUnavailable, BrokerConfig.BrokerConfig> | undefined
  /** Replace the authenticator (default: static tokens file, then OIDC when configured). */
  readonly authenticator?: Layer.Layer<Authenticator.Authenticator, never, TokenStore.TokenStore> | undefined
}

/** The address the broker listens on, once started. */
export class BrokerAddress extends Context.Tag("@mks/a2a-broker/BrokerAddress")<BrokerAddress, { readonly url: string; readonly port: number }>() {}

const fieldOf = (issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey> }>): string | undefined => {
  const path = issues[0]?.path
  return path !== undefined && path.length > 0 ? path.map(String).join(".") : undefined
}

/**
 * Inside the API: answer undecodable requests with the contract's `InvalidRequest {field}`
 * (the framework's own shapes never reach clients), and JSON that does not parse likewise.
 */
const contractErrors = HttpApiBuilder.middleware((app) =>
  (app as HttpApp.Default<unknown>).pipe(
    Effect.catchAll((e) => {
      const tag = (e as { _tag?: string })._tag
      if (tag === "HttpApiDecodeError") {
        const decode = e as HttpApiError.HttpApiDecodeError
        return Effect.succeed(Channels.errorResponse(new Errors.InvalidRequest({ message: decode.message, field: fieldOf(decode.issues) })))
      }
      if (tag === "RequestError") {
        const request = e as HttpServerError.RequestError
        const message = request.reason === "Decode" ? "the request body is not valid JSON" : `unreadable request: ${request.description ?? request.reason}`
        return Effect.succeed(Channels.errorResponse(new Errors.InvalidRequest({ message })))
      }
      return Effect.fail(e)
    }),
    // The framework reads bodies with `orDie`: unparsable JSON arrives here as a defect.
    Effect.catchAllDefect((defect) => {
      const request = defect as Partial<HttpServerError.RequestError>
      if (request._tag !== "RequestError") return Effect.die(defect)
      const tooLarge = /too large|max.*size/i.test(String(request.description ?? request.cause ?? ""))
      return Effect.succeed(
        tooLarge
          ? Channels.errorResponse(new Errors.PayloadTooLarge({ message: "request body too large", limit: 0 }))
          : Channels.errorResponse(new Errors.InvalidRequest({ message: request.reason === "Decode" ? "the request body is not valid JSON" : `unreadable request body (${request.reason})` }))
      )
    })
  ) as HttpApp.Default
)

/** Refuse oversize bodies before reading them (413), cap streamed ones, and count statuses. */
const guard = (app: HttpApp.Default): HttpApp.Default<never, BrokerConfig.BrokerConfig | Metrics.Metrics> =>
  Effect.gen(function* () {
    const config = yield* BrokerConfig.BrokerConfig
    const metrics = yield* Metrics.Metrics
    const request = yield* HttpServerRequest.HttpServerRequest
    const length = Number(request.headers["content-length"] ?? "0")
    if (Number.isFinite(length) && length > config.maxBodyBytes) {
      metrics.httpRequest(413)
      return Channels.errorResponse(new Errors.PayloadTooLarge({ message: `request body larger than ${config.maxBodyBytes} bytes`, limit: config.maxBodyBytes }))
    }
    // Read the body here (the API reuses the cached text), so that a chunked body over the limit
    // still gets its 413 (a body past a read cap makes the platform drop the connection, hence this
    // read's cap of 10x the limit), and deep nesting is refused before decoding recurses into it.
    if (length > 0 || request.headers["transfer-encoding"] !== undefined) {
      const text = yield* Effect.option(request.text.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(config.maxBodyBytes * 10))))
      const refusal = Option.isNone(text)
        ? undefined
        : Buffer.byteLength(text.value) > config.maxBodyBytes
          ? new Errors.PayloadTooLarge({ message: `request body larger than ${config.maxBodyBytes} bytes`, limit: config.maxBodyBytes })
          : Channels.nestsDeeperThan(text.value)
            ? Channels.tooDeep()
            : undefined
      if (refusal !== undefined) {
        metrics.httpRequest(Errors.statusOf(refusal))
        return Channels.errorResponse(refusal)
      }
    }
    const response = yield* app.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(config.maxBodyBytes)))
    metrics.httpRequest(response.status)
    return response
  })

const authenticatorLayer = Layer.effect(
  Authenticator.Authenticator,
  Effect.gen(function* () {
    const config = yield* BrokerConfig.BrokerConfig
    const tokens = yield* TokenStore.TokenStore
    if (config.oidc === undefined) return tokens
    const oidc = yield* Oidc.make(config.oidc)
    // Static tokens have a fixed prefix; JWTs go to the issuer.
    return { authenticate: (token: string) => (Oidc.isJwt(token) ? oidc.authenticate(token) : tokens.authenticate(token)) }
  })
)

const announce = Layer.effect(
  BrokerAddress,
  Effect.gen(function* () {
    // The admin token exists before the address is announced, so a script that saw the address can read it.
    const config = yield* BrokerConfig.BrokerConfig
    yield* TokenStore.ensureAdminToken(config.home, config.oidc !== undefined)
    const server = yield* HttpServer.HttpServer
    const address = server.address
    const port = address._tag === "TcpAddress" ? address.port : 0
    const host = address._tag === "TcpAddress" ? (address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname) : "127.0.0.1"
    const url = `http://${host}:${port}`
    yield* Effect.logInfo(`a2a-broker listening on ${url}`)
    return { url, port }
  })
)

/** The broker: HTTP API, WebSockets, background GC, on `config.host:config.port`. */
export const layer = (config: BrokerConfig.BrokerConfigShape, options: Options = {}) => {
  const ConfigLive = Layer.succeed(BrokerConfig.BrokerConfig, config)
  const StoreLive = options.store ?? Store.layerFor(config.db)
  // The token store sees the store's services: a shared store keeps spawn tokens for every instance.
  const Tokens = TokenStore.layer(join(config.home, "tokens.json")).pipe(Layer.provide(StoreLive))
  const Infra = Layer.mergeAll(StoreLive, Metrics.layer, Tokens).pipe(Layer.provideMerge(ConfigLive))
  const WithAuth = (options.authenticator ?? authenticatorLayer).pipe(Layer.provideMerge(Infra))
  const WithBus = Bus.layer.pipe(Layer.provideMerge(WithAuth))
  const WithConnections = Layer.mergeAll(Connections.layer, Relay.layer).pipe(Layer.provideMerge(WithBus))
  const ServerLive = NodeHttpServer.layer(createServer, { port: config.port, host: config.host })
  return HttpApiBuilder.serve(guard).pipe(
    Layer.provide(Channels.layer),
    Layer.provide(RelaySockets.layer),
    Layer.provide(Ui.layer),
    Layer.provide(contractErrors),
    Layer.provide(Http.ApiLive),
    // Ids may be 128 characters (the router's default cap is 100): let the schemas judge them.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 1024 })),
    Layer.provideMerge(announce),
    Layer.provideMerge(ServerLive),
    Layer.provideMerge(WithConnections)
  )
}

