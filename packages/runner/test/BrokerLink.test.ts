import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import WebSocket, { WebSocketServer } from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { opened, record } from "../../broker/test/support.js"
import { api, eventually, FIXTURES, isAlive, type RunnerProcess, startRunner, tempDir } from "./helpers.js"

const ECHO = join(FIXTURES, "echo-agent.mjs")

describe("broker link: spawn orders, round trip, reconcile after a runner restart", () => {
  let broker: TestBroker
  let runnerToken: string
  beforeAll(async () => {
    broker = await startBroker({ gcInterval: 50 })
    runnerToken = await broker.token("default", "runner")
  })
  afterAll(() => broker.close())

  const startLinked = (id: string, dataDir?: string) =>
    startRunner(["--broker", broker.url, "--token", runnerToken, "--id", id, "--labels", "zone=test", "--capacity", "4"], dataDir === undefined ? {} : { dataDir })

  it("spawn → running → registered → a message comes back → stop → exited", async () => {
    const runner = await startLinked("rt-round")
    const admin = client(broker, broker.adminToken)
    try {
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-round" && r.status === "online"), "the runner online")
      const listed = (await admin.runners.list()).runners.find((r) => r.id === "rt-round")!
      expect(listed).toMatchObject({ labels: { zone: "test" }, capacity: 4, presets: ["command", "claude"] })

      const boss = (await admin.peers.register({ name: "boss" })).peer
      const channel = admin.connect(boss.id, { autoAck: true })
      const seen = record(channel)
      await opened(channel)

      const created = await http(broker, broker.adminToken, "POST", "/api/spawn", { runner: "rt-round", command: process.execPath, args: [ECHO], name: "echo-1", teams: ["crew"], requestedBy: boss.id })
      expect(created.status).toBe(202)
      const spawnId: string = created.json.spawn.id
      const running = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "running", "running")
      const pid = running.type === "spawn_status" ? running.spawn.pid! : 0
      expect(isAlive(pid)).toBe(true)
      const registered = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "registered", "registered")
      const peerId = registered.type === "spawn_status" ? registered.spawn.peerId! : ""
      const peer = (await admin.peers.get(peerId)).peer
      expect(peer).toMatchObject({ name: "echo-1", spawnId, runnerId: "rt-round", teams: ["crew"] })

      const local = (await api(runner, "GET", `/agents/${spawnId}`)).json.agent
      expect(local).toMatchObject({ spawnId, name: "echo-1", status: "running", pid })

      await admin.messages.send({ from: boss.id, to: "echo-1", body: "hello runner" })
      const reply = await seen.message((m) => m.body === "echo: hello runner", "the echo")
      expect(reply.from).toBe(peerId)

      expect((await http(broker, broker.adminToken, "DELETE", `/api/spawn/${spawnId}`)).status).toBe(202)
      const exited = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.status === "exited", "exited")
      expect(exited.type === "spawn_status" && exited.spawn.exitCode).toBe(0)
      expect(isAlive(pid)).toBe(false)
      expect((await api(runner, "GET", `/agents/${spawnId}`)).json.agent.status).toBe("stopped")
      await channel.close()
    } finally {
      await admin.close()
      await runner.stop()
    }
  })

  it("a spawn the runner cannot start fails clearly", async () => {
    const runner = await startLinked("rt-bad")
    const admin = client(broker, broker.adminToken)
    try {
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-bad" && r.status === "online"), "the runner online")
      const created = await admin.spawn.create({ runner: "rt-bad", command: "no-such-agent-binary" })
      const failed = await eventually(async () => {
        const spawn = (await admin.spawn.get(created.spawn.id)).spawn
        return spawn.status === "failed" ? spawn : undefined
      }, "the spawn failed")
      expect(failed.error).toMatch(/command not found/)
      expect((await api(runner, "GET", "/health", undefined, null)).status).toBe(200)
    } finally {
      await admin.close()
      await runner.stop()
    }
  })

  it("a runner restart with agents running: the broker sees them reconciled, not duplicated", async () => {
    const dataDir = tempDir()
    let runner: RunnerProcess = await startLinked("rt-restart", dataDir)
    const admin = client(broker, broker.adminToken)
    try {
      const watcher = (await admin.peers.register({ name: "watcher" })).peer
      const channel = admin.connect(watcher.id, { autoAck: true })
      const seen = record(channel)
      await opened(channel)
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-restart" && r.status === "online"), "the runner online")
      const { spawn } = await admin.spawn.create({ runner: "rt-restart", command: process.execPath, args: [ECHO], name: "echo-2", requestedBy: watcher.id })
      const registered = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "registered", "registered")
      const peerId = registered.type === "spawn_status" ? registered.spawn.peerId! : ""
      const pid1: number = (await api(runner, "GET", `/agents/${spawn.id}`)).json.agent.pid

      await runner.stop(true)
      expect(isAlive(pid1)).toBe(false)
      seen.messages.length = 0
      runner = await startLinked("rt-restart", dataDir)

      // The runner reports its record in hello, the broker still wants it and sends the order
      // again, the runner starts it: still one spawn, one peer, one agent.
      const agent = await eventually(async () => {
        const a = (await api(runner, "GET", `/agents/${spawn.id}`)).json?.agent
        return a?.status === "running" ? a : undefined
      }, "the agent back", 20_000)
      expect(agent.status).toBe("running")
      expect(agent.pid).not.toBe(pid1)
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-restart" && r.status === "online"), "the runner back online")
      // The agent re-registers under its name: same peer, and it answers.
      await admin.messages.send({ from: watcher.id, to: "echo-2", body: "still there?" })
      const reply = await seen.message((m) => m.body === "echo: still there?", "the echo after the restart")
      expect(reply.from).toBe(peerId)
      const now = (await admin.spawn.get(spawn.id)).spawn
      expect(["running", "registered"]).toContain(now.status)
      expect((await admin.spawn.list()).spawns.filter((s) => s.spec.name === "echo-2")).toHaveLength(1)
      expect((await admin.peers.list()).peers.filter((p) => p.name === "echo-2")).toHaveLength(1)
      expect((await admin.runners.list()).runners.filter((r) => r.id === "rt-restart")).toHaveLength(1)
      expect((await api(runner, "GET", "/agents")).json.agents.filter((a: any) => a.spawnId === spawn.id)).toHaveLength(1)

      await admin.spawn.stop(spawn.id)
      await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "exited", "exited")
      await channel.close()
    } finally {
      await admin.close()
      await runner.stop()
    }
  })

  it("keeps its agents while the broker is away, and reports what happened after the next hello", async () => {
    // A broker stand-in that records frames and can refuse the link, to hold the runner away.
    let accept = true
    const frames: Array<{ conn: number; frame: any }> = []
    const sockets: Array<WebSocket> = []
    const waiters = new Set<() => void>()
    const wss = new WebSocketServer({ noServer: true })
    const server = createServer()
    server.on("upgrade", (req, socket, head) => {
      if (!accept || !/^\/ws\/runner\/rt-away$/.test(req.url ?? "")) return socket.end("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
      wss.handleUpgrade(req, socket, head, (ws) => {
        const conn = sockets.push(ws)
        ws.on("message", (data) => {
          frames.push({ conn, frame: JSON.parse(String(data)) })
          waiters.forEach((w) => w())
        })
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const frame = (predicate: (f: { conn: number; frame: any }) => boolean, what: string, timeoutMs = 5_000) =>
      new Promise<any>((resolve, reject) => {
        const check = () => {
          const found = frames.find(predicate)
          if (found !== undefined) {
            waiters.delete(check)
            clearTimeout(timer)
            resolve(found.frame)
          }
        }
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(frames)}`)), timeoutMs)
        waiters.add(check)
        check()
      })
    const runner = await startRunner(["--broker", url, "--token", "t0k3n", "--id", "rt-away"])
    try {
      const hello1 = await frame((f) => f.conn === 1 && f.frame.type === "hello", "hello")
      expect(hello1).toMatchObject({ runner: { id: "rt-away", presets: ["command", "claude"] }, agents: [] })
      sockets[0]!.send(JSON.stringify({ type: "spawn", spawn: { id: "s_away1", spec: { command: "sleep", args: ["1000"], name: "sleeper" }, brokerUrl: url, token: "peer-token" } }))
      const running = await frame((f) => f.frame.type === "spawn_status" && f.frame.status === "running", "running")
      expect(running).toMatchObject({ spawnId: "s_away1" })
      expect(isAlive(running.pid)).toBe(true)

      // The broker goes away: the agent keeps running.
      accept = false
      sockets[0]!.terminate()
      await eventually(async () => (await api(runner, "GET", "/agents/s_away1")).json.agent.status === "running" && sockets[0]!.readyState === WebSocket.CLOSED, "link down")
      expect(isAlive(running.pid)).toBe(true)
      // It is stopped locally meanwhile; the report waits for the link.
      await api(runner, "POST", "/agents/s_away1/stop")
      expect(isAlive(running.pid)).toBe(false)
      accept = true
      // The runner retried while refused, its backoff doubling from 200 ms up to 10 s (±20 %
      // jitter): the next attempt can be a whole step away, longer the longer the away part took.
      const hello2 = await frame((f) => f.conn === 2 && f.frame.type === "hello", "hello after reconnect", 15_000)
      expect(hello2.agents).toEqual([])
      const exited = await frame((f) => f.conn === 2 && f.frame.type === "spawn_status", "the report after hello")
      expect(exited).toMatchObject({ spawnId: "s_away1", status: "exited" })
      expect(frames.findIndex((f) => f.conn === 2 && f.frame.type === "hello")).toBeLessThan(frames.findIndex((f) => f.conn === 2 && f.frame.type === "spawn_status"))
    } finally {
      await runner.stop()
      for (const ws of sockets) ws.terminate()
      wss.close()
      server.close()
    }
  })
})
