/**
 * The local HTTP API as an `HttpApp`: core's `RunnerApi` served with `HttpApiBuilder` over the
 * Supervisor, the streams (SSE, the terminal WebSocket) as routes beside it, and a gate in
 * front of all of it: Bearer auth with a constant-time compare (before routing, so an unknown
 * path without the key is 401 as before), the JSON body limits of `POST /agents`, and the
 * runner's error bodies for whatever the framework would answer in its own shape.
 */
import {
  Headers,
  HttpApiBuilder,
  type HttpApiError,
  type HttpApp,
  HttpIncomingMessage,
  HttpRouter,
  type HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Errors, RunnerApi, ServerLimits } from "@mks/a2a"
import { Cause, Context, Deferred, Effect, Layer, Option, Queue, Schedule, Stream } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { RouteNotFound, type StatusChange } from "../Agent.js"
import { RunnerConfig } from "../RunnerConfig.js"
import { Supervisor, type Terminal } from "../Supervisor.js"

export type ApiError = RunnerApi.ApiError

/**
 * The error body: the broker's `{_tag, message, …}` shape, plus `error: {type, message}` for
 * clients that read that envelope.
 */
export const errorBody = RunnerApi.errorBody

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Constant-time key check: both sides hashed to equal length first. */
export const keyMatches = (expected: string, given: string | undefined): boolean =>
  given !== undefined && given.length > 0 && timingSafeEqual(digest(expected), digest(given))

const bearerOf = (request: HttpServerRequest.HttpServerRequest, url: URL): string | undefined => {
  const header = request.headers["authorization"]
  if (header !== undefined && /^bearer /i.test(header)) return header.slice(7).trim()
  return url.searchParams.get("token") ?? undefined
}

const unauthorized = () => new Errors.Unauthorized({ message: "missing or invalid API key" })

/** A runner error as its response. */
export const errorResponse = (error: ApiError) => HttpServerResponse.unsafeJson(errorBody(error), { status: RunnerApi.statusOf(error) })

const urlOf = (request: HttpServerRequest.HttpServerRequest) => new URL(request.url, "http://runner")
const pathOf = (url: URL) => url.pathname.replace(/\/+$/, "") || "/"

/** The paths of the API and its streams, to tell "wrong method" from "no such route". */
const knownPaths = [/^\/agents$/, /^\/agents\/[^/]+$/, /^\/agents\/[^/]+\/(start|stop|restart|logs)$/, /^\/sse\/status$/, /^\/sse\/agents\/[^/]+\/logs$/]

const isWebSocketUpgrade = (request: HttpServerRequest.HttpServerRequest) => /websocket/i.test(request.headers["upgrade"] ?? "")

const routeNotFound = (request: HttpServerRequest.HttpServerRequest) => {
  const path = pathOf(urlOf(request))
  if (isWebSocketUpgrade(request)) return new RouteNotFound({ message: `no WebSocket route ${urlOf(request).pathname}` })
  return new RouteNotFound({ message: knownPaths.some((p) => p.test(path)) ? `${request.method} is not allowed on ${path}` : `no route ${request.method} ${path}` })
}

/** A decode failure as the contract's `InvalidRequest {field}` (as `Codec.toInvalidRequest` words it). */
const invalidRequestOf = (issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>) => {
  const first = issues[0]
  if (first === undefined) return new Errors.InvalidRequest({ message: "invalid input" })
  const field = first.path.length > 0 ? first.path.map(String).join(".") : undefined
  return new Errors.InvalidRequest({ message: field === undefined ? first.message : `${field}: ${first.message}`, field })
}

/**
 * Inside the API: requests that do not decode get the runner's `InvalidRequest {field}` (the
 * framework's own `HttpApiDecodeError` shape never reaches clients), a body that is not JSON
 * likewise.
 */
const contractErrors = HttpApiBuilder.middleware((app) =>
  (app as HttpApp.Default<unknown>).pipe(
    Effect.catchAll((e) => {
      const tag = (e as { _tag?: string })._tag
      if (tag === "HttpApiDecodeError") return Effect.succeed(errorResponse(invalidRequestOf((e as HttpApiError.HttpApiDecodeError).issues)))
      if (tag === "RequestError") return Effect.succeed(errorResponse(new Errors.InvalidRequest({ message: "the request body is not valid JSON" })))
      // The router's own "no route" (its message would echo the query, the key too).
      if (tag === "RouteNotFound" && !(e instanceof RouteNotFound)) return Effect.map(HttpServerRequest.HttpServerRequest, (request) => errorResponse(routeNotFound(request)))
      return Effect.fail(e)
    }),
    // The framework reads bodies with `orDie`: a body that does not parse arrives as a defect.
    Effect.catchAllDefect((defect) =>
      (defect as Partial<HttpServerError.RequestError>)._tag === "RequestError"
        ? Effect.succeed(errorResponse(new Errors.InvalidRequest({ message: "the request body is not valid JSON" })))
        : Effect.die(defect)
    )
  ) as HttpApp.Default
)

/** The API key check of the API's endpoints (the gate checked it already; this keeps the API safe on its own). */
const AuthorizationLive = Layer.effect(
  RunnerApi.Authorization,
  Effect.map(RunnerConfig, (config) => ({
    bearer: () =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        keyMatches(config.apiKey, bearerOf(request, urlOf(request))) ? Effect.void : Effect.fail(unauthorized())
      )
  }))
)

const Api = RunnerApi.RunnerApi

const HealthLive = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.map(RunnerConfig, (config) => {
    // Built on first request: generating the document costs start-up time for nothing.
    let doc: unknown
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const, version: config.version, runner: config.id }))
      .handle("openapi", () => Effect.sync(() => (doc ??= RunnerApi.openApi())))
  })
)

const AgentsLive = HttpApiBuilder.group(Api, "agents", (handlers) =>
  Effect.map(Supervisor, (sup) =>
    handlers
      .handle("list", () => Effect.map(sup.list, (agents) => ({ agents })))
      .handle("create", ({ payload }) => Effect.map(sup.create(payload), (agent) => ({ agent })))
      .handle("get", ({ path }) => sup.detail(path.id))
      .handle("remove", ({ path }) => Effect.map(sup.remove(path.id), (agent) => ({ agent })))
      .handle("start", ({ path }) => Effect.map(sup.start(path.id), (agent) => ({ agent })))
      .handle("stop", ({ path }) => Effect.map(sup.stop(path.id), (agent) => ({ agent })))
      .handle("restart", ({ path }) => Effect.map(sup.restart(path.id), (agent) => ({ agent })))
      .handle("logs", ({ path, urlParams }) => Effect.map(sup.logs(path.id, urlParams.n ?? 200), (lines) => ({ agent_id: path.id, lines })))
  )
)

/** Completed when the API's layer closes: open streams and terminals end then. */
class Shutdown extends Context.Tag("@mks/a2a-runner/internal/Shutdown")<Shutdown, Deferred.Deferred<void>>() {}

const ShutdownLive = Layer.scoped(
  Shutdown,
  Effect.acquireRelease(Deferred.make<void>(), (done) => Deferred.succeed(done, undefined))
)

const sseHeaders = Headers.fromInput({ "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" })

/** An SSE response: `: ok` at once, the events, a `: ping` comment every 15 s (keeps idle streams open through proxies). */
const sse = (events: Stream.Stream<string>, shutdown: Deferred.Deferred<void>) =>
  HttpServerResponse.stream(
    Stream.make(": ok\n\n").pipe(
      Stream.concat(Stream.merge(events, Stream.fromSchedule(Schedule.spaced("15 seconds")).pipe(Stream.as(": ping\n\n")), { haltStrategy: "left" })),
      Stream.interruptWhen(Deferred.await(shutdown)),
      Stream.encodeText
    ),
    { contentType: "text/event-stream", headers: sseHeaders }
  )

/** The ws socket's frame limit, set once it is open (the platform's WebSocket server has no option). */
const capPayload = (request: HttpServerRequest.HttpServerRequest, bytes: number) => {
  try {
    const marked = NodeHttpServerRequest.toIncomingMessage(request).socket as unknown as Record<symbol, { _receiver?: { _maxPayload?: number } } | undefined>
    const symbol = Object.getOwnPropertySymbols(marked).find((s) => s.description === "websocket")
    const receiver = symbol === undefined ? undefined : marked[symbol]?._receiver
    if (receiver !== undefined && typeof receiver._maxPayload === "number") receiver._maxPayload = bytes
  } catch {
    // not a Node request: the platform's default limit stays
  }
}

const badFrame = () => ({
  type: "error",
  error: errorBody(new Errors.InvalidRequest({ message: "expected {type:'input',data} or {type:'resize',cols,rows}", field: "type" }))
})

/**
 * Terminal frames. Out: `{"type":"output","data"}` (the recent backlog first),
 * `{"type":"exit","status"}`. In: `{"type":"input","data"}`, `{"type":"resize","cols","rows"}`;
 * a frame that is not such JSON is taken as keystrokes.
 */
const attach = (request: HttpServerRequest.HttpServerRequest, terminal: Terminal, maxFrameBytes: number, shutdown: Deferred.Deferred<void>) =>
  Effect.gen(function* () {
    const socket = yield* request.upgrade
    const write = yield* socket.writer
    const out = yield* Queue.unbounded<string>()
    const send = (frame: unknown) => Queue.unsafeOffer(out, JSON.stringify(frame))
    if (terminal.backlog.length > 0) send({ type: "output", data: terminal.backlog })
    const offData = terminal.onData((data) => send({ type: "output", data }))
    const offExit = terminal.onExit((status) => send({ type: "exit", status }))
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        offData()
        offExit()
      })
    )
    // Writes wait for the socket to open, which reading drives: start the writer first.
    yield* Queue.take(out).pipe(Effect.flatMap(write), Effect.forever, Effect.ignore, Effect.forkScoped)
    const onFrame = (raw: string | Uint8Array) =>
      Effect.sync(() => {
        if (typeof raw === "string" && raw.startsWith("{")) {
          let frame: { type?: unknown; data?: unknown; cols?: unknown; rows?: unknown } | undefined
          try {
            frame = JSON.parse(raw)
          } catch {
            frame = undefined // not JSON: keystrokes
          }
          if (frame !== undefined) {
            if (frame?.type === "input" && typeof frame.data === "string") return terminal.write(frame.data)
            const { cols, rows } = frame ?? {}
            if (frame?.type === "resize" && Number.isInteger(cols) && Number.isInteger(rows) && (cols as number) > 0 && (rows as number) > 0 && (cols as number) <= 1000 && (rows as number) <= 1000) {
              return terminal.resize(cols as number, rows as number)
            }
            return send(badFrame())
          }
        }
        terminal.write(typeof raw === "string" ? raw : Buffer.from(raw).toString())
      })
    yield* socket.runRaw(onFrame, { onOpen: Effect.sync(() => capPayload(request, maxFrameBytes)) }).pipe(Effect.ignore, Effect.raceFirst(Deferred.await(shutdown)))
    return HttpServerResponse.empty()
  }).pipe(Effect.scoped)

const param = Effect.map(HttpRouter.params, (params) => params["id"] ?? "")

/** The streams, beside the API. */
const StreamsLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const sup = yield* Supervisor
    const config = yield* RunnerConfig
    const shutdown = yield* Shutdown
    // Listeners are registered before the response: a client that read `: ok` misses no event.
    yield* router.get(
      "/sse/status",
      Effect.gen(function* () {
        const changes = yield* Queue.unbounded<string>()
        const off = sup.onStatus((change: StatusChange) => Queue.unsafeOffer(changes, `event: status\ndata: ${JSON.stringify(change)}\n\n`))
        return sse(Stream.fromQueue(changes).pipe(Stream.ensuring(Effect.sync(off))), shutdown)
      })
    )
    yield* router.get(
      "/sse/agents/:id/logs",
      Effect.gen(function* () {
        const id = yield* param
        const lines = yield* Queue.unbounded<string>()
        const off = yield* sup.onLine(id, (line) => Queue.unsafeOffer(lines, `event: log\ndata: ${JSON.stringify({ agent_id: id, line, at: new Date().toISOString() })}\n\n`))
        return sse(Stream.fromQueue(lines).pipe(Stream.ensuring(Effect.sync(off))), shutdown)
      })
    )
    yield* router.get(
      "/ws/agents/:id/terminal",
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (!isWebSocketUpgrade(request)) return yield* routeNotFound(request)
        const terminal = yield* sup.terminal(yield* param)
        return yield* attach(request, terminal, config.maxBodyBytes, shutdown)
      })
    )
  })
)

/**
 * In front of everything: the key (all but `GET /health` and `GET /openapi.json`), then for
 * `POST /agents` a JSON body of at most `maxBodyBytes` (415 / 413 before decoding), then the
 * routes; what no route answers is the runner's `RouteNotFound`, a defect `InvalidRequest`.
 */
const gate = (app: HttpApp.Default, apiKey: string, maxBodyBytes: number): HttpApp.Default<never> =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = urlOf(request)
    const path = pathOf(url)
    const open = request.method === "GET" && (path === "/health" || path === "/openapi.json")
    if (!open && !keyMatches(apiKey, bearerOf(request, url))) return errorResponse(unauthorized())
    if (request.method === "POST" && path === "/agents") {
      const length = Number(request.headers["content-length"] ?? "0")
      const hasBody = !(length === 0 && request.headers["transfer-encoding"] === undefined)
      // Any other content type is refused before the body is read.
      if (hasBody && !ServerLimits.isJson(request.headers["content-type"])) {
        return errorResponse(new Errors.UnsupportedMediaType({ message: `the request body must be application/json, not ${request.headers["content-type"] ?? "untyped"}` }))
      }
      const tooLarge = new Errors.PayloadTooLarge({ message: `request body larger than ${maxBodyBytes} bytes`, limit: maxBodyBytes })
      if (Number.isFinite(length) && length > maxBodyBytes) return errorResponse(tooLarge)
      // Read here (the API reuses the cached text) so a chunked body over the limit gets its 413.
      const text = hasBody ? yield* Effect.option(request.text.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes * 10)))) : Option.some("")
      if (Option.isNone(text) || Buffer.byteLength(text.value) > maxBodyBytes) return errorResponse(tooLarge)
      // The platform reads an empty body as `null`; it is not JSON.
      if (text.value.length === 0) return errorResponse(new Errors.InvalidRequest({ message: "the request body is not valid JSON" }))
    }
    return yield* app
  }).pipe(
    Effect.catchAll((error) => {
      const e = error as unknown
      if (e instanceof RouteNotFound) return Effect.succeed(errorResponse(e))
      if ((e as { _tag?: string })._tag === "RouteNotFound") return Effect.map(HttpServerRequest.HttpServerRequest, (request) => errorResponse(routeNotFound(request)))
      return Effect.fail(e)
    }),
    // An interruption (the client went away, the layer closes) is not a failure to answer.
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.logError("request failed", cause).pipe(Effect.as(errorResponse(new Errors.InvalidRequest({ message: "internal error" }))))
    )
  )

/** The local API as an `HttpApp`, over the Supervisor and the runner's config. */
export interface RunnerAppService {
  /**
   * Every route of the runner's local API (JSON endpoints, SSE, the terminal WebSocket, `/health`,
   * `/openapi.json`); it never fails: every failure is its response. Mount it under a prefix
   * (`HttpRouter.mountApp("/runner", app)`) or as a fallback beside the host's routes.
   */
  readonly app: HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices>
}

/**
 * Built apart (`Layer.build` has a memo map of its own): the builder's services (`HttpApi.Api`,
 * its router, its middleware) are global tags, and layers are shared by identity within one
 * build. A host that builds the broker's API in the same graph would otherwise get one router
 * with both APIs (and a clash on `/openapi.json`). Not `Layer.fresh`, which would build it again
 * at each reference (`provideMerge` has two).
 */
export const layerApp = <Tag>(tag: Context.Tag<Tag, RunnerAppService>): Layer.Layer<Tag, never, RunnerConfig | Supervisor> =>
  Layer.scopedContext(Layer.build(appLayer(tag)))

const appLayer = <Tag>(tag: Context.Tag<Tag, RunnerAppService>): Layer.Layer<Tag, never, RunnerConfig | Supervisor> =>
  Layer.effect(
    tag,
    Effect.gen(function* () {
      const config = yield* RunnerConfig
      const app = yield* HttpApiBuilder.httpApp
      return { app: gate(app as HttpApp.Default, config.apiKey, config.maxBodyBytes) as HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices> }
    })
  ).pipe(
    Layer.provide(StreamsLive),
    Layer.provide(contractErrors),
    Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide([HealthLive, AgentsLive]), Layer.provide(AuthorizationLive))),
    Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
    Layer.provide(ShutdownLive),
    // Ids may be long (the router's default cap is 100 characters); a trailing slash is the same route, as before.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 1024, ignoreTrailingSlash: true }))
  )
