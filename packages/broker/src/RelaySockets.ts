/**
 * The relay's client sockets: `GET /ws/broker/spawns/:id/logs?n=` and
 * `GET /ws/broker/spawns/:id/terminal?cols=&rows=`, for browsers (`?token=`) and the CLI
 * (Bearer header). Everything is checked before the upgrade, so a refusal is an HTTP status
 * with the contract's JSON error: the token (401), the peer role (403), the spawn in the
 * token's tenant (404, also for other tenants' spawns), the `attach` / `attach:any` permission (403),
 * the query (400). After the upgrade a
 * runner that is not linked, or does not know the spawn, is an `error` frame and a close code
 * (`RunnerFrame.RelayCloseCode`); a client that does not read is cut off (4008) and the
 * runner told to stop the stream, so it never backs up the runner's link.
 *
 * With several instances on PostgreSQL, a socket whose runner is linked to another instance is
 * checked here all the same, then piped to that instance (`RelayForward.ts`), which checks the
 * credential again; the frames and close codes are the holder's, the slow-client cut is ours.
 */
import { HttpApiBuilder, HttpServerResponse, Socket } from "@effect/platform"
import { Authenticator, Codec, Errors, Ids, Permission, RunnerFrame } from "@mks/a2a"
import { Deferred, Effect, Option, Runtime, Schedule, Schema } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import * as Channels from "./Channels.js"
import { TOKEN_POLL_MS } from "./Connections.js"
import { Relay, type RelayStream, type StreamSink } from "./Relay.js"
import * as RelayForward from "./RelayForward.js"
import { TokenStore } from "./TokenStore.js"

/**
 * Bytes a relay client may leave unread before it is cut off (4008). A log's history is at most
 * 1 MiB of text and a terminal's backlog 64 KiB, so only a client that stopped reading gets here.
 */
export const RELAY_SLOW_BYTES = 4 * 1024 * 1024

const decoder = new TextDecoder()
const textOf = (data: string | Uint8Array) => (typeof data === "string" ? data : decoder.decode(data))

const decodeSpawnId = Codec.decodeUnknown(Ids.SpawnId)
const queryInt = (name: string, min: number, max: number, fallback: number) => (value: string | null) =>
  value === null
    ? Effect.succeed(fallback)
    : Codec.decodeUnknown(Schema.NumberFromString.pipe(Schema.int(), Schema.between(min, max)))(value).pipe(
        Effect.mapError((e) => new Errors.InvalidRequest({ message: `${name}: ${e.message}`, field: name }))
      )
const decodeN = queryInt("n", 0, RunnerFrame.MAX_LOG_TAIL, 200)
const decodeCols = queryInt("cols", 1, 1_000, 120)
const decodeRows = queryInt("rows", 1, 1_000, 40)
const decodeClientFrame = Codec.decodeJson(RunnerFrame.RelayClientFrame)
/** Client frames kept while the stream is being opened (a paste, a few keys and a resize fit). */
const MAX_EARLY_FRAMES = 256
const encodeLogs = Codec.encodeJson(RunnerFrame.RelayLogsFrame)
const encodeTerminal = Codec.encodeJson(RunnerFrame.RelayTerminalFrame)

type Kind = "logs" | "terminal"

const relaySocket = (kind: Kind) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    const relay = yield* Relay
    const config = yield* BrokerConfig
    const tokens = yield* TokenStore
    const directory = Option.getOrUndefined(yield* Effect.serviceOption(RelayForward.RelayDirectory))
    const { request, url, principal, id, token } = yield* Channels.preflight
    // A socket another instance forwarded here (it did the checks below too, and does them again here).
    const hop = request.headers[RelayForward.HOP_HEADER]
    const spawnId = yield* decodeSpawnId(id)
    // Other tenants' spawns are 404 (existence does not leak).
    const spawn = yield* bus.spawns.get(principal.tenant, spawnId)
    // `attach` reaches the principal's own spawns, `attach:any` every spawn of the tenant (Permission.ts).
    // A forwarded socket is recorded on both instances; the holder's entry names the viewer's instance.
    const detail = hop !== undefined && /^[0-9a-f]{1,32}$/.test(hop) ? `${kind} via instance ${hop}` : kind
    const record = (result: "allowed" | "refused", error?: string) =>
      bus.audit.record({ tenant: principal.tenant, actor: principal.subject, action: "attach", spawnId, runnerId: spawn.runnerId, detail, result, ...(error !== undefined ? { error } : {}) })
    yield* Permission.authorizeAttach(principal, spawn).pipe(Effect.tapError((e) => record("refused", `${e._tag}: ${e.message}`)))
    yield* record("allowed")
    const open =
      kind === "logs"
        ? { kind, spawnId, n: yield* decodeN(url.searchParams.get("n")) }
        : { kind, spawnId, cols: yield* decodeCols(url.searchParams.get("cols")), rows: yield* decodeRows(url.searchParams.get("rows")) }
    const tokenId = yield* tokens.idOf(token)
    const socket = yield* request.upgrade.pipe(Effect.mapError(() => new Errors.InvalidRequest({ message: "expected a WebSocket upgrade" })))

    yield* Effect.scoped(
      Effect.gen(function* () {
        const write = yield* socket.writer
        const runtime = yield* Effect.runtime<never>()
        const opened = yield* Deferred.make<void>()
        const ended = yield* Deferred.make<void>()
        let raw: ReturnType<typeof Channels.rawSocketOf>
        let closing = false
        let stream: RelayStream | undefined
        /**
         * Client frames that came before the stream was open (finding the instance that holds
         * the runner's link takes a query): kept, in order, and sent once it is.
         */
        let early: Array<RunnerFrame.RelayClientFrame> | undefined = []
        const apply = (frame: RunnerFrame.RelayClientFrame) => (frame.type === "input" ? stream?.input(frame.data) : stream?.resize(frame.cols, frame.rows))
        const started = (opened: RelayStream | undefined) => {
          stream = opened
          const queued = early ?? []
          early = undefined
          for (const frame of queued) apply(frame)
        }

        const close = (code: number, reason: string) => {
          if (closing) return
          closing = true
          stream?.close()
          if (raw !== undefined) raw.ws.close(code, reason)
          else Runtime.runFork(runtime)(Effect.ignore(write(new Socket.CloseEvent(code, reason))))
        }
        const out = (text: string) => {
          if (closing) return
          if (raw === undefined) return void Runtime.runFork(runtime)(Effect.ignore(write(text)))
          if (raw.ws.bufferedAmount > RELAY_SLOW_BYTES) return close(RunnerFrame.RelayCloseCode.slowConsumer, "slow consumer: open the stream again")
          raw.ws.send(text)
        }
        const encode = (frame: RunnerFrame.RelayTerminalFrame) => (kind === "logs" ? encodeLogs(frame as RunnerFrame.RelayLogsFrame) : encodeTerminal(frame))
        const fail = (error: Errors.WireError) => {
          out(encode({ type: "error", error }))
          close(error._tag === "SpawnNotFound" ? RunnerFrame.RelayCloseCode.notFound : RunnerFrame.RelayCloseCode.runnerUnavailable, error.message.slice(0, 120))
        }
        const sink: StreamSink = {
          lines: (lines) => out(encodeLogs({ type: "log", lines, at: new Date().toISOString() })),
          output: (data) => out(encodeTerminal({ type: "output", data })),
          end: (reason, status, exitCode) => {
            stream = undefined // ended by the runner: nothing to close there
            out(encode(kind === "terminal" && status !== undefined ? { type: "exit", status, exitCode } : { type: "end", reason, status, exitCode }))
            close(1000, reason.slice(0, 120))
          },
          error: (error) => {
            stream = undefined
            fail(error)
          }
        }

        const onFrame = (data: string | Uint8Array): Effect.Effect<void> => {
          const text = textOf(data)
          const refuse = (error: Errors.WireError) => Effect.sync(() => out(encode({ type: "error", error })))
          if (kind === "logs") return refuse(new Errors.InvalidRequest({ message: "the log socket takes no frames", field: "type" }))
          // An input frame is its data plus a few bytes of JSON: anything longer is refused whole.
          if (text.length > RunnerFrame.MAX_TERMINAL_DATA + 64 || text.length > config.maxBodyBytes) {
            return refuse(new Errors.PayloadTooLarge({ message: `terminal frames carry at most ${RunnerFrame.MAX_TERMINAL_DATA} characters`, limit: RunnerFrame.MAX_TERMINAL_DATA }))
          }
          if (Channels.nestsDeeperThan(text)) return refuse(Channels.tooDeep())
          return decodeClientFrame(text).pipe(
            Effect.flatMap((frame) => {
              if (early === undefined) return Effect.sync(() => apply(frame))
              if (early.length >= MAX_EARLY_FRAMES) return refuse(new Errors.ServiceUnavailable({ message: "the terminal is still opening: frame dropped, send it again" }))
              return Effect.sync(() => void early?.push(frame))
            }),
            Effect.catchAll(refuse)
          )
        }

        yield* socket
          .runRaw(onFrame, {
            onOpen: Effect.sync(() => {
              raw = Channels.rawSocketOf(request)
              Channels.capPayload(request, config.maxBodyBytes)
              Deferred.unsafeDone(opened, Effect.void)
            })
          })
          .pipe(
            Effect.catchAll(() => Effect.void),
            Effect.ensuring(
              Effect.sync(() => {
                // The client went away: the runner stops sending.
                stream?.close()
                stream = undefined
                closing = true
                Deferred.unsafeDone(opened, Effect.void)
                Deferred.unsafeDone(ended, Effect.void)
              })
            ),
            Effect.forkScoped
          )
        yield* Deferred.await(opened)
        if (closing) return

        /**
         * The runner's link is held by another instance (PostgreSQL): pipe this socket to the
         * same path there, frames as they are both ways, its close code ours.
         */
        const forward = (holder: RelayForward.Holder, directory: RelayForward.RelayDirectoryService) => {
          // The checked query, never the browser's `?token=` (the credential goes as a header).
          const path = `${url.pathname}${open.kind === "logs" ? `?n=${open.n}` : `?cols=${open.cols}&rows=${open.rows}`}`
          const upstream = RelayForward.connect(holder, path, token, directory.instance, spawn.runnerId, {
            opened: () => {},
            frame: out,
            closed: (code, reason) => {
              stream = undefined // ended by the holder: nothing to close there
              close(code, reason.slice(0, 120))
            },
            failed: (error) => {
              stream = undefined
              fail(error)
            }
          })
          const remote: RelayStream = {
            id: 0,
            input: (data) => upstream.send(JSON.stringify({ type: "input", data })),
            resize: (cols, rows) => upstream.send(JSON.stringify({ type: "resize", cols, rows })),
            close: upstream.close
          }
          return remote
        }

        const opening = yield* Effect.either(relay.open(principal.tenant, spawn.runnerId, open, sink))
        if (opening._tag === "Right") {
          if (closing) opening.right.close()
          else started(opening.right)
        } else if (directory === undefined || hop !== undefined) fail(opening.left)
        else {
          // Not linked here: is it linked to another instance of the cluster?
          const holder = yield* directory.holderOf(principal.tenant, spawn.runnerId)
          if (closing) return
          if (holder === undefined || holder.instance === directory.instance) fail(opening.left)
          else started(forward(holder, directory))
        }
        early = undefined
        // Whatever ends this socket's scope closes the stream (local or forwarded).
        yield* Effect.addFinalizer(() => Effect.sync(() => stream?.close()))

        // A revoked static token closes the socket (as the peer channel's 4003).
        if (tokenId !== undefined) {
          yield* tokens.activeIds.pipe(
            Effect.map((active) => {
              if (!active.has(tokenId)) close(RunnerFrame.RelayCloseCode.revoked, "credentials revoked")
            }),
            Effect.repeat(Schedule.spaced(TOKEN_POLL_MS)),
            Effect.forkScoped
          )
        }

        yield* Deferred.await(ended).pipe(Effect.onInterrupt(() => Effect.sync(() => close(1001, "broker shutting down"))))
      })
    )
    return HttpServerResponse.empty()
  })

const refuse = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, Errors.WireError, R>) =>
  handler.pipe(Effect.catchAll((error) => Effect.succeed(Channels.errorResponse(error))))

/** Mount the two relay routes on the API's router. */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const services = yield* Effect.context<Bus | BrokerConfig | Relay | TokenStore | Authenticator.Authenticator>()
    yield* router.get("/ws/broker/spawns/:id/logs", refuse(relaySocket("logs")).pipe(Effect.provide(services)))
    yield* router.get("/ws/broker/spawns/:id/terminal", refuse(relaySocket("terminal")).pipe(Effect.provide(services)))
  })
)
