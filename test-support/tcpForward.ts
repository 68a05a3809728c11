/**
 * A tiny TCP forwarder on 127.0.0.1 (port 0) in front of a server: a test puts it between a
 * proxy and PostgreSQL and cuts it (`stop`: refuse new connections and reset the open ones)
 * to take the database away, then `start`s it again on the same port.
 */
import * as net from "node:net"

export interface Forwarder {
  readonly port: number
  readonly url: (database: string) => string
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
  readonly close: () => Promise<void>
}

export const forward = async (targetHost: string, targetPort: number): Promise<Forwarder> => {
  const open = new Set<net.Socket>()
  let server: net.Server | undefined
  let port = 0
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(targetPort, targetHost)
        open.add(client)
        open.add(upstream)
        const drop = () => {
          client.destroy()
          upstream.destroy()
          open.delete(client)
          open.delete(upstream)
        }
        client.on("error", drop).on("close", drop)
        upstream.on("error", drop).on("close", drop)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      s.once("error", reject)
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as net.AddressInfo).port
        server = s
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of open) socket.resetAndDestroy()
      open.clear()
      const s = server
      server = undefined
      if (s === undefined) return resolve()
      s.close(() => resolve())
    })
  await listen()
  return {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    stop,
    start: listen,
    close: stop
  }
}
