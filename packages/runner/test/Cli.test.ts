import { spawn, spawnSync } from "node:child_process"
import { readFileSync, statSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { createInterface } from "node:readline"
import { CLI, tempDir } from "./helpers.js"

/** Start the CLI without the test key; resolves with its URL once it listens. */
const startBare = (dataDir: string) =>
  new Promise<{ url: string; stop: () => Promise<void>; stderr: () => string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "--port", "0", "--data-dir", dataDir], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, A2A_HOME: join(dataDir, "home"), A2A_RUNNER_API_KEY: undefined } })
    let stderr = ""
    child.stderr!.on("data", (d) => (stderr += d))
    const exited = new Promise<void>((done) => child.once("exit", () => done()))
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /listening on (\S+)/.exec(line)
      if (m) resolve({ url: m[1]!, stderr: () => stderr, stop: () => (child.kill("SIGTERM"), exited) })
    })
    child.once("exit", (code) => reject(new Error(`exited ${code}: ${stderr}`)))
  })

describe("a2a-runner CLI", () => {
  it("without a key it creates one in <data-dir>/runner.key (0600), and keeps it across restarts", async () => {
    const dataDir = tempDir()
    let runner = await startBare(dataDir)
    const file = join(dataDir, "runner.key")
    expect(runner.stderr()).toContain(file)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const key = readFileSync(file, "utf8").trim()
    expect((await fetch(`${runner.url}/agents`)).status).toBe(401)
    expect((await fetch(`${runner.url}/agents`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200)
    await runner.stop()
    runner = await startBare(dataDir)
    expect(readFileSync(file, "utf8").trim()).toBe(key)
    expect((await fetch(`${runner.url}/agents`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200)
    await runner.stop()
  })

  it("a taken port is one clear line on stderr and exit 1, not a crash", async () => {
    const blocker = createServer()
    const port = await new Promise<number>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as { port: number }).port)))
    try {
      const dataDir = tempDir()
      const child = spawn(process.execPath, [CLI, "--port", String(port), "--data-dir", dataDir], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, A2A_HOME: join(dataDir, "home") } })
      let stdout = ""
      let stderr = ""
      child.stdout!.on("data", (d) => (stdout += d))
      child.stderr!.on("data", (d) => (stderr += d))
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
      expect(code).toBe(1)
      expect(stdout).toBe("")
      const line = stderr.trim().split("\n").at(-1)!
      expect(line).toBe(`a2a-runner: cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is taken; choose another with --port)`)
      expect(stderr).not.toMatch(/at .*\.js:\d+/)
    } finally {
      blocker.close()
    }
  })

  it("refuses bad flags with exit 2 and a clear message", () => {
    const run = (...args: Array<string>) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, A2A_HOME: tempDir() } })
    const help = run("--help")
    expect(help.status).toBe(0)
    expect(help.stderr).toBe("")
    // Generated from src/CliSpec.ts: usage lines, then every flag and environment variable.
    expect(help.stdout).toMatch(/^a2a-runner \d+\.\d+\.\d+\S*: .*\n\nusage:\n {2}a2a-runner \[--port N\]/)
    for (const part of ["a2a-runner launch claude", "--policy FILE", "A2A_RUNNER_API_KEY", "A2A_HOME", "A2A_RUNNER_LISTEN_BACKLOG"]) expect(help.stdout).toContain(part)
    expect(run("-h").stdout).toBe(help.stdout)
    const cases: Array<[Array<string>, RegExp]> = [
      [["--port", "99999"], /invalid port/],
      [["--capacity=-1"], /invalid capacity/],
      [["--labels", "novalue"], /bad label/],
      [["--api-key", "short"], /at least 8/],
      [["--broker", "http://127.0.0.1:1", "--api-key", "long-enough-key"], /needs a token/],
      [["--proxy", "http://127.0.0.1:1", "--api-key", "long-enough-key"], /--proxy-key/],
      [["launch", "emacs"], /launch knows only/],
      [["--nope"], /Unknown option '--nope'/],
      [["--capacity", "-1"], /argument is ambiguous/],
      [["frobnicate"], /unknown command/]
    ]
    for (const [args, message] of cases) {
      const result = run(...args)
      expect(result.status, args.join(" ")).toBe(2)
      expect(result.stderr, args.join(" ")).toMatch(message)
      // the error is one line that names the bin (after "created an API key" when the key was made first)
      const lines = result.stderr.trimEnd().split("\n")
      expect(lines.at(-1), args.join(" ")).toMatch(/^a2a-runner: /)
      expect(lines.at(-1), args.join(" ")).toMatch(message)
      for (const line of lines) expect(line, args.join(" ")).toMatch(/^a2a-runner: /)
    }
  })
})
