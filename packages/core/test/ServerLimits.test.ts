/**
 * ServerLimits.apply on a real Node HTTP server: a stop never waits on a client. An upgraded
 * connection that nobody closes (a WebSocket accepted while the server was shutting down its
 * channels, or a peer that ignores the close handshake) kept `server.close()` — and with it
 * SIGTERM of the broker — waiting forever; after `drainMs` it is destroyed.
 */
import { createServer, type Server } from "node:http"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { ConfigProvider, Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import * as ServerLimits from "../src/ServerLimits.js"

const listen = (server: Server) =>
  new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)))

/** A client that completes an upgrade and then holds the socket open, answering nothing. */
const upgradeAndHold = (port: number) =>
  new Promise<{ socket: Socket; closed: Promise<void> }>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    const closed = new Promise<void>((done) => socket.once("close", () => done()))
    socket.on("error", () => {})
    socket.once("connect", () => socket.write("GET /hold HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"))
    socket.once("data", () => resolve({ socket, closed }))
  })

describe("ServerLimits.apply", () => {
  it("a closing server destroys connections still open after drainMs, upgraded ones included, and close() completes", async () => {
    const server = createServer()
    ServerLimits.apply(server, ServerLimits.defaults, { upgrades: true, drainMs: 200 })
    const held: Array<Socket> = []
    // The upgrade is accepted and the socket kept, never closed by the application.
    server.on("upgrade", (_request, socket: Socket) => {
      held.push(socket)
      socket.write("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
    })
    const port = await listen(server)
    const clients = await Promise.all([upgradeAndHold(port), upgradeAndHold(port)])
    expect(held).toHaveLength(2)

    const closed = new Promise<Error | undefined>((resolve) => server.close((error) => resolve(error)))
    expect(await closed).toBeUndefined()
    await Promise.all(clients.map((c) => c.closed))
    expect(held.every((socket) => socket.destroyed)).toBe(true)
  })

  it("connections that end by themselves within drainMs are left to finish", async () => {
    const server = createServer()
    ServerLimits.apply(server, ServerLimits.defaults, { upgrades: true, drainMs: 60_000 })
    const held: Array<Socket> = []
    server.on("upgrade", (_request, socket: Socket) => {
      held.push(socket)
      socket.write("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
    })
    const port = await listen(server)
    const client = await upgradeAndHold(port)
    let done = false
    const closed = new Promise<void>((resolve) => server.close(() => resolve())).then(() => (done = true))
    // Still open: the server waits for it (nothing destroyed it early)...
    await new Promise((resolve) => setImmediate(resolve))
    expect(done).toBe(false)
    expect(held[0]!.destroyed).toBe(false)
    // ...until the application closes it, as the broker's channels do on a stop.
    held[0]!.end()
    await client.closed
    await closed
    expect(done).toBe(true)
  })
})

describe("ServerLimits.config", () => {
  const read = (env: Record<string, string>, base?: ServerLimits.ServerLimits) =>
    Effect.runSync(Effect.either(ServerLimits.config("A2A_T", base).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))))

  it("the listen backlog is 4,096 unless <PREFIX>_LISTEN_BACKLOG says otherwise; a base without one gets the default", () => {
    expect(Either.getOrThrow(read({})).listenBacklog).toBe(4_096)
    expect(Either.getOrThrow(read({ A2A_T_LISTEN_BACKLOG: "8192" })).listenBacklog).toBe(8_192)
    const { listenBacklog: _, ...older } = ServerLimits.defaults
    expect(ServerLimits.backlog(older)).toBe(4_096)
    expect(Either.getOrThrow(read({}, { ...older, listenBacklog: 64 })).listenBacklog).toBe(64)
  })

  it("refuses a backlog below 1 or not a number, naming the variable", () => {
    for (const bad of ["0", "-5", "lots"]) {
      const result = read({ A2A_T_LISTEN_BACKLOG: bad })
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect(String(result.left)).toContain("A2A_T_LISTEN_BACKLOG")
    }
  })
})
