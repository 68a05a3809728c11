/**
 * Abuse of the listening socket against a real broker: slow-loris and half-open floods while a
 * normal client keeps working, header and keep-alive timeouts, 415 for every non-JSON body,
 * WebSocket frames over the limit refused before they are buffered (RSS stays bounded).
 */
import { ServerLimits } from "@mks/a2a"
import { connect, type Socket } from "node:net"
import { readFileSync } from "node:fs"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { http, startBroker, startBrokerProcess, tempHome, type TestBroker } from "./harness.js"
import { effectiveBacklog, listenBacklog } from "../../../test-support/flood.js"
import { pollUntil, runCli, wsUrl } from "./probe.js"

const CAP = 100

/** A raw TCP connection; `received` collects what the server wrote, `closed` resolves on close. */
const raw = (port: number) => {
  const socket = connect(port, "127.0.0.1")
  let received = ""
  socket.on("data", (d) => (received += d.toString("latin1")))
  socket.on("error", () => {})
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()))
  const opened = new Promise<void>((resolve) => socket.once("connect", () => resolve()))
  return { socket, opened, closed, received: () => received }
}

describe("limits of the broker's listening socket", () => {
  let broker: TestBroker
  let token: string
  const flood: Array<{ socket: Socket; closed: Promise<void>; received: () => string }> = []

  beforeAll(async () => {
    broker = await startBroker({ limits: { ...ServerLimits.defaults, maxPendingConnections: CAP, headersTimeout: 2_000, requestTimeout: 4_000, keepAliveTimeout: 1_000 } })
    token = await broker.token("limits", "peer")
  })
  afterAll(async () => {
    for (const f of flood) f.socket.destroy()
    await broker?.close()
  })

  it("a slow-loris and half-open flood (5× the pending cap) is evicted with 503 + retry-after while a normal client keeps working", async () => {
    let drip: ReturnType<typeof setInterval> | undefined
    // Half the flood says nothing at all; the other half sends a request line, then a header now and then.
    for (let i = 0; i < CAP * 5; i++) {
      const c = raw(broker.port)
      flood.push(c)
      await c.opened
      if (i % 2 === 0) c.socket.write("GET /api/peers HTTP/1.1\r\nhost: x\r\n")
    }
    drip = setInterval(() => {
      for (const [i, f] of flood.entries()) if (i % 2 === 0 && !f.socket.destroyed) f.socket.write(`x-drip: ${i}\r\n`)
    }, 200)
    try {
      // The normal client is served all along.
      for (let i = 0; i < 20; i++) {
        const reg = await http(broker, token, "POST", "/api/peers", { name: `normal-${i}` })
        expect(reg.status, reg.text).toBe(201)
        const list = await http(broker, token, "GET", "/api/peers")
        expect(list.status).toBe(200)
        // Meanwhile the flood goes on: new connections keep arriving.
        const c = raw(broker.port)
        flood.push(c)
        await c.opened
      }
      // At most CAP flood connections are held; the others were refused with a clear answer.
      await pollUntil(async () => (flood.filter((f) => !f.socket.destroyed && !f.socket.readableEnded).length <= CAP + 1 ? true : undefined), "the flood trimmed to the cap", 30_000)
      const refused = flood.filter((f) => f.received().startsWith("HTTP/1.1 503"))
      expect(refused.length).toBeGreaterThanOrEqual(CAP * 4 - 5)
      expect(refused[0]!.received()).toMatch(/retry-after: 1\r\n/i)
      expect(JSON.parse(refused[0]!.received().split("\r\n\r\n")[1]!)._tag).toBe("ServiceUnavailable")
    } finally {
      clearInterval(drip)
    }
  }, 120_000)

  it("a connection that never finishes its headers is closed after the header timeout; an idle keep-alive one after the keep-alive timeout", async () => {
    const slow = raw(broker.port)
    await slow.opened
    slow.socket.write("GET /healthz HTTP/1.1\r\nhost: x\r\n")
    await slow.closed
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408/)

    const idle = raw(broker.port)
    await idle.opened
    idle.socket.write("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    await pollUntil(async () => (idle.received().includes("\r\n\r\n") ? true : undefined), "the healthz answer", 10_000)
    expect(idle.received()).toMatch(/^HTTP\/1\.1 200/)
    await idle.closed
  }, 60_000)

  it("every JSON endpoint answers a non-JSON body with 415 in the contract's shape (and JSON with parameters is fine)", async () => {
    const types = ["application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream"]
    const paths = [
      ["POST", "/api/peers"],
      ["POST", "/api/messages"],
      ["POST", "/api/teams"],
      ["PATCH", "/api/peers/p_x"],
      ["POST", "/api/spawns"]
    ] as const
    for (const [method, path] of paths) {
      for (const type of types) {
        const res = await fetch(broker.url + path, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": type },
          body: type.startsWith("multipart") ? "--x\r\ncontent-disposition: form-data; name=\"name\"\r\n\r\nm\r\n--x" : "name=formed",
          signal: AbortSignal.timeout(10_000)
        })
        expect(res.status, `${method} ${path} ${type}`).toBe(415)
        const body = (await res.json()) as { _tag: string; message: unknown }
        expect(body._tag).toBe("UnsupportedMediaType")
        expect(typeof body.message).toBe("string")
      }
      // A body without any content type is not JSON either.
      const untyped = await fetch(broker.url + path, { method, headers: { authorization: `Bearer ${token}` }, body: new Blob(["{}"]), signal: AbortSignal.timeout(10_000) })
      expect(untyped.status).toBe(415)
    }
    // Nothing was registered by the form post.
    const peers = (await http(broker, token, "GET", "/api/peers")).json.peers.map((p: any) => p.name)
    expect(peers).not.toContain("formed")
    const ok = await http(broker, token, "POST", "/api/peers", JSON.stringify({ name: "typed" }), { "content-type": "application/json; charset=utf-8" })
    expect(ok.status, ok.text).toBe(201)
  }, 60_000)
})

describe("clients that reset their connection mid-upgrade", () => {
  // Between node's `upgrade` event and the WebSocket taking the socket over, the broker checks the
  // token and the path (async): a reset in that window was an `error` event with no listener,
  // and the broker process died of it (seen when a runner stopped agents that had sockets open).
  // Then such a socket kept the broker from stopping: its 1001 waited for a socket that never
  // opened, in a finalizer the timeout could not cancel.
  const upgradeHead = (path: string, token: string, key = "dGhlIHNhbXBsZSBub25jZQ==") =>
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nAuthorization: Bearer ${token}\r\n\r\n`

  /** SIGTERM, and the clean exit it must lead to (a stop takes well under a second; 30 s is a hang). */
  const stops = async (broker: Awaited<ReturnType<typeof startBrokerProcess>>) => {
    broker.child.kill("SIGTERM")
    let timer: NodeJS.Timeout | undefined
    const how = await Promise.race([
      broker.exited,
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still running 30 s after SIGTERM"), 30_000)))
    ]).finally(() => clearTimeout(timer))
    expect(how).toBe(0)
  }

  it("300 upgrade requests reset (RST) just after their head: the broker stays up, answers, and stops on SIGTERM", async () => {
    const home = tempHome()
    const broker = await startBrokerProcess(home, ["--db", ":memory:"])
    let died: unknown = undefined
    void broker.exited.then((how) => (died = how))
    try {
      const admin = readFileSync(`${home}/broker.token`, "utf8").trim()
      const paths = ["/ws/broker/spawns/s_nothere00000000000000/logs", "/ws/broker/peer/p_nothere00000000000000", "/ws/runner/box"]
      for (let i = 0; i < 300; i++) {
        const c = raw(broker.port)
        await c.opened
        c.socket.write(upgradeHead(paths[i % paths.length]!, admin))
        // After a few turns of the event loop at most, so some land while the check runs.
        if (i % 3 !== 0) await new Promise<void>((resolve) => setImmediate(resolve))
        c.socket.resetAndDestroy()
        await c.closed
      }
      const health = await fetch(`${broker.url}/healthz`)
      expect(health.status).toBe(200)
      expect(died).toBeUndefined()
      await stops(broker)
    } finally {
      broker.child.kill("SIGKILL")
      await broker.exited
    }
  }, 120_000)

  it("an authorized upgrade with an invalid handshake gets 400, and the broker still stops on SIGTERM", async () => {
    // `ws` refuses a bad Sec-WebSocket-Key itself and never calls back: the upgrade's fiber waited
    // for that callback for good (one leaked per request, and no stop).
    const home = tempHome()
    const broker = await startBrokerProcess(home, ["--db", ":memory:"])
    try {
      const admin = readFileSync(`${home}/broker.token`, "utf8").trim()
      for (let i = 0; i < 20; i++) {
        const c = raw(broker.port)
        await c.opened
        c.socket.write(upgradeHead("/ws/runner/box", admin, "not-a-key"))
        await c.closed
        expect(c.received()).toMatch(/^HTTP\/1\.1 400 /)
      }
      expect((await fetch(`${broker.url}/healthz`)).status).toBe(200)
      await stops(broker)
    } finally {
      broker.child.kill("SIGKILL")
      await broker.exited
    }
  }, 120_000)
})

describe("the listen backlog", () => {
  // Beyond the kernel's accept queue a reconnect wave's handshakes are dropped and retried after
  // 1, 3, 7 s: node's default of 511 made a 6,000-socket wave wait most of a minute.
  it("is 4,096 by default (capped by the kernel's somaxconn), not node's 511, and A2A_BROKER_LISTEN_BACKLOG sets it", async () => {
    const home = tempHome()
    const byDefault = await startBrokerProcess(home, ["--db", ":memory:"])
    const set = await startBrokerProcess(tempHome(), ["--db", ":memory:"], { A2A_BROKER_LISTEN_BACKLOG: "1234" })
    try {
      expect(await listenBacklog(byDefault.port)).toBe(effectiveBacklog(4_096))
      expect(await listenBacklog(set.port)).toBe(effectiveBacklog(1_234))
    } finally {
      byDefault.child.kill("SIGTERM")
      set.child.kill("SIGTERM")
      await Promise.all([byDefault.exited, set.exited])
    }
  }, 120_000)

  it("a bad A2A_BROKER_LISTEN_BACKLOG is a configuration error at start, not a silent default", async () => {
    const refused = await startBrokerProcess(tempHome(), ["--db", ":memory:"], { A2A_BROKER_LISTEN_BACKLOG: "0" }).then(
      (p) => {
        p.child.kill("SIGKILL")
        return "started"
      },
      (e: Error) => e.message
    )
    expect(refused).toMatch(/A2A_BROKER_LISTEN_BACKLOG/)
  }, 120_000)
})

describe("WebSocket frames over the limit", () => {
  it("are refused (1009) before they are buffered: six 50 MiB frames leave the broker's RSS within a bound", async () => {
    const home = tempHome()
    const proc = await startBrokerProcess(home, ["--db", ":memory:"])
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.child.pid}/status`, "utf8"))![1]) * 1024
    try {
      const admin = readFileSync(`${home}/broker.token`, "utf8").trim()
      const peer = (await http(proc, admin, "POST", "/api/peers", { name: "big" })).json.peer
      const before = rss()
      const frame = Buffer.alloc(50 * 1024 * 1024, 0x61)
      for (let i = 0; i < 6; i++) {
        const ws = new WebSocket(wsUrl(proc, `/ws/broker/peer/${peer.id}`), { headers: { authorization: `Bearer ${admin}` } })
        const code = new Promise<number>((resolve) => ws.on("close", (c) => resolve(c)))
        ws.on("error", () => {})
        await new Promise<void>((resolve) => ws.on("message", (d) => JSON.parse(String(d)).type === "hello" && resolve()))
        ws.send(frame)
        expect([1009, 1006]).toContain(await code)
      }
      const grown = rss() - before
      expect(grown).toBeLessThan(64 * 1024 * 1024)
      // The broker is fine: a normal frame on a new socket still works.
      const ws = new WebSocket(wsUrl(proc, `/ws/broker/peer/${peer.id}`), { headers: { authorization: `Bearer ${admin}` } })
      await new Promise<void>((resolve) => ws.on("message", (d) => JSON.parse(String(d)).type === "hello" && resolve()))
      ws.send(JSON.stringify({ type: "send", to: "big", body: "small", ref: "r1" }))
      await new Promise<void>((resolve) => ws.on("message", (d) => JSON.parse(String(d)).type === "sent" && resolve()))
      ws.close()
    } finally {
      proc.child.kill("SIGTERM")
      await proc.exited
    }
  }, 120_000)

  it("are refused (1009) on the runner link too, before they are buffered", async () => {
    const home = tempHome()
    const proc = await startBrokerProcess(home, ["--db", ":memory:"])
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.child.pid}/status`, "utf8"))![1]) * 1024
    try {
      const created = await runCli(["token", "create", "--home", home, "--tenant", "default", "--role", "runner"])
      expect(created.code, created.stderr).toBe(0)
      const runner = created.stdout.trim()
      const before = rss()
      const frame = Buffer.alloc(50 * 1024 * 1024, 0x61)
      for (let i = 0; i < 4; i++) {
        const ws = new WebSocket(wsUrl(proc, "/ws/runner/big-runner"), { headers: { authorization: `Bearer ${runner}` } })
        const code = new Promise<number>((resolve) => ws.on("close", (c) => resolve(c)))
        ws.on("error", () => {})
        await new Promise<void>((resolve) => ws.on("open", () => resolve()))
        ws.send(frame)
        expect([1009, 1006]).toContain(await code)
      }
      expect(rss() - before).toBeLessThan(64 * 1024 * 1024)
      expect((await http(proc, undefined, "GET", "/healthz")).status).toBe(200)
    } finally {
      proc.child.kill("SIGTERM")
      await proc.exited
    }
  }, 120_000)
})
