/**
 * BrokerServer: the whole broker as one Layer, to run from the CLI or embed in any Effect
 * program: `Layer.launch(BrokerServer.layer(BrokerConfig.make({ port: 0 })))`; or as an
 * `HttpApp` (`layerApp`) that a host mounts beside its own routes on its own server.
 */
import { HttpApiBuilder, HttpApiError, HttpApp, HttpIncomingMessage, HttpRouter, HttpServer, HttpServerError, HttpServerRequest } from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Authenticator, Errors, ServerLimits, SpawnTokens } from "@mks/a2a"
import { Context, Effect, Layer, Option } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { join } from "node:path"
import * as A2aBridge from "./A2aBridge.js"
import * as A2aGateway from "./A2aGateway.js"
import * as BrokerConfig from "./BrokerConfig.js"
import * as Bus from "./Bus.js"
import * as ChannelNode from "./ChannelNode.js"
import * as Channels from "./Channels.js"
import * as Connections from "./Connections.js"
import * as Http from "./Http.js"
import * as Metrics from "./Metrics.js"
import * as Oidc from "./Oidc.js"
import * as Relay from "./Relay.js"
import * as RelayForward from "./RelayForward.js"
import * as RelaySockets from "./RelaySockets.js"
import * as SendRoute from "./SendRoute.js"
import * as AuditRoute from "./AuditRoute.js"
import * as Store from "./Store.js"
import * as TokenStore from "./TokenStore.js"
import * as Ui from "./Ui.js"

export interface Options {
  /**
   * Replace the store (default: chosen from `config.db`), e.g. core's in-memory services
   * (`Store.layerMemory`) or your own. A store may fail with `ServiceUnavailable`.
   */
  readonly store?: Layer.Layer<Exclude<Store.Stores, Store.StoreGauges>, Errors.ServiceUnavailable, BrokerConfig.BrokerConfig> | undefined
  /**
   * Replace the authenticator (default: the static token store, then OIDC when configured).
   * Spawned agents' tokens are core's `SpawnTokens`, consulted after this authenticator: it
   * need not know about them.
   */
  readonly authenticator?: Layer.Layer<Authenticator.Authenticator, never, TokenStore.TokenStore> | undefined
  /** Replace the static token store (default: `<home>/tokens.json`; `TokenStore.layerMemory` writes nothing). */
  readonly tokenStore?: Layer.Layer<TokenStore.TokenStore, Errors.ServiceUnavailable> | undefined
  /**
   * On a first start with no token (and no OIDC), create an admin token and write it to
   * `<home>/broker.token`. Default: true for `layer` (the bins), false for `layerApp`.
   */
  readonly adminTokenFile?: boolean | undefined
  /**
   * Answer `POST /api/messages` on its fast path (`SendRoute.ts`), ahead of the HttpApi app, with
   * the same contract. Default: true. `false` sends it through the HttpApi like every other
   * route (the tests compare the two).
   */
  readonly fastSend?: boolean | undefined
}

/** The broker as an `HttpApp`, for a host to mount beside its own routes (see `layerApp`). */
export interface BrokerAppService {
  /**
   * Every route of the broker (HTTP API, WebSockets, A2A, UI); a path it does not know gets its
   * 404 (it never fails: every failure is its response). Mount it as the host router's
   * fallback, after the host's own routes: `HttpRouter.all("*", app)`.
   */
  readonly app: HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices>
}

export class BrokerApp extends Context.Tag("@mks/a2a-broker/BrokerApp")<BrokerApp, BrokerAppService>() {}

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
      // A JSON syntax error quotes the body: "max size" is not valid JSON, not a body too large.
      const tooLarge = !(request.cause instanceof SyntaxError) && /too large|max.*size/i.test(String(request.description ?? request.cause ?? ""))
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
    // Every endpoint takes JSON: any other body is refused before it is read (a multipart or
    // XML body would otherwise wait for a parser that never finishes).
    const hasBody = (Number.isFinite(length) && length > 0) || request.headers["transfer-encoding"] !== undefined
    if (hasBody && !ServerLimits.isJson(request.headers["content-type"])) {
      metrics.httpRequest(415)
      return Channels.errorResponse(new Errors.UnsupportedMediaType({ message: `the request body must be application/json, not ${request.headers["content-type"] ?? "untyped"}` }))
    }
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

/** The authenticator the broker uses: `inner` (the given or default one), then spawn tokens. */
const withSpawnTokens = <E, R>(inner: Layer.Layer<Authenticator.Authenticator, E, R>) =>
  Layer.effect(
    Authenticator.Authenticator,
    Effect.gen(function* () {
      const authenticator = yield* Authenticator.Authenticator
      const spawnTokens = yield* SpawnTokens.SpawnTokens
      return SpawnTokens.authenticateWith(authenticator, spawnTokens)
    })
  ).pipe(Layer.provide(inner))

const announce = Layer.effect(
  BrokerAddress,
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const address = server.address
    const port = address._tag === "TcpAddress" ? address.port : 0
    const host = address._tag === "TcpAddress" ? (address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname) : "127.0.0.1"
    const url = `http://${host}:${port}`
    yield* Effect.logInfo(`a2a-broker listening on ${url}`)
    return { url, port }
  })
)

/** The services a broker layer provides besides HTTP (for a host or a test to use). */
export type Services =
  | BrokerConfig.BrokerConfig
  | Store.Stores
  | Metrics.Metrics
  | TokenStore.TokenStore
  | SpawnTokens.SpawnTokens
  | Authenticator.Authenticator
  | Bus.Bus
  | Connections.Connections
  | Relay.Relay
  | A2aGateway.A2aGateway
  | A2aBridge.A2aBridge

/** The broker's services (stores, tokens, authenticator, bus, connections), without HTTP. */
const services = (config: BrokerConfig.BrokerConfigShape, options: Options) => {
  const ConfigLive = Layer.succeed(BrokerConfig.BrokerConfig, config)
  const Stores = options.store ?? Store.layerFor(config.db)
  // A store of core's services alone (no `StoreGauges`) shows NaN for the store-level gauges.
  const Gauges = Layer.effect(
    Store.StoreGauges,
    Effect.map(Effect.serviceOption(Store.StoreGauges), Option.getOrElse(() => ({ peersOnline: Effect.succeed(Number.NaN), inboxDepth: Effect.succeed(Number.NaN) })))
  )
  const StoreLive = Layer.merge(Stores, Gauges.pipe(Layer.provide(Stores)))
  // The token stores see the store's services: a shared store keeps spawn tokens for every instance.
  const Tokens = Layer.mergeAll(options.tokenStore ?? TokenStore.layer(join(config.home, "tokens.json")), TokenStore.spawnTokensLayer).pipe(Layer.provide(StoreLive))
  const Infra = Layer.mergeAll(StoreLive, Metrics.layer, Tokens).pipe(Layer.provideMerge(ConfigLive))
  const WithAuth = withSpawnTokens(options.authenticator ?? authenticatorLayer).pipe(Layer.provideMerge(Infra))
  const WithBus = Bus.layer.pipe(Layer.provideMerge(WithAuth))
  return Layer.mergeAll(Connections.layer, Relay.layer, A2aGateway.layerService(), A2aBridge.layerService).pipe(Layer.provideMerge(WithBus))
}

/** The admin token of a first start, written to `<home>/broker.token` (before the broker is reachable). */
const adminToken = (config: BrokerConfig.BrokerConfigShape) =>
  Layer.effectDiscard(Effect.asVoid(TokenStore.ensureAdminToken(config.home, config.oidc !== undefined)))

/** The broker's routes as an `HttpApp` (`BrokerApp`), over its services and the host's `HttpServer`. */
const appLayer = (options: Options) => Layer.effect(
  BrokerApp,
  Effect.gen(function* () {
    const api = (yield* HttpApiBuilder.httpApp) as HttpApp.Default
    const send = options.fastSend === false ? undefined : yield* SendRoute.make
    const app: HttpApp.Default =
      send === undefined ? api : Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => (SendRoute.matches(request) ? send(request, api) : api))
    // Only these two: the build's whole context would carry its Scope into every request (its
    // sockets' fibers would then outlive the request and hold the server open on shutdown).
    const context = Context.make(BrokerConfig.BrokerConfig, yield* BrokerConfig.BrokerConfig).pipe(Context.add(Metrics.Metrics, yield* Metrics.Metrics))
    // Failures become their responses (404 for a path the broker does not have, 503, 500) inside
    // the guard, so it counts every status, as it did as the server's middleware.
    const handled = app.pipe(Effect.catchAllCause((cause) => Effect.map(HttpServerError.causeResponse(cause), ([response]) => response)))
    return { app: Effect.provide(guard(handled), context) as HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices> }
  })
).pipe(
  Layer.provide(Channels.layer),
  Layer.provide(RelaySockets.layer),
  // The URL the other instances of a PostgreSQL cluster reach this one at (relay forwarding).
  Layer.provide(RelayForward.advertiseLayer),
  Layer.provide(AuditRoute.layer),
  Layer.provide(Ui.layer),
  Layer.provide(A2aGateway.routes),
  Layer.provide(A2aBridge.routes),
  Layer.provide(contractErrors),
  Layer.provide(Http.ApiLive),
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
  // Ids may be 128 characters (the router's default cap is 100): let the schemas judge them.
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 1024 }))
)

/** The services, and the first-start admin-token file when asked. */
const servicesWithAdmin = (config: BrokerConfig.BrokerConfigShape, options: Options) => {
  const Services = services(config, options)
  return options.adminTokenFile === true ? Layer.merge(Services, adminToken(config).pipe(Layer.provide(Services))) : Services
}

/**
 * The broker as an `HttpApp` (`BrokerApp`) over a server the host provides: every route and
 * WebSocket of `layer`, the background work (GC, presence), and its services (`TokenStore`,
 * the stores, ...) for the host to use. It needs the host's `HttpServer` (its address is the
 * broker URL of spawn orders unless `config.publicUrl` is set); `config.host`/`config.port`
 * are not used. WebSockets need a Node server (`NodeHttpServer.layer`), as `layer` uses.
 * Nothing is written to `config.home` unless `options.adminTokenFile` (or the default
 * file token store) asks for it: pass `tokenStore: TokenStore.layerMemory` to write nothing.
 */
export const layerApp = (config: BrokerConfig.BrokerConfigShape, options: Options = {}): Layer.Layer<BrokerApp | Services, Errors.ServiceUnavailable, HttpServer.HttpServer> =>
  appLayer(options).pipe(Layer.provideMerge(servicesWithAdmin(config, options)))

/**
 * The broker: HTTP API, WebSockets, background GC, on `config.host:config.port`: its `BrokerApp`
 * served on a Node server with the broker's `ServerLimits`. The server closes before the
 * services do (the sockets go first, then the GC and the stores).
 */
export const layer = (
  config: BrokerConfig.BrokerConfigShape,
  options: Options = {}
): Layer.Layer<BrokerAddress | BrokerApp | Services | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices, Errors.ServiceUnavailable | HttpServerError.ServeError> => {
  let nodeServer: Server | undefined
  // `POST /api/messages` on its Node-level fast path (SendRoute.makeNode), set once the app is built.
  let fastSend: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined
  // Peer channel upgrades on their Node-level path (ChannelNode.make), set once the services are built.
  let peerUpgrade: ChannelNode.PeerUpgrade | undefined
  let accepts = () => 0
  const ServerLive = NodeHttpServer.layer(() => {
    const server = createServer(ServerLimits.serverOptions(config.limits))
    const limits = ServerLimits.apply(server, config.limits, { upgrades: true })
    accepts = limits.accepted
    // The platform listens for "request" and "upgrade"; what a Node-level path takes never reaches it.
    const emit = server.emit
    server.emit = function (this: Server, event: string | symbol, ...args: Array<any>): boolean {
      if (event === "request" && fastSend !== undefined && fastSend(args[0], args[1])) return true
      if (event === "upgrade" && peerUpgrade !== undefined && peerUpgrade(args[0], args[1], args[2])) {
        limits.upgrading(args[0])
        return true
      }
      return emit.apply(this, [event, ...args] as Parameters<Server["emit"]>)
    } as Server["emit"]
    nodeServer = server
    return server
  }, { port: config.port, host: config.host, backlog: ServerLimits.backlog(config.limits) })
  // Runs once the broker stopped serving (its sockets were sent 1001), before the server's own
  // close, which waits for every connection: a client that reconnected in between finds no
  // handler, and its connection would hold the server (and the process) open for ever.
  const DropLate = Layer.scopedDiscard(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        nodeServer?.close()
        nodeServer?.closeAllConnections()
      })
    )
  )
  const Serve = Layer.unwrapEffect(Effect.map(BrokerApp, ({ app }) => HttpServer.serve(app)))
  const FastSend =
    options.fastSend === false
      ? Layer.empty
      : Layer.scopedDiscard(
          Effect.gen(function* () {
            const { app } = yield* BrokerApp
            fastSend = yield* SendRoute.makeNode(app)
            yield* Effect.addFinalizer(() => Effect.sync(() => (fastSend = undefined)))
          })
        )
  const PeerChannels = Layer.scopedDiscard(
    Effect.gen(function* () {
      // Kept after shutdown: a stopped path refuses peer upgrades (503) instead of handing them to the router.
      peerUpgrade = yield* ChannelNode.make(() => accepts())
    })
  )
  return Layer.mergeAll(Serve, FastSend, PeerChannels).pipe(
    Layer.provideMerge(announce),
    Layer.provideMerge(appLayer(options)),
    Layer.provideMerge(DropLate),
    Layer.provideMerge(ServerLive),
    // The admin token exists before the server listens, so a script that saw the address can read it.
    Layer.provideMerge(servicesWithAdmin(config, { ...options, adminTokenFile: options.adminTokenFile ?? true }))
  )
}
