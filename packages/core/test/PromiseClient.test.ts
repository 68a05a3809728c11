// The Promise facade, tested the way a non-Effect user would use it: plain async code.
import { Schema } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { type WebSocket, WebSocketServer } from "ws"
import { ChannelFrame, Errors, Ids, Message, Peer } from "../src/index.js"
import { BrokerError, createBrokerClient, type MessageJson, type PromiseBrokerClient } from "../src/PromiseClient.js"
import { directMessage, peer, peerId } from "./fixtures.js"

const TOKEN = "facade-token"

/** A promise-returning FIFO, so tests await events instead of sleeping. */
const fifo = <A>() => {
  const items: Array<A> = []
  const waiters: Array<(a: A) => void> = []
  return {
    push: (a: A) => {
      const waiter = waiters.shift()
      if (waiter !== undefined) waiter(a)
      else items.push(a)
    },
    take: (): Promise<A> =>
      items.length > 0 ? Promise.resolve(items.shift()!) : new Promise<A>((resolve) => waiters.push(resolve)),
    get size() {
      return items.length
    }
  }
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const listen = (server: Server | WebSocketServer): Promise<number> =>
  new Promise((resolve) => server.once("listening", () => resolve((server.address() as AddressInfo).port)))

// ---- HTTP: a raw server answering exactly what the wire contract says ------------------------

const httpBroker = async () => {
  const seen: Array<IncomingHttpHeaders> = []
  const server = createServer((request, response) => {
    seen.push(request.headers)
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" })
      response.end(JSON.stringify(body))
    }
    if (request.headers.authorization !== `Bearer ${TOKEN}`) return reply(401, { _tag: "Unauthorized", message: "unknown token" })
    if (request.url === `/api/peers/${peerId}`) return reply(200, { peer: Schema.encodeSync(Peer.Peer)(peer) })
    const id = decodeURIComponent(request.url?.split("/").pop() ?? "")
    return reply(404, { _tag: "PeerNotFound", message: `no peer ${id}`, peer: id })
  })
  server.listen(0, "127.0.0.1")
  const port = await listen(server)
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${port}`, seen }
}

// ---- WebSocket: a stub broker speaking the channel frames -----------------------------------

interface Conn {
  readonly socket: WebSocket
  readonly url: URL
  readonly headers: IncomingHttpHeaders
  readonly send: (frame: ChannelFrame.ServerFrame) => void
  /** The next client frame of this type (others are skipped). */
  readonly next: <T extends ChannelFrame.ClientFrame["type"]>(type: T) => Promise<Extract<ChannelFrame.ClientFrame, { type: T }>>
  readonly closed: Promise<number>
}

const encodeServerFrame = Schema.encodeSync(ChannelFrame.ServerFrameJson)
const decodeClientFrame = Schema.decodeUnknownSync(ChannelFrame.ClientFrameJson)

const wsBroker = async () => {
  const connections = fifo<Conn>()
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
  wss.on("connection", (socket, request) => {
    const frames = fifo<ChannelFrame.ClientFrame>()
    socket.on("message", (data) => frames.push(decodeClientFrame(String(data))))
    const next = async <T extends ChannelFrame.ClientFrame["type"]>(type: T) => {
      for (;;) {
        const frame = await frames.take()
        if (frame.type === type) return frame as Extract<ChannelFrame.ClientFrame, { type: T }>
      }
    }
    connections.push({
      socket,
      url: new URL(request.url ?? "/", "http://stub"),
      headers: request.headers,
      send: (frame) => socket.send(encodeServerFrame(frame)),
      next,
      closed: new Promise((resolve) => socket.on("close", (code) => resolve(code)))
    })
  })
  const port = await listen(wss)
  cleanups.push(
    () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close(() => resolve())
      })
  )
  return { url: `http://127.0.0.1:${port}`, connections }
}

const messageAt = (seq: number) =>
  new Message.Message({ ...directMessage, id: `m_msg${seq}` as Ids.MessageId, seq, body: `message ${seq}` })
const hello = (cursor: number): ChannelFrame.ServerFrame => ({ type: "hello", peer, cursor })
const messageFrame = (seq: number): ChannelFrame.ServerFrame => ({ type: "message", message: messageAt(seq) })

const client = (url: string, token = TOKEN): PromiseBrokerClient => {
  const broker = createBrokerClient({ url, token })
  cleanups.push(() => broker.close())
  return broker
}

describe("createBrokerClient (HTTP)", () => {
  it("resolves with plain JSON data and sends the bearer token", async () => {
    const server = await httpBroker()
    const result = await client(server.url).peers.get(peerId)
    expect(result.peer.id).toBe(peerId)
    expect(Object.getPrototypeOf(result.peer)).toBe(Object.prototype)
    expect(result).toEqual(JSON.parse(JSON.stringify(result)))
    expect(server.seen[0]?.authorization).toBe(`Bearer ${TOKEN}`)
  })

  it("rejects with the wire error's _tag, status and message", async () => {
    const server = await httpBroker()
    const missing = Ids.make.peer()
    const error = await client(server.url).peers.get(missing).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(BrokerError)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ _tag: "PeerNotFound", status: 404, message: `no peer ${missing}`, details: { peer: missing } })
    expect((error as BrokerError).cause).toBeInstanceOf(Errors.PeerNotFound)

    const unauthorized = await client(server.url, "nope").health().catch((e: unknown) => e)
    // /healthz is open on a real broker; this stub refuses everything without the token.
    expect(unauthorized).toMatchObject({ _tag: "Unauthorized", status: 401 })
  })

  it("refuses invalid input before any request, as InvalidRequest (400)", async () => {
    const server = await httpBroker()
    const error = await client(server.url).peers.get("not a valid id!").catch((e: unknown) => e)
    expect(error).toMatchObject({ _tag: "InvalidRequest", status: 400 })
    expect(server.seen).toHaveLength(0)
  })
})

describe("createBrokerClient connect (WebSocket)", () => {
  it("emits open and message events, correlates send, and acks", async () => {
    const stub = await wsBroker()
    const channel = client(stub.url).connect(peerId)
    const opened = new Promise((resolve) => channel.on("open", resolve))
    const received = fifo<MessageJson>()
    channel.on("message", received.push)

    const conn = await stub.connections.take()
    expect(conn.headers.authorization).toBe(`Bearer ${TOKEN}`)
    conn.send(hello(0))
    conn.send(messageFrame(1))
    conn.send(messageFrame(2))
    expect(await opened).toMatchObject({ id: peerId, name: peer.name })
    expect(channel.state).toBe("open")
    expect((await received.take()).seq).toBe(1)
    const second = await received.take()
    expect(second).toMatchObject({ seq: 2, body: "message 2" })
    expect(Object.getPrototypeOf(second)).toBe(Object.prototype)

    const sending = channel.send({ to: "bob", body: "hello bob" })
    const frame = await conn.next("send")
    expect(frame).toMatchObject({ to: "bob", body: "hello bob" })
    conn.send({ type: "sent", ref: frame.ref, message: messageAt(10), recipients: [directMessage.from] })
    expect(await sending).toMatchObject({ message: { id: "m_msg10" }, recipients: [directMessage.from] })

    const refused = channel.send({ team: "ghosts", body: "anyone?" })
    const refusedFrame = await conn.next("send")
    conn.send({ type: "error", ref: refusedFrame.ref, error: new Errors.TeamNotFound({ message: "no team ghosts", team: "ghosts" }) })
    await expect(refused).rejects.toMatchObject({ _tag: "TeamNotFound", status: 404, message: "no team ghosts" })

    await channel.ack(2)
    expect(await conn.next("ack")).toEqual({ type: "ack", upTo: 2 })
  })

  it("iterates messages with for await, auto-acks them, and closes with 1000", async () => {
    const stub = await wsBroker()
    const channel = client(stub.url).connect(peerId, { autoAck: true })
    const closed = new Promise<unknown>((resolve) => channel.on("close", resolve))
    const conn = await stub.connections.take()
    conn.send(hello(0))
    for (const seq of [1, 2, 3]) conn.send(messageFrame(seq))

    const seqs: Array<number> = []
    for await (const message of channel) {
      seqs.push(message.seq)
      if (seqs.length === 3) break
    }
    expect(seqs).toEqual([1, 2, 3])
    // Acks are cumulative and leave at most once per turn of the event loop: increasing, ending at 3.
    const acks: Array<unknown> = []
    for (let upTo = 0; upTo < 3; ) {
      const frame = (await conn.next("ack")) as { type: "ack"; upTo: number }
      expect(frame.upTo).toBeGreaterThan(upTo)
      upTo = frame.upTo
      acks.push(frame)
    }
    expect(acks.length).toBeLessThanOrEqual(3)

    await channel.close()
    expect(await conn.closed).toBe(1000)
    expect(await closed).toBeUndefined()
    expect(channel.state).toBe("closed")
    await expect(channel.send({ to: "bob", body: "late" })).rejects.toMatchObject({ _tag: "ChannelClosed" })
  })

  it("ends iteration with a ChannelClosed error and emits error and close on 4001", async () => {
    const stub = await wsBroker()
    const channel = client(stub.url).connect(peerId)
    const errors: Array<unknown> = []
    channel.on("error", (error) => errors.push(error))
    const closed = new Promise<unknown>((resolve) => channel.on("close", resolve))
    const conn = await stub.connections.take()
    conn.send(hello(0))
    conn.send(messageFrame(1))

    const seqs: Array<number> = []
    const iteration = (async () => {
      for await (const message of channel) {
        seqs.push(message.seq)
        conn.socket.close(ChannelFrame.CloseCode.unregistered, "peer unregistered")
      }
    })()
    await expect(iteration).rejects.toMatchObject({ _tag: "ChannelClosed", details: { reason: "unregistered", code: 4001 } })
    expect(seqs).toEqual([1])
    expect(await closed).toMatchObject({ _tag: "ChannelClosed" })
    expect(errors).toHaveLength(1)
    expect(channel.state).toBe("closed")
  })
})
