/**
 * The proxy as one embeddable layer: `ProxyServer.layer(config)` opens the key and usage
 * stores named by the config, and serves the data plane (Anthropic Messages API) and the
 * control plane (`/v1/keys`, `/v1/usage`) from one node:http server on one port, until its
 * scope closes (then in-flight responses get a grace period and the stores are flushed).
 */
import { OpenApi } from "@effect/platform"
import type { Authenticator } from "@mks/a2a"
import { KeyStore, Oidc, ProxyApi, ServerLimits, UsageMeter } from "@mks/a2a"
import { Prometheus } from "@mks/a2a/internal"
import { Context, Data, Effect, Layer, PubSub, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { createRequire } from "node:module"
import * as http from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { AnthropicError, requestId } from "./AnthropicError.js"
import * as ControlPlane from "./internal/controlPlane.js"
import * as DataPlane from "./internal/dataPlane.js"
import { Metrics } from "./internal/metrics.js"
import * as Upstream from "./internal/upstream.js"
import * as KeyFile from "./KeyFile.js"
import * as PgStore from "./PgStore.js"
import * as ModelRouter from "./ModelRouter.js"
import type { ProxyConfig } from "./ProxyConfig.js"
import { PROXY_LIMITS } from "./ProxyLimits.js"
import * as UsageFile from "./UsageFile.js"

export type Settlement = DataPlane.Settlement

/** The package's version, read from its package.json (works from `src` and from `dist`). */
export const VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string }).version

export class ProxyStartError extends Data.TaggedError("ProxyStartError")<{ readonly message: string }> {}

export interface ProxyServerService {
  readonly port: number
  /** `http://host:port`, what clients use as `ANTHROPIC_BASE_URL`. */
  readonly url: string
  /** Every forwarded request once its usage is recorded (tests, embedding code, audit). */
  readonly settlements: PubSub.PubSub<Settlement>
  /** The `/metrics` text. */
  readonly metrics: () => string
}

export class ProxyServer extends Context.Tag("@mks/a2a-proxy/ProxyServer")<ProxyServer, ProxyServerService>() {}

export interface Options {
  /**
   * More ways to be admin than `A2A_PROXY_ADMIN_TOKEN` and the config's `oidc` issuer (tried
   * after both); a verified principal without the `admin` role gets 403.
   */
  readonly adminAuthenticator?: Authenticator.AuthenticatorService
  /** How long in-flight responses may run on after the scope closes. */
  readonly shutdownGraceMs?: number
  /** Timeouts and the pending-connection cap (default: `A2A_PROXY_*` variables over `PROXY_LIMITS`). */
  readonly limits?: ServerLimits.ServerLimits
}

export { PROXY_LIMITS }

const hasBody = (req: http.IncomingMessage) => Number(req.headers["content-length"] ?? "0") > 0 || req.headers["transfer-encoding"] !== undefined

/** A fixed-length digest, so tokens of any length compare in constant time. */
const digest = (token: string): Buffer => createHash("sha256").update(token).digest()

const json = (res: http.ServerResponse, status: number, value: unknown) => jsonText(res, status, JSON.stringify(value))

const jsonText = (res: http.ServerResponse, status: number, text: string) => {
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) })
  res.end(text)
}

/** The server over any `KeyStore` and `UsageMeter` (e.g. core's in-memory layers, or SQL ones). */
export const layerWith = (config: ProxyConfig, options: Options = {}): Layer.Layer<ProxyServer, ProxyStartError, KeyStore.KeyStore | UsageMeter.UsageMeter> =>
  Layer.scoped(
    ProxyServer,
    Effect.gen(function* () {
      const keys = yield* KeyStore.KeyStore
      const meter = yield* UsageMeter.UsageMeter
      const keyFile = yield* Effect.serviceOption(KeyFile.KeyFile)
      const usageFile = yield* Effect.serviceOption(UsageFile.UsageFile)
      const problem = () =>
        (keyFile._tag === "Some" ? keyFile.value.problem() : undefined) ?? (usageFile._tag === "Some" ? usageFile.value.problem() : undefined)
      const metrics = new Metrics()
      const settlements = yield* PubSub.unbounded<Settlement>()
      const upstreams = new Map<string, Upstream.Upstream>()
      for (const provider of config.providers) upstreams.set(provider.name, yield* Upstream.make(provider))
      const runtime = yield* Effect.runtime<never>()
      // The file stores' plain-call views, when the services in use are exactly those stores.
      const keysDirect = keyFile._tag === "Some" && keyFile.value.direct?.store === keys ? keyFile.value.direct : undefined
      const meterDirect = usageFile._tag === "Some" && usageFile.value.direct?.meter === meter ? usageFile.value.direct : undefined
      const data = DataPlane.make({
        ...(keysDirect !== undefined && meterDirect !== undefined
          ? { direct: { authenticate: keysDirect.authenticate, touch: keysDirect.touch, meter: meterDirect } }
          : {}),
        config,
        router: ModelRouter.make(config),
        keys,
        meter,
        metrics,
        upstreams,
        problem,
        runtime,
        onSettled: (s) => void settlements.unsafeOffer(s)
      })
      const oidc = config.oidc === undefined ? [] : [yield* Oidc.make(config.oidc)]
      const control = yield* ControlPlane.make({
        adminToken: config.adminToken,
        adminAuthenticators: [...oidc, ...(options.adminAuthenticator === undefined ? [] : [options.adminAuthenticator])]
      })
      const openApi = JSON.stringify(OpenApi.fromApi(ProxyApi.ProxyControlApi))

      const adminDigest = config.adminToken === undefined ? undefined : digest(Redacted.value(config.adminToken))
      const metricsRefusal = (authorization: string | undefined) => {
        const token = /^Bearer (\S+)$/i.exec(authorization ?? "")?.[1]
        if (token === undefined) return { status: 401, body: { _tag: "Unauthorized", message: "/metrics needs the proxy's admin token (Authorization: Bearer …)" } }
        if (adminDigest === undefined) return { status: 403, body: { _tag: "Forbidden", message: "/metrics needs the proxy's admin token, and none is configured (A2A_PROXY_ADMIN_TOKEN)" } }
        if (!timingSafeEqual(digest(token), adminDigest)) return { status: 401, body: { _tag: "Unauthorized", message: "not the proxy's admin token" } }
        return undefined
      }

      const dispatch = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        const url = req.url ?? "/"
        const q = url.indexOf("?")
        const path = q === -1 ? url : url.slice(0, q)
        const method = req.method
        if (path === "/v1/messages" && method === "POST") return data.messages(req, res)
        if (path === "/v1/messages/count_tokens" && method === "POST") return data.countTokens(req, res)
        if (path === "/v1/models" && method === "GET") return data.models(req, res)
        if (path === "/health" && method === "GET") {
          const p = problem()
          return json(res, p === undefined ? 200 : 503, p === undefined ? { status: "ok", version: VERSION } : { status: "unavailable", version: VERSION, problem: p })
        }
        if (path === "/metrics" && method === "GET") {
          // Per-key ids and usage of every tenant: the operator's (the static admin token) only.
          const refusal = metricsRefusal(req.headers.authorization)
          if (refusal !== undefined) {
            req.resume()
            return json(res, refusal.status, refusal.body)
          }
          const text = metrics.render()
          res.writeHead(200, { "content-type": Prometheus.CONTENT_TYPE, "content-length": String(Buffer.byteLength(text)) })
          return void res.end(text)
        }
        if (path === "/openapi.json" && method === "GET") return jsonText(res, 200, openApi)
        if (ControlPlane.isControlPath(path)) {
          if (hasBody(req) && !ServerLimits.isJson(req.headers["content-type"])) {
            req.resume()
            return json(res, 415, { _tag: "UnsupportedMediaType", message: `the request body must be application/json, not ${req.headers["content-type"] ?? "untyped"}` })
          }
          const p = problem()
          if (p !== undefined) return json(res, 503, { _tag: "ServiceUnavailable", message: p })
          return control(req, res)
        }
        req.resume()
        DataPlane.sendError(res, new AnthropicError({ status: 404, type: "not_found_error", message: `${method} ${path} not found` }), requestId())
      }

      // Requests in flight per connection: at shutdown idle connections (including ones that
      // never sent a request, which closeIdleConnections leaves alone) close at once.
      const inFlight = new Map<Socket, number>()
      let closing = false
      const track = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        const socket = req.socket
        inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
        res.once("close", () => {
          const left = (inFlight.get(socket) ?? 1) - 1
          inFlight.set(socket, left)
          if (closing && left === 0) socket.destroy()
        })
        dispatch(req, res)
      }
      const limits = options.limits ??
        (yield* ServerLimits.config("A2A_PROXY", PROXY_LIMITS).pipe(Effect.mapError((e) => new ProxyStartError({ message: `invalid connection limits: ${e}` }))))
      const server = http.createServer(ServerLimits.serverOptions(limits), track)
      ServerLimits.apply(server, limits)
      server.on("connection", (socket: Socket) => {
        inFlight.set(socket, 0)
        socket.once("close", () => inFlight.delete(socket))
      })
      const port = yield* Effect.acquireRelease(
        Effect.async<number, ProxyStartError>((resume) => {
          const onError = (error: NodeJS.ErrnoException) =>
            resume(Effect.fail(new ProxyStartError({ message: `cannot listen on ${config.host}:${config.port}: ${error.code ?? error.message}` })))
          server.once("error", onError)
          server.listen({ port: config.port, host: config.host, backlog: ServerLimits.backlog(limits) }, () => {
            server.off("error", onError)
            resume(Effect.succeed((server.address() as AddressInfo).port))
          })
        }),
        () =>
          Effect.async<void>((resume) => {
            closing = true
            server.close(() => resume(Effect.void))
            for (const [socket, n] of inFlight) if (n === 0) socket.destroy()
            setTimeout(() => server.closeAllConnections(), options.shutdownGraceMs ?? 10_000).unref()
          })
      )
      const host = config.host.includes(":") ? `[${config.host}]` : config.host
      return { port, url: `http://${host}:${port}`, settlements, metrics: () => metrics.render() } satisfies ProxyServerService
    })
  )

/** The stores the config names: PostgreSQL (`store`), files (default) or memory (`:memory:`). */
export const layerStores = (
  config: ProxyConfig
): Layer.Layer<KeyStore.KeyStore | UsageMeter.UsageMeter | KeyFile.KeyFile | UsageFile.UsageFile, ProxyStartError> => {
  if (config.store !== undefined) return PgStore.layer(config.store).pipe(Layer.mapError((e) => new ProxyStartError({ message: e.message })))
  const keys =
    config.keyFile === undefined
      ? Layer.merge(KeyStore.layerMemory, Layer.succeed(KeyFile.KeyFile, { problem: () => undefined, flush: Effect.void }))
      : KeyFile.layer({ path: config.keyFile, flushIntervalMs: Math.max(config.flushIntervalMs, 5_000) })
  const usage =
    config.usageFile === undefined
      ? Layer.merge(UsageFile.layerMemory, Layer.succeed(UsageFile.UsageFile, { problem: () => undefined, flush: Effect.void }))
      : UsageFile.layer({ path: config.usageFile, flushIntervalMs: config.flushIntervalMs })
  return Layer.merge(keys, usage).pipe(Layer.mapError((e) => new ProxyStartError({ message: e.message })))
}

/** The whole proxy from a validated config. */
export const layer = (config: ProxyConfig, options: Options = {}): Layer.Layer<ProxyServer, ProxyStartError> =>
  layerWith(config, options).pipe(Layer.provide(layerStores(config)))
