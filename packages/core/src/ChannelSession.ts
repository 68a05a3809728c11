/**
 * ChannelSession: the server side of a peer's live channel (docs/protocol.md), independent of
 * the transport. Any host that can move text frames both ways serves the channel protocol with
 * it: the broker over WebSockets (`Channels.ts`), a test in-process, another transport.
 *
 * What it guarantees, whatever the transport:
 * - `hello` (the peer record and its acked cursor) is the first frame;
 * - then the replay: every message after `after` (default: the cursor), in seq order;
 * - then live items, with nothing the replay covered repeated and nothing published during the
 *   replay lost (the session subscribes to the hub before it reads the inbox, and holds live
 *   items until the replay is out);
 * - client frames are handled one at a time in arrival order and answered in that order, except
 *   acks: they are picked out on arrival and coalesced (acks are cumulative: the cursor only
 *   moves forward), each commit answered with one `acked`. A host that stages sends
 *   (`sendStaged`) has them pipelined: the next frame is handled once a send is queued for its
 *   commit, not committed (at most `MAX_PIPELINED` waiting), and every answer (`sent`, `error`)
 *   is still written in frame order; the sends commit in frame order.
 *
 * The host provides the peer's operations (`ChannelSessionHost`) and a sink for frames
 * (`ChannelOutput`); the session returns `receive` for the frames the client sends.
 */
import { Effect, Fiber, Runtime, Schema, Scope } from "effect"
import { CloseCode, type ClientFrame, ClientFrame as ClientFrameSchema, type PeerEvent, type PeersChanged, type PresenceMode, type ServerFrame, ServerFrame as ServerFrameSchema } from "./ChannelFrame.js"
import type { ChannelHubService, ChannelItem } from "./ChannelHub.js"
import { DEFAULT_BUFFER } from "./ChannelHub.js"
import { decodeJson, encodeJson } from "./Codec.js"
import { InvalidRequest, PayloadTooLarge, type WireError } from "./Errors.js"
import type { PeerId } from "./Ids.js"
import type { InboxService } from "./Inbox.js"
import type { Message, SendMessage } from "./Message.js"
import type { Peer } from "./Peer.js"

/** What a `send` frame asks: a message from this session's peer. */
export type SendFields = Omit<SendMessage, "from">

/** What a send answers: the message (with the first recipient's seq) and who it was appended for. */
export interface SendResult {
  readonly message: Message
  readonly recipients: ReadonlyArray<PeerId>
}

/** The peer's side of the bus, as the host implements it (tenancy and ownership already checked). */
export interface ChannelSessionHost {
  readonly tenant: string
  readonly peerId: PeerId
  readonly hub: ChannelHubService
  readonly inbox: InboxService
  /** The peer is connected: mark it online; its record goes in the `hello`. */
  readonly connect: Effect.Effect<Peer, WireError>
  /** A `heartbeat` frame. */
  readonly heartbeat: Effect.Effect<unknown, WireError>
  /**
   * Send as this peer. `accepted` must be called once the message is committed and before it is
   * published to the recipients, so that `sent` precedes any delivery of it on this socket.
   */
  readonly send: (fields: SendFields, accepted: (result: SendResult) => void) => Effect.Effect<unknown, WireError>
  /**
   * Optional: `send` in two stages. The outer effect returns once the message is queued for
   * its commit, the inner one awaits the commit (then `accepted`, then the publish). Sends
   * staged one after another must commit in that order. With it the session pipelines sends.
   */
  readonly sendStaged?: ((fields: SendFields, accepted: (result: SendResult) => void) => Effect.Effect<Effect.Effect<unknown, WireError>, WireError>) | undefined
  /** Whether the peer still exists, asked when an event says it left (a `false` closes with 4001). */
  readonly registered: Effect.Effect<boolean, WireError>
  /** The peer's last session ended (called when no subscription of the peer is left). */
  readonly disconnected?: Effect.Effect<void> | undefined
  /**
   * Run once the session is subscribed, before `connect`, in the session's scope: what the host
   * tracks for the session's lifetime (released before `disconnected` runs).
   */
  readonly attached?: Effect.Effect<void, never, Scope.Scope> | undefined
  /** Messages written to the client (live and replayed), for metrics. */
  readonly delivered?: ((message: Message, replayed: boolean) => void) | undefined
}

/** Where the session writes; every call returns at once (a transport that cannot keep up closes itself). */
export interface ChannelOutput {
  /** Write one text frame, in call order. */
  readonly write: (text: string) => void
  /** Write a frame encoded once for every session it goes to (default: `write` of its text). */
  readonly writeShared?: ((frame: Buffer) => void) | undefined
  /** Close the transport with a close code of `ChannelFrame.CloseCode` (idempotent). */
  readonly close: (code: number, reason: string) => void
  /** Whether the transport is closed or closing: the session stops writing and reading. */
  readonly closed: () => boolean
}

export interface ChannelSessionOptions {
  /** Replay messages with `seq > after` (default: the acked cursor). */
  readonly after?: number | undefined
  /** Presence events wanted (default `all`). */
  readonly presence?: PresenceMode | undefined
  /** Largest client frame in bytes (default 1 MiB − 1). */
  readonly maxFrameBytes?: number | undefined
  /** Live items held during the replay before the session is closed as a slow consumer (default `ChannelHub.DEFAULT_BUFFER`). */
  readonly replayBuffer?: number | undefined
  /** Messages per inbox read of the replay (default 500). */
  readonly replayPage?: number | undefined
}

export interface ChannelSession {
  /**
   * A frame from the client (text, or UTF-8 bytes). Never blocks; frames are handled in
   * order, once the replay is out (acks at once). Frames may arrive before `start`.
   */
  readonly receive: (data: string | Uint8Array) => void
  /**
   * Subscribe, say `hello`, replay, then go live; returns once live (or once the output
   * closed). The session lives until the scope `make` ran in closes.
   */
  readonly start: Effect.Effect<void, WireError>
}

/**
 * Sends of one socket waiting for their commit at most (with a host that stages sends); the
 * socket's next frame is handled once one of them is answered. Bounds what one socket holds.
 */
export const MAX_PIPELINED = 64

/** Deepest JSON nesting accepted in a frame: decoding and error formatting recurse per level. */
export const MAX_JSON_DEPTH = 128

/** Whether JSON text nests arrays/objects deeper than `limit` (a scan, without parsing). */
export const nestsDeeperThan = (text: string, limit = MAX_JSON_DEPTH): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

export const tooDeep = () => new InvalidRequest({ message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` })

/** The legacy events a `peers_changed` stands for, for sessions that asked for `presence=all`. */
export const expand = (event: typeof PeersChanged.Type): Array<PeerEvent> => [
  ...event.joined.map((peer) => ({ type: "peer_joined" as const, peer, at: event.at })),
  ...event.left.map((peer) => ({ type: "peer_left" as const, peer, at: event.at })),
  ...event.updated.map((peer) => ({ type: "peer_updated" as const, peer, at: event.at }))
]

export const encodeServer = encodeJson(ServerFrameSchema)

/**
 * The text frames of an event for a presence mode, encoded once per event and mode (the same
 * Buffers go to every session: one flush may go to thousands of sockets in one turn).
 */
export const makeEventEncoder = () => {
  let last: PeerEvent | undefined
  const cache = new Map<PresenceMode | "other", ReadonlyArray<Buffer>>()
  return (event: PeerEvent, mode: PresenceMode): ReadonlyArray<Buffer> => {
    if (event !== last) {
      last = event
      cache.clear()
    }
    const isPresence = event.type === "peers_changed" || event.type === "peer_joined" || event.type === "peer_left" || event.type === "peer_updated"
    const key = isPresence ? mode : "other"
    const hit = cache.get(key)
    if (hit !== undefined) return hit
    const events = !isPresence || key === "all" ? (event.type === "peers_changed" ? expand(event) : [event]) : key === "none" ? [] : [event]
    const texts = events.map((e) => Buffer.from(encodeServer({ type: "event", event: e })))
    cache.set(key, texts)
    return texts
  }
}
const eventFrames = makeEventEncoder()

/**
 * A message's JSON without a schema pass (a Message is a schema class of JSON values: it
 * stringifies to its encoding). The copies of one message differ only in `seq` (fan-out to a
 * team, several sessions of a peer, the sender's `sent`): the rest is encoded once per id.
 */
const makeMessageJson = () => {
  let lastId: string | undefined
  let rest = ""
  return (message: Message): string => {
    if (message.id !== lastId) {
      const { seq: _seq, ...fields } = message
      rest = JSON.stringify(fields).slice(1)
      lastId = message.id
    }
    return rest === "}" ? `{"seq":${message.seq}}` : `{"seq":${message.seq},${rest}`
  }
}
const messageJson = makeMessageJson()
/** The `message` frame of a message. */
export const messageFrame = (message: Message) => `{"type":"message","message":${messageJson(message)}}`
/** The `sent` frame answering a send. */
export const sentFrame = (ref: string | undefined, result: SendResult) =>
  `{"type":"sent",${ref === undefined ? "" : `"ref":${JSON.stringify(ref)},`}"message":${messageJson(result.message)},"recipients":${JSON.stringify(result.recipients)}}`
/**
 * A `SendResult`'s JSON (the body of `POST /api/messages`' 201) without a schema pass, as the
 * frames above: the same value `Schema.encode(SendResult)` gives, keys in another order.
 */
export const sendResultJson = (result: SendResult) =>
  `{"message":${messageJson(result.message)},"recipients":${JSON.stringify(result.recipients)}}`

const decoder = new TextDecoder()
const textOf = (data: string | Uint8Array) => (typeof data === "string" ? data : decoder.decode(data))

/**
 * Decode a client frame: the schema's synchronous decoder for the common case, the Effect
 * decoder (with its `InvalidRequest` naming the field) for anything that does not decode.
 */
const decodeClient = decodeJson(ClientFrameSchema)
const decodeClientSync = Schema.decodeUnknownEither(ClientFrameSchema)
const decodeClientFrame = (text: string): Effect.Effect<ClientFrame, InvalidRequest> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return decodeClient(text)
  }
  const decoded = decodeClientSync(json)
  return decoded._tag === "Right" ? Effect.succeed(decoded.right) : decodeClient(text)
}

/**
 * The `upTo` of a text that is an `ack` frame, else `undefined` (then it takes the ordered path).
 * Acks are picked out as they arrive, before the ordered queue, so they never wait behind sends
 * (and sends never behind acks). A cheap test first: this runs for every frame.
 */
const ackOf = (text: string): number | undefined => {
  if (text.length > 64 || !text.includes('"ack"')) return undefined
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  const decoded = decodeClientSync(json)
  return decoded._tag === "Right" && decoded.right.type === "ack" ? decoded.right.upTo : undefined
}

type Task = string | Uint8Array | Effect.Effect<void>

/**
 * A session for the scope's lifetime: `receive` takes client frames at once, `start` opens
 * the channel (closing the scope ends the session; the host closes its transport).
 */
export const make = (host: ChannelSessionHost, out: ChannelOutput, options: ChannelSessionOptions = {}): Effect.Effect<ChannelSession, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const { tenant, peerId, hub, inbox } = host
    const presence = options.presence ?? "all"
    const maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024 - 1
    const replayBuffer = options.replayBuffer ?? DEFAULT_BUFFER
    const replayPage = options.replayPage ?? 500
    const writeShared = out.writeShared ?? ((frame: Buffer) => out.write(frame.toString("utf8")))
    const send = (frame: ServerFrame) => Effect.sync(() => out.write(encodeServer(frame)))

    // Fibers of the session are forked on the caller's runtime only while there is work, and
    // interrupted by one plain scope finalizer (no fiber waits while a peer idles; see ScopedSync
    // for why not `forkScoped`/`FiberSet`, whose bookkeeping dominated a fleet's reconnect waves).
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    let ended = false
    let worker: Fiber.RuntimeFiber<void> | undefined
    let ackFiber: Fiber.RuntimeFiber<void> | undefined
    let answerFiber: Fiber.RuntimeFiber<void> | undefined
    yield* Scope.addFinalizer(
      scope,
      Effect.suspend(() => {
        ended = true
        const fibers = [worker, ackFiber, answerFiber].filter((f) => f !== undefined)
        worker = ackFiber = answerFiber = undefined
        return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
      })
    )

    // ---- inbound: frames are handled one at a time, in arrival order, by one fiber per
    // session that runs while there are frames and ends when there are none ----
    const tasks: Array<Task> = []
    let paused = true // until the hello and the replay are out
    let working = false
    const work: Effect.Effect<void> = Effect.suspend(() => {
      if (answers.length >= MAX_PIPELINED) {
        // Full pipeline: the answer fiber kicks the worker again once a send is answered.
        blocked = true
        working = false
        worker = undefined
        return Effect.void
      }
      const task = paused || ended ? undefined : tasks.shift()
      if (task === undefined) {
        working = false
        worker = undefined
        return Effect.void
      }
      const step = Effect.isEffect(task) ? task : onFrame(task)
      return Effect.zipRight(Effect.catchAllCause(step, () => Effect.void), work)
    })
    const kick = () => {
      if (working || ended || paused || tasks.length === 0) return
      working = true
      const fiber = runFork(work)
      // It may have run to the end already (every frame handled synchronously).
      if (working) worker = fiber
    }
    const schedule = (task: Task) => {
      tasks.push(task)
      kick()
    }

    // ---- answers in frame order: an answer that awaits a commit (a staged send), and every
    // answer behind one, waits here; one fiber writes them in order while there are any ----
    const answers: Array<Effect.Effect<void>> = []
    let answering = false
    let blocked = false
    const writeAnswers: Effect.Effect<void> = Effect.suspend(() => {
      const next = answers[0]
      if (next === undefined || ended) {
        answering = false
        answerFiber = undefined
        return Effect.void
      }
      return Effect.zipRight(
        Effect.catchAllCause(next, () => Effect.void),
        Effect.suspend(() => {
          answers.shift()
          if (blocked && answers.length < MAX_PIPELINED) {
            blocked = false
            kick()
          }
          return writeAnswers
        })
      )
    })
    /** Answer now when nothing is waiting and `answer` does not wait itself; else behind the rest. */
    const reply = (answer: Effect.Effect<void>, waits: boolean): Effect.Effect<void> => {
      if (!waits && answers.length === 0) return answer
      return Effect.sync(() => {
        answers.push(answer)
        if (answering || ended) return
        answering = true
        const fiber = runFork(writeAnswers)
        if (answering) answerFiber = fiber
      })
    }

    // ---- acks: coalesced. The cursor only moves forward, so the acks that arrive while one is
    // being committed merge into one cursor move (the highest `upTo`), written by the next
    // commit; one `acked` answers all of them. ----
    let ackWanted = -1 // the highest `upTo` received and not yet handed to a commit
    let acking = false
    const commitAcks: Effect.Effect<void> = Effect.suspend(() => {
      const upTo = ackWanted
      ackWanted = -1
      return inbox.ack(tenant, peerId, upTo).pipe(
        Effect.map(({ cursor }) => out.write(`{"type":"acked","cursor":${cursor}}`)),
        Effect.catchAllCause(() => Effect.void),
        Effect.zipRight(
          Effect.suspend(() => {
            if (ackWanted >= 0 && !out.closed() && !ended) return commitAcks
            acking = false
            ackFiber = undefined
            return Effect.void
          })
        )
      )
    })
    const ack = (upTo: number) => {
      if (upTo > ackWanted) ackWanted = upTo
      if (acking || ended) return
      acking = true
      const fiber = runFork(commitAcks)
      if (acking) ackFiber = fiber
    }
    const receive = (data: string | Uint8Array) => {
      const text = textOf(data)
      const upTo = ackOf(text)
      if (upTo === undefined) schedule(text)
      else ack(upTo)
    }

    // ---- outbound: live items are written at publish time ----
    let last = 0
    let replaying = true
    const held: Array<ChannelItem> = []
    const deliver = (item: ChannelItem) => {
      if (item.type === "event") {
        const e = item.event
        for (const frame of eventFrames(e, presence)) writeShared(frame)
        // This peer was unregistered (not merely gone offline): tell the client not to reconnect.
        if ((e.type === "peer_left" && e.peer.id === peerId) || (e.type === "peers_changed" && e.left.some((p) => p.id === peerId))) {
          schedule(
            host.registered.pipe(
              Effect.flatMap((registered) => (registered ? Effect.void : Effect.sync(() => out.close(CloseCode.unregistered, "peer unregistered")))),
              // The store is away: the session stays; the next event or reconnect tells.
              Effect.ignore
            )
          )
        }
        return
      }
      if (item.message.seq <= last) return
      last = item.message.seq
      host.delivered?.(item.message, false)
      out.write(messageFrame(item.message))
    }
    const start: Effect.Effect<void, WireError> = Effect.gen(function* () {
      // Runs after the hub let go of this session (finalizers run in reverse): the last session of a peer takes it offline.
      const disconnected = host.disconnected
      if (disconnected !== undefined) {
        yield* Scope.addFinalizer(scope, Effect.suspend(() => hub.isConnected(tenant, peerId).pipe(Effect.flatMap((connected) => (connected ? Effect.void : disconnected)))))
      }
      // Attach before reading the inbox so nothing appended in between is missed: live items
      // are held until the replay is out, then written after it (skipping what it covered).
      yield* hub.attach(
        tenant,
        peerId,
        (item) => {
          if (!replaying) return deliver(item)
          if (held.length >= replayBuffer) return out.close(CloseCode.slowConsumer, "slow consumer: reconnect to replay")
          held.push(item)
        },
        // `presence=none`: the tenant's presence is not written, so it need not be offered.
        { presence: presence !== "none" }
      )
      if (host.attached !== undefined) yield* host.attached
      const peer = yield* host.connect
      const cursor = yield* inbox.cursor(tenant, peerId)
      yield* send({ type: "hello", peer, cursor })

      last = Math.max(options.after ?? cursor, 0)
      while (!out.closed()) {
        const page = yield* inbox.read(tenant, peerId, { after: last, limit: replayPage })
        for (const message of page.messages) {
          out.write(messageFrame(message))
          host.delivered?.(message, true)
          last = message.seq
        }
        if (page.messages.length < replayPage) break
      }
      yield* Effect.sync(() => {
        replaying = false
        for (const item of held.splice(0)) deliver(item)
        paused = false
        kick()
      })
    }).pipe(Scope.extend(scope))

    function onFrame(data: string | Uint8Array): Effect.Effect<void> {
      const text = textOf(data)
      if (text.length > maxFrameBytes) {
        return reply(send({ type: "error", error: new PayloadTooLarge({ message: `frame larger than ${maxFrameBytes} bytes`, limit: maxFrameBytes }) }), false)
      }
      if (nestsDeeperThan(text)) return reply(send({ type: "error", error: tooDeep() }), false)
      return decodeClientFrame(text).pipe(
        Effect.flatMap((frame): Effect.Effect<void, WireError> => {
          switch (frame.type) {
            case "ack": // picked out on arrival (see `ackOf`); kept for completeness
              return Effect.sync(() => ack(frame.upTo))
            case "heartbeat":
              return Effect.asVoid(host.heartbeat)
            case "send": {
              const { type: _type, ref, ...fields } = frame
              const accepted = (result: SendResult) => out.write(sentFrame(ref, result))
              const refused = (error: WireError) => reply(send({ type: "error", ref, error }), false)
              if (host.sendStaged === undefined) return host.send(fields, accepted).pipe(Effect.asVoid, Effect.catchAll(refused))
              return host.sendStaged(fields, accepted).pipe(
                Effect.flatMap((committed) =>
                  reply(
                    committed.pipe(
                      Effect.asVoid,
                      Effect.catchAll((error) => send({ type: "error", ref, error }))
                    ),
                    true
                  )
                ),
                Effect.catchAll(refused)
              )
            }
          }
        }),
        Effect.catchAll((error) => reply(send({ type: "error", error }), false))
      )
    }

    return { receive, start }
  })
