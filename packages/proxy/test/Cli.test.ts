/**
 * The `a2a-proxy` CLI as users run it (child processes): `--port 0` prints the chosen port,
 * the start refuses without providers, `keys` and `usage` work over the control plane, a
 * SIGTERM flushes usage, and a SIGKILL during key writes never leaves a corrupt key file;
 * `--help` comes from the spec (src/CliSpec.ts) and argument mistakes exit 2 before anything runs.
 */
import { Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { spec } from "../src/CliSpec.js"
import { KeyFile, ProxyConfig } from "../src/index.js"
import { ensureBuilt, run, serve } from "./helpers/cli.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import { postMessages, tempDir } from "./helpers/proxy.js"

let fake: FakeUpstream
beforeAll(async () => {
  ensureBuilt()
  fake = await startFake()
}, 120_000)
afterAll(async () => {
  await fake?.close()
})

const writeConfig = (dir: string, extra = "") => {
  const file = path.join(dir, "proxy.yaml")
  fs.writeFileSync(file, `providers:\n  - name: fake\n    baseUrl: ${fake.url}\n    apiKeyEnv: FAKE_KEY\ndefault: fake\n${extra}`)
  return file
}

describe("a2a-proxy CLI", () => {
  it("refuses to start without providers, or without a provider's key, with a clear message", async () => {
    const home = tempDir()
    const none = await run(["--port", "0"], { A2A_HOME: home })
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^a2a-proxy: no providers configured: pass --config FILE \(or set A2A_PROXY_CONFIG\)/)
    const noKey = await run(["--port", "0"], { A2A_HOME: home, A2A_PROXY_CONFIG: writeConfig(home) })
    expect(noKey.code).toBe(1)
    expect(noKey.stderr).toMatch(/provider fake: environment variable FAKE_KEY \(its API key\) is not set/)
    const emptyFile = path.join(home, "empty.json")
    fs.writeFileSync(emptyFile, '{"providers": []}')
    expect((await run(["--config", emptyFile, "--port", "0"], { A2A_HOME: home })).stderr).toMatch(/no providers configured/)
  })

  it("--port 0 prints the chosen port; keys create|list|revoke and usage talk to it; SIGTERM flushes usage", async () => {
    const home = tempDir()
    const env = { A2A_HOME: home, FAKE_KEY: "real-key" }
    const proxy = await serve(["--port", "0", "--config", writeConfig(home)], env)
    try {
      expect(proxy.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect((await fetch(proxy.url + "/health")).status).toBe(200)
      // The first start created an admin token file (0600) the CLI finds on its own.
      expect(fs.statSync(path.join(home, "proxy.token")).mode & 0o777).toBe(0o600)
      const cliEnv = { A2A_HOME: home, A2A_PROXY_URL: proxy.url }

      const created = await run(["keys", "create", "--name", "ci-bot", "--tier", "tier2", "--rpm", "5", "--tokens-per-5h", "100000", "--models", "claude-*"], cliEnv)
      expect(created.code).toBe(0)
      const key = created.stdout.trim()
      expect(key).toMatch(/^sk-mks-[0-9A-Za-z]{43}$/)
      expect(created.stderr).toMatch(/shown only now/)

      const sent = await postMessages(proxy.url, key, { model: "claude-text", max_tokens: 10, messages: [] })
      expect(sent.status).toBe(200)
      expect(fake.requests.at(-1)!.headers["x-api-key"]).toBe("real-key")

      const list = await run(["keys", "list", "--url", proxy.url], { A2A_HOME: home })
      expect(list.stdout).toMatch(/ci-bot\s+sk-mks-\w{6}…\s+default\s+tier2\s+claude-\*\s+5 rpm, 100000 tok\/5h\s+active/)
      expect(list.stdout).not.toContain(key)
      const id = /(k_\w+)\s+ci-bot/.exec(list.stdout)![1]!

      const usage = await run(["usage", "--json"], cliEnv)
      const report = JSON.parse(usage.stdout).find((u: any) => u.record.id === id)
      expect(report.window).toMatchObject({ requests: 1, inputTokens: 25, outputTokens: 17, cacheCreationInputTokens: 300, cacheReadInputTokens: 4000 })
      expect(report.remaining).toEqual({ requestsPerMinute: 4, tokensPer5h: 100000 - 4342 })

      expect((await run(["keys", "revoke", id], cliEnv)).stdout.trim()).toBe(`revoked ${id}`)
      expect((await postMessages(proxy.url, key, { model: "claude-text", max_tokens: 10, messages: [] })).status).toBe(401)
      const again = await run(["keys", "revoke", id], cliEnv)
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/KeyNotFound/)

      const wrongToken = await run(["keys", "list"], { ...cliEnv, A2A_PROXY_ADMIN_TOKEN: "wrong" })
      expect(wrongToken.code).toBe(1)
      expect(wrongToken.stderr).toMatch(/Unauthorized/)
    } finally {
      proxy.child.kill("SIGTERM")
    }
    expect(await proxy.exited).toBe(0)
    const saved = JSON.parse(fs.readFileSync(path.join(home, "proxy-usage.json"), "utf8"))
    const windows = Object.values(saved.keys).map((k: any) => k.window)
    expect(windows).toContainEqual(expect.objectContaining({ requests: 1, outputTokens: 17, cacheReadInputTokens: 4000 }))
  }, 120_000)

  it("the bin keeps GC pauses short unless the operator chose GC flags or turned it off", async () => {
    const home = tempDir()
    const config = writeConfig(home)
    for (const [extra, expected] of [
      [{}, "gc short-pauses"],
      [{ NODE_OPTIONS: "--max-semi-space-size=8" }, "gc node-defaults"],
      [{ A2A_PROXY_GC_TUNING: "0" }, "gc node-defaults"]
    ] as const) {
      const proxy = await serve(["--port", "0", "--config", config], { A2A_HOME: home, FAKE_KEY: "real-key", ...extra })
      try {
        // The start-up line on stderr follows the address line on stdout.
        await new Promise<void>((resolve) => {
          const check = () => {
            if (!proxy.stderr().includes("; gc ")) return
            proxy.child.stderr!.off("data", check)
            resolve()
          }
          proxy.child.stderr!.on("data", check)
          check()
        })
        expect(proxy.stderr(), JSON.stringify(extra)).toContain(expected)
      } finally {
        proxy.child.kill("SIGTERM")
      }
      expect(await proxy.exited).toBe(0)
    }
  })

  it("SIGKILL during key writes never leaves a corrupt key file, and every acknowledged key survives", async () => {
    const home = tempDir()
    const env = { A2A_HOME: home, FAKE_KEY: "real-key", A2A_PROXY_ADMIN_TOKEN: "kill-test-admin" }
    const config = writeConfig(home)
    const file = path.join(home, "proxy-keys.json")
    const acknowledged: Array<{ key: string; id: string }> = []
    for (let round = 0; round < 3; round++) {
      const proxy = await serve(["--port", "0", "--config", config], env)
      let stop = false
      const writer = async () => {
        while (!stop) {
          try {
            const res = await fetch(proxy.url + "/v1/keys", {
              method: "POST",
              headers: { authorization: "Bearer kill-test-admin", "content-type": "application/json" },
              body: JSON.stringify({ name: `k${round}`, models: ["claude-*"], limits: { requestsPerMinute: 60 } })
            })
            if (res.status === 201) {
              const body = (await res.json()) as any
              acknowledged.push({ key: body.key, id: body.record.id })
            }
          } catch {
            return // the process is gone
          }
        }
      }
      const writers = Array.from({ length: 6 }, writer)
      // Kill mid-stream of writes: after a round-dependent number of acknowledged creates.
      const target = acknowledged.length + 10 + round * 7
      while (acknowledged.length < target) await new Promise((r) => setImmediate(r))
      proxy.child.kill("SIGKILL")
      stop = true
      await Promise.all(writers)
      expect(await proxy.exited).toBe("SIGKILL")

      const text = fs.readFileSync(file, "utf8")
      const decoded = Schema.decodeUnknownEither(Schema.parseJson(KeyFile.FileFormat))(text)
      expect(decoded._tag).toBe("Right")
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      const ids = new Set(JSON.parse(text).keys.map((e: any) => e.record.id))
      for (const a of acknowledged) expect(ids.has(a.id)).toBe(true)
    }
    // A restart on that file serves every acknowledged key.
    const proxy = await serve(["--port", "0", "--config", config], env)
    try {
      for (const a of acknowledged.slice(-3)) {
        expect((await postMessages(proxy.url, a.key, { model: "claude-text", max_tokens: 5, messages: [] })).status).toBe(200)
      }
      // Temp files the kills left behind were cleared at start.
      expect(fs.readdirSync(home).filter((n) => n.endsWith(".tmp"))).toEqual([])
    } finally {
      proxy.child.kill("SIGTERM")
      await proxy.exited
    }
    expect(acknowledged.length).toBeGreaterThan(30)
  })
})

describe("a2a-proxy arguments", () => {
  it("--help (-h, help) prints the usage on stdout and exits 0; --version prints the version", async () => {
    const [help, short, word, version] = await Promise.all([run(["--help"], {}), run(["-h"], {}), run(["help"], {}), run(["--version"], {})])
    expect(help.code).toBe(0)
    expect(help.stderr).toBe("")
    expect(help.stdout).toMatch(/^a2a-proxy \d+\.\d+\.\d+\S*: .*\n\nusage:\n  a2a-proxy \[serve\] \[--port N\] \[--host H\] \[--config FILE\]\n/)
    for (const part of ["keys create --name N", "keys list [--json]", "keys revoke KEY_ID", "usage [--key KEY_ID] [--json]", "--url URL    (env A2A_PROXY_URL", "A2A_PROXY_ADMIN_TOKEN", "A2A_PROXY_KEEP_ALIVE_TIMEOUT_MS    (default 65000)", "A2A_PROXY_OIDC_ISSUER"]) {
      expect(help.stdout).toContain(part)
    }
    expect(short).toMatchObject({ code: 0, stdout: help.stdout })
    expect(word).toMatchObject({ code: 0, stdout: help.stdout })
    expect(version.code).toBe(0)
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\S*\n$/)
  }, 60_000)

  it("unknown flags and commands, flags of another command and bad values exit 2 with one line on stderr", async () => {
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["--bogus"], /^a2a-proxy: Unknown option '--bogus'$/],
      [["--port"], /^a2a-proxy: Option '--port <value>' argument missing$/],
      [["--port", "abc"], /^a2a-proxy: --port must be a whole number, got abc$/],
      [["foo"], /^a2a-proxy: unknown command foo$/],
      [["serve", "extra"], /^a2a-proxy: Unexpected argument 'extra'$/],
      [["--url", "http://127.0.0.1:1"], /^a2a-proxy: serve does not take --url$/],
      [["keys"], /^a2a-proxy: unknown keys command \(none\)/],
      [["keys", "list", "--tenant", "t"], /^a2a-proxy: keys list does not take --tenant$/],
      [["keys", "create"], /^a2a-proxy: keys create needs --name$/],
      [["keys", "create", "--name", "n", "--tier", "tier3"], /^a2a-proxy: --tier must be tier1 or tier2$/],
      [["keys", "create", "--name", "n", "--rpm", "x"], /^a2a-proxy: --rpm must be a whole number, got x$/],
      [["keys", "create", "--name", "n", "--expires", "soon"], /^a2a-proxy: --expires must be an ISO-8601 date, got soon$/],
      [["keys", "revoke"], /^a2a-proxy: keys revoke needs a key id/],
      [["usage", "extra"], /^a2a-proxy: Unexpected argument 'extra'$/]
    ]
    const home = tempDir()
    const results = await Promise.all(cases.map(([args]) => run(args, { A2A_HOME: home })))
    results.forEach((result, i) => {
      const [args, stderr] = cases[i]!
      expect(result.code, args.join(" ")).toBe(2)
      expect(result.stdout, args.join(" ")).toBe("")
      expect(result.stderr.split("\n").length, args.join(" ")).toBe(2)
      expect(result.stderr.trimEnd(), args.join(" ")).toMatch(stderr)
    })
  }, 60_000)

  it("the spec names every preset's key variable", () => {
    const names = new Set(spec.settings.map((s) => s.env))
    for (const preset of Object.values(ProxyConfig.presets)) expect(names.has(preset.apiKeyEnv), preset.apiKeyEnv).toBe(true)
  })
})
