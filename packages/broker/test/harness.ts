/**
 * Test harness: a real broker on 127.0.0.1 with an ephemeral port, either in this process
 * (a ManagedRuntime over BrokerServer.layer) or as a child process running the built CLI
 * (for restarts and SIGKILL). Every broker gets its own temporary A2A_HOME.
 */
import { createBrokerClient, type Permission } from "@mks/a2a"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Option } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { BrokerConfig, BrokerServer, PgStore, TokenStore } from "../src/index.js"
import { createDatabase, pgEnabled } from "../../../test-support/pg.js"

/**
 * The store in-process brokers use when a test does not name one: `sqlite` (`:memory:`, the
 * default) or `postgres` (a fresh database per broker on the local server, dropped on close).
 * The suites under `test/pg/` run the behavioural suites again with `postgres`.
 */
export const store = (): "sqlite" | "postgres" => (process.env.A2A_TEST_STORE === "postgres" ? "postgres" : "sqlite")

/**
 * Run a behavioural suite (imported by `load`) against PostgreSQL: sets the store for this
 * test file, or, without a server, reports the suite as not run (a failure under `A2A_REQUIRE_PG=1`).
 */
export const onPostgres = async (suite: string, load: () => Promise<unknown>) => {
  if (!(await pgEnabled(`${suite} on PostgreSQL`))) {
    const { it } = await import("vitest")
    it(`${suite} on PostgreSQL: not run, no server (see the NOT RUN line)`, () => {})
    return
  }
  process.env.A2A_TEST_STORE = "postgres"
  await load()
}

export const tempHome = () => mkdtempSync(join(tmpdir(), "a2a-broker-test-"))

export interface TestBroker {
  readonly url: string
  readonly port: number
  readonly home: string
  /** The first-start admin token (tenant "default"). */
  readonly adminToken: string
  /** A fresh static token. */
  readonly token: (tenant: string, ...roles: Array<"admin" | "peer" | "runner">) => Promise<string>
  /** A fresh static token with permission scopes (docs/security.md). */
  readonly scopedToken: (tenant: string, roles: ReadonlyArray<"admin" | "peer" | "runner">, scopes: ReadonlyArray<Permission.Permission>) => Promise<string>
  /** On PostgreSQL, the URL of the broker's database; else undefined. */
  readonly database: string | undefined
  /** On PostgreSQL, the group commit's counters (batches committed, writes in them, writes queued or in flight); else undefined. */
  readonly commits: () => Promise<{ readonly batches: number; readonly writes: number; readonly waiting: number } | undefined>
  /** On PostgreSQL, how the pumps pushed messages (inline from wake-ups, or read); else undefined. */
  readonly pumps: () => Promise<{ readonly inline: number; readonly read: number; readonly reads: number } | undefined>
  readonly close: () => Promise<void>
}

/** An in-process broker; `overrides` tune timeouts, the store (`db: "memory"` or a file) etc. */
export const startBroker = async (overrides: Partial<BrokerConfig.BrokerConfigShape> = {}): Promise<TestBroker> => {
  const home = overrides.home ?? tempHome()
  const database = overrides.db === undefined && store() === "postgres" ? await createDatabase("a2a_broker") : undefined
  const config = BrokerConfig.make({ port: 0, db: database?.url ?? ":memory:", ...overrides, home })
  const runtime = ManagedRuntime.make(
    BrokerServer.layer(config).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))
  )
  const { url, port } = await runtime.runPromise(BrokerServer.BrokerAddress)
  const adminToken = readFileSync(join(home, "broker.token"), "utf8").trim()
  /** The PostgreSQL store's cluster state, or undefined on another store. */
  const cluster = () => runtime.runPromise(Effect.serviceOption(PgStore.PgCluster)).then(Option.getOrUndefined)
  return {
    url,
    port,
    home,
    adminToken,
    database: database?.url ?? (config.db.startsWith("postgres") ? config.db : undefined),
    token: (tenant, ...roles) =>
      runtime.runPromise(Effect.flatMap(TokenStore.TokenStore, (s) => s.create({ tenant, roles: roles.length > 0 ? roles : ["peer"] }))).then((r) => r.token),
    scopedToken: (tenant, roles, scopes) =>
      runtime.runPromise(Effect.flatMap(TokenStore.TokenStore, (s) => s.create({ tenant, roles, scopes }))).then((r) => r.token),
    commits: () => cluster().then((c) => (c === undefined ? undefined : { ...c.commits })),
    pumps: () => cluster().then((c) => (c === undefined ? undefined : { ...c.pumps })),
    close: async () => {
      await runtime.dispose()
      await database?.drop()
      if (overrides.home === undefined) rmSync(home, { recursive: true, force: true })
    }
  }
}

const CLI = join(import.meta.dirname, "..", "dist", "cli.js")

export interface BrokerProcess {
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  /** Resolves with the exit code or signal once the process is gone. */
  readonly exited: Promise<number | NodeJS.Signals | null>
}

/** The built `a2a-broker` CLI as a child process; resolves once it printed its address. */
export const startBrokerProcess = (home: string, args: ReadonlyArray<string> = [], env: Record<string, string> = {}): Promise<BrokerProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "--port", "0", "--home", home, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, A2A_HOME: home, ...env }
    })
    const exited = new Promise<number | NodeJS.Signals | null>((done) => child.once("exit", (code, signal) => done(signal ?? code)))
    let stderr = ""
    let listening = false
    child.stderr!.on("data", (chunk) => (stderr += chunk))
    const lines = createInterface({ input: child.stdout! })
    lines.on("line", (line) => {
      const match = /listening on (http:\/\/[^\s]+)/.exec(line)
      if (match) {
        listening = true
        const url = match[1]!
        resolve({ url, port: Number(new URL(url).port), child, exited })
      }
    })
    child.once("exit", (code, signal) => {
      reject(new Error(`broker exited (${code}) before listening: ${stderr}`))
      // A broker that dies on its own while a test still uses it: say why (a killed one is expected).
      if (listening && signal === null && code !== 0) console.error(`broker (${args.join(" ")}) exited with ${code}:\n${stderr.slice(-4_000)}`)
    })
  })

/** A Promise client with a token. */
export const client = (broker: { url: string }, token: string) => createBrokerClient({ url: broker.url, token })

/** Raw HTTP with a bearer token, for status and error-shape checks. */
export const http = async (broker: { url: string }, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(broker.url + path, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let json: any
  try {
    json = text.length > 0 ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, json, text, headers: res.headers }
}
