/**
 * The data plane: `POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models`, on
 * plain `node:http` callbacks so a request costs tens of microseconds, not milliseconds. Effect
 * runs only the service calls (key lookup, reservation, settlement) through the server's runtime.
 *
 * A request: read the body (≤ maxBodyBytes) → authenticate the virtual key → parse and route
 * the model → check the key may use it → reserve (body bytes + max_tokens) → forward with the
 * provider's key → stream the answer back as it arrives, reading usage on the side → settle.
 */
import type { Ids, KeyStore, UsageMeter } from "@mks/a2a"
import { Errors, ServerLimits, Usage, VirtualKey } from "@mks/a2a"
import { Cause, Effect, Exit, Option, Runtime } from "effect"
import type * as http from "node:http"
import { performance } from "node:perf_hooks"
import { AnthropicError, body as errorBody, requestId, streamFrame } from "../AnthropicError.js"
import type { ModelRouter, Resolved } from "../ModelRouter.js"
import { compileGlob } from "../ModelRouter.js"
import type { ProxyConfig } from "../ProxyConfig.js"
import type { DirectMeter } from "../UsageFile.js"
import { scanTopLevel, spliceModel } from "./jsonModel.js"
import type { Metrics } from "./metrics.js"
import type { Upstream } from "./upstream.js"
import { requestHeaders, responseHeaders } from "./upstream.js"
import type { Tap } from "./usageTap.js"
import { decodable, DecodingTap, JsonTap, SseTap } from "./usageTap.js"

/** How a forwarded request ended, as published to `ProxyServer.settlements`. */
export interface Settlement {
  readonly requestId: string
  readonly key: Ids.KeyId
  readonly provider: string
  /** The model name sent upstream. */
  readonly model: string
  /** The model name the client asked for. */
  readonly requestedModel: string
  readonly status: number
  readonly outcome: "complete" | "client_closed" | "upstream_error" | "timeout" | "unreachable"
  /** The usage counted: what the upstream reported, or nothing. */
  readonly usage: Usage.Usage | undefined
  readonly streamError: string | undefined
}

export interface Deps {
  readonly config: ProxyConfig
  readonly router: ModelRouter
  readonly keys: KeyStore.KeyStoreService
  readonly meter: UsageMeter.UsageMeterService
  readonly metrics: Metrics
  readonly upstreams: ReadonlyMap<string, Upstream>
  /** Why the stores refuse service, if they do (fail closed: 503). */
  readonly problem: () => string | undefined
  readonly runtime: Runtime.Runtime<never>
  readonly onSettled: (settlement: Settlement) => void
  /**
   * Plain-call views of `keys` and `meter` when they are the proxy's own file stores: admission
   * and settlement then run without a fiber per request (the same code, just not wrapped).
   */
  readonly direct?: {
    readonly authenticate: (secret: string, now: number) => VirtualKey.VirtualKey | Errors.Unauthorized | Errors.ServiceUnavailable
    readonly touch: (id: Ids.KeyId, at: number) => void
    readonly meter: DirectMeter
  }
}

interface ExchangeDeps extends Deps {
  readonly runCallback: ReturnType<typeof Runtime.runCallback<never>>
  /** Log once per provider that a successful answer carried no readable usage (counted as 0). */
  readonly warnNoUsage: (provider: string) => void
}

type Kind = "messages" | "count_tokens"

interface Plan {
  readonly requested: string
  readonly route: Resolved
  readonly payload: Buffer
  readonly stream: boolean
  /** Upper bound on the tokens this request can consume: body bytes + max_tokens. */
  readonly bound: number
}

interface Admitted {
  readonly key: VirtualKey.VirtualKey
  readonly plan: Plan
  readonly reservation: UsageMeter.Reservation | undefined
}

const OVERHEAD_HEADER = "x-a2a-proxy-overhead-ms"

/** `x-api-key`, else `Authorization: Bearer`. */
export const secretOf = (headers: http.IncomingHttpHeaders): string | undefined => {
  const apiKey = headers["x-api-key"]
  if (typeof apiKey === "string" && apiKey !== "") return apiKey
  const auth = headers.authorization
  if (auth !== undefined && auth.length > 7 && auth.slice(0, 7).toLowerCase() === "bearer ") return auth.slice(7).trim()
  return undefined
}

export const sendError = (res: http.ServerResponse, error: AnthropicError, id: string, started?: number): void => {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const text = errorBody(error, id)
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "request-id": id,
    ...error.headers
  }
  if (started !== undefined) headers[OVERHEAD_HEADER] = (performance.now() - started).toFixed(3)
  res.writeHead(error.status, headers)
  res.end(text)
}

const invalid = (message: string) => new AnthropicError({ status: 400, type: "invalid_request_error", message })

/** The `anthropic-ratelimit-*` headers of a 429 from the key's limits and current snapshot. */
const rateLimitHeaders = (
  limits: VirtualKey.KeyLimits,
  snapshot: UsageMeter.UsageSnapshot,
  retryAfter: number,
  limit: string | undefined,
  now: number
): Record<string, string> => {
  const headers: Record<string, string> = { "retry-after": String(retryAfter) }
  const resetAt = new Date(now + retryAfter * 1000).toISOString()
  const windowEnd = snapshot.window.end
  if (limit === "requests_per_5h" && limits.requestsPer5h !== undefined) {
    headers["anthropic-ratelimit-requests-limit"] = String(limits.requestsPer5h)
    headers["anthropic-ratelimit-requests-remaining"] = String(Math.max(0, limits.requestsPer5h - snapshot.window.requests))
    headers["anthropic-ratelimit-requests-reset"] = windowEnd
  } else if (limits.requestsPerMinute !== undefined) {
    headers["anthropic-ratelimit-requests-limit"] = String(limits.requestsPerMinute)
    headers["anthropic-ratelimit-requests-remaining"] = String(Math.max(0, limits.requestsPerMinute - snapshot.requestsLastMinute))
    headers["anthropic-ratelimit-requests-reset"] = limit === "requests_per_minute" ? resetAt : new Date(now + 60_000).toISOString()
  }
  if (limits.tokensPer5h !== undefined) {
    const used = Usage.totalTokens(snapshot.window) + snapshot.reservedTokens
    headers["anthropic-ratelimit-tokens-limit"] = String(limits.tokensPer5h)
    headers["anthropic-ratelimit-tokens-remaining"] = String(Math.max(0, limits.tokensPer5h - used))
    headers["anthropic-ratelimit-tokens-reset"] = limit === "tokens_per_5h" ? resetAt : windowEnd
  }
  return headers
}

export const make = (deps: Deps) => {
  const { config, metrics, router } = deps
  const runCallback = Runtime.runCallback(deps.runtime)
  const warned = new Set<string>()
  const warnNoUsage = (provider: string) => {
    if (warned.has(provider)) return
    warned.add(provider)
    runCallback(
      Effect.logWarning(`provider ${provider} answered a request without a usage report the proxy could read; such answers count 0 tokens`)
    )
  }
  const exchangeDeps: ExchangeDeps = { ...deps, runCallback, warnNoUsage }
  const globs = new Map<string, RegExp>()
  const glob = (pattern: string): RegExp => {
    let re = globs.get(pattern)
    if (re === undefined) globs.set(pattern, (re = compileGlob(pattern)))
    return re
  }
  /** A key's patterns match the name the client asked for or the routed `provider/model`. */
  const allowed = (key: VirtualKey.VirtualKey, requested: string, route: Resolved): boolean => {
    if (key.models.length === 0) return true
    const canonical = `${route.provider.name}/${route.model}`
    return key.models.some((p) => glob(p).test(requested) || glob(p).test(canonical))
  }

  const plan = (body: Buffer, kind: Kind, requested: string, payloadFor: (model: string) => Buffer, stream: boolean, maxTokens: unknown): Plan | AnthropicError => {
    const route = router.resolve(requested)
    if (route === undefined) return new AnthropicError({ status: 404, type: "not_found_error", message: `model: ${requested}` })
    const payload = route.model === requested ? body : payloadFor(route.model)
    const bound =
      kind === "count_tokens"
        ? 0
        : typeof maxTokens === "number" && Number.isFinite(maxTokens) && maxTokens > 0
          ? Math.ceil(maxTokens)
          : config.defaultMaxTokens
    return { requested, route, payload, stream, bound: body.length + bound }
  }

  /** The plan from a body the scan could not read: parse it, to say why (or to serve it all the same). */
  const prepareParsed = (body: Buffer, kind: Kind): Plan | AnthropicError => {
    let parsed: unknown
    try {
      parsed = JSON.parse(body.toString("utf8"))
    } catch (error) {
      return invalid(`invalid JSON in request body: ${(error as Error).message}`)
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return invalid("request body must be a JSON object")
    const fields = parsed as { model?: unknown; stream?: unknown; max_tokens?: unknown }
    if (typeof fields.model !== "string" || fields.model === "") return invalid("model: Field required")
    return plan(body, kind, fields.model, (model) => Buffer.from(JSON.stringify({ ...fields, model }), "utf8"), fields.stream === true, fields.max_tokens)
  }

  /** Model, stream and max_tokens from one pass over the body's top level; nothing else is parsed. */
  const prepare = (body: Buffer, kind: Kind): Plan | AnthropicError => {
    const top = scanTopLevel(body)
    if (top === "malformed") return prepareParsed(body, kind)
    const model = top.model
    if (typeof model !== "object" || model.value === "") return invalid("model: Field required")
    return plan(body, kind, model.value, (name) => spliceModel(body, model.start, model.end, name), top.stream, top.maxTokens)
  }

  const toAnthropic = (error: { readonly _tag: string; readonly message: string }): AnthropicError => {
    switch (error._tag) {
      case "Unauthorized":
        return new AnthropicError({ status: 401, type: "authentication_error", message: error.message })
      case "ServiceUnavailable":
        return new AnthropicError({ status: 503, type: "api_error", message: error.message })
      default:
        return new AnthropicError({ status: 500, type: "api_error", message: error.message })
    }
  }

  const authenticate = (secret: string) =>
    deps.keys.authenticate(secret).pipe(Effect.mapError((e) => toAnthropic(e)))

  const limitedError = (key: VirtualKey.VirtualKey, limited: Errors.RateLimited, snapshot: UsageMeter.UsageSnapshot | undefined, now: number) =>
    new AnthropicError({
      status: 429,
      type: "rate_limit_error",
      message: limited.message,
      headers:
        snapshot === undefined
          ? { "retry-after": String(limited.retryAfter) }
          : rateLimitHeaders(key.limits, snapshot, limited.retryAfter, limited.limit, now)
    })

  const refuseRateLimited = (key: VirtualKey.VirtualKey, limited: Errors.RateLimited, now: number) =>
    Effect.flatMap(Effect.orElseSucceed(deps.meter.snapshot(key.id), () => undefined), (snapshot) =>
      Effect.fail(limitedError(key, limited, snapshot, now))
    )

  const forbidden = (plan: Plan) =>
    new AnthropicError({ status: 403, type: "permission_error", message: `this API key may not use model ${plan.requested}` })

  /** `admit` over the direct views: the same steps as plain calls. */
  const admitNow = (direct: NonNullable<Deps["direct"]>, secret: string, body: Buffer, kind: Kind): Admitted | AnthropicError => {
    const now = Date.now()
    const key = direct.authenticate(secret, now)
    if (!(key instanceof VirtualKey.VirtualKey)) return toAnthropic(key)
    const plan = prepare(body, kind)
    if (plan instanceof AnthropicError) return plan
    if (!allowed(key, plan.requested, plan.route)) return forbidden(plan)
    let reservation: UsageMeter.Reservation | undefined
    if (kind === "messages") {
      const reserved = direct.meter.reserve(key.id, key.limits, plan.bound, now)
      if (reserved instanceof Errors.RateLimited) return limitedError(key, reserved, direct.meter.snapshot(key.id, now), now)
      if (reserved instanceof Errors.ServiceUnavailable) return toAnthropic(reserved)
      reservation = reserved
    }
    direct.touch(key.id, now)
    return { key, plan, reservation }
  }

  /**
   * Authenticate, plan, authorise and reserve: everything before the upstream sees the request.
   * Plain flatMaps rather than a generator: this runs once per request.
   */
  const admit = (secret: string, body: Buffer, kind: Kind): Effect.Effect<Admitted, AnthropicError> =>
    Effect.flatMap(authenticate(secret), (key): Effect.Effect<Admitted, AnthropicError> => {
      const plan = prepare(body, kind)
      if (plan instanceof AnthropicError) return Effect.fail(plan)
      if (!allowed(key, plan.requested, plan.route)) return Effect.fail(forbidden(plan))
      const now = Date.now()
      const touched = Effect.as(deps.keys.touch(key.id, now), key)
      // count_tokens consumes no tokens upstream: authenticated and authorised, not metered.
      if (kind === "count_tokens") return Effect.as(touched, { key, plan, reservation: undefined })
      return deps.meter.reserve(key.id, key.limits, plan.bound).pipe(
        Effect.catchTags({
          RateLimited: (limited) => refuseRateLimited(key, limited, now),
          ServiceUnavailable: (e) => Effect.fail(toAnthropic(e))
        }),
        Effect.flatMap((reservation) => Effect.as(touched, { key, plan, reservation }))
      )
    })

  /** Run a service effect; defects become a 500 rather than a hung request. */
  const run = <A>(effect: Effect.Effect<A, AnthropicError>, onDone: (result: A | AnthropicError) => void): void => {
    runCallback(effect, {
      onExit: (exit) => {
        if (Exit.isSuccess(exit)) return onDone(exit.value)
        const failure = Cause.failureOption(exit.cause)
        onDone(
          Option.isSome(failure)
            ? failure.value
            : new AnthropicError({ status: 500, type: "api_error", message: "internal proxy error" })
        )
      }
    })
  }

  const readBody = (req: http.IncomingMessage, onBody: (body: Buffer | "too_large" | "aborted") => void): void => {
    const chunks: Array<Buffer> = []
    let size = 0
    let over = false
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > config.maxBodyBytes) {
        if (!over) {
          over = true
          chunks.length = 0
          onBody("too_large")
        }
      } else if (!over) chunks.push(chunk)
    })
    req.on("end", () => {
      if (!over) onBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))
    })
    req.on("error", () => {
      if (!over) onBody("aborted")
    })
  }

  const tooLarge = (res: http.ServerResponse, id: string, started: number) => {
    res.setHeader("connection", "close")
    sendError(
      res,
      new AnthropicError({ status: 413, type: "request_too_large", message: `request body exceeds ${config.maxBodyBytes} bytes` }),
      id,
      started
    )
  }

  const messages = (kind: Kind) => (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = performance.now()
    const id = requestId()
    const secret = secretOf(req.headers)
    if (secret === undefined) {
      req.resume()
      return sendError(res, new AnthropicError({ status: 401, type: "authentication_error", message: "x-api-key header is required" }), id, started)
    }
    const problem = deps.problem()
    if (problem !== undefined) {
      req.resume()
      return sendError(res, new AnthropicError({ status: 503, type: "api_error", message: problem }), id, started)
    }
    const declared = Number(req.headers["content-length"])
    if (!ServerLimits.isJson(req.headers["content-type"])) {
      // The Messages API takes JSON only: anything else is refused before it is read.
      req.resume()
      return sendError(res, new AnthropicError({ status: 415, type: "invalid_request_error", message: `the request body must be application/json, not ${req.headers["content-type"] ?? "untyped"}` }), id, started)
    }
    if (declared > config.maxBodyBytes) {
      // Answer at once; node discards the rest of the upload.
      return tooLarge(res, id, started)
    }
    readBody(req, (body) => {
      if (body === "aborted") return
      if (body === "too_large") return tooLarge(res, id, started)
      const received = performance.now()
      const proceed = (result: Admitted | AnthropicError) => {
        if (result instanceof AnthropicError) {
          const series = metrics.of("none", "none", "none")
          series.request(result.status)
          series.error(result.type)
          return sendError(res, result, id, started)
        }
        new Exchange(exchangeDeps, req, res, id, kind, result, received).start()
      }
      if (deps.direct !== undefined) proceed(admitNow(deps.direct, secret, body, kind))
      else run(admit(secret, body, kind), proceed)
    })
  }

  const models = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const id = requestId()
    const secret = secretOf(req.headers)
    if (secret === undefined) {
      return sendError(res, new AnthropicError({ status: 401, type: "authentication_error", message: "x-api-key header is required" }), id)
    }
    const problem = deps.problem()
    if (problem !== undefined) return sendError(res, new AnthropicError({ status: 503, type: "api_error", message: problem }), id)
    run(authenticate(secret), (key) => {
      if (key instanceof AnthropicError) return sendError(res, key, id)
      const created = new Date(0).toISOString()
      const data = router.listed
        .filter((m) => {
          const route = router.resolve(m)
          return route !== undefined && allowed(key, m, route)
        })
        .map((m) => ({ type: "model", id: m, display_name: m, created_at: created }))
      const text = JSON.stringify({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null })
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "request-id": id })
      res.end(text)
    })
  }

  return { messages: messages("messages"), countTokens: messages("count_tokens"), models }
}

/** One forwarded request: the upstream call, the pass-through, the usage tap, the settlement. */
class Exchange {
  private upstreamRequest: http.ClientRequest | undefined
  private upstreamResponse: http.IncomingMessage | undefined
  private tap: Tap | undefined
  private status = 0
  private settled = false
  private retried = false
  private headersTimer: NodeJS.Timeout | undefined
  private connectTimer: NodeJS.Timeout | undefined
  private forwardedAt = 0
  private wroteBody = false
  private readonly upstream: Upstream

  constructor(
    private readonly deps: ExchangeDeps,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
    private readonly id: string,
    private readonly kind: Kind,
    private readonly admitted: Admitted,
    private readonly received: number
  ) {
    this.upstream = deps.upstreams.get(admitted.plan.route.provider.name)!
  }

  start(): void {
    // The client left while its key was checked: nothing to forward, nothing was used.
    if (this.res.destroyed) return this.finish("client_closed", () => {})
    this.res.on("close", () => this.onClientClose())
    this.send()
  }

  private send(): void {
    const { plan } = this.admitted
    const url = this.req.url ?? ""
    const q = url.indexOf("?")
    const path = this.upstream.basePath + (this.kind === "messages" ? "/v1/messages" : "/v1/messages/count_tokens") + (q === -1 ? "" : url.slice(q))
    const timeouts = plan.route.provider.timeouts
    const request = this.upstream.request({
      method: "POST",
      path,
      headers: requestHeaders(this.req.rawHeaders, this.upstream, plan.payload.length)
    })
    this.upstreamRequest = request
    request.on("socket", (socket) => {
      if (!socket.connecting) return
      this.connectTimer = setTimeout(() => this.failBeforeResponse("timeout", `connecting to upstream ${plan.route.provider.name} timed out after ${timeouts.connectMs} ms`), timeouts.connectMs)
      socket.once("connect", () => clearTimeout(this.connectTimer))
    })
    request.on("response", (response) => this.onResponse(response))
    request.on("error", (error: NodeJS.ErrnoException) => this.onRequestError(request, error))
    this.headersTimer = setTimeout(
      () => this.failBeforeResponse("timeout", `upstream ${plan.route.provider.name} did not answer within ${timeouts.headersMs} ms`),
      timeouts.headersMs
    )
    this.forwardedAt = performance.now()
    request.end(plan.payload)
  }

  private clearTimers(): void {
    clearTimeout(this.headersTimer)
    clearTimeout(this.connectTimer)
  }

  private onRequestError(request: http.ClientRequest, error: NodeJS.ErrnoException): void {
    if (this.settled || request !== this.upstreamRequest) return
    if (this.upstreamResponse !== undefined) return this.onResponseBroken("upstream connection lost")
    // A pooled connection the upstream closed while idle: the request never reached it, send it again once.
    if (request.reusedSocket && error.code === "ECONNRESET" && !this.retried && !this.res.destroyed) {
      this.retried = true
      this.clearTimers()
      return this.send()
    }
    this.failBeforeResponse("unreachable", `upstream ${this.admitted.plan.route.provider.name} unreachable (${error.code ?? error.message})`)
  }

  private failBeforeResponse(outcome: "timeout" | "unreachable", message: string): void {
    if (this.settled || this.upstreamResponse !== undefined) return
    this.upstreamRequest?.destroy()
    const error =
      outcome === "timeout"
        ? new AnthropicError({ status: 504, type: "timeout_error", message })
        : new AnthropicError({ status: 502, type: "api_error", message })
    this.status = error.status
    this.finish(outcome, () => sendError(this.res, error, this.id))
  }

  private onResponse(response: http.IncomingMessage): void {
    if (this.settled) {
      response.destroy()
      return
    }
    const arrived = performance.now()
    this.clearTimers()
    this.upstreamResponse = response
    this.status = response.statusCode ?? 502
    const { plan } = this.admitted
    this.upstreamRequest!.setTimeout(plan.route.provider.timeouts.idleMs, () => this.onIdle())
    const contentType = response.headers["content-type"] ?? ""
    const ok = this.status >= 200 && this.status < 300
    if (this.kind === "messages" && ok) {
      const cap = this.deps.config.maxBodyBytes
      const tap = contentType.startsWith("text/event-stream") ? new SseTap() : new JsonTap(cap)
      const encoding = response.headers["content-encoding"]?.trim().toLowerCase()
      this.tap = encoding === undefined || encoding === "identity" ? tap : decodable(encoding) ? new DecodingTap(tap, encoding, cap) : undefined
    }
    const headers = responseHeaders(response.rawHeaders)
    const overhead = this.forwardedAt - this.received + (performance.now() - arrived)
    headers.push(OVERHEAD_HEADER, overhead.toFixed(3))
    this.deps.metrics.overhead(overhead)
    if (!this.res.destroyed) {
      this.res.writeHead(this.status, headers)
      // A stream's headers must not wait for its first event; when that event came in the same
      // read, headers and event leave together (one write instead of two).
      if (this.tap instanceof SseTap) {
        setImmediate(() => {
          if (!this.wroteBody && !this.res.destroyed) this.res.flushHeaders()
        })
      }
    }
    response.on("data", (chunk: Buffer) => {
      this.wroteBody = true
      // Forward first, read usage after: parsing never delays the bytes.
      if (!this.res.destroyed && !this.res.write(chunk)) {
        response.pause()
        this.res.once("drain", () => response.resume())
      }
      this.tap?.push(chunk)
    })
    response.on("end", () => {
      this.tap?.end()
      this.finish(this.res.destroyed ? "client_closed" : "complete", () => this.res.end())
    })
    response.on("error", () => this.onResponseBroken("upstream connection lost"))
    response.on("close", () => {
      if (!response.complete) this.onResponseBroken("upstream connection lost")
    })
  }

  private onIdle(): void {
    const idleMs = this.admitted.plan.route.provider.timeouts.idleMs
    if (this.upstreamResponse === undefined) return
    this.upstreamRequest?.destroy()
    this.endBroken("timeout", new AnthropicError({ status: 504, type: "timeout_error", message: `upstream stalled for ${idleMs} ms` }))
  }

  private onResponseBroken(message: string): void {
    this.upstreamRequest?.destroy()
    this.endBroken("upstream_error", new AnthropicError({ status: 502, type: "api_error", message }))
  }

  /** The upstream failed after its headers: a stream ends with an `error` event, anything else is cut. */
  private endBroken(outcome: "timeout" | "upstream_error", error: AnthropicError): void {
    if (this.settled) return
    // Cut inside an event: close it first, so the error is an event of its own.
    const cut = this.tap instanceof SseTap && this.tap.midEvent
    this.tap?.end()
    this.finish(outcome, () => {
      if (this.res.destroyed) return
      if (this.tap instanceof SseTap) this.res.end((cut ? "\n\n" : "") + streamFrame(error))
      else this.res.destroy()
    })
  }

  private onClientClose(): void {
    if (this.settled || this.res.writableFinished) return
    if (this.upstreamResponse !== undefined && this.deps.config.onClientAbort === "drain") return // `end` settles
    this.upstreamRequest?.destroy()
    this.tap?.end()
    // A half-closed client socket would otherwise stay open (and hold up shutdown).
    this.finish("client_closed", () => this.res.destroy())
  }

  /**
   * Settle once: the reported usage (or nothing) into the meter, metrics, the event; then
   * `after` (ending the response), so the usage is recorded before the client sees the end.
   */
  private finish(outcome: Settlement["outcome"], after: () => void): void {
    if (this.settled) return
    this.settled = true
    this.clearTimers()
    const { key, plan, reservation } = this.admitted
    const { deps } = this
    const provider = plan.route.provider.name
    const model = `${provider}/${plan.route.model}`
    const answered = this.upstreamResponse !== undefined
    const usage = this.tap?.usage
    const streamError = this.tap?.streamError
    const series = deps.metrics.of(provider, plan.route.model, key.id)
    series.request(this.status)
    if (this.status >= 400) series.error(outcome === "complete" ? `http_${this.status}` : outcome)
    else if (streamError !== undefined) series.error(streamError)
    else if (outcome !== "complete") series.error(outcome)
    if (usage !== undefined) series.usage(usage)
    else if (this.kind === "messages" && outcome === "complete" && this.status >= 200 && this.status < 300) deps.warnNoUsage(provider)
    const settlement: Settlement = {
      requestId: this.id,
      key: key.id,
      provider,
      model: plan.route.model,
      requestedModel: plan.requested,
      status: this.status,
      outcome,
      usage,
      streamError
    }
    const direct = deps.direct?.meter
    if (direct !== undefined || reservation === undefined) {
      if (reservation !== undefined) {
        if (answered) direct!.settle(reservation, model, usage ?? Usage.emptyUsage)
        else direct!.release(reservation)
      }
      deps.onSettled(settlement)
      return after()
    }
    const record = answered ? deps.meter.settle(reservation, model, usage ?? Usage.emptyUsage) : deps.meter.release(reservation)
    deps.runCallback(Effect.ignoreLogged(record), {
      onExit: () => {
        deps.onSettled(settlement)
        after()
      }
    })
  }
}
