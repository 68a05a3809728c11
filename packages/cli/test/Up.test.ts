/**
 * `npm start`, as a newcomer runs it: the root `start` script with HOME set to an empty temp
 * dir. It must print the URLs, the token's place and a working `.mcp.json`; two sessions
 * started from that snippet talk to each other; Ctrl-C (SIGINT to the process group, as a
 * terminal sends it) stops everything, the runner's agents included, and leaves no process.
 *
 * The start script (`scripts/start.mjs`) rebuilds only packages whose inputs changed; `npm test`
 * has just built every package (and `npm run build` records their inputs' hashes), so it starts
 * at once, printing nothing before the stack's summary (a rebuild would show a "building" line).
 */
import { createBrokerClient } from "@mks/a2a"
import { startFakeMessages } from "@mks/a2a-testing"
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { join } from "node:path"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Up from "../src/Up.js"
import { cleanEnv, eventually, isAlive, mcpSession, ROOT, start, tempDir, type McpSession, type Proc } from "../../e2e/test/support.js"

const script: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts.start
// A2A_UP_TEST_COMMAND: try another build of the same command before the script points at it.
const command = process.env.A2A_UP_TEST_COMMAND ?? script
const A2A = join(ROOT, "packages", "cli", "bin", "a2a.js")

/** Run the `a2a` bin to its end. */
const a2a = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [A2A, ...args], { env, cwd: ROOT }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error as any).code, stdout, stderr }))
  )

const groupAlive = (pgid: number) => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/** Ctrl-C in a terminal: SIGINT to the foreground process group; then every process of it is gone. */
const ctrlC = async (proc: Proc) => {
  process.kill(-proc.pid, "SIGINT")
  await proc.exited
  await eventually(() => !groupAlive(proc.pid), "every process of the stack's group gone", 15_000)
}

describe("npm start", () => {
  const home = tempDir("a2a-up-home-")
  const sessions: Array<McpSession> = []
  let stack: Proc | undefined
  afterAll(async () => {
    await Promise.all(sessions.map((s) => s.close().catch(() => {})))
    if (stack !== undefined && groupAlive(stack.pid)) process.kill(-stack.pid, "SIGKILL")
    rmSync(home, { recursive: true, force: true })
  })

  it("starts the stack, two sessions from the printed .mcp.json talk, and Ctrl-C stops it all", async () => {
    // Ports 0: the machine may already run a stack on the default ports.
    stack = start("sh", ["-c", command], { env: cleanEnv({ HOME: home, A2A_BROKER_PORT: "0", A2A_RUNNER_PORT: "0", A2A_PROXY_PORT: "0" }), detached: true })
    await stack.line(/^Ctrl-C stops everything\.$/, 60_000)
    const brokerUrl = (await stack.line(/^\s+broker\s+(http:\/\/\S+)\s+admin token in (\S+)$/))[1]!
    const tokenFile = (await stack.line(/^\s+broker\s+\S+\s+admin token in (\S+)$/))[1]!
    expect(tokenFile).toBe(join(home, ".a2a", "broker.token"))
    const runnerLine = await stack.line(/^\s+runner\s+(http:\/\/\S+)\s+id (\S+), API key in (\S+)$/)
    expect(runnerLine[3]).toBe(join(home, ".a2a", "runner", "runner.key"))
    expect((await stack.line(/^\s+proxy\s+(.*)$/))[1]).toMatch(/^off: no providers configured; to add providers, copy examples\/proxy-providers\/proxy\.yaml to /)
    const snippet = JSON.parse((await stack.line(/^\s+(\{"mcpServers".*\})$/))[1]!)
    expect(await stack.line(/^\s+claude --mcp-config '\{.*\}' --dangerously-load-development-channels server:a2a$/)).toBeTruthy()
    const server = snippet.mcpServers.a2a
    expect(server.env).toEqual({ A2A_BROKER_URL: brokerUrl, A2A_CHANNELS: "1" })
    // Up to date after npm test's build: nothing rebuilt, nothing printed before the summary.
    expect(stack.stderr()).not.toContain("building")

    // Where it runs is recorded (URLs, no secret), and the CLI finds it without being told.
    const record = JSON.parse(readFileSync(join(home, ".a2a", "stack.json"), "utf8"))
    expect(record).toMatchObject({ broker: brokerUrl, dashboard: `${brokerUrl}/ui`, runner: runnerLine[1] })
    expect(JSON.stringify(record)).not.toContain(readFileSync(tokenFile, "utf8").trim())
    const found = await a2a(["peers", "--json"], cleanEnv({ HOME: home }))
    expect(found.stderr).toBe("")
    expect(found.code).toBe(0)
    expect(Array.isArray(JSON.parse(found.stdout))).toBe(true)

    // Two sessions exactly as Claude Code would start them from the snippet (only a name added).
    for (const name of ["alice", "bob"]) {
      const session = await mcpSession(server.command, server.args, cleanEnv({ HOME: home, ...server.env, A2A_PEER_NAME: name }))
      sessions.push(session)
      // Tools answer once the session is registered.
      expect((await session.ok("whoami")).text).toContain(name)
    }
    const [alice, bob] = sessions as [McpSession, McpSession]
    const sent = await alice.ok("send_peer_message", { to: "bob", message: "hello from alice" })
    const pushed = await bob.push((p) => p.content === "hello from alice")
    expect(pushed.meta).toMatchObject({ from_name: "alice" })
    expect(sent.text).toContain(pushed.meta.message_id!)
    await bob.ok("send_peer_message", { to: pushed.meta.from_id, message: "hi alice", reply_to: pushed.meta.message_id })
    expect((await alice.push((p) => p.content === "hi alice")).meta).toMatchObject({ from_name: "bob" })

    // The runner is linked: an agent spawned through the broker runs (and must die with the stack).
    const admin = createBrokerClient({ url: brokerUrl, token: readFileSync(tokenFile, "utf8").trim() })
    const runnerId = runnerLine[2]!
    expect((await admin.runners.list()).runners).toEqual([expect.objectContaining({ id: runnerId, status: "online" })])
    const { spawn } = await admin.spawn.create({ runner: runnerId, preset: "command", command: process.execPath, args: ["-e", "setInterval(() => {}, 1000)"], name: "sleeper" })
    const agentPid = await eventually(async () => {
      const s = (await admin.spawn.get(spawn.id)).spawn
      return s.status === "running" ? s.pid : undefined
    }, "the agent running")
    expect(isAlive(agentPid!)).toBe(true)
    await admin.close()
    await Promise.all(sessions.splice(0).map((s) => s.close()))

    // Ctrl-C: SIGINT to the whole foreground group.
    await ctrlC(stack)
    expect(isAlive(agentPid!)).toBe(false)
    await expect(fetch(brokerUrl + "/healthz")).rejects.toThrow()
    expect(stack.stdout().trim().split("\n").at(-1)).toBe("a2a stack stopped")
    expect(existsSync(join(home, ".a2a", "stack.json"))).toBe(false)
    // Nothing listens any more: the CLI says so and how to start a stack.
    const refused = await a2a(["peers"], cleanEnv({ HOME: home, A2A_BROKER_URL: brokerUrl }))
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain("ECONNREFUSED")
    expect(refused.stderr).toContain("no stack is running there: start one with `npm start`")
    expect(stack.stderr()).not.toMatch(/Error|internal error/)
    // SQLite closed cleanly: no WAL left behind.
    expect(existsSync(join(home, ".a2a", "broker.db-wal"))).toBe(false)
  }, 120_000)
})

describe("npm start with providers", () => {
  it("runs the proxy from ~/.a2a/proxy.yaml, gives the runner a virtual key kept across restarts, and refuses a bad config in one line", async () => {
    const home = tempDir("a2a-up-proxy-")
    const fake = await startFakeMessages()
    try {
      mkdirSync(join(home, ".a2a"), { recursive: true })
      writeFileSync(join(home, ".a2a", "proxy.yaml"), `providers:\n  - name: lab\n    baseUrl: ${fake.url}\n    apiKeyEnv: LAB_KEY\ndefault: lab\n`)
      const env = cleanEnv({ HOME: home, A2A_BROKER_PORT: "0", A2A_RUNNER_PORT: "0", A2A_PROXY_PORT: "0", LAB_KEY: "lab-secret" })
      const runOnce = async () => {
        const proc = start("sh", ["-c", command], { env, detached: true })
        const proxy = await proc.line(/^\s+proxy\s+(http:\/\/\S+)\s+admin token in (\S+), config (\S+)$/, 60_000)
        await proc.line(/^Ctrl-C stops everything\.$/)
        return { proc, url: proxy[1]!, tokenFile: proxy[2]!, config: proxy[3]! }
      }
      const first = await runOnce()
      expect(first.tokenFile).toBe(join(home, ".a2a", "proxy.token"))
      expect(first.config).toBe(join(home, ".a2a", "proxy.yaml"))
      // The runner's key works at the proxy and reaches the provider with the provider's key.
      const runnerKey = readFileSync(join(home, ".a2a", "runner", "proxy.key"), "utf8").trim()
      const res = await fetch(first.url + "/v1/messages", {
        method: "POST",
        headers: { "x-api-key": runnerKey, "content-type": "application/json" },
        body: JSON.stringify({ model: "any", max_tokens: 5, messages: [{ role: "user", content: "via up" }] })
      })
      expect(res.status).toBe(200)
      expect((await fake.waitFor((r) => r.lastUserText === "via up")).headers["x-api-key"]).toBe("lab-secret")
      const admin = readFileSync(first.tokenFile, "utf8").trim()
      const keys = async (url: string) => ((await (await fetch(url + "/v1/keys", { headers: { authorization: `Bearer ${admin}` } })).json()) as any).keys
      expect((await keys(first.url)).length).toBe(1)
      await ctrlC(first.proc)

      // A restart keeps the same key (no new key per start).
      const second = await runOnce()
      expect(readFileSync(join(home, ".a2a", "runner", "proxy.key"), "utf8").trim()).toBe(runnerKey)
      expect((await keys(second.url)).length).toBe(1)
      await ctrlC(second.proc)

      // A provider without its key: one clear line, exit code 1, nothing left running.
      const [file, ...args] = ["sh", "-c", command]
      const failed = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
        execFile(file!, args, { env: { ...env, LAB_KEY: "" }, cwd: ROOT }, (error, _stdout, stderr) => resolve({ code: error === null ? 0 : (error as any).code, stderr }))
      )
      expect(failed.code).toBe(1)
      expect(failed.stderr.trim().split("\n")).toEqual(["a2a: proxy: provider lab: environment variable LAB_KEY (its API key) is not set"])

      // A taken port: one line naming it and the variable that moves it.
      const holder = createServer()
      await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()))
      const taken = (holder.address() as AddressInfo).port
      const busy = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
        execFile(file!, args, { env: { ...env, A2A_BROKER_PORT: String(taken) }, cwd: ROOT }, (error, _stdout, stderr) => resolve({ code: error === null ? 0 : (error as any).code, stderr }))
      )
      holder.close()
      expect(busy.code).toBe(1)
      expect(busy.stderr.trim().split("\n")).toEqual([`a2a: the broker cannot listen on 127.0.0.1:${taken}: the port is in use (another a2a up? set A2A_BROKER_PORT or --port, or 0 for any free port)`])
    } finally {
      await fake.close()
      rmSync(home, { recursive: true, force: true })
    }
  }, 120_000)
})

describe("npm start under npm", () => {
  it("stops on SIGTERM or SIGINT sent to the npm process itself, with a last line", async () => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const home = tempDir("a2a-up-npm-")
      try {
        const npm = start("npm", ["start", "--silent"], { env: cleanEnv({ HOME: home, A2A_BROKER_PORT: "0", A2A_RUNNER_PORT: "0" }) })
        const brokerUrl = (await npm.line(/^\s+broker\s+(http:\/\/\S+)\s/, 60_000))[1]!
        await npm.line(/^Ctrl-C stops everything\.$/)
        process.kill(npm.pid, signal)
        await npm.line(/^a2a stack stopped$/, 30_000)
        await npm.exited
        await expect(fetch(brokerUrl + "/healthz")).rejects.toThrow()
      } finally {
        rmSync(home, { recursive: true, force: true })
      }
    }
  }, 180_000)
})

describe("Up.layer (in-process)", () => {
  it("composes broker and runner in one program, and closing its scope stops both and their agents", async () => {
    const home = tempDir("a2a-up-layer-")
    const lines: Array<string> = []
    const scope = Effect.runSync(Scope.make())
    try {
      const info = await Effect.runPromise(
        Layer.buildWithScope(Up.layer({ home, brokerPort: 0, runnerPort: 0, env: {} }), scope).pipe(Effect.map((context) => Context.get(context, Up.Stack)))
      )
      for (const line of Up.summary(info)) lines.push(line)
      expect(info.proxy).toEqual({ off: "no providers configured" })
      expect(lines[0]).toBe(`a2a stack up (data in ${home})`)
      // Not the default home: the snippet carries A2A_HOME so the MCP server finds the token.
      expect(Up.mcpJson(info, {}).mcpServers.a2a.env).toEqual({ A2A_BROKER_URL: info.broker.url, A2A_CHANNELS: "1", A2A_HOME: home })
      const admin = createBrokerClient({ url: info.broker.url, token: readFileSync(info.broker.tokenFile, "utf8").trim() })
      // The broker reads the runner's hello just after the link opens: no event a client can await.
      await eventually(async () => ((await admin.runners.list()).runners.some((r) => r.id === info.runner!.id && r.status === "online") ? true : undefined), "the runner online")
      const { spawn } = await admin.spawn.create({ preset: "command", command: process.execPath, args: ["-e", "setInterval(() => {}, 1000)"] })
      const pid = await eventually(async () => {
        const s = (await admin.spawn.get(spawn.id)).spawn
        return s.status === "running" ? s.pid : undefined
      }, "the agent running")
      await admin.close()
      await Effect.runPromise(Scope.close(scope, Exit.void))
      expect(isAlive(pid!)).toBe(false)
      await expect(fetch(info.broker.url + "/healthz")).rejects.toThrow()
      await expect(fetch(info.runner!.url + "/health")).rejects.toThrow()
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 60_000)

  it("refuses bad arguments as usage errors", async () => {
    const failed = await Effect.runPromise(Effect.flip(Up.parse(["--port", "http"])))
    expect(failed).toMatchObject({ message: '--port must be a port number (0-65535), got "http"', usage: true })
    expect(await Effect.runPromise(Effect.flip(Up.parse(["extra"])))).toMatchObject({ usage: true })
    expect(await Effect.runPromise(Up.parse(["--port", "0", "--no-runner", "--proxy-config", "/x.yaml"]))).toMatchObject({ brokerPort: 0, runner: false, proxyConfig: "/x.yaml" })
  })
})
