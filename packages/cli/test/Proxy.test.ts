import { execFile } from "node:child_process"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeUpstream, startFake } from "../../proxy/test/helpers/fakeUpstream.js"
import { ADMIN, type Harness, oneProvider, postMessages, startProxy } from "../../proxy/test/helpers/proxy.js"

const CLI = join(import.meta.dirname, "..", "dist", "cli.js")

let fake: FakeUpstream
let proxy: Harness

const a2a = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent-home", A2A_PROXY_URL: proxy.url, A2A_PROXY_ADMIN_TOKEN: ADMIN, ...env } },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr })
    ).stdin!.end()
  })

beforeAll(async () => {
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url))
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
})

describe("a2a keys and usage against a running proxy", () => {
  it("--models takes comma-separated globs, repeated as a2a-proxy does (one flag spec for both)", async () => {
    const created = await a2a(["keys", "create", "--name", "globs", "--models", "glm-*,kimi-*", "--models", "claude-*", "--json"])
    expect(created.code, created.stderr).toBe(0)
    expect(JSON.parse(created.stdout).record.models).toEqual(["glm-*", "kimi-*", "claude-*"])
  })

  it("creates a key that works, lists it masked, shows its usage, and revokes it", async () => {
    const created = await a2a(["keys", "create", "--name", "ci-bot", "--models", "claude-*", "--rpm", "30", "--tokens-per-5h", "100000"])
    expect(created.code, created.stderr).toBe(0)
    const key = created.stdout.trim()
    expect(key).toMatch(/^sk-mks-[A-Za-z0-9]+$/)
    expect(created.stderr).toMatch(/shown only now/)

    const answer = await postMessages(proxy.url, key, { model: "claude-sonnet-5-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] })
    expect(answer.status).toBe(200)

    const list = await a2a(["keys", "list"])
    expect(list.stdout.split("\n")[0]).toMatch(/^ID\s+NAME\s+KEY\s+TENANT\s+TIER\s+MODELS\s+LIMITS\s+STATE\s+LAST USED/)
    expect(list.stdout).toContain("ci-bot")
    expect(list.stdout).toContain("30 rpm, 100000 tok/5h")
    expect(list.stdout).not.toContain(key)
    const records = JSON.parse((await a2a(["keys", "list", "--json"])).stdout)
    const record = records.find((k: any) => k.name === "ci-bot")
    expect(record).toMatchObject({ models: ["claude-*"], limits: { requestsPerMinute: 30, tokensPer5h: 100000 }, disabled: false })

    const usage = JSON.parse((await a2a(["usage", "--key", record.id, "--json"])).stdout)
    expect(usage).toHaveLength(1)
    expect(usage[0].window.requests).toBe(1)
    expect(usage[0].window.inputTokens).toBeGreaterThan(0)
    expect((await a2a(["usage"])).stdout).toMatch(new RegExp(`${record.id}\\s+ci-bot`))

    const revoked = await a2a(["keys", "revoke", record.id])
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked ${record.id}\n` })
    const refused = await postMessages(proxy.url, key, { model: "claude-sonnet-5-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] })
    expect(refused.status).toBe(401)
  })

  it.each([
    [["keys"], 2, /^a2a: keys takes create, list or revoke/],
    [["keys", "create"], 2, /^a2a: keys create needs --name/],
    [["keys", "create", "--name", "x", "--tier", "gold"], 2, /^a2a: --tier takes tier1 or tier2/],
    [["keys", "create", "--name", "x", "--rpm", "many"], 2, /^a2a: --rpm must be a positive whole number/],
    [["keys", "revoke"], 2, /^a2a: keys revoke needs one key id/],
    [["keys", "revoke", "k_doesnotexist00000000"], 1, /^a2a: KeyNotFound: /],
    [["usage", "extra"], 2, /^a2a: usage takes no arguments/]
  ] as const)("a2a %j fails with one clear line", async (args, code, pattern) => {
    const r = await a2a(args)
    expect(r.code).toBe(code)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(pattern)
  })

  it("a wrong admin token and an unreachable proxy are one clear line each", async () => {
    const bad = await a2a(["keys", "list"], { A2A_PROXY_ADMIN_TOKEN: "wrong-token" })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^a2a: Unauthorized: /)
    const down = await a2a(["keys", "list"], { A2A_PROXY_URL: "http://127.0.0.1:1" })
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/^a2a: cannot reach the proxy at http:\/\/127\.0\.0\.1:1/)
    const none = await a2a(["keys", "list"], { A2A_PROXY_ADMIN_TOKEN: "" })
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^a2a: no proxy admin token/)
  })
})
