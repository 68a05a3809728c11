/**
 * The real client: Claude Code (pinned devDependency, offline against a local fake Messages
 * API) starts the built MCP server from an MCP config, the fake scripts one `tool_use` of
 * `mcp__a2a__list_peers`, and the tool's result reaches the model in the next request.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { type FakeMessages, startFakeMessages } from "./fakeMessages.js"
import { CLI, eventually } from "./harness.js"

const claude = join(import.meta.dirname, "../../../node_modules/.bin/claude")

let broker: TestBroker
let fake: FakeMessages
let home: string

beforeAll(async () => {
  broker = await startBroker()
  fake = await startFakeMessages("mcp__a2a__list_peers", { scope: "all", include_self: true }, (result) => `The bus says:\n${result}`)
  home = mkdtempSync(join(tmpdir(), "a2a-mcp-claude-"))
})
afterAll(async () => {
  await fake?.close()
  await broker?.close()
  rmSync(home, { recursive: true, force: true })
})

it("claude -p calls mcp__a2a__list_peers and the tool result reaches the model", async () => {
  expect(existsSync(claude)).toBe(true)
  const token = await broker.token("acme", "peer")
  // another peer on the bus, so the result has something to show
  const other = await http(broker, token, "POST", "/api/peers", { name: "reviewer-bot", summary: "reviews PRs", agent: "script" })
  expect(other.status).toBe(201)
  const mcpConfig = join(home, "mcp.json")
  writeFileSync(
    mcpConfig,
    JSON.stringify({
      mcpServers: {
        a2a: { type: "stdio", command: process.execPath, args: [CLI], env: { A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: "claude-one" } }
      }
    })
  )
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(
      claude,
      ["-p", "Who else is on the bus?", "--mcp-config", mcpConfig, "--strict-mcp-config", "--allowedTools", "mcp__a2a__list_peers"],
      {
        cwd: home,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: home,
          CLAUDE_CONFIG_DIR: join(home, ".claude"),
          ANTHROPIC_BASE_URL: fake.url,
          ANTHROPIC_API_KEY: "sk-ant-fake-key",
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
          DISABLE_AUTOUPDATER: "1",
          DISABLE_TELEMETRY: "1",
          DISABLE_ERROR_REPORTING: "1",
          ENABLE_TOOL_SEARCH: "false",
          IS_SANDBOX: "1"
        },
        stdio: ["ignore", "pipe", "pipe"]
      }
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
  })
  expect(result.code, result.stderr).toBe(0)
  // the model was offered the tool with the server's schema
  const offered = fake.requests.find((r) => (r.tools ?? []).some((t: any) => t.name === "mcp__a2a__list_peers"))
  expect(offered).toBeDefined()
  const schema = offered.tools.find((t: any) => t.name === "mcp__a2a__list_peers").input_schema
  expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(["scope", "include_offline"]))
  // the next request carries the tool result: our peer list, with the other peer and ourselves
  const followUp = fake.requests.find((r) =>
    (r.messages ?? []).some((m: any) => Array.isArray(m.content) && m.content.some((c: any) => c.type === "tool_result"))
  )
  expect(followUp).toBeDefined()
  const toolResult = JSON.stringify(followUp.messages)
  expect(toolResult).toContain("reviewer-bot")
  expect(toolResult).toContain("reviews PRs")
  expect(toolResult).toContain("claude-one")
  expect(result.stdout).toContain("The bus says:")
  expect(result.stdout).toContain("reviewer-bot")
  // the session registered as a peer, with Claude Code's client name as its agent kind
  const peers = await http(broker, token, "GET", "/api/peers")
  const me = peers.json.peers.find((p: any) => p.name === "claude-one")
  expect(me).toBeDefined()
  console.log(`Claude Code registered as agent kind "${me.agent}"`)
  expect(me.agent).toBe("claude-code")
}, 120_000)

/**
 * Push into a live session: an interactive Claude Code (under a pseudo-terminal) started with
 * the development channel of this server; a message sent on the bus reaches the model as a
 * `<channel source="a2a" …>` user turn. Claude Code 2.1.330 does not declare `claude/channel`
 * as a client capability, so the session's MCP config sets `A2A_CHANNELS=1` (docs/mcp.md).
 */
it("an interactive Claude Code session with the a2a channel gets a bus message as a <channel> turn", async () => {
  const pty = await import("node-pty")
  const token = await broker.token("acme", "peer")
  const sessionHome = mkdtempSync(join(tmpdir(), "a2a-mcp-channel-"))
  const configDir = join(sessionHome, ".claude")
  const cwd = join(sessionHome, "work")
  mkdirSync(configDir, { recursive: true })
  mkdirSync(cwd)
  const apiKey = "sk-ant-fake-key-for-channel-test"
  // the seeding of ../shared/notes/claude-code.md: quiet start, trusted cwd, approved key, channels flag cached on
  writeFileSync(
    join(configDir, ".claude.json"),
    JSON.stringify({
      hasCompletedOnboarding: true,
      theme: "dark",
      cachedGrowthBookFeatures: { tengu_harbor: true },
      customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] },
      projects: { [cwd]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true } },
      mcpServers: {
        a2a: { type: "stdio", command: process.execPath, args: [CLI], env: { A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: "claude-live", A2A_CHANNELS: "1" } }
      }
    })
  )
  const before = fake.requests.length
  const term = pty.spawn(claude, ["--dangerously-load-development-channels", "server:a2a", "--permission-mode", "manual"], {
    cols: 120,
    rows: 40,
    cwd,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: sessionHome,
      TERM: "xterm-256color",
      CLAUDE_CONFIG_DIR: configDir,
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: apiKey,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      CLAUDE_CODE_GB_DISK_CACHE_WHEN_TELEMETRY_OFF: "1",
      DISABLE_AUTOUPDATER: "1",
      DISABLE_TELEMETRY: "1",
      DISABLE_ERROR_REPORTING: "1",
      IS_SANDBOX: "1"
    }
  })
  try {
    // accept the development-channels confirmation when it shows (screen text without escapes and spaces)
    let screen = ""
    await new Promise<void>((resolve) => {
      const sub = term.onData((data) => {
        // eslint-disable-next-line no-control-regex
        screen = (screen + data.replace(/\u001b\[[0-9;?<>]*[A-Za-z]/g, "").replace(/\s+/g, "")).slice(-4_000)
        if (/Entertoconfirm/.test(screen)) {
          sub.dispose()
          term.write("\r")
          resolve()
        }
      })
    })
    // the session's MCP server registers and opens its channel
    const peer = await eventually(async () => {
      const res = await http(broker, token, "GET", "/api/peers?status=online")
      return res.json.peers.find((p: any) => p.name === "claude-live")
    }, 30_000, "the session's peer")
    expect(peer.agent).toBe("claude-code")
    const sender = await http(broker, token, "POST", "/api/peers", { name: "pinger" })
    const sent = await http(broker, token, "POST", "/api/messages", { from: sender.json.peer.id, to: "claude-live", body: "PING FROM THE BUS" })
    expect(sent.status).toBe(201)
    const request = await eventually(async () => fake.requests.slice(before).find((r) => JSON.stringify(r.messages ?? []).includes("PING FROM THE BUS")), 30_000, "a model request with the channel message")
    const turn = JSON.stringify(request.messages)
    expect(turn).toContain('<channel source=\\"a2a\\"')
    expect(turn).toContain(`message_id=\\"${sent.json.message.id}\\"`)
    expect(turn).toContain('from_name=\\"pinger\\"')
    // pushed and acked: nothing left in the session's inbox
    const inbox = await http(broker, token, "GET", `/api/peers/${peer.id}/inbox`)
    expect(inbox.json.messages).toEqual([])
  } finally {
    term.kill()
    rmSync(sessionHome, { recursive: true, force: true })
  }
}, 120_000)
