import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { client as brokerClient, http, startBroker, startBrokerProcess, tempHome } from "../../broker/test/harness.js"
import { CLI, eventually, type McpSession, startSession } from "./harness.js"

const cleanup: Array<() => Promise<unknown> | unknown> = []
afterAll(async () => {
  for (const f of cleanup.reverse()) await f()
})

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

/** A stdio transport over a child we own, so a test can end stdin or signal it and see how it exits. */
class ChildTransport implements Transport {
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: (message: JSONRPCMessage) => void
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr = ""
  private readonly buffer = new ReadBuffer()
  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [CLI], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stdio: ["pipe", "pipe", "pipe"] })
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })))
    this.child.stderr!.on("data", (chunk) => (this.stderr += String(chunk)))
    this.child.stdout!.on("data", (chunk: Buffer) => {
      this.buffer.append(chunk)
      for (let m = this.buffer.readMessage(); m !== null; m = this.buffer.readMessage()) this.onmessage?.(m)
    })
    this.child.once("close", () => this.onclose?.())
  }
  async start() {}
  async send(message: JSONRPCMessage) {
    this.child.stdin!.write(serializeMessage(message))
  }
  async close() {
    this.child.stdin!.end()
  }
}

const connect = async (env: Record<string, string>) => {
  const transport = new ChildTransport(env)
  const client = new Client({ name: "lifecycle-test", version: "1.0.0" })
  await client.connect(transport)
  cleanup.push(() => (transport.child.exitCode === null ? transport.child.kill("SIGKILL") : undefined))
  return { transport, client }
}

describe("process lifecycle", () => {
  it("exits 0 when stdin closes, keeping the peer and its inbox for a later session by default", async () => {
    const broker = await startBroker()
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    const { transport, client } = await connect({ A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: "keeper" })
    const who = (await client.callTool({ name: "whoami" })) as any
    const id = who.structuredContent.peer.id
    transport.child.stdin!.end()
    expect(await transport.exited).toEqual({ code: 0, signal: null })
    const res = await http(broker, token, "GET", `/api/peers/${id}`)
    expect(res.status).toBe(200)
    // a message sent now waits in the inbox, and the next session with that name gets it
    await http(broker, token, "POST", "/api/messages", { from: id, to: id, body: "note to self" })
    const next = await startSession({ url: broker.url, token, name: "keeper" })
    cleanup.push(() => next.close())
    expect((await next.ok("whoami")).data.peer.id).toBe(id)
    const inbox = await eventually(async () => {
      const r = await next.ok("check_inbox")
      return r.data.messages.length > 0 ? r.data.messages : undefined
    }, 5_000, "the kept message")
    expect(inbox.map((m: any) => m.body)).toEqual(["note to self"])
  })

  it("with A2A_UNREGISTER_ON_EXIT=1 it unregisters on SIGTERM and exits cleanly", async () => {
    const broker = await startBroker()
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    const { transport, client } = await connect({ A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: "leaver", A2A_UNREGISTER_ON_EXIT: "1" })
    const id = ((await client.callTool({ name: "whoami" })) as any).structuredContent.peer.id
    transport.child.kill("SIGTERM")
    const exit = await transport.exited
    expect(exit.signal === null || exit.signal === "SIGTERM").toBe(true)
    expect(exit.code === 0 || exit.code === null || exit.code === 130 || exit.code === 143).toBe(true)
    expect((await http(broker, token, "GET", `/api/peers/${id}`)).status).toBe(404)
  })

  it("exits when its parent process dies even though stdin stays open", async () => {
    const broker = await startBroker()
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    const dir = mkdtempSync(join(tmpdir(), "a2a-mcp-orphan-"))
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }))
    const fifo = join(dir, "stdin")
    execFileSync("mkfifo", [fifo])
    // the "agent": starts the MCP server on a FIFO it holds open read-write (stdin never ends),
    // prints its pid once the server says it is serving (its watchers are set up by then), waits
    const agent = spawn(
      process.execPath,
      [
        "-e",
        `const fs = require("node:fs"); const cp = require("node:child_process");
         const fd = fs.openSync(${JSON.stringify(fifo)}, "r+");
         const c = cp.spawn(process.execPath, [${JSON.stringify(CLI)}], { stdio: [fd, "ignore", "pipe"], env: process.env });
         let err = ""; c.stderr.on("data", (d) => { err += d; if (/serving on stdio/.test(err)) { console.log(c.pid); err = "" } });
         setInterval(() => {}, 1000)`
      ],
      { env: { PATH: process.env.PATH ?? "", A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_LOG_LEVEL: "debug" }, stdio: ["ignore", "pipe", "inherit"] }
    )
    const pid = Number(await new Promise<string>((resolve) => agent.stdout!.once("data", (d) => resolve(String(d).trim()))))
    expect(pid).toBeGreaterThan(0)
    const alive = () => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    expect(alive()).toBe(true)
    agent.kill("SIGKILL")
    // no event tells us another process's child has exited: poll for it
    await eventually(async () => (alive() ? undefined : true), 10_000, "the orphaned MCP server to exit")
  })

  it("refuses to start without a token, naming where it looked", async () => {
    const home = mkdtempSync(join(tmpdir(), "a2a-mcp-empty-"))
    cleanup.push(() => rmSync(home, { recursive: true, force: true }))
    const child = spawn(process.execPath, [CLI], { env: { PATH: process.env.PATH ?? "", A2A_HOME: home }, stdio: ["pipe", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (c) => (stderr += String(c)))
    const code = await new Promise((resolve) => child.once("exit", resolve))
    expect(code).toBe(2)
    expect(stderr).toContain("A2A_TOKEN")
    expect(stderr).toContain(join(home, "broker.token"))
  })

  it("rejects a bad team name in A2A_TEAMS with a clear message", async () => {
    const child = spawn(process.execPath, [CLI], { env: { PATH: process.env.PATH ?? "", A2A_TOKEN: "x", A2A_TEAMS: "ok,not ok" }, stdio: ["pipe", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (c) => (stderr += String(c)))
    expect(await new Promise((resolve) => child.once("exit", resolve))).toBe(2)
    expect(stderr).toContain("A2A_TEAMS")
    expect(stderr).toContain("not ok")
  })
})

describe("CLI", () => {
  it("--print-config claude prints a ready .mcp.json snippet", () => {
    const out = execFileSync(process.execPath, [CLI, "--print-config", "claude"], { env: { PATH: process.env.PATH ?? "", A2A_BROKER_URL: "http://127.0.0.1:4999", A2A_TEAMS: "dev" } }).toString()
    const config = JSON.parse(out)
    // Run from a checkout (not npx's cache): this Node and the path of the build, which work as printed.
    expect(config.mcpServers.a2a).toEqual({
      type: "stdio",
      command: process.execPath,
      args: ["--max-semi-space-size=2", "--no-opt", "--no-sparkplug", "--no-maglev", realpathSync(CLI)],
      env: { A2A_BROKER_URL: "http://127.0.0.1:4999", A2A_TEAMS: "dev" }
    })
    const withChannels = JSON.parse(execFileSync(process.execPath, [CLI, "--print-config", "claude", "--channels"]).toString())
    expect(withChannels.mcpServers.a2a.env.A2A_CHANNELS).toBe("1")
    const codex = execFileSync(process.execPath, [CLI, "--print-config", "codex"]).toString()
    expect(codex).toContain("[mcp_servers.a2a]")
    const help = execFileSync(process.execPath, [CLI, "--help"]).toString()
    expect(help).toMatch(/^a2a-mcp \d+\.\d+\.\d+\S*: .*\n\nusage:\n {2}a2a-mcp ?\n/)
    for (const part of ["--print-config [claude|codex|json] [--channels]", "A2A_BROKER_URL", "A2A_TOKEN", "A2A_PEER_NAME", "A2A_TEAMS"]) expect(help).toContain(part)
  })

  it("exits 2 on an unknown argument or print-config kind", () => {
    for (const args of [["--bogus"], ["--print-config", "vim"], ["--print-config", "claude", "extra"], ["--channels"]]) {
      try {
        execFileSync(process.execPath, [CLI, ...args], { stdio: "pipe" })
        expect.unreachable()
      } catch (error: any) {
        expect(error.status).toBe(2)
        expect(String(error.stderr)).toMatch(/unknown argument|print-config takes/)
      }
    }
  })
})

describe("names", () => {
  it("a clean exit leaves its peer offline at once (peer_left to the others), and a restarted session resumes its name, not name-2", async () => {
    const broker = await startBroker({ peerTimeout: 600_000 })
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    const root = mkdtempSync(join(tmpdir(), "a2a-mcp-ghost-"))
    const repo = join(root, "proj")
    mkdirSync(repo, { recursive: true })
    execFileSync("git", ["init", "-q"], { cwd: repo })
    cleanup.push(() => rmSync(root, { recursive: true, force: true }))
    const watcher = brokerClient(broker, token)
    cleanup.push(() => watcher.close())
    const me = (await watcher.peers.register({ name: "watcher" })).peer
    const left: Array<string> = []
    const channel = watcher.connect(me.id, { presence: "batched" })
    channel.on("event", (e: any) => e.type === "peers_changed" && left.push(...e.left.map((p: any) => p.id)))
    await new Promise<void>((resolve) => channel.on("open", () => resolve()))

    const first = await startSession({ url: broker.url, token, cwd: repo })
    const peer = (await first.ok("whoami")).data.peer
    expect(peer.name).toBe("proj")
    await first.close()
    // Offline as soon as its socket is gone: the peer timeout (10 minutes here) has nothing to do with it.
    await eventually(async () => ((await http(broker, token, "GET", `/api/peers/${peer.id}`)).json.peer.status === "offline" ? true : undefined), 30_000, "the peer offline")
    await eventually(async () => (left.includes(peer.id) ? true : undefined), 30_000, "peer_left to the watcher")

    const second = await startSession({ url: broker.url, token, cwd: repo })
    cleanup.push(() => second.close())
    const again = (await second.ok("whoami")).data.peer
    expect(again).toMatchObject({ id: peer.id, name: "proj" })
  }, 120_000)

  it("a session that exits right after its first answer, its channel still connecting, leaves no ghost: the peer is offline at once", async () => {
    // whoami answers once the peer is registered, before the channel's socket is attached; an
    // exit then used to leave the peer online until the peer timeout (10 minutes here).
    const broker = await startBroker({ peerTimeout: 600_000 })
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    for (let i = 0; i < 3; i++) {
      const session = await startSession({ url: broker.url, token, name: `quick-${i}` })
      const { peer } = (await session.ok("whoami")).data
      await session.close()
      await eventually(async () => ((await http(broker, token, "GET", `/api/peers/${peer.id}`)).json.peer.status === "offline" ? true : undefined), 30_000, `quick-${i} offline`)
    }
  }, 120_000)

  it("derives a name from the git repository and gives a second session in it the next free one", async () => {
    const broker = await startBroker()
    cleanup.push(() => broker.close())
    const token = await broker.token("t", "peer")
    const root = mkdtempSync(join(tmpdir(), "a2a-mcp-git-"))
    const repo = join(root, "my repo")
    mkdirSync(join(repo, "sub"), { recursive: true })
    execFileSync("git", ["init", "-q"], { cwd: repo })
    cleanup.push(() => rmSync(root, { recursive: true, force: true }))
    const one = await startSession({ url: broker.url, token, cwd: join(repo, "sub") })
    cleanup.push(() => one.close())
    const a = (await one.ok("whoami")).data.peer
    const two = await startSession({ url: broker.url, token, cwd: repo })
    cleanup.push(() => two.close())
    const b = (await two.ok("whoami")).data.peer
    expect([a.name, b.name]).toEqual(["my-repo", "my-repo-2"])
    expect(a.gitRoot).toBe(b.gitRoot)
    expect(a.gitRoot).toMatch(/my repo$/)
    const same = await one.ok("list_peers", { scope: "repo" })
    expect(same.data.peers.map((p: any) => p.name)).toEqual(["my-repo-2"])
    const dir = await one.ok("list_peers", { scope: "directory" })
    expect(dir.data.peers).toEqual([])
  })
})

describe("broker away", () => {
  it("starts while the broker is down, reports it, and registers once the broker is up", async () => {
    const port = await freePort()
    const home = tempHome()
    cleanup.push(() => rmSync(home, { recursive: true, force: true }))
    const token = "static-token-for-test-0123456789"
    const session = await startSession({ url: `http://127.0.0.1:${port}`, token, name: "early" })
    cleanup.push(() => session.close())
    const down = await eventually(async () => {
      const r = await session.call("whoami")
      return r.isError === true && /unreachable|refused|registering/.test(r.text) ? r : undefined
    }, 20_000, "an error naming the broker")
    expect(down.text).toContain(`127.0.0.1:${port}`)
    const broker = await startBrokerProcess(home, ["--port", String(port)])
    cleanup.push(async () => {
      broker.child.kill("SIGTERM")
      await broker.exited
    })
    // the static token does not exist there: create one with the broker's CLI, then the retry loop gets in
    const created = execFileSync(process.execPath, [join(import.meta.dirname, "../../broker/dist/cli.js"), "token", "create", "--tenant", "t", "--role", "peer", "--home", home], { env: { ...process.env, A2A_HOME: home } }).toString()
    const fresh = created.trim()
    const late = await startSession({ url: broker.url, token: fresh, name: "late" })
    cleanup.push(() => late.close())
    expect((await late.ok("whoami")).data.peer.name).toBe("late")
    // "early" keeps retrying with its (unknown) token and says why
    const still = await session.call("whoami")
    expect(still.isError).toBe(true)
    expect(still.text).toMatch(/Unauthorized|refused/)
  })

  it("survives a broker restart: reconnects, and messages sent meanwhile arrive exactly once", async () => {
    const home = tempHome()
    cleanup.push(() => rmSync(home, { recursive: true, force: true }))
    let broker = await startBrokerProcess(home)
    const port = broker.port
    const { readFileSync } = await import("node:fs")
    const token = readFileSync(join(home, "broker.token"), "utf8").trim()
    const alice: McpSession = await startSession({ url: broker.url, token, name: "alice", channels: true })
    const bob: McpSession = await startSession({ url: broker.url, token, name: "bob" })
    cleanup.push(() => alice.close(), () => bob.close())
    const aliceId = (await alice.ok("whoami")).data.peer.id
    const bobId = (await bob.ok("whoami")).data.peer.id
    const carol = brokerClient(broker, token)
    const { peer: sender } = await carol.peers.register({ name: "carol" })
    await carol.messages.send({ from: sender.id, to: bobId, body: "before restart" })

    broker.child.kill("SIGTERM")
    await broker.exited
    broker = await startBrokerProcess(home, ["--port", String(port)])
    cleanup.push(async () => {
      broker.child.kill("SIGTERM")
      await broker.exited
    })
    for (const i of [1, 2, 3]) {
      await carol.messages.send({ from: sender.id, to: aliceId, body: `meanwhile ${i}` })
      await carol.messages.send({ from: sender.id, to: bobId, body: `meanwhile ${i}` })
    }
    const pushed = await Promise.all([0, 1, 2].map((i) => alice.push(i)))
    expect(pushed.map((p) => p.content)).toEqual(["meanwhile 1", "meanwhile 2", "meanwhile 3"])
    const got: Array<string> = []
    await eventually(async () => {
      const r = await bob.ok("check_inbox")
      got.push(...r.data.messages.map((m: any) => m.body))
      return got.length >= 4 ? true : undefined
    }, 15_000, "bob's messages")
    expect(got).toEqual(["before restart", "meanwhile 1", "meanwhile 2", "meanwhile 3"])
    // a sentinel behind them proves nothing else (no duplicate) was queued before it
    await carol.messages.send({ from: sender.id, to: aliceId, body: "sentinel" })
    await carol.messages.send({ from: sender.id, to: bobId, body: "sentinel" })
    expect((await alice.push(3)).content).toBe("sentinel")
    expect(alice.pushed.map((p) => p.content)).toEqual(["meanwhile 1", "meanwhile 2", "meanwhile 3", "sentinel"])
    const last = await bob.ok("wait_for_messages", { timeout_seconds: 15 })
    expect(last.data.messages.map((m: any) => m.body)).toEqual(["sentinel"])
    await carol.close()
  })
})
