import { FetchHttpClient, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Exit, Fiber, FiberId, Layer, Option, Queue, Redacted, Schema, Stream } from "effect"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { type WebSocket, WebSocketServer } from "ws"
import * as BrokerClient from "../src/BrokerClient.js"
import { BrokerApi, ChannelFrame, Errors, Ids, Message, Peer, Principal } from "../src/index.js"
import { channelUrl } from "../src/internal/channel.js"
import { at, directMessage, peer, peerId } from "./fixtures.js"

const TOKEN = "test-token"

// ---- an HTTP broker built from the same BrokerApi definition ---------------------------------

const notHere = () => Effect.die("not implemented in this test server")

const AuthLive = Layer.succeed(
  BrokerApi.Authentication,
  BrokerApi.Authentication.of({
    bearer: (token) =>
      Redacted.value(token) === TOKEN
        ? Effect.succeed(new Principal.Principal({ subject: "tester", tenant: "acme", roles: ["admin"] }))
        : Effect.fail(new Errors.Unauthorized({ message: "unknown token" }))
  })
)

const HealthLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "health", (handlers) =>
  handlers
    .handle("healthz", () => Effect.succeed({ status: "ok" as const, version: "test" }))
    .handle("openapi", () => Effect.succeed(BrokerApi.openApi()))
    .handle("metrics", () => Effect.succeed("")))

const PeersLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "peers", (handlers) => {
  const peers = new Map<string, Peer.Peer>()
  const find = (id: Ids.PeerId) =>
    Effect.fromNullable(peers.get(id)).pipe(
      Effect.mapError(() => new Errors.PeerNotFound({ message: `no peer ${id}`, peer: id }))
    )
  return handlers
    .handle("register", ({ payload }) =>
      Effect.sync(() => {
        const existing = [...peers.values()].find((p) => p.name === payload.name)
        if (existing !== undefined) return new BrokerApi.PeerResumed({ peer: existing })
        const created = new Peer.Peer({
          ...peer,
          id: Ids.make.peer(),
          name: payload.name ?? "anonymous",
          summary: payload.summary ?? "",
          registeredAt: at,
          lastSeenAt: at
        })
        peers.set(created.id, created)
        return new BrokerApi.PeerCreated({ peer: created })
      }))
    .handle("list", () => Effect.sync(() => ({ peers: [...peers.values()] })))
    .handle("get", ({ path }) => Effect.map(find(path.id), (found) => ({ peer: found })))
    .handle("update", notHere)
    .handle("unregister", notHere)
    .handle("heartbeat", notHere)
})

const MessagesLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "messages", (h) => h.handle("send", notHere))
const InboxLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "inbox", (h) => h.handle("read", notHere).handle("ack", notHere))
const TeamsLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "teams", (h) =>
  h.handle("create", notHere).handle("list", notHere).handle("get", notHere).handle("join", notHere).handle("leave", notHere))
const RunnersLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "runners", (h) => h.handle("list", notHere))
const SpawnLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "spawn", (h) =>
  h.handle("create", notHere).handle("list", notHere).handle("get", notHere).handle("stop", notHere).handle("stopPeer", notHere))
const TasksLive = HttpApiBuilder.group(BrokerApi.BrokerApi, "tasks", (h) =>
  h.handle("create", notHere).handle("list", notHere).handle("claimNext", notHere).handle("get", notHere).handle("claim", notHere)
    .handle("heartbeat", notHere).handle("complete", notHere).handle("fail", notHere).handle("release", notHere).handle("cancel", notHere)
    .handle("reassign", notHere))

/** The test broker on an ephemeral port of 127.0.0.1; `HttpServer` is kept in the output for its address. */
const HttpBrokerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(
    HttpApiBuilder.api(BrokerApi.BrokerApi).pipe(
      Layer.provide([HealthLive, PeersLive, MessagesLive, InboxLive, TeamsLive, RunnersLive, SpawnLive, TasksLive]),
      Layer.provide(AuthLive)
    )
  ),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const serverUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address as HttpServer.TcpAddress
  return `http://127.0.0.1:${address.port}`
})

const clientFor = (url: string, token = TOKEN) =>
  BrokerClient.make({ url, token }).pipe(Effect.provide(FetchHttpClient.layer))

layer(HttpBrokerLive)("BrokerClient api (HTTP)", (it) => {
  it.effect("registers and reads a peer through the derived client", () =>
    Effect.gen(function*() {
      const client = yield* clientFor(yield* serverUrl)
      const health = yield* client.api.healthz()
      expect(health).toEqual({ status: "ok", version: "test" })

      const registered = yield* client.api.peers.register({ payload: { name: "alice", summary: "parsing" } })
      expect(registered).toBeInstanceOf(BrokerApi.PeerCreated)
      const { peer: read } = yield* client.api.peers.get({ path: { id: registered.peer.id } })
      expect(read).toBeInstanceOf(Peer.Peer)
      expect(read.id).toBe(registered.peer.id)
      expect(read.summary).toBe("parsing")

      // Same name resumes the same peer. (Not asserting 200/PeerResumed: HttpApiBuilder encodes
      // the structurally identical PeerResumed with the first success schema, 201.)
      const again = yield* client.api.peers.register({ payload: { name: "alice" } })
      expect(again.peer.id).toBe(registered.peer.id)
    }))

  it.effect("answers a wrong token with a typed Unauthorized (401)", () =>
    Effect.gen(function*() {
      const client = yield* clientFor(yield* serverUrl, "wrong-token")
      const error = yield* Effect.flip(client.api.peers.list({ urlParams: {} }))
      expect(error).toBeInstanceOf(Errors.Unauthorized)
      expect(error._tag).toBe("Unauthorized")
      expect(Errors.statusOf(error as Errors.Unauthorized)).toBe(401)
    }))

  it.effect("answers an unknown peer with a typed PeerNotFound (404)", () =>
    Effect.gen(function*() {
      const client = yield* clientFor(yield* serverUrl)
      const error = yield* Effect.flip(client.api.peers.get({ path: { id: Ids.make.peer() } }))
      expect(error).toBeInstanceOf(Errors.PeerNotFound)
      expect(Errors.statusOf(error as Errors.PeerNotFound)).toBe(404)
    }))
})

// ---- a WebSocket broker stub speaking the channel frames ------------------------------------

interface StubConnection {
  readonly socket: WebSocket
  readonly url: URL
  readonly headers: IncomingHttpHeaders
  readonly frames: Queue.Queue<ChannelFrame.ClientFrame>
  /** Close code the stub saw. */
  readonly closed: Deferred.Deferred<number>
  readonly send: (frame: ChannelFrame.ServerFrame) => Effect.Effect<void>
  /** The next client frame of this type (heartbeats and others are skipped). */
  readonly next: <T extends ChannelFrame.ClientFrame["type"]>(type: T) => Effect.Effect<Extract<ChannelFrame.ClientFrame, { type: T }>>
}

const encodeServerFrame = Schema.encodeSync(ChannelFrame.ServerFrameJson)
const decodeClientFrame = Schema.decodeUnknownSync(ChannelFrame.ClientFrameJson)

/**
 * A `ws` server on an ephemeral port; every upgrade becomes a `StubConnection`. While
 * `refuse(status)` is in force, upgrades are answered with that HTTP status instead.
 */
const stubBroker = (options: { readonly reject?: number } = {}) =>
  Effect.gen(function*() {
    const connections = yield* Queue.unbounded<StubConnection>()
    let refusal = options.reject
    const server = yield* Effect.acquireRelease(
      Effect.async<WebSocketServer>((resume) => {
        const wss = new WebSocketServer({
          host: "127.0.0.1",
          port: 0,
          verifyClient: (_info, done) => (refusal === undefined ? done(true) : done(false, refusal))
        })
        wss.once("listening", () => resume(Effect.succeed(wss)))
      }),
      (wss) =>
        Effect.async<void>((resume) => {
          for (const client of wss.clients) client.terminate()
          wss.close(() => resume(Effect.void))
        })
    )
    server.on("connection", (socket, request) => {
      const frames = Effect.runSync(Queue.unbounded<ChannelFrame.ClientFrame>())
      const closed = Deferred.unsafeMake<number>(FiberId.none)
      socket.on("message", (data) => Queue.unsafeOffer(frames, decodeClientFrame(String(data))))
      socket.on("close", (code) => Deferred.unsafeDone(closed, Exit.succeed(code)))
      const next = <T extends ChannelFrame.ClientFrame["type"]>(type: T) =>
        Queue.take(frames).pipe(
          Effect.repeat({ until: (frame) => frame.type === type }),
          Effect.map((frame) => frame as Extract<ChannelFrame.ClientFrame, { type: T }>)
        )
      Queue.unsafeOffer(connections, {
        socket,
        url: new URL(request.url ?? "/", "http://stub"),
        headers: request.headers,
        frames,
        closed,
        send: (frame) => Effect.sync(() => socket.send(encodeServerFrame(frame))),
        next
      })
    })
    const port = (server.address() as AddressInfo).port
    return {
      url: `http://127.0.0.1:${port}`,
      connections,
      nextConnection: Queue.take(connections),
      refuse: (status: number | undefined) => Effect.sync(() => {
        refusal = status
      })
    }
  })

const messageAt = (seq: number): Message.Message =>
  new Message.Message({ ...directMessage, id: `m_msg${seq}` as Ids.MessageId, seq, body: `message ${seq}` })

const hello = (cursor: number): ChannelFrame.ServerFrame => ({ type: "hello", peer, cursor })
const messageFrame = (seq: number): ChannelFrame.ServerFrame => ({ type: "message", message: messageAt(seq) })

describe("BrokerClient channel (WebSocket)", () => {
  it.scopedLive("delivers messages in order, sends the bearer token and ack frames", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection

      expect(conn.headers.authorization).toBe(`Bearer ${TOKEN}`)
      expect(conn.url.pathname).toBe(`/ws/broker/peer/${peerId}`)
      expect(conn.url.searchParams.has("after")).toBe(false)

      yield* conn.send(hello(0))
      for (const seq of [1, 2, 3]) yield* conn.send(messageFrame(seq))
      expect((yield* channel.hello).id).toBe(peerId)
      expect(yield* channel.state.get).toBe("open")

      const received = yield* channel.messages.pipe(Stream.take(3), Stream.runCollect)
      expect([...received].map((m) => m.seq)).toEqual([1, 2, 3])
      expect([...received][0]).toBeInstanceOf(Message.Message)

      yield* channel.ack(2)
      expect(yield* conn.next("ack")).toEqual({ type: "ack", upTo: 2 })
      expect(yield* channel.cursor).toBe(2)
    }))

  it.scopedLive("leaves what a stopped consumer did not take for the next one", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))
      for (const seq of [1, 2, 3, 4, 5]) yield* conn.send(messageFrame(seq))
      // Wait until all five are buffered, so the first run sees them in one batch.
      yield* conn.send({ type: "acked", cursor: 0 })
      yield* conn.send({ type: "event", event: { type: "peer_left", peer, at } })
      yield* channel.events.pipe(Stream.take(1), Stream.runDrain)

      const firstRun = yield* channel.messages.pipe(Stream.take(2), Stream.runCollect)
      const secondRun = yield* channel.messages.pipe(Stream.take(3), Stream.runCollect)
      expect([...firstRun, ...secondRun].map((m) => m.seq)).toEqual([1, 2, 3, 4, 5])
    }))

  it.scopedLive("reconnects from the acked cursor after a drop and does not emit a replayed duplicate", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const received = yield* Queue.unbounded<Message.Message>()
      yield* channel.messages.pipe(Stream.runForEach((m) => Queue.offer(received, m)), Effect.forkScoped)

      const first = yield* stub.nextConnection
      yield* first.send(hello(0))
      for (const seq of [1, 2, 3]) yield* first.send(messageFrame(seq))
      expect([...(yield* Queue.takeN(received, 3))].map((m) => m.seq)).toEqual([1, 2, 3])
      yield* channel.ack(2)
      yield* first.next("ack")
      yield* first.send({ type: "acked", cursor: 2 })

      first.socket.terminate()
      const second = yield* stub.nextConnection
      expect(second.url.searchParams.get("after")).toBe("2")
      expect(second.headers.authorization).toBe(`Bearer ${TOKEN}`)

      // The broker replays 3 (unacked) before the new 4: only 4 may reach the consumer.
      yield* second.send(hello(2))
      yield* second.send(messageFrame(3))
      yield* second.send(messageFrame(4))
      const next = yield* Queue.take(received)
      expect(next.seq).toBe(4)
      expect(yield* Queue.size(received)).toBe(0)
      expect(yield* channel.state.get).toBe("open")
    }))

  it.scopedLive("resends an ack made while disconnected after the next hello", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId, { after: 0 })
      const first = yield* stub.nextConnection
      expect(first.url.searchParams.get("after")).toBe("0")
      yield* first.send(hello(0))
      yield* first.send(messageFrame(1))
      yield* channel.hello
      // Keep the client disconnected (503 is retried) until the ack was made.
      yield* stub.refuse(503)
      first.socket.terminate()
      yield* channel.state.changes.pipe(Stream.takeUntil((s) => s === "connecting"), Stream.runDrain)

      yield* channel.ack(1)
      yield* stub.refuse(undefined)
      const second = yield* stub.nextConnection
      expect(second.url.searchParams.get("after")).toBe("1")
      yield* second.send(hello(0))
      expect(yield* second.next("ack")).toEqual({ type: "ack", upTo: 1 })
    }))

  it.scopedLive("correlates send answers by ref and fails with the wire error of an error frame", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))

      const toBob = yield* Effect.fork(channel.send({ to: "bob", body: "hi bob" }))
      const frameA = yield* conn.next("send")
      const toTeam = yield* Effect.fork(channel.send({ team: "ghosts" as Ids.TeamName, body: "hi team", ref: "mine" }))
      const frameB = yield* conn.next("send")
      expect(frameA.ref).toMatch(/^r_/)
      expect(frameA).toMatchObject({ to: "bob", body: "hi bob" })
      expect(frameB.ref).toBe("mine")

      // Answer out of order: the refs, not the order, decide who gets what.
      yield* conn.send({
        type: "error",
        ref: "mine",
        error: new Errors.TeamNotFound({ message: "no team ghosts", team: "ghosts" })
      })
      const sent = messageAt(9)
      yield* conn.send({ type: "sent", ref: frameA.ref, message: sent, recipients: [directMessage.from] })

      const result = yield* Fiber.join(toBob)
      expect(result.message.id).toBe(sent.id)
      expect(result.recipients).toEqual([directMessage.from])
      const error = yield* Effect.flip(Fiber.join(toTeam))
      expect(error).toBeInstanceOf(Errors.TeamNotFound)
      expect(error._tag).toBe("TeamNotFound")
    }))

  it.scopedLive("refuses an invalid send locally with InvalidRequest", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const error = yield* Effect.flip(channel.send({ body: "no target" }))
      expect(error._tag).toBe("InvalidRequest")
    }))

  it.scopedLive("stops for good on close code 4001", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))
      yield* conn.send(messageFrame(1))
      yield* channel.hello
      conn.socket.close(ChannelFrame.CloseCode.unregistered, "peer unregistered")

      const closed = yield* channel.closed
      expect(closed).toBeInstanceOf(BrokerClient.ChannelClosed)
      expect(closed.reason).toBe("unregistered")
      expect(closed.code).toBe(4001)
      expect(yield* channel.state.get).toBe("closed")
      // Buffered messages are still delivered, then the stream fails with the reason.
      const exit = yield* channel.messages.pipe(Stream.runCollect, Effect.either)
      expect(exit._tag).toBe("Left")
      const sendError = yield* Effect.flip(channel.send({ to: "bob", body: "late" }))
      expect(sendError._tag).toBe("ChannelClosed")

      // Absence cannot be awaited: give a reconnect (first backoff ≤ 120 ms) time to show up.
      yield* Effect.sleep("400 millis")
      expect(yield* Queue.size(stub.connections)).toBe(0)
    }))

  it.scopedLive("stops for good on close code 4003 (credentials revoked)", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))
      yield* channel.hello
      conn.socket.close(ChannelFrame.CloseCode.revoked, "credentials revoked")
      const closed = yield* channel.closed
      expect(closed.reason).toBe("revoked")
      expect(closed.code).toBe(4003)
      expect(yield* channel.state.get).toBe("closed")
      const sendError = yield* Effect.flip(channel.send({ to: "bob", body: "late" }))
      expect(sendError._tag).toBe("ChannelClosed")
    }))

  it.scopedLive("delivers buffered messages before failing the stream on 4001", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))
      yield* conn.send(messageFrame(1))
      yield* conn.send(messageFrame(2))
      conn.socket.close(ChannelFrame.CloseCode.unregistered, "gone")
      yield* channel.closed
      const seen: Array<number> = []
      const error = yield* channel.messages.pipe(
        Stream.runForEach((m) => Effect.sync(() => seen.push(m.seq))),
        Effect.flip
      )
      expect(seen).toEqual([1, 2])
      expect(error.reason).toBe("unregistered")
    }))

  it.scopedLive("ends the channel when the upgrade is refused with 401", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker({ reject: 401 })
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId)
      const closed = yield* channel.closed
      expect(closed.reason).toBe("rejected")
      expect(closed.status).toBe(401)
      expect(yield* Effect.flip(channel.hello)).toBeInstanceOf(BrokerClient.ChannelClosed)
    }))

  it.scopedLive("closes the socket with 1000 when the scope closes, and stops", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const conn = yield* Effect.scoped(
        Effect.gen(function*() {
          const channel = yield* client.channel(peerId)
          const conn = yield* stub.nextConnection
          yield* conn.send(hello(0))
          yield* channel.hello
          return conn
        })
      )
      expect(yield* Deferred.await(conn.closed)).toBe(1000)
      yield* Effect.sleep("300 millis")
      expect(yield* Queue.size(stub.connections)).toBe(0)
    }))

  it.scopedLive("sends heartbeats and emits events; autoAck acks what was taken", () =>
    Effect.gen(function*() {
      const stub = yield* stubBroker()
      const client = yield* clientFor(stub.url)
      const channel = yield* client.channel(peerId, { autoAck: true, heartbeatInterval: "30 millis" })
      const conn = yield* stub.nextConnection
      yield* conn.send(hello(0))
      expect(yield* conn.next("heartbeat")).toEqual({ type: "heartbeat" })

      yield* conn.send({ type: "event", event: { type: "peer_joined", peer, at } })
      const event = yield* channel.events.pipe(Stream.runHead)
      expect(Option.map(event, (e) => e.type)).toEqual(Option.some("peer_joined"))

      yield* conn.send(messageFrame(5))
      yield* channel.messages.pipe(Stream.take(1), Stream.runDrain)
      expect(yield* conn.next("ack")).toEqual({ type: "ack", upTo: 5 })
    }))
})

describe("BrokerClient config", () => {
  const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("reads A2A_BROKER_URL and A2A_TOKEN", () =>
    Effect.gen(function*() {
      const config = yield* BrokerClient.readConfig.pipe(withEnv({ A2A_BROKER_URL: "http://broker:9", A2A_TOKEN: " tok " }))
      expect(config.url).toBe("http://broker:9")
      expect(Redacted.value(config.token as Redacted.Redacted<string>)).toBe("tok")
    }))

  it.live("falls back to $A2A_HOME/broker.token, trimmed, and fails clearly without any token", () =>
    Effect.gen(function*() {
      const home = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "a2a-client-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      const missing = yield* Effect.flip(BrokerClient.readConfig.pipe(withEnv({ A2A_HOME: home })))
      expect(String(missing)).toContain("A2A_TOKEN")
      expect(String(missing)).toContain(join(home, "broker.token"))

      yield* Effect.promise(() => writeFile(join(home, "broker.token"), "  from-file\n"))
      const config = yield* BrokerClient.readConfig.pipe(withEnv({ A2A_HOME: home }))
      expect(config.url).toBe(BrokerClient.DEFAULT_URL)
      expect(Redacted.value(config.token as Redacted.Redacted<string>)).toBe("from-file")
    }).pipe(Effect.scoped))

  it.effect("an empty A2A_HOME is unset: the token file is ~/.a2a's, not ./broker.token", () =>
    Effect.gen(function*() {
      const unset = yield* Effect.exit(BrokerClient.readConfig.pipe(withEnv({ A2A_BROKER_URL: "http://broker:9" })))
      const empty = yield* Effect.exit(BrokerClient.readConfig.pipe(withEnv({ A2A_BROKER_URL: "http://broker:9", A2A_HOME: "" })))
      expect(String(empty)).toBe(String(unset))
      if (unset._tag === "Failure") expect(String(unset)).toContain(join(homedir(), ".a2a", "broker.token"))
    }))

  it("builds the channel URL from the base URL", () => {
    expect(channelUrl(new URL("https://example.com/broker"), "p_1", 3).href).toBe("wss://example.com/broker/ws/broker/peer/p_1?after=3")
    expect(channelUrl(new URL("http://127.0.0.1:4200"), "p_1", undefined).href).toBe("ws://127.0.0.1:4200/ws/broker/peer/p_1")
  })
})
