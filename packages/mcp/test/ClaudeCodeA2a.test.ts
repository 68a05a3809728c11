/**
 * A real Claude Code session (the pinned devDependency, interactive under a pseudo-terminal, with
 * the a2a development channel, against a local fake Messages API) messages a remote A2A agent —
 * the official `@a2a-js/sdk` server, bridged onto the bus — with `send_peer_message`, and the
 * agent's answer arrives in the session as a `<channel source="a2a" …>` turn.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type RemoteAgent, startRemoteAgent } from "../../broker/test/a2aRemote.js"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { type FakeMessages, startFakeMessages } from "./fakeMessages.js"
import { CLI, eventually } from "./harness.js"

const claude = join(import.meta.dirname, "../../../node_modules/.bin/claude")
const SEND = "mcp__a2a__send_peer_message"

let broker: TestBroker
let fake: FakeMessages
let remote: RemoteAgent

beforeAll(async () => {
  broker = await startBroker()
  remote = await startRemoteAgent("claude-remote-secret", "remote-helper")
  // The model: the first turn that offers the tool asks the remote agent; after the tool result it says so.
  fake = await startFakeMessages(SEND, { to: "remote-helper", message: "hello from claude" }, () => "asked remote-helper.")
})
afterAll(async () => {
  await fake?.close()
  await remote?.close()
  await broker?.close()
})

it("Claude Code messages a bridged A2A agent and gets its answer as a <channel> turn", async () => {
  const pty = await import("node-pty")
  const token = await broker.token("acme", "peer")
  const added = await http(broker, token, "POST", "/api/a2a/agents", { name: "remote-helper", cardUrl: remote.cardUrl, token: "claude-remote-secret" })
  expect(added.status).toBe(201)
  const sessionHome = mkdtempSync(join(tmpdir(), "a2a-mcp-a2a-"))
  const configDir = join(sessionHome, ".claude")
  const cwd = join(sessionHome, "work")
  mkdirSync(configDir, { recursive: true })
  mkdirSync(cwd)
  const apiKey = "sk-ant-fake-key-for-a2a-bridge-test"
  writeFileSync(
    join(configDir, ".claude.json"),
    JSON.stringify({
      hasCompletedOnboarding: true,
      theme: "dark",
      cachedGrowthBookFeatures: { tengu_harbor: true },
      customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] },
      projects: { [cwd]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true } },
      mcpServers: {
        a2a: { type: "stdio", command: process.execPath, args: [CLI], env: { A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: "claude-a2a", A2A_CHANNELS: "1" } }
      }
    })
  )
  const term = pty.spawn(claude, ["--dangerously-load-development-channels", "server:a2a", "--allowedTools", SEND], {
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
      // MCP tools offered up front (not behind tool search), so the fake model can call one.
      ENABLE_TOOL_SEARCH: "false",
      IS_SANDBOX: "1"
    }
  })
  try {
    // accept the development-channels confirmation when it shows
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
    const peer = await eventually(async () => {
      const res = await http(broker, token, "GET", "/api/peers?status=online")
      return res.json.peers.find((p: any) => p.name === "claude-a2a")
    }, 30_000, "the session's peer")
    // Someone on the bus asks the session to consult the remote agent; the model calls send_peer_message.
    const asker = await http(broker, token, "POST", "/api/peers", { name: "lead" })
    await http(broker, token, "POST", "/api/messages", { from: asker.json.peer.id, to: peer.id, body: "Please ask remote-helper something." })
    // The remote agent got the session's message (through the bridge, with the stored credential) …
    let tail = ""
    term.onData((d) => (tail = (tail + d).slice(-3000)))
    const request = await eventually(async () => remote.requests.find((r) => r.text === "hello from claude"), 60_000, "the remote agent's request").catch((e) => {
      console.log("DEBUG", JSON.stringify(fake.requests.map((r) => ({ tools: (r.tools ?? []).map((t: any) => t.name).filter((n: string) => n.includes("a2a")), last: JSON.stringify(r.messages?.at(-1)).slice(0, 400) })), null, 1))
      // eslint-disable-next-line no-control-regex
      console.log("SCREEN", tail.replace(/\u001b\[[0-9;?<>]*[A-Za-z]/g, ""))
      throw e
    })
    expect(request.authorization).toBe("Bearer claude-remote-secret")
    // … and its answer reached the model as a channel turn from remote-helper.
    const answered = await eventually(
      async () => fake.requests.find((r) => JSON.stringify(r.messages ?? []).includes("remote-helper says: hello from claude")),
      60_000,
      "a model request with the remote agent's answer"
    )
    const turn = JSON.stringify(answered.messages)
    expect(turn).toContain('<channel source=\\"a2a\\"')
    expect(turn).toContain('from_name=\\"remote-helper\\"')
  } finally {
    term.kill()
    rmSync(sessionHome, { recursive: true, force: true })
  }
}, 180_000)
