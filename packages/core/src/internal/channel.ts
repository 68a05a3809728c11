import {
  Cause,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Mailbox,
  Option,
  Queue,
  Redacted,
  Ref,
  Schedule,
  Schema,
  type Scope,
  Stream,
  Subscribable,
  SubscriptionRef
} from "effect"
import WebSocket from "ws"
import type { Channel, ChannelOptions, ChannelState, SendInput } from "../BrokerClient.js"
import * as ChannelFrame from "../ChannelFrame.js"
import { toInvalidRequest } from "../Codec.js"
import { InvalidRequest, type WireError } from "../Errors.js"
import { type PeerId, randomToken } from "../Ids.js"
import type { Message, SendResult } from "../Message.js"
import type { Peer } from "../Peer.js"

/**
 * The channel cannot (or can no longer) do what was asked:
 * - `closed`: its scope was closed;
 * - `unregistered`: the broker closed it with 4001 (peer unregistered);
 * - `revoked`: the broker closed it with 4003 (the token it was opened with was revoked);
 * - `rejected`: the broker refused the upgrade (`status` 401, 403 or 404);
 * - `disconnected`: the socket dropped while a `send` awaited its answer (outcome unknown).
 */
export class ChannelClosed extends Data.TaggedError("ChannelClosed")<{
  readonly reason: "closed" | "unregistered" | "revoked" | "rejected" | "disconnected"
  readonly message: string
  /** WebSocket close code, when the socket closed. */
  readonly code?: number | undefined
  /** HTTP status of a refused upgrade. */
  readonly status?: number | undefined
}> {}

/** The frame could not be written because the socket is not open (it was never sent). */
class NotOpen extends Data.TaggedError("NotOpen") {}

type Link =
  | { readonly _tag: "Connecting" }
  | { readonly _tag: "Open"; readonly socket: WebSocket; readonly peer: Peer }
  | { readonly _tag: "Closed"; readonly error: ChannelClosed }

type OpenLink = Extract<Link, { readonly _tag: "Open" }>

type SocketEvent =
  | { readonly _tag: "Frame"; readonly text: string }
  | { readonly _tag: "Closed"; readonly code: number; readonly reason: string; readonly status: number | undefined }

interface PendingSend {
  readonly answer: Deferred.Deferred<SendResult, WireError | ChannelClosed>
  /** The socket the frame went out on; only its close fails the answer. */
  readonly socket: WebSocket
}

/** Ids of recently emitted messages. Bounded (oldest forgotten first) so long-lived channels stay small. */
class RecentIds {
  private readonly ids = new Set<string>()
  constructor(private readonly capacity: number) {}
  /** False when the id was already seen. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false
    this.ids.add(id)
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next()
      if (!oldest.done) this.ids.delete(oldest.value)
    }
    return true
  }
}

/** 100 ms doubling to 5 s, ±20 % jitter so a fleet does not reconnect in lockstep after a broker restart. */
const reconnectSchedule = Schedule.exponential("100 millis").pipe(
  Schedule.either(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

const DEFAULT_HEARTBEAT = Duration.seconds(20)
/** How long a normal close waits for the broker's close frame before dropping the socket. */
const CLOSE_TIMEOUT = Duration.seconds(2)
const EVENT_BUFFER = 1_024
const RECENT_IDS = 10_000
/** Upgrade answers that will not change by retrying. */
const FATAL_STATUS = new Set([401, 403, 404])

export interface ChannelConfig {
  readonly baseUrl: URL
  readonly token: Redacted.Redacted<string>
  readonly peerId: PeerId
  readonly options?: ChannelOptions | undefined
}

/** `<base>/ws/broker/peer/:id?after=` with the ws scheme matching the base's http scheme. */
export const channelUrl = (baseUrl: URL, peerId: string, after: number | undefined, presence?: ChannelFrame.PresenceMode): URL => {
  const base = baseUrl.href.endsWith("/") ? baseUrl : new URL(`${baseUrl.href}/`)
  const url = new URL(`ws/broker/peer/${encodeURIComponent(peerId)}`, base)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  if (after !== undefined) url.searchParams.set("after", String(after))
  if (presence !== undefined && presence !== "all") url.searchParams.set("presence", presence)
  return url
}

const encodeFrame = (frame: ChannelFrame.ClientFrame): Effect.Effect<string, InvalidRequest> =>
  Schema.encode(ChannelFrame.ClientFrameJson)(frame).pipe(Effect.mapError(toInvalidRequest))

const decodeFrame = Schema.decodeUnknown(ChannelFrame.ServerFrameJson)

const HEARTBEAT_TEXT = JSON.stringify({ type: "heartbeat" })

const textOf = (data: WebSocket.RawData): string =>
  Buffer.isBuffer(data)
    ? data.toString("utf8")
    : Array.isArray(data)
    ? Buffer.concat(data).toString("utf8")
    : Buffer.from(data).toString("utf8")

/** Write one frame; `NotOpen` when it certainly did not leave, `disconnected` when the write itself failed. */
const transmit = (socket: WebSocket, text: string): Effect.Effect<void, NotOpen | ChannelClosed> =>
  Effect.async((resume) => {
    if (socket.readyState !== WebSocket.OPEN) return resume(Effect.fail(new NotOpen()))
    socket.send(text, (error) =>
      resume(
        error === undefined || error === null
          ? Effect.void
          : Effect.fail(new ChannelClosed({ reason: "disconnected", message: `write failed: ${error.message}` }))
      )
    )
  })

/**
 * One element per pull (not `Mailbox.toStream`'s whole chunks), so a consumer that stops
 * early (`Stream.take(n)`) leaves the rest buffered for the next run instead of dropping it.
 */
const takeEach = <A>(mailbox: Mailbox.ReadonlyMailbox<A, ChannelClosed>): Stream.Stream<A, ChannelClosed> =>
  Stream.repeatEffectOption(
    Effect.mapError(mailbox.take, (error) => (Cause.isNoSuchElementException(error) ? Option.none() : Option.some(error)))
  )

/** The error that ends the channel for good, if this close is one. */
const fatalError = (event: Extract<SocketEvent, { _tag: "Closed" }>): ChannelClosed | undefined => {
  if (event.code === ChannelFrame.CloseCode.unregistered) {
    return new ChannelClosed({
      reason: "unregistered",
      code: event.code,
      message: `the broker closed the channel: ${event.reason || "peer unregistered"}`
    })
  }
  if (event.code === ChannelFrame.CloseCode.revoked) {
    return new ChannelClosed({
      reason: "revoked",
      code: event.code,
      message: `the broker closed the channel: ${event.reason || "credentials revoked"}`
    })
  }
  if (event.status !== undefined && FATAL_STATUS.has(event.status)) {
    return new ChannelClosed({
      reason: "rejected",
      status: event.status,
      message: `the broker refused the channel with HTTP ${event.status}`
    })
  }
  return undefined
}

/** Open a peer's channel for the lifetime of the scope (see `BrokerClient.Channel`). */
export const make = (config: ChannelConfig): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.gen(function*() {
    const options = config.options ?? {}
    const heartbeatInterval = Duration.decode(options.heartbeatInterval ?? DEFAULT_HEARTBEAT)
    const authorization = `Bearer ${Redacted.value(config.token)}`

    const link = yield* SubscriptionRef.make<Link>({ _tag: "Connecting" })
    const messages = yield* Mailbox.make<Message, ChannelClosed>()
    // Events are live only (never replayed), so a reader that falls behind loses the oldest.
    const events = yield* Mailbox.make<ChannelFrame.PeerEvent, ChannelClosed>({ capacity: EVENT_BUFFER, strategy: "sliding" })
    /** Highest acked seq known here (ours or the broker's); `None` until the first hello or ack. */
    const cursor = yield* Ref.make(Option.none<number>())
    const lastPeer = yield* Ref.make(Option.none<Peer>())
    // Plain mutable state is fine here: it is only touched synchronously, never across a yield.
    const pending = new Map<string, PendingSend>()
    const recent = new RecentIds(RECENT_IDS)

    const failPending = (error: ChannelClosed, socket?: WebSocket) =>
      Effect.forEach(
        [...pending].filter(([, p]) => socket === undefined || p.socket === socket),
        ([ref, p]) => Effect.sync(() => pending.delete(ref)).pipe(Effect.zipRight(Deferred.fail(p.answer, error))),
        { discard: true }
      )

    const advanceCursor = (seq: number) =>
      Ref.modify(cursor, (current) => {
        const previous = Option.getOrElse(current, () => 0)
        return [previous, Option.some(Math.max(previous, seq))] as const
      })

    const terminate = (error: ChannelClosed, failStreams: boolean) =>
      Effect.gen(function*() {
        const first = yield* SubscriptionRef.modify(link, (l): readonly [boolean, Link] =>
          l._tag === "Closed" ? [false, l] : [true, { _tag: "Closed", error }]
        )
        if (!first) return
        yield* failPending(error)
        if (failStreams) {
          yield* messages.fail(error)
          yield* events.fail(error)
        } else {
          yield* messages.end
          yield* events.end
        }
      })

    /** The open socket, waiting through reconnects; fails once the channel is closed for good. */
    const awaitOpen: Effect.Effect<OpenLink, ChannelClosed> = link.changes.pipe(
      Stream.filter((l): l is OpenLink | Extract<Link, { _tag: "Closed" }> =>
        l._tag === "Closed" || (l._tag === "Open" && l.socket.readyState === WebSocket.OPEN)
      ),
      Stream.runHead,
      Effect.flatMap((head) =>
        Option.isSome(head) && head.value._tag === "Open"
          ? Effect.succeed(head.value)
          : Effect.fail(
              Option.isSome(head) && head.value._tag === "Closed"
                ? head.value.error
                : new ChannelClosed({ reason: "closed", message: "the channel is closed" })
            )
      )
    )

    const handleFrame = (frame: ChannelFrame.ServerFrame, socket: WebSocket): Effect.Effect<void> => {
      switch (frame.type) {
        case "hello":
          return Effect.gen(function*() {
            yield* Ref.set(lastPeer, Option.some(frame.peer))
            const known = yield* advanceCursor(frame.cursor)
            yield* SubscriptionRef.update(link, (l): Link => (l._tag === "Closed" ? l : { _tag: "Open", socket, peer: frame.peer }))
            // Acks made while disconnected (or lost with the last socket) are sent again.
            if (known > frame.cursor) {
              yield* encodeFrame({ type: "ack", upTo: known }).pipe(
                Effect.flatMap((text) => transmit(socket, text)),
                Effect.ignore
              )
            }
          })
        case "message":
          return recent.add(frame.message.id) ? Effect.asVoid(messages.offer(frame.message)) : Effect.void
        case "event":
          return Effect.asVoid(events.offer(frame.event))
        case "acked":
          return Effect.asVoid(advanceCursor(frame.cursor))
        case "sent": {
          const waiting = frame.ref === undefined ? undefined : pending.get(frame.ref)
          return waiting === undefined
            ? Effect.void
            : Deferred.succeed(waiting.answer, { message: frame.message, recipients: frame.recipients })
        }
        case "error": {
          const waiting = frame.ref === undefined ? undefined : pending.get(frame.ref)
          return waiting === undefined
            ? Effect.logWarning("the broker refused a channel frame", frame.error)
            : Deferred.fail(waiting.answer, frame.error)
        }
      }
    }

    const openSocket = (events: Queue.Queue<SocketEvent>, closed: Deferred.Deferred<void>) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const after = [options.after, Option.getOrUndefined(yield* Ref.get(cursor))].filter((n) => n !== undefined)
          const url = channelUrl(config.baseUrl, config.peerId, after.length === 0 ? undefined : Math.max(...after), options.presence)
          const socket = new WebSocket(url, { headers: { authorization } })
          let status: number | undefined
          socket.on("message", (data, isBinary) => {
            if (!isBinary) Queue.unsafeOffer(events, { _tag: "Frame", text: textOf(data) })
          })
          socket.on("unexpected-response", (_request, response) => {
            status = response.statusCode
            response.resume()
            socket.terminate()
          })
          // Every failure is followed by `close`, which is what drives reconnection.
          socket.on("error", () => {})
          socket.on("close", (code, reason) => {
            Queue.unsafeOffer(events, { _tag: "Closed", code, reason: reason.toString("utf8"), status })
            Deferred.unsafeDone(closed, Exit.void)
          })
          return socket
        }),
        (socket) =>
          Effect.suspend(() => {
            if (socket.readyState === WebSocket.CLOSED) return Effect.void
            if (socket.readyState === WebSocket.CONNECTING) return Effect.sync(() => socket.terminate())
            socket.close(ChannelFrame.CloseCode.normal)
            return Deferred.await(closed).pipe(
              Effect.timeout(CLOSE_TIMEOUT),
              Effect.catchAll(() => Effect.sync(() => socket.terminate()))
            )
          })
      )

    /** One socket from upgrade to close; answers whether it got a hello and whether the close is final. */
    const session = Effect.gen(function*() {
      const socketEvents = yield* Queue.unbounded<SocketEvent>()
      const closed = yield* Deferred.make<void>()
      const socket = yield* openSocket(socketEvents, closed)
      yield* transmit(socket, HEARTBEAT_TEXT).pipe(
        Effect.ignore,
        Effect.delay(heartbeatInterval),
        Effect.forever,
        Effect.forkScoped
      )
      let established = false
      while (true) {
        const event = yield* Queue.take(socketEvents)
        if (event._tag === "Closed") {
          const fatal = fatalError(event)
          yield* failPending(
            fatal ?? new ChannelClosed({ reason: "disconnected", code: event.code, message: "the socket closed before the broker answered" }),
            socket
          )
          return { established, fatal, code: event.code, status: event.status }
        }
        const frame = yield* decodeFrame(event.text).pipe(
          // A newer broker may send frames this client does not know; skip them rather than drop the link.
          Effect.tapError((error) => Effect.logWarning("skipping an undecodable channel frame", error.message)),
          Effect.option
        )
        if (Option.isNone(frame)) continue
        if (frame.value.type === "hello") established = true
        yield* handleFrame(frame.value, socket)
      }
    }).pipe(Effect.scoped)

    const connectionLoop = Effect.gen(function*() {
      const backoff = yield* Schedule.driver(reconnectSchedule)
      while (true) {
        const outcome = yield* session
        if (outcome.fatal !== undefined) return yield* terminate(outcome.fatal, true)
        yield* SubscriptionRef.update(link, (l): Link => (l._tag === "Closed" ? l : { _tag: "Connecting" }))
        if (outcome.established) yield* backoff.reset
        const delay = yield* backoff.next(undefined).pipe(Effect.orElseSucceed(() => Duration.zero))
        yield* Effect.logDebug("channel reconnecting", { peer: config.peerId, code: outcome.code, status: outcome.status, delay })
      }
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logError("channel failed", cause).pipe(
          Effect.zipRight(terminate(new ChannelClosed({ reason: "closed", message: `the channel failed: ${Cause.pretty(cause)}` }), true))
        )
      )
    )

    /**
     * Acks are cumulative, so the acks of one turn of the event loop leave as one frame carrying
     * the highest seq (a reader acking every message sends one ack per burst, not per message).
     * Plain mutable state: touched only synchronously.
     */
    let ackSocket: WebSocket | undefined
    let ackUpTo = 0
    const flushAcks = () => {
      const socket = ackSocket
      ackSocket = undefined
      // Not sent now means sent after the next hello (the cursor is ahead of the broker's).
      if (socket !== undefined && socket.readyState === WebSocket.OPEN) socket.send(`{"type":"ack","upTo":${ackUpTo}}`, () => {})
    }

    const ack = (upTo: number): Effect.Effect<void, ChannelClosed | WireError> =>
      Effect.gen(function*() {
        yield* encodeFrame({ type: "ack", upTo })
        const current = yield* SubscriptionRef.get(link)
        if (current._tag === "Closed") return yield* current.error
        const previous = yield* advanceCursor(upTo)
        if (upTo <= previous || current._tag !== "Open") return
        if (upTo > ackUpTo) ackUpTo = upTo
        if (ackSocket === current.socket) return
        if (ackSocket !== undefined) flushAcks()
        ackSocket = current.socket
        setImmediate(flushAcks)
      })

    const send = (input: SendInput): Effect.Effect<SendResult, WireError | ChannelClosed> =>
      Effect.gen(function*() {
        const ref = input.ref ?? `r_${randomToken(16)}`
        if (pending.has(ref)) {
          return yield* new InvalidRequest({ message: `ref ${ref} is already awaiting an answer`, field: "ref" })
        }
        const text = yield* encodeFrame({ ...input, type: "send", ref })
        const answer = yield* Deferred.make<SendResult, WireError | ChannelClosed>()
        const forget = Effect.sync(() => {
          if (pending.get(ref)?.answer === answer) pending.delete(ref)
        })
        // Registered before the write so an answer can never arrive unclaimed; a frame that
        // never left (`NotOpen`) waits for the next open socket and goes out there.
        const deliver: Effect.Effect<void, ChannelClosed> = awaitOpen.pipe(
          Effect.tap((open) => Effect.sync(() => pending.set(ref, { answer, socket: open.socket }))),
          Effect.flatMap((open) => transmit(open.socket, text)),
          Effect.catchTag("NotOpen", () => Effect.zipRight(forget, Effect.suspend(() => deliver)))
        )
        return yield* deliver.pipe(Effect.zipRight(Deferred.await(answer)), Effect.ensuring(forget))
      })

    const hello: Effect.Effect<Peer, ChannelClosed> = Ref.get(lastPeer).pipe(
      Effect.flatMap(
        Option.match({
          onSome: Effect.succeed,
          onNone: () => Effect.map(awaitOpen, (open) => open.peer)
        })
      )
    )

    const closed: Effect.Effect<ChannelClosed> = link.changes.pipe(
      Stream.filterMap((l) => (l._tag === "Closed" ? Option.some(l.error) : Option.none())),
      Stream.runHead,
      Effect.map(Option.getOrElse(() => new ChannelClosed({ reason: "closed", message: "the channel is closed" })))
    )

    const stateOf = (l: Link): ChannelState => (l._tag === "Open" ? "open" : l._tag === "Closed" ? "closed" : "connecting")
    const state = Subscribable.make({
      get: Effect.map(SubscriptionRef.get(link), stateOf),
      changes: link.changes.pipe(Stream.map(stateOf), Stream.changes)
    })

    const messageStream = takeEach(messages)

    yield* Effect.addFinalizer(() =>
      terminate(new ChannelClosed({ reason: "closed", message: "the channel's scope was closed" }), false)
    )
    // Forked after the finalizer above, so scope close first stops the loop (closing the socket with 1000).
    yield* Effect.forkScoped(connectionLoop)
    // Added last, so it runs first on scope close: an ack made just before is not lost with the socket.
    yield* Effect.addFinalizer(() => Effect.sync(flushAcks))

    const channel: Channel = {
      peerId: config.peerId,
      messages: options.autoAck === true
        ? messageStream.pipe(Stream.tap((message) => Effect.ignore(ack(message.seq))))
        : messageStream,
      events: takeEach(events),
      send,
      ack,
      cursor: Effect.map(Ref.get(cursor), Option.getOrElse(() => 0)),
      state,
      hello,
      closed
    }
    return channel
  })
