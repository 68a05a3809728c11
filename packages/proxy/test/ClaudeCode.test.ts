/**
 * The real client: Claude Code (pinned devDependency) with `ANTHROPIC_BASE_URL` at the proxy
 * and a virtual key prints the fake upstream's reply, and the usage appears under its key.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { defaultUsage, startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, PROVIDER_KEY, startProxy, tempDir } from "./helpers/proxy.js"

const claude = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../node_modules/.bin/claude")

let fake: FakeUpstream
let proxy: Harness

beforeAll(async () => {
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url))
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
})

/** `claude -p PROMPT` offline, as notes/claude-code.md describes; resolves with its output. */
const runClaude = (prompt: string, key: string) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const home = tempDir()
    const child = spawn(claude, ["-p", prompt], {
      cwd: home,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: home,
        CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
        ANTHROPIC_BASE_URL: proxy.url,
        ANTHROPIC_API_KEY: key,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
        DISABLE_AUTOUPDATER: "1",
        DISABLE_TELEMETRY: "1",
        DISABLE_ERROR_REPORTING: "1",
        IS_SANDBOX: "1"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
  })

describe("Claude Code through the proxy", () => {
  it("claude -p prints the fake's reply and the usage appears under its key", async () => {
    expect(fs.existsSync(claude)).toBe(true)
    const { key, record } = await proxy.createKey({ name: "claude-code" })
    const before = fake.requests.length
    const result = await runClaude("hi", key)
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("Hello from the fake upstream — ünïcødé ✓")

    const seen = fake.requests.slice(before).filter((r) => r.url.startsWith("/v1/messages"))
    expect(seen.length).toBeGreaterThan(0)
    for (const r of seen) {
      expect(r.headers["x-api-key"]).toBe(PROVIDER_KEY)
      expect(JSON.stringify(r.rawHeaders)).not.toContain(key)
      expect(r.headers["anthropic-version"]).toBe("2023-06-01")
    }
    const streamed = seen.filter((r) => r.json?.stream === true)
    expect(streamed.length).toBeGreaterThan(0)

    const usage = await proxy.admin("GET", `/v1/usage?key=${record.id}`)
    const window = usage.json.usage[0].window
    // Every request Claude Code made is counted once, with the fake's cumulative usage.
    expect(window.requests).toBe(seen.length)
    expect(window).toMatchObject({
      inputTokens: seen.length * defaultUsage.input_tokens,
      outputTokens: seen.length * defaultUsage.output_tokens,
      cacheCreationInputTokens: seen.length * defaultUsage.cache_creation_input_tokens,
      cacheReadInputTokens: seen.length * defaultUsage.cache_read_input_tokens
    })
  }, 90_000)
})
