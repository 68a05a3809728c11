/**
 * One keep-alive connection pool per provider, and the request headers the upstream gets:
 * the client's headers (`anthropic-*` and anything else it sent) minus hop-by-hop ones and
 * the client's credentials, plus the provider's real key.
 */
import { Effect, Redacted } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import type { Provider } from "../ProxyConfig.js"

export interface Upstream {
  readonly provider: Provider
  readonly request: (options: http.RequestOptions) => http.ClientRequest
  /** The base URL's path without a trailing slash (`/api/anthropic`), prefixed to `/v1/...`. */
  readonly basePath: string
  /** Headers every request gets: the real key and the provider's extra headers. */
  readonly fixedHeaders: ReadonlyArray<readonly [string, string]>
}

/** Never forwarded: per-connection headers, the client's credentials, and what we set ourselves. */
const DROPPED = new Set([
  "host",
  "connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
  "content-length",
  "x-api-key",
  "authorization",
  "accept-encoding"
])

export const make = (provider: Provider): Effect.Effect<Upstream, never, import("effect").Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const secure = provider.baseUrl.protocol === "https:"
      const options = { keepAlive: true, keepAliveMsecs: 1_000, maxFreeSockets: 256, scheduling: "lifo" as const, noDelay: true }
      const agent = secure ? new https.Agent(options) : new http.Agent(options)
      const hostname = provider.baseUrl.hostname.replace(/^\[|\]$/g, "")
      const port = provider.baseUrl.port === "" ? (secure ? 443 : 80) : Number(provider.baseUrl.port)
      const send = secure ? https.request : http.request
      const fixedHeaders: Array<readonly [string, string]> = []
      if (provider.apiKey !== undefined) {
        const key = Redacted.value(provider.apiKey)
        fixedHeaders.push(provider.auth === "bearer" ? ["authorization", `Bearer ${key}`] : ["x-api-key", key])
      }
      for (const [name, value] of Object.entries(provider.headers)) fixedHeaders.push([name.toLowerCase(), value])
      const upstream: Upstream = {
        provider,
        basePath: provider.baseUrl.pathname.replace(/\/+$/, ""),
        fixedHeaders,
        request: (o) => send({ ...o, hostname, port, agent })
      }
      return { upstream, agent }
    }),
    ({ agent }) => Effect.sync(() => agent.destroy())
  ).pipe(Effect.map(({ upstream }) => upstream))

/** Upstream request headers from the client's raw headers. */
export const requestHeaders = (
  rawHeaders: ReadonlyArray<string>,
  upstream: Upstream,
  contentLength: number
): Record<string, string | Array<string>> => {
  const out: Record<string, string | Array<string>> = {}
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase()
    if (DROPPED.has(name)) continue
    const value = rawHeaders[i + 1]!
    const previous = out[name]
    out[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value]
  }
  for (const [name, value] of upstream.fixedHeaders) out[name] = value
  out["content-length"] = String(contentLength)
  // The usage is read from the body on the side: it must arrive uncompressed.
  out["accept-encoding"] = "identity"
  return out
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"])

/** Response headers for the client (flat `[name, value, …]` as `writeHead` takes them), names as sent. */
export const responseHeaders = (rawHeaders: ReadonlyArray<string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (HOP_BY_HOP.has(rawHeaders[i]!.toLowerCase())) continue
    out.push(rawHeaders[i]!, rawHeaders[i + 1]!)
  }
  return out
}
