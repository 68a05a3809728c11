/**
 * A slow-loris and half-open flood against a listening socket, for the limit tests of broker,
 * proxy and runner: `size` raw TCP connections, half of which send a request line and then a
 * header every 200 ms (never finishing), half of which send nothing. And the listen backlog a
 * listening socket got from the kernel.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { connect, type Socket } from "node:net"

export interface FloodConnection {
  readonly socket: Socket
  readonly closed: Promise<void>
  readonly received: () => string
}

export interface Flood {
  readonly connections: Array<FloodConnection>
  /** Open `n` more connections (the flood going on). */
  readonly more: (n: number) => Promise<void>
  /** Connections the server still holds open. */
  readonly open: () => number
  /** Connections the server refused with `503` (and `retry-after`). */
  readonly refused: () => Array<FloodConnection>
  /** Resolves once at most `n` are open (the server's refusals are in flight for a moment); fails after `timeoutMs`. */
  readonly trimmedTo: (n: number, timeoutMs?: number) => Promise<void>
  readonly stop: () => void
}

export const rawConnection = (port: number): FloodConnection & { readonly opened: Promise<void> } => {
  const socket = connect(port, "127.0.0.1")
  let received = ""
  socket.on("data", (d) => (received += d.toString("latin1")))
  socket.on("error", () => {})
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()))
  const opened = new Promise<void>((resolve) => socket.once("connect", () => resolve()))
  return { socket, opened, closed, received: () => received }
}

export const startFlood = async (port: number, size: number, path = "/"): Promise<Flood> => {
  const connections: Array<FloodConnection> = []
  let i = 0
  const more = async (n: number) => {
    for (let k = 0; k < n; k++, i++) {
      const c = rawConnection(port)
      connections.push(c)
      await c.opened
      if (i % 2 === 0) c.socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n`)
    }
  }
  await more(size)
  const drip = setInterval(() => {
    for (const [k, c] of connections.entries()) if (k % 2 === 0 && !c.socket.destroyed) c.socket.write(`x-drip: ${k}\r\n`)
  }, 200)
  return {
    connections,
    more,
    open: () => connections.filter((c) => !c.socket.destroyed && !c.socket.readableEnded).length,
    refused: () => connections.filter((c) => c.received().startsWith("HTTP/1.1 503")),
    trimmedTo: async (n, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs
      const count = () => connections.filter((c) => !c.socket.destroyed && !c.socket.readableEnded).length
      while (count() > n) {
        if (Date.now() > deadline) throw new Error(`the flood still holds ${count()} connections, more than ${n}`)
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    },
    stop: () => {
      clearInterval(drip)
      for (const c of connections) c.socket.destroy()
    }
  }
}

/**
 * The listen backlog of the socket listening on 127.0.0.1:`port`, as the kernel holds it (the
 * Send-Q column of `ss -ltn` for a listening socket; Linux, iproute2).
 */
export const listenBacklog = (port: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const ss = spawn("ss", ["-Hltn", `sport = :${port}`], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    ss.stdout.on("data", (c) => (out += c))
    ss.once("error", (e) => reject(new Error(`ss (iproute2) is needed to read a listen backlog: ${e.message}`)))
    ss.once("close", () => {
      const columns = out.trim().split(/\s+/)
      if (columns[0] !== "LISTEN") return reject(new Error(`no socket listening on port ${port}: ${out}`))
      resolve(Number(columns[2]))
    })
  })

/** What the kernel makes of a requested backlog: it caps it at `net.core.somaxconn`. */
export const effectiveBacklog = (requested: number): number => Math.min(requested, Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8")))
