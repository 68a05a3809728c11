/**
 * The built `a2a-broker` CLI as users run it: help and flag errors, the address line on
 * stdout, flags and environment, the SQLite file, first-start admin token, and a clean
 * SIGTERM that closes open sockets with 1001.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { exportJWK, generateKeyPair, SignJWT } from "jose"
import { afterAll, describe, expect, it } from "vitest"
import { http } from "./harness.js"
import { CLI, FrameSocket, pollUntil, runCli, serveIssuer, wsUrl } from "./probe.js"

const LISTENING = /^a2a-broker listening on (http:\/\/127\.0\.0\.1:(\d+))$/

interface RunningCli {
  readonly child: ChildProcess
  readonly url: string
  readonly port: number
  /** Everything written to stdout so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Start the CLI with exactly `args` and `env` (no defaults added); resolves at the address line. */
const startCli = (args: ReadonlyArray<string>, env: Record<string, string | undefined>): Promise<RunningCli> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, A2A_BROKER_PORT: undefined, A2A_BROKER_DB: undefined, A2A_BROKER_HOST: undefined, A2A_OIDC_ISSUER: undefined, ...env } })
    let stdout = ""
    let stderr = ""
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once("exit", (code, signal) => done({ code, signal })))
    child.stderr!.on("data", (chunk) => (stderr += chunk))
    child.stdout!.on("data", (chunk) => {
      stdout += chunk
      const line = stdout.split("\n")[0]!
      const match = LISTENING.exec(line)
      if (match && stdout.includes("\n")) resolve({ child, url: match[1]!, port: Number(match[2]), stdout: () => stdout, stderr: () => stderr, exited })
      else if (stdout.includes("\n")) reject(new Error(`unexpected first stdout line: ${line}`))
    })
    child.once("exit", (code) => reject(new Error(`exited (${code}) before listening: ${stderr}`)))
  })

const stop = async (cli: RunningCli) => {
  if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill("SIGTERM")
  return cli.exited
}

const homes: Array<string> = []
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "a2a-broker-cli-"))
  homes.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of homes) rmSync(dir, { recursive: true, force: true })
})

/** The SQLite header's read/write format bytes are 2 in WAL mode. */
const isWal = (file: string) => {
  const fd = openSync(file, "r")
  try {
    const header = Buffer.alloc(100)
    readSync(fd, header, 0, 100, 0)
    return header.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000" && header[18] === 2 && header[19] === 2
  } finally {
    closeSync(fd)
  }
}

describe("a2a-broker flags", () => {
  it("--help (and -h) prints the usage on stdout and exits 0; --version prints the version", async () => {
    const [help, short, version] = await Promise.all([runCli(["--help"]), runCli(["-h"]), runCli(["--version"])])
    expect(help.code).toBe(0)
    expect(help.stderr).toBe("")
    expect(help.stdout).toMatch(/^a2a-broker \d+\.\d+\.\d+\S*: .*\n\nusage:\n  a2a-broker \[--port N\]/)
    for (const part of ["--host", "--db", "--home", "--public-url", "token create --tenant T --role", "token list [--json]", "token revoke ID"]) {
      expect(help.stdout).toContain(part)
    }
    expect(short).toMatchObject({ code: 0, stdout: help.stdout })
    expect(version.code).toBe(0)
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\S*\n$/)
  }, 60_000)

  it("unknown flags, commands and bad values exit 2 with a clear line on stderr and nothing on stdout", async () => {
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["--bogus"], /^a2a-broker: Unknown option '--bogus'/],
      [["--port"], /^a2a-broker: Option '--port' argument/],
      [["--port", "abc"], /^a2a-broker: invalid port: abc$/m],
      [["serve"], /^a2a-broker: unknown command serve$/m],
      [["token", "create", "--role", "peer"], /^a2a-broker: token create needs --tenant and --role$/m],
      [["token", "create", "--tenant", "t", "--role", "wizard"], /^a2a-broker: unknown role wizard/m]
    ]
    const home = freshDir()
    const results = await Promise.all(cases.map(([args]) => runCli([...args, "--home", home])))
    results.forEach((result, i) => {
      const [args, stderr] = cases[i]!
      expect(result.code, args.join(" ")).toBe(2)
      expect(result.stdout, args.join(" ")).toBe("")
      expect(result.stderr.split("\n")[0], args.join(" ")).toMatch(stderr)
    })
    // None of them started anything or wrote a token.
    expect(readdirSync(home)).toEqual([])
  }, 60_000)
})

describe("a2a-broker serving", { timeout: 60_000 }, () => {
  it("--port 0 prints only the address line on stdout; --db in a fresh directory creates the SQLite file (WAL); SIGTERM closes sockets with 1001 and exits cleanly", async () => {
    const home = freshDir()
    const db = join(freshDir(), "nested", "deeper", "broker.db")
    const cli = await startCli(["--port", "0", "--home", home, "--db", db], { A2A_BROKER_PUBLIC_URL: "http://broker.example:4200" })
    try {
      expect(cli.port).toBeGreaterThan(0)
      expect((await http(cli, undefined, "GET", "/healthz")).json).toMatchObject({ status: "ok" })
      expect(existsSync(db)).toBe(true)
      expect(isWal(db)).toBe(true)
      // Nothing of the database lands in the home when --db points elsewhere, but the admin token does.
      expect(existsSync(join(home, "broker.db"))).toBe(false)
      const adminFile = join(home, "broker.token")
      expect(statSync(adminFile).mode & 0o777).toBe(0o600)
      const admin = readFileSync(adminFile, "utf8").trim()
      // Logs go to stderr; they say where the admin token is, never the token itself.
      expect(cli.stderr()).toContain(adminFile)
      expect(cli.stderr()).not.toContain(admin)

      const peer = (await http(cli, admin, "POST", "/api/peers", { name: "listener" })).json.peer
      const channel = await FrameSocket.open(wsUrl(cli, `/ws/broker/peer/${peer.id}`), { authorization: `Bearer ${admin}` })
      await channel.next((f) => f.type === "hello")
      const runnerToken = (await runCli(["token", "create", "--home", home, "--tenant", "default", "--role", "runner"])).stdout.trim()
      const runner = await FrameSocket.open(wsUrl(cli, "/ws/runner/r-term"), { authorization: `Bearer ${runnerToken}` })
      runner.send({ type: "hello", runner: { id: "r-term", host: "h", labels: {}, capacity: 1, presets: ["command"], version: "t" }, agents: [] })
      // Spawn orders carry A2A_BROKER_PUBLIC_URL as the address agents should use.
      const spawned = await pollUntil(async () => {
        const res = await http(cli, admin, "POST", "/api/spawn", { runner: "r-term", command: "true" })
        return res.status === 202 ? res : undefined
      }, "the runner to attach")
      const order = await runner.next((f) => f.type === "spawn")
      expect(order.spawn).toMatchObject({ id: spawned.json.spawn.id, brokerUrl: "http://broker.example:4200" })
      expect(order.spawn.token).toMatch(/^a2a_/)

      cli.child.kill("SIGTERM")
      const [closed, runnerClosed, exit] = await Promise.all([channel.closed, runner.closed, cli.exited])
      // 1001 (going away) can only come from a live broker: a dead one would leave 1006.
      expect(closed.code).toBe(1001)
      expect(runnerClosed.code).toBe(1001)
      expect(exit.code === 0 || exit.signal === "SIGTERM", JSON.stringify(exit)).toBe(true)
      expect(cli.stdout()).toBe(`a2a-broker listening on ${cli.url}\n`)
      expect(cli.stderr()).not.toMatch(/level=(ERROR|FATAL)|Error:/)
      // Nothing listens there any more.
      await expect(fetch(`${cli.url}/healthz`)).rejects.toThrow()
    } finally {
      await stop(cli)
    }
  })

  it("is configured from the environment: A2A_BROKER_PORT, A2A_BROKER_HOST, A2A_BROKER_DB, A2A_HOME", async () => {
    const home = freshDir()
    const db = join(freshDir(), "env", "broker.db")
    const cli = await startCli([], { A2A_BROKER_PORT: "0", A2A_BROKER_HOST: "127.0.0.1", A2A_BROKER_DB: db, A2A_HOME: home })
    try {
      expect(cli.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(existsSync(db)).toBe(true)
      const admin = readFileSync(join(home, "broker.token"), "utf8").trim()
      expect((await http(cli, admin, "GET", "/api/peers")).status).toBe(200)
    } finally {
      await stop(cli)
    }
    // Flags win over the environment.
    const flagged = await startCli(["--port", "0", "--db", "memory"], { A2A_BROKER_PORT: "1", A2A_BROKER_DB: db, A2A_HOME: home })
    try {
      expect(flagged.port).not.toBe(1)
    } finally {
      await stop(flagged)
    }
  })

  it("--db memory keeps nothing on disk; a home that already has tokens gets no first-start admin token", async () => {
    const home = freshDir()
    const created = await runCli(["token", "create", "--home", home, "--tenant", "ops", "--role", "admin", "--name", "mine"])
    expect(created.code, created.stderr).toBe(0)
    const token = created.stdout.trim()
    expect(statSync(join(home, "tokens.json")).mode & 0o777).toBe(0o600)

    const cli = await startCli(["--port", "0", "--home", home, "--db", "memory"], {})
    try {
      expect(existsSync(join(home, "broker.token"))).toBe(false)
      const peer = await http(cli, token, "POST", "/api/peers", { name: "ephemeral" })
      expect(peer.status, peer.text).toBe(201)
      expect(readdirSync(home).sort()).toEqual(["tokens.json"])
    } finally {
      await stop(cli)
    }
    // A restart of a pure in-memory broker forgets its peers.
    const again = await startCli(["--port", "0", "--home", home, "--db", "memory"], {})
    try {
      expect((await http(again, token, "GET", "/api/peers")).json.peers).toEqual([])
    } finally {
      await stop(again)
    }
  })

  it("takes OIDC from the environment (A2A_OIDC_ISSUER, A2A_OIDC_AUDIENCE, A2A_ALLOWED_CLIENTS, claims) and writes no admin token then", async () => {
    const missing = await runCli(["--port", "0", "--home", freshDir()], { A2A_OIDC_ISSUER: "http://127.0.0.1:1" })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^a2a-broker: A2A_OIDC_AUDIENCE is required with A2A_OIDC_ISSUER/)

    const keys = await generateKeyPair("RS256")
    const issuer = await serveIssuer({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: "r1", alg: "RS256" }] })
    const home = freshDir()
    const cli = await startCli(["--port", "0", "--home", home, "--db", "memory"], {
      A2A_OIDC_ISSUER: issuer.issuer,
      A2A_OIDC_AUDIENCE: "a2a",
      A2A_ALLOWED_CLIENTS: "agent-cli, ci-bot",
      A2A_OIDC_TENANT_CLAIM: "org",
      A2A_OIDC_ROLES_CLAIM: "a2a_roles",
      A2A_OIDC_DEFAULT_TENANT: "fallback"
    })
    try {
      expect(existsSync(join(home, "broker.token"))).toBe(false)
      const sign = (claims: Record<string, unknown>) =>
        new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "r1" }).setIssuer(issuer.issuer).setAudience("a2a").setSubject("svc").setExpirationTime("5m").sign(keys.privateKey)
      const good = await sign({ client_id: "ci-bot", org: "acme", a2a_roles: ["peer"] })
      const registered = await http(cli, good, "POST", "/api/peers", { name: "from-oidc" })
      expect(registered.status, registered.text).toBe(201)
      // The tenant came from the configured claim: a token without it (default tenant) does not see the peer.
      const fallback = await sign({ azp: "agent-cli", a2a_roles: "peer" })
      expect((await http(cli, fallback, "GET", "/api/peers")).json.peers).toEqual([])
      expect((await http(cli, good, "GET", "/api/peers")).json.peers.map((p: any) => p.name)).toEqual(["from-oidc"])
      // The roles came from the configured claim too.
      expect((await http(cli, await sign({ azp: "agent-cli", org: "acme", a2a_roles: ["runner"] }), "POST", "/api/peers", {})).status).toBe(403)
      expect((await http(cli, await sign({ azp: "evil", org: "acme" }), "GET", "/api/peers")).status).toBe(401)
    } finally {
      await stop(cli)
      await issuer.close()
    }
  })
})
