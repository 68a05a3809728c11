/**
 * Cross-instance relay: with several broker instances on one PostgreSQL database, a runner's
 * link is held by one of them (`a2a_runners.instance`). A relay client socket that lands on
 * another instance is authorized there exactly as a local one (`RelaySockets.ts`), and then
 * piped to the same relay path on the holding instance: the client's credential goes along as
 * a Bearer header (the holder authorizes it again; credentials are the cluster's), with the
 * hop header naming the forwarding instance, so the holder never forwards again. Frames are
 * carried as they are both ways (`input`/`resize` in; `log`/`output`/`end`/`exit`/`error`
 * out) and the holder's close code is the client's.
 *
 * Each instance advertises the base URL the others reach it at in `a2a_instances` (see
 * `PgStore.ts`): `A2A_BROKER_ADVERTISE_URL` (`BrokerConfig.advertiseUrl`), or the listening
 * address (loopback when it listens on a wildcard address). SQLite and in-memory brokers have
 * no directory: nothing here runs for them.
 */
import { HttpServer } from "@effect/platform"
import { Errors, Ids } from "@mks/a2a"
import { Config, Context, Effect, Layer, Option, Schema } from "effect"
import WebSocket from "ws"
import { BrokerConfig } from "./BrokerConfig.js"

/** Marks a relay socket opened by another instance (its value: that instance's id); such a socket is never forwarded again. */
export const HOP_HEADER = "a2a-relay-hop"

/** The instance holding a runner's link, and the base URL it advertised. */
export interface Holder {
  readonly instance: string
  readonly url: string
}

export interface RelayDirectoryService {
  /** This instance's id. */
  readonly instance: string
  /** Who holds the runner's link now; `undefined` when nobody does (or the holder advertised no URL). */
  readonly holderOf: (tenant: string, runner: Ids.RunnerId) => Effect.Effect<Holder | undefined>
  /** Record (and keep fresh) the base URL other instances reach this one at. */
  readonly advertise: (url: string) => Effect.Effect<void>
}

/** Present only on a shared store (PostgreSQL): the instances of the cluster and their URLs. */
export class RelayDirectory extends Context.Tag("@mks/a2a-broker/RelayDirectory")<RelayDirectory, RelayDirectoryService>() {}

/** Whether `url` can be advertised: an http:// or https:// URL with a host (the flag and the env variable). */
export const isAdvertiseUrl = (url: string): boolean => /^https?:\/\/[^/\s]+/i.test(url)

const advertiseConfig = Config.option(
  Config.string("A2A_BROKER_ADVERTISE_URL").pipe(
    Config.validate({ message: "A2A_BROKER_ADVERTISE_URL must be an http:// or https:// URL", validation: isAdvertiseUrl })
  )
)

/** The URL other instances reach this one at when none is configured: the listening address, loopback for a wildcard. */
export const defaultAdvertiseUrl = (address: HttpServer.Address): string => {
  if (address._tag !== "TcpAddress") return "http://127.0.0.1:4200"
  const host = address.hostname === "0.0.0.0" || address.hostname === "" ? "127.0.0.1" : address.hostname === "::" ? "::1" : address.hostname
  return `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`
}

/**
 * Once the server listens: advertise this instance's URL in the directory (when there is one).
 * `BrokerConfig.advertiseUrl` first, then `A2A_BROKER_ADVERTISE_URL`, then the listening address.
 */
export const advertiseLayer = Layer.effectDiscard(
  Effect.gen(function* () {
    const directory = yield* Effect.serviceOption(RelayDirectory)
    if (Option.isNone(directory)) return
    const config = yield* BrokerConfig
    const server = yield* HttpServer.HttpServer
    const fromEnv = yield* advertiseConfig.pipe(Effect.orDie)
    const url = (config.advertiseUrl ?? Option.getOrUndefined(fromEnv) ?? defaultAdvertiseUrl(server.address)).replace(/\/+$/, "")
    yield* directory.value.advertise(url)
    yield* Effect.logDebug(`relay: instance ${directory.value.instance} advertised at ${url}`)
  })
)

const decodeWireError = Schema.decodeUnknownOption(Schema.parseJson(Errors.WireError))

/** What the forwarding socket hands back to the client's socket. */
export interface UpstreamHandlers {
  /** The upstream socket is open: queued client frames have gone. */
  readonly opened: () => void
  /** A frame from the holder, as it is (already the client's JSON). */
  readonly frame: (text: string) => void
  /** The holder closed the socket with this code (after its last frame). */
  readonly closed: (code: number, reason: string) => void
  /** The holder could not be reached or refused the socket: the error to give the client. */
  readonly failed: (error: Errors.WireError) => void
}

export interface Upstream {
  /** A client frame (text JSON), sent once the socket is open (queued until then). */
  readonly send: (text: string) => void
  /** Close it (idempotent); nothing is reported after this. */
  readonly close: () => void
}

/** How long the holder may take to answer the upgrade. */
const HANDSHAKE_TIMEOUT_MS = 15_000
/** How long the holder may take to answer our close before the socket is dropped. */
const CLOSE_GRACE_MS = 2_000

/**
 * Open the relay socket `path` (path and query, as the client asked) on the holder, for the
 * client's `token`, marked as a hop from `from`. Exactly one of `closed` / `failed` is reported,
 * unless `close()` came first.
 */
export const connect = (holder: Holder, path: string, token: string, from: string, runner: string, on: UpstreamHandlers): Upstream => {
  const target = holder.url.replace(/^http/i, "ws") + path
  const ws = new WebSocket(target, {
    headers: { authorization: `Bearer ${token}`, [HOP_HEADER]: from },
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    perMessageDeflate: false
  })
  const queued: Array<string> = []
  let done = false
  const finish = () => {
    const first = !done
    done = true
    return first
  }
  const unreachable = (why: string) =>
    new Errors.ServiceUnavailable({ message: `runner ${runner} is linked to broker instance ${holder.instance} (${holder.url}), which cannot be reached: ${why}` })

  ws.on("open", () => {
    if (done) return
    for (const text of queued.splice(0)) ws.send(text)
    on.opened()
  })
  ws.on("message", (data, isBinary) => {
    if (done) return
    on.frame(isBinary ? Buffer.from(data as Buffer).toString("utf8") : String(data))
  })
  ws.on("unexpected-response", (_request, response) => {
    let body = ""
    response.setEncoding("utf8")
    response.on("data", (chunk: string) => {
      if (body.length < 64 * 1024) body += chunk
    })
    response.on("end", () => {
      if (!finish()) return
      ws.terminate()
      on.failed(Option.getOrElse(decodeWireError(body), () => unreachable(`HTTP ${response.statusCode}`)))
    })
    response.on("error", () => {
      if (finish()) on.failed(unreachable(`HTTP ${response.statusCode}`))
    })
  })
  ws.on("error", (error) => {
    if (finish()) on.failed(unreachable(error.message))
  })
  ws.on("close", (code, reason) => {
    if (!finish()) return
    // 1005: closed without a code (the holder's client side never does that) — a normal end.
    if (code === 1000 || code === 1001 || code === 1005 || (code >= 4000 && code < 5000)) on.closed(code === 1005 ? 1000 : code, String(reason))
    else on.failed(unreachable(`the socket closed with ${code}`))
  })

  return {
    send: (text) => {
      if (done) return
      if (ws.readyState === WebSocket.OPEN) ws.send(text)
      else if (ws.readyState === WebSocket.CONNECTING) queued.push(text)
    },
    close: () => {
      if (!finish()) return
      if (ws.readyState !== WebSocket.OPEN) return ws.terminate()
      ws.close(1000)
      // A holder that does not answer the close must not hold the socket (or a stopping process) for ws's 30 s.
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref()
    }
  }
}
