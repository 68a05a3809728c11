/**
 * Core's runner-link client against a WebSocket server on 127.0.0.1 that plays the broker: the
 * bearer token and path, `hello` first and the reports made while down after it (last per
 * spawn), heartbeats, orders handed over in arrival order (undecodable ones dropped, the link
 * kept), redial after the broker drops the link or refuses a dial with an HTTP status, 4009
 * ends it for good, and closing the scope closes the socket with 1001.
 */
import { RunnerFrame, RunnerLink } from "@mks/a2a"
import { Effect, Exit, Scope } from "effect"
import type { IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import WebSocket, { WebSocketServer } from "ws"

interface Connection {
  readonly socket: WebSocket
  readonly request: IncomingMessage
  readonly frames: Array<Record<string, unknown>>
  /** Resolves with the first frame (from now or earlier) that `match` accepts. */
  readonly next: (match: (frame: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>
  readonly closed: Promise<number>
}

/**
 * The fake broker: every accepted link, in order; `connection(i)` waits for the i-th. The first
 * `refusals.length` upgrade requests are answered with those HTTP statuses instead (counted in `refused`).
 */
const fakeBroker = async (refusals: ReadonlyArray<number> = []) => {
  const refused: Array<number> = []
  const server = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    verifyClient: (_info, accept) => {
      const status = refusals[refused.length]
      if (status === undefined) return accept(true)
      refused.push(status)
      accept(false, status)
    }
  })
  await new Promise<void>((resolve) => server.once("listening", () => resolve()))
  const connections: Array<Connection> = []
  const waiting: Array<() => void> = []
  server.on("connection", (socket, request) => {
    const frames: Array<Record<string, unknown>> = []
    const listeners = new Set<() => void>()
    socket.on("message", (data) => {
      frames.push(JSON.parse(String(data)))
      for (const wake of [...listeners]) wake()
    })
    const closed = new Promise<number>((resolve) => socket.once("close", (code) => resolve(code)))
    const next = (match: (frame: Record<string, unknown>) => boolean) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const check = () => {
          const found = frames.find(match)
          if (found === undefined) return
          listeners.delete(check)
          resolve(found)
        }
        listeners.add(check)
        check()
      })
    connections.push({ socket, request, frames, next, closed })
    for (const wake of waiting.splice(0)) wake()
  })
  const connection = async (index: number): Promise<Connection> => {
    while (connections.length <= index) await new Promise<void>((resolve) => waiting.push(resolve))
    return connections[index]!
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connection, refused, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

const scopes: Array<Scope.CloseableScope> = []
const servers: Array<{ close: () => Promise<void> }> = []
afterEach(async () => {
  for (const scope of scopes.splice(0)) await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const server of servers.splice(0)) await server.close()
})

const hello: RunnerLink.Hello = {
  runner: { id: "r-1", host: "test", labels: {}, capacity: 2, presets: ["command"], version: "0.0.0" },
  agents: [],
  features: ["relay"]
}

const open = async (url: string, onFrame: (frame: RunnerFrame.RunnerDownFrame) => void = () => undefined, heartbeatMs = 60_000) => {
  const scope = await Effect.runPromise(Scope.make())
  scopes.push(scope)
  let closes = 0
  const link = await Effect.runPromise(
    RunnerLink.make(
      { url, token: "runner-token", runnerId: "r-1", heartbeatMs, reconnect: { initialMs: 20, maxMs: 200 } },
      { hello: () => hello, onFrame, onClose: () => void closes++ }
    ).pipe(Scope.extend(scope))
  )
  return { link, scope, closes: () => closes }
}

describe("RunnerLink (core's runner side of the runner link)", () => {
  it("dials /ws/runner/:id with the bearer token, sends hello first, then the reports made while down (the last per spawn)", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const { link } = await open(broker.url)
    // Made before the link opened: kept, only the last report per spawn.
    link.report({ spawnId: "s-1", status: "starting" })
    link.report({ spawnId: "s-1", status: "running", pid: 42 })
    link.report({ spawnId: "s-2", status: "exited", exitCode: 0 })
    const first = await broker.connection(0)
    expect(first.request.url).toBe("/ws/runner/r-1")
    expect(first.request.headers.authorization).toBe("Bearer runner-token")
    await link.whenOpen()
    await first.next((f) => f["spawnId"] === "s-2")
    expect(first.frames).toEqual([
      { type: "hello", ...hello },
      { type: "spawn_status", spawnId: "s-1", status: "running", pid: 42 },
      { type: "spawn_status", spawnId: "s-2", status: "exited", exitCode: 0 }
    ])
    // Open: a report goes at once.
    link.report({ spawnId: "s-3", status: "running" })
    expect(await first.next((f) => f["spawnId"] === "s-3")).toEqual({ type: "spawn_status", spawnId: "s-3", status: "running" })
    expect(link.state()).toBe("open")
  })

  it("hands orders over in arrival order, drops an undecodable frame and keeps the link", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const got: Array<RunnerFrame.RunnerDownFrame> = []
    let wake = () => {}
    const { link } = await open(broker.url, (frame) => {
      got.push(frame)
      wake()
    })
    const connection = await broker.connection(0)
    await link.whenOpen()
    connection.socket.send(JSON.stringify({ type: "stop", spawnId: "s-1" }))
    connection.socket.send("{not json")
    connection.socket.send(JSON.stringify({ type: "unknown-order" }))
    for (let i = 2; i <= 20; i++) connection.socket.send(JSON.stringify({ type: "stop", spawnId: `s-${i}` }))
    while (got.length < 20) await new Promise<void>((resolve) => (wake = resolve))
    expect(got.map((f) => (f.type === "stop" ? f.spawnId : f.type))).toEqual(Array.from({ length: 20 }, (_, i) => `s-${i + 1}`))
    expect(link.state()).toBe("open")
  })

  it("sends heartbeats while open", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const { link } = await open(broker.url, undefined, 30)
    const connection = await broker.connection(0)
    await link.whenOpen()
    await connection.next((f) => f["type"] === "heartbeat")
    const count = () => connection.frames.filter((f) => f["type"] === "heartbeat").length
    await connection.next(() => count() >= 3)
    expect(count()).toBeGreaterThanOrEqual(3)
  })

  it("redials after the broker drops the link and says hello again; the host hears of the close", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const { link, closes } = await open(broker.url)
    const first = await broker.connection(0)
    await link.whenOpen()
    first.socket.close(1012, "restarting")
    const second = await broker.connection(1)
    expect(await second.next((f) => f["type"] === "hello")).toEqual({ type: "hello", ...hello })
    expect(closes()).toBe(1)
    await link.whenOpen()
    expect(link.state()).toBe("open")
  })

  it("a dial the broker refuses with an HTTP status (503 while it is away, 502 from a proxy, 401) is redialled until it accepts", async () => {
    // ws leaves a socket whose upgrade got a non-101 answer open (CONNECTING) when an
    // `unexpected-response` listener is registered: without closing it, the link waited for ever.
    const broker = await fakeBroker([503, 502, 401])
    servers.push(broker)
    const { link } = await open(broker.url)
    const first = await broker.connection(0)
    expect(await first.next((f) => f["type"] === "hello")).toEqual({ type: "hello", ...hello })
    expect(broker.refused).toEqual([503, 502, 401])
    await link.whenOpen()
    expect(link.state()).toBe("open")
  })

  it("4009 (another runner took the id): the link stays down for good", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const { link } = await open(broker.url)
    const first = await broker.connection(0)
    await link.whenOpen()
    first.socket.close(RunnerFrame.LinkCloseCode.replaced, "replaced")
    await first.closed
    // The link says it gave up (a link that redialled would be "connecting", and this would time out).
    while (link.state() !== "closed") await new Promise((resolve) => setImmediate(resolve))
    expect(link.send({ type: "heartbeat" })).toBe(false)
  })

  it("closing the scope closes an open socket with 1001", async () => {
    const broker = await fakeBroker()
    servers.push(broker)
    const { link, scope } = await open(broker.url)
    const connection = await broker.connection(0)
    await link.whenOpen()
    scopes.splice(scopes.indexOf(scope), 1)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    expect(await connection.closed).toBe(1001)
    expect(link.state()).toBe("closed")
  })
})
