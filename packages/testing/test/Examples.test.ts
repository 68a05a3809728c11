/**
 * Every example in `examples/` (besides ping-pong, run by the broker's suite) runs here, so none
 * can rot: embed-broker and embed-in-your-app as programs, test-harness as its own vitest run, proxy-providers with
 * the built `a2a-proxy` (as shipped, then pointed at local fakes to check its routing table).
 */
import { execFile, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import YAML from "yaml"
import { startFakeMessages } from "../src/index.js"

const run = promisify(execFile)
const ROOT = resolve(import.meta.dirname, "..", "..", "..")
const EXAMPLES = join(ROOT, "examples")
const PROXY_CLI = join(ROOT, "packages", "proxy", "dist", "cli.js")

describe("examples", () => {
  it("embed-broker: the broker layer in a program of its own, with an HMAC app-token authenticator", async () => {
    const { stdout } = await run(process.execPath, [join(EXAMPLES, "embed-broker", "index.mjs")], { timeout: 20_000 })
    const lines = stdout.trim().split("\n")
    expect(lines[0]).toMatch(/^broker embedded at http:\/\/127\.0\.0\.1:\d+$/)
    expect(lines.slice(1)).toEqual(['bob got "hello from an app token" from alice', "a forged token gets 401 Unauthorized", "broker stopped"])
  })

  it("embed-in-your-app: the broker and the runner API mounted beside an app's own routes, core's memory stores, an authenticator that knows no spawn tokens, the mounted runner's agent registering with its spawn token", async () => {
    const { stdout } = await run(process.execPath, [join(EXAMPLES, "embed-in-your-app", "index.mjs")], { timeout: 90_000 })
    const lines = stdout.trim().split("\n")
    expect(lines[0]).toMatch(/^app listening at http:\/\/127\.0\.0\.1:\d+$/)
    expect(lines.slice(1)).toEqual([
      "GET /hello -> from the app",
      "spawned shouter: registered with its spawn token",
      "GET /runner/agents -> shouter running, the spawn's agent",
      'shouter answered "HELLO FROM THE APP"',
      "shouter stopped",
      "a forged token gets 401 Unauthorized",
      "POST /runner/agents -> notes running (status event over /runner/sse/status)",
      "notes stopped and removed: AgentNotFound",
      "the runner API with an app token gets Unauthorized: it has its own key",
      "app stopped"
    ])
  }, 120_000)

  it("test-harness: its vitest suite passes against @mks/a2a-testing", async () => {
    const { stdout } = await run(process.execPath, [join(ROOT, "node_modules", "vitest", "vitest.mjs"), "run", "--root", join(EXAMPLES, "test-harness"), "--reporter", "json"], {
      timeout: 90_000,
      env: { ...process.env, CI: "" },
      maxBuffer: 16 * 1024 * 1024
    })
    const report = JSON.parse(stdout.slice(stdout.indexOf("{")))
    expect(report.numFailedTests).toBe(0)
    expect(report.numPassedTests).toBe(2)
  }, 120_000)
})

/** The built proxy with a config file; resolves once it printed its address. */
const startProxy = (config: string, env: Record<string, string>) =>
  new Promise<{ url: string; stop: () => Promise<void> }>((resolvePromise, reject) => {
    const child = spawn(process.execPath, [PROXY_CLI, "--port", "0", "--config", config], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    const exited = new Promise<void>((done) => child.once("exit", () => done()))
    child.once("exit", (code) => reject(new Error(`a2a-proxy exited (${code}): ${stderr}`)))
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line)
      if (match) resolvePromise({ url: match[1]!, stop: () => (child.kill("SIGTERM"), exited) })
    })
  })

describe("proxy-providers", () => {
  const file = join(EXAMPLES, "proxy-providers", "proxy.yaml")
  const keys = { GLM_API_KEY: "glm-secret", MINIMAX_API_KEY: "minimax-secret", DEEPSEEK_API_KEY: "deepseek-secret" }
  let home: string
  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), "a2a-example-proxy-"))
  })
  afterAll(() => rmSync(home, { recursive: true, force: true }))

  it("starts as shipped (keys from the environment), and names a missing key", async () => {
    const proxy = await startProxy(file, { ...keys, A2A_HOME: home })
    try {
      expect((await fetch(proxy.url + "/health")).status).toBe(200)
    } finally {
      await proxy.stop()
    }
    const missing = await run(process.execPath, [PROXY_CLI, "--port", "0", "--config", file], { env: { ...process.env, A2A_HOME: home, GLM_API_KEY: "x", MINIMAX_API_KEY: "y", DEEPSEEK_API_KEY: "" } }).catch((e) => e)
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toContain("DEEPSEEK_API_KEY")
  })

  it("routes every row of the README's table to the right provider, model and key", async () => {
    const fakes = { glm: await startFakeMessages(), minimax: await startFakeMessages(), deepseek: await startFakeMessages() }
    const config = YAML.parse(readFileSync(file, "utf8"))
    for (const p of config.providers) p.baseUrl = fakes[p.name as keyof typeof fakes].url
    const local = join(home, "proxy.local.json")
    writeFileSync(local, JSON.stringify(config))
    const admin = "a2a_admin_example_test_token_0123456789"
    const proxy = await startProxy(local, { ...keys, A2A_HOME: home, A2A_PROXY_ADMIN_TOKEN: admin })
    try {
      const created = await fetch(proxy.url + "/v1/keys", { method: "POST", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ name: "example" }) })
      const { key } = (await created.json()) as { key: string }
      const table: Array<[string, keyof typeof fakes, string]> = [
        ["glm/glm-4.6", "glm", "glm-4.6"],
        ["minimax/MiniMax-M2", "minimax", "MiniMax-M2"],
        ["deepseek/deepseek-chat", "deepseek", "deepseek-chat"],
        ["glm-4.5-air", "glm", "glm-4.5-air"],
        ["MiniMax-M2", "minimax", "MiniMax-M2"],
        ["deepseek-reasoner", "deepseek", "deepseek-reasoner"],
        ["claude-haiku-4-5", "glm", "glm-4.5-air"],
        ["claude-sonnet-4-5", "deepseek", "deepseek-chat"],
        ["fast", "glm", "glm-4.5-air"],
        ["reasoner", "deepseek", "deepseek-reasoner"],
        ["m2", "minimax", "MiniMax-M2"],
        ["claude-opus-4-5", "glm", "glm-4.6"]
      ]
      for (const [asked, provider, model] of table) {
        const res = await fetch(proxy.url + "/v1/messages", {
          method: "POST",
          headers: { "x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01" },
          body: JSON.stringify({ model: asked, max_tokens: 10, messages: [{ role: "user", content: `ask ${asked}` }] })
        })
        expect(res.status, asked).toBe(200)
        const seen = await fakes[provider].waitFor((r) => r.lastUserText === `ask ${asked}`, { timeoutMs: 2_000, what: `${asked} at ${provider}` })
        expect(seen.model, asked).toBe(model)
        expect(seen.headers.authorization, asked).toBe(`Bearer ${keys[`${provider.toUpperCase()}_API_KEY` as keyof typeof keys]}`)
      }
      // Nothing went anywhere else.
      expect(fakes.glm.requests.length + fakes.minimax.requests.length + fakes.deepseek.requests.length).toBe(table.length)
    } finally {
      await proxy.stop()
      await Promise.all(Object.values(fakes).map((f) => f.close()))
    }
  })
})
