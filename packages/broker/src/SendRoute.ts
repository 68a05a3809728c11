/**
 * The fast path of `POST /api/messages` (and of acks over HTTP, `POST /api/peers/:id/inbox/ack`,
 * the other per-message endpoint): the broker's hottest HTTP endpoints, answered before the
 * `HttpApi` app sees the request, with the same contract.
 *
 * Why it is hand-written (issue 13): through the HttpApi pipeline (routing over the whole API,
 * security middleware, payload decoding, success encoding through the response union, the
 * fibers in between) an HTTP send cost the broker 0.49–0.51 ms of CPU and 16 senders got
 * 1,923–2,004 msg/s, half of a plain HTTP server doing one SQLite INSERT per POST
 * (bench/broker.mjs `--only http`, quiet machine); a WebSocket send, through the same
 * `Bus.send`, cost 0.19 ms. A profile showed no single hot spot: the cost was the layers. An
 * Effect route ahead of the HttpApi (`make`) still ran the request fiber, the platform's request
 * and response wrapping and the guard; the Node-level handler (`makeNode`) takes the request off
 * the server before any of that. Figures before and after are in docs/benchmarks.md.
 *
 * Only a request that the endpoint itself accepts or refuses is answered here: a bearer token
 * the `Authenticator` accepts, a JSON body that parses and decodes (`SendMessage`, `InboxAck`
 * and a plain peer id). Everything else (no or bad token, unparsable JSON, a body or id that does
 * not decode, an unusual content type) is handed to the broker's app, which answers it as it
 * always did, so those error bodies cannot drift. The body limit (413), the content-type rule
 * (415), the nesting cap and the status counters are the app's `guard`, which runs before the
 * `make` route as before the HttpApi; the Node handler takes only requests whose headers pass it
 * and counts what it answers. The send and the ack are the same `Bus.send` / `Bus.ack` (the same
 * store call and group commit as over a WebSocket, the same counters), and their refusals are
 * encoded with the same error schemas (`Errors.WireError`) and statuses the API declares.
 *
 * Tokens are authenticated per request, as the HttpApi middleware does: a revoked static token
 * (the token store checks its file on every request and forgets what it remembered when the file
 * changed) or spawn token stops working at once.
 * test/SendFastPath.test.ts compares every answer with the HttpApi route's.
 */
import { type HttpApp, type HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Authenticator, ChannelSession, type Errors, Ids, Message, ServerLimits } from "@mks/a2a"
import { Effect, Either, Runtime, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import { errorResponse, nestsDeeperThan } from "./Channels.js"
import { Metrics } from "./Metrics.js"

export const PATH = "/api/messages"

/** The request line of an endpoint on the fast path: a send, or an ack over HTTP (`/api/peers/:id/inbox/ack`) of a plain id. */
type Target = { readonly kind: "send" } | { readonly kind: "ack"; readonly id: string }
const SEND: Target = { kind: "send" }
// An id that needs no decoding (anything else, e.g. percent-encoded, is the router's to decode).
const ACK = /^\/api\/peers\/([A-Za-z0-9_-]{1,128})\/inbox\/ack(?:\?.*)?$/

/** The fast path's endpoint for `POST <url>`, as the API's router matches it (with or without a query string). */
const targetOf = (method: string | undefined, url: string | undefined): Target | undefined => {
  if (method !== "POST" || url === undefined) return undefined
  if (url === PATH || (url.startsWith(PATH) && url.charCodeAt(PATH.length) === 63) /* "?" */) return SEND
  if (!url.startsWith("/api/peers/")) return undefined
  const ack = ACK.exec(url)
  return ack === null ? undefined : { kind: "ack", id: ack[1]! }
}

/** Whether the request is one the fast path may answer. */
export const matches = (request: HttpServerRequest.HttpServerRequest): boolean => targetOf(request.method, request.url) !== undefined

/** The API's bearer security takes the `authorization` header less its first 7 characters ("Bearer "). */
const tokenOf = (header: string | undefined): string => (header ?? "").slice(7)

/** A success of the Node handler: written as it is (see `write`). */
class Json {
  constructor(
    readonly status: number,
    readonly json: string
  ) {}
}

/**
 * The part both paths share: authenticate, decode, send or ack, answer (built once); `ok` makes
 * the answer of a success from its status and JSON text.
 */
const makeCore = <R>(ok: (status: number, json: string) => R) => Effect.gen(function* () {
  const bus = yield* Bus
  const authenticator = yield* Authenticator.Authenticator
  // The HttpApi decodes path and payload with `Schema.decodeUnknown` of the endpoint's schemas
  // and encodes the success with its schema; here the decoders are built once, and a send's
  // answer is written as the channel writes its `sent` frame (`ChannelSession.sendResultJson`):
  // encoding the message through its schema was 4 % of the broker's CPU under 16 HTTP senders
  // (a CPU profile of bench/broker.mjs `--only http`), the JSON is the same value.
  const decodeSend = Schema.decodeUnknownEither(Message.SendMessage)
  const decodePeerId = Schema.decodeUnknownEither(Ids.PeerId)
  const decodeAck = Schema.decodeUnknownEither(Message.InboxAck)
  const encodeCursorValue = Schema.encodeSync(Message.InboxCursor)
  const encodeCursor = (cursor: Message.InboxCursor) => JSON.stringify(encodeCursorValue(cursor))
  const respond = <A>(effect: Effect.Effect<A, Errors.WireError>, status: number, encode: (a: A) => string) =>
    Effect.match(effect, {
      onFailure: errorResponse,
      onSuccess: (a): R | HttpServerResponse.HttpServerResponse => ok(status, encode(a))
    })
  /**
   * The response to `text` sent with `token`, or `undefined` when the request is not the fast
   * path's to answer (token refused, JSON that does not parse, path or payload that does not decode).
   */
  const answer = (target: Target, token: string, text: string): Effect.Effect<R | HttpServerResponse.HttpServerResponse | undefined> => {
    if (token.length === 0 || text === "") return Effect.succeed(undefined)
    return Effect.flatMap(Effect.either(authenticator.authenticate(token)), (principal) => {
      if (Either.isLeft(principal)) return Effect.succeed(undefined)
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        return Effect.succeed(undefined)
      }
      if (target.kind === "send") {
        const payload = decodeSend(json)
        if (Either.isLeft(payload)) return Effect.succeed(undefined)
        const { from, ...fields } = payload.right
        return respond(bus.send(principal.right, from, fields), 201, ChannelSession.sendResultJson)
      }
      const id = decodePeerId(target.id)
      const payload = decodeAck(json)
      if (Either.isLeft(id) || Either.isLeft(payload)) return Effect.succeed(undefined)
      return respond(bus.ack(principal.right, id.right, payload.right.upTo), 200, encodeCursor)
    })
  }
  return answer
})

/**
 * The route inside the broker's `HttpApp` (so a host mounting `layerApp` has it too), after the
 * guard: given the request and the HttpApi app to hand anything unusual to.
 */
export const make = Effect.map(makeCore((status, json) => HttpServerResponse.text(json, { status, contentType: "application/json" })), (answer) =>
  <E, R>(request: HttpServerRequest.HttpServerRequest, api: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) => {
    const type = request.headers["content-type"]
    if (type !== undefined && !type.toLowerCase().includes("application/json")) return api
    // The guard has read the body (the text is cached); a request without one is the API's to refuse.
    const target = targetOf(request.method, request.url)
    if (target === undefined) return api
    return Effect.flatMap(Effect.either(request.text), (text) =>
      Either.isLeft(text) ? api : Effect.flatMap(answer(target, tokenOf(request.headers["authorization"]), text.right), (response) => response ?? api)
    )
  }
)

/**
 * Write a success's JSON, or an `HttpServerResponse` as the platform's Node server does (JSON and
 * empty bodies; others through a web `Response`). A success goes out as a string with its length
 * in a header array: Node then sends status line, headers and body as one buffer, where the
 * `HttpServerResponse` was encoded to bytes first and went out in a `writev` of two. Measured in
 * isolation (a Node server answering a send's JSON to 16 keep-alive clients in the same process,
 * three alternated pairs of 60,000 requests): 0.5-4.8 µs less CPU per request, about 1-3 % of the
 * broker's CPU per HTTP send; the same JSON, status and headers (test/SendFastPath.test.ts).
 */
const write = (res: ServerResponse, response: Json | HttpServerResponse.HttpServerResponse): Effect.Effect<void> => {
  if (res.writableEnded || res.destroyed) return Effect.void
  if (response instanceof Json) {
    res.writeHead(response.status, ["content-type", "application/json", "content-length", String(Buffer.byteLength(response.json))])
    res.end(response.json)
    return Effect.void
  }
  const body = response.body
  if (body._tag === "Uint8Array" || body._tag === "Empty") {
    res.writeHead(response.status, response.headers as Record<string, string>)
    res.end(body._tag === "Uint8Array" ? body.body : undefined)
    return Effect.void
  }
  return Effect.promise(async () => {
    const web = HttpServerResponse.toWeb(response)
    const bytes = new Uint8Array(await web.arrayBuffer())
    res.writeHead(web.status, Object.fromEntries(web.headers))
    res.end(bytes)
  })
}

/**
 * The Node server's handler (the bins' `BrokerServer.layer`): it takes `POST /api/messages` off
 * the server before the platform wraps it in a request fiber. It answers `true` when it took the
 * request. It takes only a request whose headers pass the guard as they are (JSON content type,
 * a `content-length` within the limit, no chunking, a bearer token): any other is left to the
 * broker's app, untouched. Once it has read the body, a request it does not answer itself (the
 * fast path's refusals above, a body nesting too deep, a defect) is run through the broker's
 * app with that body, so the app's answer is the one written.
 */
export const makeNode = (app: HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices>) =>
  Effect.gen(function* () {
    const answer = yield* makeCore((status, json) => new Json(status, json))
    const config = yield* BrokerConfig
    const metrics = yield* Metrics
    const runtime = yield* Effect.runtime<HttpRouter.HttpRouter.DefaultServices>()
    const runFork = Runtime.runFork(runtime)

    /** The broker's app on a copy of the request carrying the body already read. */
    const viaApp = (req: IncomingMessage, text: string) =>
      Effect.suspend(() => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(req.headers)) {
          if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value)
        }
        const request = new Request(`http://127.0.0.1${req.url ?? PATH}`, { method: "POST", headers, body: text })
        return Effect.provideService(app, HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(request))
      })

    const handle = (target: Target, req: IncomingMessage, res: ServerResponse, text: string) => {
      const ours: Effect.Effect<Json | HttpServerResponse.HttpServerResponse | undefined> = nestsDeeperThan(text)
        ? Effect.succeed(undefined)
        : answer(target, tokenOf(req.headers["authorization"]), text).pipe(
            Effect.tap((response) => {
              // The app's guard counts the statuses it answers; these are counted here.
              if (response !== undefined) metrics.httpRequest(response.status)
            })
          )
      const program = ours.pipe(
        Effect.flatMap((response) => (response === undefined ? viaApp(req, text) : Effect.succeed(response))),
        Effect.catchAllCause((cause) => Effect.map(HttpServerError.causeResponse(cause), ([response]) => response)),
        Effect.flatMap((response) => write(res, response))
      )
      runFork(program)
    }

    return (req: IncomingMessage, res: ServerResponse): boolean => {
      const target = targetOf(req.method, req.url)
      if (target === undefined) return false
      const headers = req.headers
      const length = Number(headers["content-length"])
      const auth = headers["authorization"]
      if (
        headers["transfer-encoding"] !== undefined ||
        !(length > 0 && length <= config.maxBodyBytes) ||
        !ServerLimits.isJson(headers["content-type"]) ||
        !headers["content-type"]!.toLowerCase().includes("application/json") ||
        auth === undefined ||
        auth.length <= 7
      ) {
        return false
      }
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => handle(target, req, res, (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString("utf8")))
      req.on("error", () => res.destroy())
      return true
    }
  })
