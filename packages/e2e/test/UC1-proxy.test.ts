/**
 * UC1: a Claude Code session through the proxy, switching providers mid-conversation. The
 * pinned Claude Code (`claude -p`) talks to the built `a2a-proxy` with a virtual key; two fake
 * upstreams stand for providerA and providerB. The first turn asks for `providerA/…`, the
 * continued session (`--continue`) for `providerB/…`: B gets the whole conversation so far.
 */
import { startFakeMessages } from "@mks/a2a-testing"
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanEnv, startServer, tempDir } from "./support.js"

describe("UC1: a session through the proxy switches providers", () => {
  let providerA: Awaited<ReturnType<typeof startFakeMessages>>
  let providerB: Awaited<ReturnType<typeof startFakeMessages>>
  let proxy: Awaited<ReturnType<typeof startServer>>
  const admin = "a2a_admin_e2e_uc1_0123456789abcdef"
  const home = tempDir("a2a-e2e-uc1-")
  beforeAll(async () => {
    providerA = await startFakeMessages({ script: (r) => (r.lastUserText.includes("first question") ? "A says: forty-two" : undefined) })
    providerB = await startFakeMessages({ script: (r) => (r.lastUserText.includes("second question") ? "B says: confirmed" : undefined) })
    const config = join(home, "proxy.json")
    writeFileSync(
      config,
      JSON.stringify({
        providers: [
          { name: "providerA", baseUrl: providerA.url, apiKeyEnv: "PROVIDER_A_KEY" },
          { name: "providerB", baseUrl: providerB.url, apiKeyEnv: "PROVIDER_B_KEY", auth: "bearer" }
        ],
        default: "providerA",
        keyFile: join(home, "keys.json"),
        usageFile: join(home, "usage.json")
      })
    )
    proxy = await startServer(BIN.proxy, ["--config", config], cleanEnv({ A2A_HOME: home, A2A_PROXY_ADMIN_TOKEN: admin, PROVIDER_A_KEY: "key-of-a", PROVIDER_B_KEY: "key-of-b" }))
  })
  afterAll(async () => {
    await proxy?.stop()
    await providerA?.close()
    await providerB?.close()
  })

  const claude = (args: ReadonlyArray<string>, key: string, cwd: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(BIN.claude, [...args], {
        cwd,
        env: cleanEnv({
          HOME: cwd,
          CLAUDE_CONFIG_DIR: join(cwd, ".claude"),
          ANTHROPIC_BASE_URL: proxy.url,
          ANTHROPIC_API_KEY: key,
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
          DISABLE_AUTOUPDATER: "1",
          DISABLE_TELEMETRY: "1",
          DISABLE_ERROR_REPORTING: "1"
        }),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (d) => (stdout += d))
      child.stderr.on("data", (d) => (stderr += d))
      child.once("exit", (code) => resolve({ code, stdout, stderr }))
    })

  it("providerA answers the first turn, providerB the continued one with the history, all metered on one key", async () => {
    const created = await fetch(proxy.url + "/v1/keys", { method: "POST", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ name: "uc1" }) })
    expect(created.status).toBe(201)
    const { key } = (await created.json()) as { key: string }
    const cwd = tempDir("a2a-e2e-uc1-claude-")

    const first = await claude(["-p", "first question: what is the answer?", "--model", "providerA/model-a"], key, cwd)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toContain("A says: forty-two")
    const atA = await providerA.waitFor((r) => r.lastUserText.includes("first question"))
    expect(atA).toMatchObject({ model: "model-a", stream: true })
    expect(atA.headers["x-api-key"]).toBe("key-of-a")
    expect(JSON.stringify(atA.headers)).not.toContain(key)

    const second = await claude(["-p", "--continue", "second question: are you sure?", "--model", "providerB/model-b"], key, cwd)
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout).toContain("B says: confirmed")
    const atB = await providerB.waitFor((r) => r.lastUserText.includes("second question"))
    expect(atB.model).toBe("model-b")
    expect(atB.headers.authorization).toBe("Bearer key-of-b")
    // The same conversation: provider B sees the first turn and provider A's answer.
    expect(atB.allText).toContain("first question: what is the answer?")
    expect(atB.allText).toContain("A says: forty-two")
    expect(providerB.requests.some((r) => r.lastUserText.includes("first question"))).toBe(false)

    // One key, both providers' requests metered under it.
    const me = (await (await fetch(proxy.url + "/v1/usage/me", { headers: { "x-api-key": key } })).json()) as any
    expect(me.window.requests).toBe(providerA.requests.length + providerB.requests.length)
    expect(me.window.inputTokens).toBeGreaterThan(0)
  }, 120_000)
})
