/**
 * The `claude` preset with the pinned Claude Code (devDependency), the real proxy in front of
 * a local fake Messages API, and a real broker: a spawned session starts unattended (channels
 * confirmation accepted, first prompt typed in), its requests reach the fake through the
 * proxy with the virtual key, and its a2a MCP server registers it on the bus.
 */
import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { opened, record } from "../../broker/test/support.js"
import { type FakeUpstream, startFake } from "../../proxy/test/helpers/fakeUpstream.js"
import { type Harness, oneProvider, startProxy } from "../../proxy/test/helpers/proxy.js"
import { api, CLI, eventually, type RunnerProcess, startRunner, tempDir } from "./helpers.js"

const CLAUDE = resolve(import.meta.dirname, "../../../node_modules/.bin/claude")
const MCP = resolve(import.meta.dirname, "../../mcp/dist/cli.js")

describe("claude preset", () => {
  let fake: FakeUpstream
  let proxy: Harness
  let broker: TestBroker
  let runner: RunnerProcess
  let key: string
  beforeAll(async () => {
    fake = await startFake()
    proxy = await startProxy(oneProvider(fake.url))
    key = (await proxy.createKey({ name: "runner-claude" })).key
    broker = await startBroker({ gcInterval: 50 })
    const token = await broker.token("default", "runner")
    const home = tempDir("a2a-claude-home-")
    runner = await startRunner(
      ["--broker", broker.url, "--token", token, "--id", "rt-claude", "--proxy", proxy.url, "--proxy-key", key, "--claude-bin", CLAUDE, "--mcp-command", `${process.execPath} ${MCP}`],
      { env: { HOME: home } }
    )
  })
  afterAll(async () => {
    await runner?.stop()
    await broker?.close()
    await proxy?.close()
    await fake?.close()
  })

  it("a spawned session starts unattended, reaches the fake through the proxy, and registers on the bus", async () => {
    expect(existsSync(CLAUDE)).toBe(true)
    const admin = client(broker, broker.adminToken)
    try {
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-claude" && r.status === "online"), "the runner online")
      const boss = (await admin.peers.register({ name: "boss" })).peer
      const channel = admin.connect(boss.id, { autoAck: true })
      const seen = record(channel)
      await opened(channel)
      const { spawn } = await admin.spawn.create({ runner: "rt-claude", preset: "claude", name: "claude-1", teams: ["crew"], prompt: "say the magic word", requestedBy: boss.id })

      // The first prompt reaches the fake: nothing was left waiting on a confirmation or dialog.
      const asked = await eventually(
        () => fake.requests.find((r) => r.url.startsWith("/v1/messages") && JSON.stringify(r.json?.messages ?? []).includes("say the magic word")),
        "the prompt at the fake",
        60_000
      ).catch(async (e) => {
        const logs = await api(runner, "GET", `/agents/${spawn.id}/logs?n=80`)
        throw new Error(`${e.message}\n${logs.json?.lines?.join("\n")}`)
      })
      expect(asked.headers["x-api-key"]).toBe("sk-ant-provider-REAL-KEY-42")

      const registered = await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "registered", "registered")
      const peerId = registered.type === "spawn_status" ? registered.spawn.peerId! : ""
      expect((await admin.peers.get(peerId)).peer).toMatchObject({ name: "claude-1", spawnId: spawn.id, runnerId: "rt-claude" })

      // A message on the bus is pushed into the live session: the model gets it as a <channel> turn.
      const pinged = await admin.messages.send({ from: boss.id, to: peerId, body: "PING FROM BOSS" })
      const turn = await eventually(
        () => fake.requests.find((r) => JSON.stringify(r.json?.messages ?? []).includes("PING FROM BOSS")),
        "the channel message at the fake",
        60_000
      )
      const text = JSON.stringify(turn.json.messages)
      expect(text).toContain('<channel source=\\"a2a\\"')
      expect(text).toContain(`message_id=\\"${pinged.message.id}\\"`)

      // The session's own config dir was seeded; the MCP config carries the spawn's identity.
      const dir = join(runner.dataDir, "claude", spawn.id)
      const state = JSON.parse(readFileSync(join(dir, ".claude.json"), "utf8"))
      expect(state).toMatchObject({ hasCompletedOnboarding: true, cachedGrowthBookFeatures: { tengu_harbor: true } })
      const mcp = JSON.parse(readFileSync(join(dir, ".mcp.json"), "utf8"))
      expect(mcp.mcpServers.a2a.env).toMatchObject({ A2A_BROKER_URL: broker.url, A2A_SPAWN_ID: spawn.id, A2A_PEER_NAME: "claude-1", A2A_TEAMS: "crew", A2A_CHANNELS: "1" })

      // The development-channels confirmation showed (the flag is live) and was answered.
      const screen = (await api(runner, "GET", `/agents/${spawn.id}/logs?n=2000`)).json.lines.join("").replace(/\s+/g, "")
      expect(screen).toContain("WARNING:Loadingdevelopmentchannels")
      expect(screen).toMatch(/Iamusingthisforlocaldevelopment/)
      await admin.spawn.stop(spawn.id)
      await seen.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "exited", "exited")
      await channel.close()
    } finally {
      await admin.close()
    }
  }, 120_000)

  it("`a2a-runner launch claude` runs one session in the current terminal, wired to the proxy (here headless with `-- -p`)", async () => {
    const dataDir = tempDir()
    const before = fake.requests.length
    const child = spawn(process.execPath, [CLI, "launch", "claude", "--data-dir", dataDir, "--proxy", proxy.url, "--proxy-key", key, "--claude-bin", CLAUDE, "--name", "solo", "--team", "crew", "--mcp-command", `${process.execPath} ${MCP}`, "--broker", broker.url, "--token", broker.adminToken, "--", "-p", "launched prompt"], {
      cwd: dataDir,
      env: { ...process.env, HOME: dataDir },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    child.stdout.on("data", (d) => (stdout += d))
    const code = await new Promise((resolve) => child.once("exit", resolve))
    expect(code).toBe(0)
    expect(stdout).toContain("Hello from the fake upstream")
    const seen = fake.requests.slice(before).find((r) => JSON.stringify(r.json?.messages ?? []).includes("launched prompt"))
    expect(seen).toBeDefined()
    const mcp = JSON.parse(readFileSync(join(dataDir, "claude", "launch-solo", ".mcp.json"), "utf8"))
    expect(mcp.mcpServers.a2a.env).toMatchObject({ A2A_PEER_NAME: "solo", A2A_TEAMS: "crew", A2A_BROKER_URL: broker.url })
  }, 90_000)
})
