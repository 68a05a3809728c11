/**
 * The local HTTP API on node:http (SSE and the terminal WebSocket upgrade are plain Node
 * there): routing, Bearer auth with a constant-time compare, body limits, typed JSON errors.
 * Handlers are Effects run on the layer's runtime.
 */
import { Codec, Errors, ServerLimits } from "@mks/a2a"
import { Effect, Runtime, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer, type WebSocket } from "ws"
import { AgentExists, AgentNotFound, AgentSpec, RouteNotFound, type StatusChange } from "../Agent.js"
import type { SupervisorService, Terminal } from "../Supervisor.js"

export type ApiError = Errors.InvalidRequest | Errors.Unauthorized | Errors.PayloadTooLarge | Errors.UnsupportedMediaType | AgentNotFound | AgentExists | RouteNotFound

const statusOf = (error: ApiError): number => {
  switch (error._tag) {
    case "AgentNotFound":
    case "RouteNotFound":
      return 404
    case "AgentExists":
      return 409
    default:
      return Errors.statusOf(error)
  }
}

/**
 * The error body: the broker's `{_tag, message, …}` shape, plus `error: {type, message}` for
 * clients that read that envelope.
 */
export const errorBody = (error: ApiError) => {
  const { _tag, ...fields } = error as unknown as Record<string, unknown> & { _tag: string }
  const plain = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && typeof v !== "function"))
  return { _tag, ...plain, message: error.message, error: { type: _tag, message: error.message } }
}

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Constant-time key check: both sides hashed to equal length first. */
export const keyMatches = (expected: string, given: string | undefined): boolean =>
  given !== undefined && given.length > 0 && timingSafeEqual(digest(expected), digest(given))

const bearerOf = (req: IncomingMessage, url: URL): string | undefined => {
  const header = req.headers.authorization
  if (header !== undefined && /^bearer /i.test(header)) return header.slice(7).trim()
  return url.searchParams.get("token") ?? undefined
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

const sendError = (res: ServerResponse, error: ApiError) => {
  if (res.headersSent) return res.destroy()
  sendJson(res, statusOf(error), errorBody(error))
}

const readBody = (req: IncomingMessage, limit: number): Promise<string | Errors.PayloadTooLarge> =>
  new Promise((resolve, reject) => {
    const length = Number(req.headers["content-length"] ?? "0")
    const tooLarge = () => new Errors.PayloadTooLarge({ message: `request body larger than ${limit} bytes`, limit })
    if (Number.isFinite(length) && length > limit) {
      req.resume()
      return resolve(tooLarge())
    }
    const chunks: Array<Buffer> = []
    let size = 0
    let over = false
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) over = true
      else chunks.push(chunk)
    })
    req.on("end", () => resolve(over ? tooLarge() : Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const decodeSpec = Codec.decodeUnknown(AgentSpec)
const decodeN = Codec.decodeUnknown(Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, 100_000)))

export interface ApiOptions {
  readonly apiKey: string
  readonly version: string
  readonly maxBodyBytes: number
  readonly runnerId: string
  readonly supervisor: SupervisorService
  readonly runtime: Runtime.Runtime<never>
}

type Handler = (ctx: { req: IncomingMessage; res: ServerResponse; url: URL; params: Array<string> }) => Effect.Effect<void, ApiError>

/** Build the request and upgrade listeners of the API. */
export const make = (options: ApiOptions) => {
  const { supervisor: sup } = options
  const run = Runtime.runPromise(options.runtime)
  const sseClients = new Set<ServerResponse>()
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxBodyBytes })
  // A comment line now and then keeps idle SSE streams open through proxies.
  const keepAlive = setInterval(() => {
    for (const res of sseClients) res.write(": ping\n\n")
  }, 15_000)
  keepAlive.unref()

  const json = (res: ServerResponse, status = 200) => (body: unknown) => Effect.sync(() => sendJson(res, status, body))

  const body = (req: IncomingMessage) =>
    // Any other content type is refused before the body is read.
    (ServerLimits.isJson(req.headers["content-type"]) || (Number(req.headers["content-length"] ?? "0") === 0 && req.headers["transfer-encoding"] === undefined)
      ? Effect.promise((): Promise<string | Errors.PayloadTooLarge | Errors.UnsupportedMediaType> => readBody(req, options.maxBodyBytes))
      : Effect.sync((): string | Errors.PayloadTooLarge | Errors.UnsupportedMediaType => {
          req.resume()
          return new Errors.UnsupportedMediaType({ message: `the request body must be application/json, not ${req.headers["content-type"] ?? "untyped"}` })
        })
    ).pipe(
      Effect.flatMap((text) => (typeof text === "string" ? Effect.succeed(text) : Effect.fail(text))),
      Effect.flatMap((text) =>
        Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: () => new Errors.InvalidRequest({ message: "the request body is not valid JSON" })
        })
      )
    )

  const sseHead = (res: ServerResponse) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" })
    res.socket?.setNoDelay(true)
    res.write(": ok\n\n")
  }

  const routes: Array<[string, RegExp, Handler]> = [
    ["GET", /^\/agents$/, ({ res }) => Effect.flatMap(sup.list, (agents) => json(res)({ agents }))],
    [
      "POST",
      /^\/agents$/,
      ({ req, res }) =>
        body(req).pipe(
          Effect.flatMap(decodeSpec),
          Effect.flatMap((spec) => sup.create(spec)),
          Effect.flatMap((agent) => json(res, 201)({ agent }))
        )
    ],
    ["GET", /^\/agents\/([^/]+)$/, ({ res, params }) => Effect.flatMap(sup.detail(params[0]!), json(res))],
    ["DELETE", /^\/agents\/([^/]+)$/, ({ res, params }) => Effect.flatMap(sup.remove(params[0]!), (agent) => json(res)({ agent }))],
    ["POST", /^\/agents\/([^/]+)\/start$/, ({ res, params }) => Effect.flatMap(sup.start(params[0]!), (agent) => json(res)({ agent }))],
    ["POST", /^\/agents\/([^/]+)\/stop$/, ({ res, params }) => Effect.flatMap(sup.stop(params[0]!), (agent) => json(res)({ agent }))],
    ["POST", /^\/agents\/([^/]+)\/restart$/, ({ res, params }) => Effect.flatMap(sup.restart(params[0]!), (agent) => json(res)({ agent }))],
    [
      "GET",
      /^\/agents\/([^/]+)\/logs$/,
      ({ res, url, params }) =>
        Effect.gen(function* () {
          const nText = url.searchParams.get("n")
          const n = nText === null ? 200 : yield* decodeN(nText).pipe(Effect.mapError((e) => new Errors.InvalidRequest({ message: `n: ${e.message}`, field: "n" })))
          const lines = yield* sup.logs(params[0]!, n)
          yield* json(res)({ agent_id: params[0]!, lines })
        })
    ],
    [
      "GET",
      /^\/sse\/status$/,
      ({ req, res }) =>
        Effect.sync(() => {
          sseHead(res)
          sseClients.add(res)
          const off = sup.onStatus((change: StatusChange) => res.write(`event: status\ndata: ${JSON.stringify(change)}\n\n`))
          req.on("close", () => {
            off()
            sseClients.delete(res)
          })
        })
    ],
    [
      "GET",
      /^\/sse\/agents\/([^/]+)\/logs$/,
      ({ req, res, params }) =>
        Effect.gen(function* () {
          const id = params[0]!
          const off = yield* sup.onLine(id, (line) => res.write(`event: log\ndata: ${JSON.stringify({ agent_id: id, line, at: new Date().toISOString() })}\n\n`))
          sseHead(res)
          sseClients.add(res)
          req.on("close", () => {
            off()
            sseClients.delete(res)
          })
        })
    ]
  ]

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://runner")
    const path = url.pathname.replace(/\/+$/, "") || "/"
    if (path === "/health" && req.method === "GET") return sendJson(res, 200, { status: "ok", version: options.version, runner: options.runnerId })
    if (!keyMatches(options.apiKey, bearerOf(req, url))) {
      req.resume()
      return sendError(res, new Errors.Unauthorized({ message: "missing or invalid API key" }))
    }
    let handler: Handler | undefined
    let params: Array<string> = []
    let pathMatched = false
    for (const [method, pattern, h] of routes) {
      const match = pattern.exec(path)
      if (match === null) continue
      pathMatched = true
      if (method !== req.method) continue
      handler = h
      params = match.slice(1).map(decodeURIComponent)
      break
    }
    if (handler === undefined) {
      req.resume()
      return sendError(res, new RouteNotFound({ message: pathMatched ? `${req.method} is not allowed on ${path}` : `no route ${req.method} ${path}` }))
    }
    run(
      handler({ req, res, url, params }).pipe(
        Effect.catchAll((error) => Effect.sync(() => sendError(res, error))),
        Effect.catchAllDefect((defect) =>
          Effect.logError("request failed", defect).pipe(
            Effect.zipRight(Effect.sync(() => sendError(res, new Errors.InvalidRequest({ message: "internal error" }) as ApiError)))
          )
        )
      )
    ).catch(() => res.destroy())
  }

  const refuseUpgrade = (socket: Duplex, error: ApiError) => {
    const text = JSON.stringify(errorBody(error))
    socket.end(
      `HTTP/1.1 ${statusOf(error)} ${statusOf(error) === 401 ? "Unauthorized" : "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`
    )
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://runner")
    if (!keyMatches(options.apiKey, bearerOf(req, url))) return refuseUpgrade(socket, new Errors.Unauthorized({ message: "missing or invalid API key" }))
    const match = /^\/ws\/agents\/([^/]+)\/terminal\/?$/.exec(url.pathname)
    if (match === null) return refuseUpgrade(socket, new RouteNotFound({ message: `no WebSocket route ${url.pathname}` }))
    const id = decodeURIComponent(match[1]!)
    run(Effect.either(sup.terminal(id))).then((found) => {
      if (found._tag === "Left") return refuseUpgrade(socket, found.left)
      wss.handleUpgrade(req, socket, head, (ws) => attach(ws, found.right))
    })
  }

  /**
   * Terminal frames. Out: `{"type":"output","data"}` (the recent backlog first),
   * `{"type":"exit","status"}`. In: `{"type":"input","data"}`, `{"type":"resize","cols","rows"}`;
   * a frame that is not such JSON is taken as keystrokes.
   */
  const attach = (ws: WebSocket, terminal: Terminal) => {
    const send = (frame: unknown) => ws.readyState === ws.OPEN && ws.send(JSON.stringify(frame))
    if (terminal.backlog.length > 0) send({ type: "output", data: terminal.backlog })
    const offData = terminal.onData((data) => send({ type: "output", data }))
    const offExit = terminal.onExit((status) => send({ type: "exit", status }))
    ws.on("message", (raw, isBinary) => {
      const text = raw.toString()
      if (!isBinary && text.startsWith("{")) {
        try {
          const frame = JSON.parse(text)
          if (frame?.type === "input" && typeof frame.data === "string") return terminal.write(frame.data)
          if (frame?.type === "resize" && Number.isInteger(frame.cols) && Number.isInteger(frame.rows) && frame.cols > 0 && frame.rows > 0 && frame.cols <= 1000 && frame.rows <= 1000) {
            return terminal.resize(frame.cols, frame.rows)
          }
          return send({ type: "error", error: errorBody(new Errors.InvalidRequest({ message: "expected {type:'input',data} or {type:'resize',cols,rows}", field: "type" })) })
        } catch {
          // not JSON: keystrokes
        }
      }
      terminal.write(text)
    })
    ws.on("close", () => {
      offData()
      offExit()
    })
  }

  const close = () => {
    clearInterval(keepAlive)
    for (const res of sseClients) res.end()
    sseClients.clear()
    for (const ws of wss.clients) ws.terminate()
    wss.close()
  }

  return { onRequest, onUpgrade, close }
}
