import { lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { modelArg, prepare, seedConfigDir } from "../src/ClaudeSession.js"
import { tempDir } from "./helpers.js"

describe("ClaudeSession: the claude preset's seeding, MCP config, argv and env", () => {
  it("seeds a quiet config dir, keeps what Claude Code wrote, and links the user's shared dirs", () => {
    const dir = join(tempDir(), "cfg")
    const user = tempDir()
    mkdirSync(join(user, "skills"))
    mkdirSync(join(user, "agents"))
    mkdirSync(dir)
    writeFileSync(join(dir, ".claude.json"), JSON.stringify({ numStartups: 7, theme: "light", projects: { "/other": { hasTrustDialogAccepted: false } } }))
    seedConfigDir(dir, { cwd: "/work/app", apiKey: "sk-mks-0123456789abcdefghijKLMNOPQRSTUV", shareFrom: user })
    seedConfigDir(dir, { cwd: "/work/app", apiKey: "sk-mks-0123456789abcdefghijKLMNOPQRSTUV", shareFrom: user })
    const state = JSON.parse(readFileSync(join(dir, ".claude.json"), "utf8"))
    expect(state).toMatchObject({
      numStartups: 7,
      theme: "light",
      hasCompletedOnboarding: true,
      cachedGrowthBookFeatures: { tengu_harbor: true },
      projects: { "/other": { hasTrustDialogAccepted: false }, "/work/app": { hasTrustDialogAccepted: true } }
    })
    expect(state.customApiKeyResponses.approved).toEqual(["sk-mks-0123456789abcdefghijKLMNOPQRSTUV".slice(-20)])
    expect(lstatSync(join(dir, "skills")).isSymbolicLink()).toBe(true)
    expect(readlinkSync(join(dir, "agents"))).toBe(join(user, "agents"))
    expect(() => lstatSync(join(dir, "plugins"))).toThrow()
  })

  it("builds argv, env and the MCP config from the spawn and the proxy", () => {
    const dir = join(tempDir(), "cfg")
    const launch = prepare({
      bin: "/usr/bin/claude",
      cwd: "/work/app",
      configDir: dir,
      baseEnv: { PATH: "/usr/bin", ANTHROPIC_API_KEY: "sk-ant-should-not-leak" },
      proxy: { url: "http://127.0.0.1:3200", key: "sk-mks-virtual" },
      mcp: { command: ["node", "/x/cli.js"], brokerUrl: "http://127.0.0.1:4200", token: "a2a_t", peerName: "helper", teams: ["crew", "ops"], spawnId: "s_1" },
      provider: "glm",
      model: "glm-4.5",
      channels: true,
      extraArgs: ["--verbose"]
    })
    expect(launch.file).toBe("/usr/bin/claude")
    expect(launch.args).toEqual([
      "--mcp-config",
      join(dir, ".mcp.json"),
      "--strict-mcp-config",
      "--allowedTools",
      "mcp__a2a",
      "--model",
      "glm/glm-4.5",
      "--dangerously-load-development-channels",
      "server:a2a",
      "--verbose"
    ])
    expect(launch.env).toMatchObject({ CLAUDE_CONFIG_DIR: dir, ANTHROPIC_BASE_URL: "http://127.0.0.1:3200", ANTHROPIC_AUTH_TOKEN: "sk-mks-virtual", CLAUDE_CODE_GB_DISK_CACHE_WHEN_TELEMETRY_OFF: "1" })
    expect(launch.env.ANTHROPIC_API_KEY).toBeUndefined()
    const mcp = JSON.parse(readFileSync(join(dir, ".mcp.json"), "utf8"))
    expect(mcp).toEqual({
      mcpServers: {
        a2a: {
          type: "stdio",
          command: "node",
          args: ["/x/cli.js"],
          env: { A2A_BROKER_URL: "http://127.0.0.1:4200", A2A_TOKEN: "a2a_t", A2A_PEER_NAME: "helper", A2A_TEAMS: "crew,ops", A2A_SPAWN_ID: "s_1", A2A_CHANNELS: "1" }
        }
      }
    })
    expect(modelArg("glm", undefined)).toBe("glm/claude-sonnet-5-5")
    expect(modelArg(undefined, "opus")).toBe("opus")
    expect(modelArg(undefined, undefined)).toBeUndefined()
  })

  it("the driver accepts the channels confirmation, then pastes and submits the prompt once the input box shows", async () => {
    const { driver } = await import("../src/ClaudeSession.js")
    const written: Array<string> = []
    let listener: ((d: string) => void) | undefined
    let unsubscribed = false
    const done = new Promise<void>((resolve) => {
      driver(true, "line one\nline two")({
        write: (d) => {
          written.push(d)
          if (d === "\r" && written.length === 3) resolve()
        },
        onData: (l) => {
          listener = l
          return () => {
            unsubscribed = true
          }
        }
      })
    })
    listener!("\u001b[1mWARNING: Loading development channels\u001b[0m\r\n ❯ 1. I am using this for local\u001b[3Cdevelopment\r\n")
    listener!("\u001b[2J ? for shortcuts ")
    await done
    expect(written).toEqual(["\r", "\u001b[200~line one\nline two\u001b[201~", "\r"])
    expect(unsubscribed).toBe(true)
  })
})
