/**
 * Shared pieces of the playbook tests: the built CLIs as child processes (each resolved once
 * it printed its address), MCP sessions driven by the official SDK client over stdio, and
 * small waiting helpers (events where there are events, a deadline poll where there are none).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { afterAll } from "vitest"

export const ROOT = resolve(import.meta.dirname, "..", "..", "..")
export const BIN = {
  broker: join(ROOT, "packages", "broker", "dist", "cli.js"),
  proxy: join(ROOT, "packages", "proxy", "dist", "cli.js"),
  runner: join(ROOT, "packages", "runner", "dist", "cli.js"),
  mcp: join(ROOT, "packages", "mcp", "dist", "cli.js"),
  a2a: join(ROOT, "packages", "cli", "dist", "cli.js"),
  claude: join(ROOT, "node_modules", ".bin", "claude")
}

const made: Array<string> = []
/** A temporary directory, removed after the test file (its processes are stopped by then). */
export const tempDir = (prefix = "a2a-e2e-") => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}
// Registered first, so it runs after the test file's own afterAll hooks.
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** A clean environment: PATH and HOME only, plus `env`. Nothing of the developer's A2A_* leaks in. */
export const cleanEnv = (env: Record<string, string | undefined> = {}): Record<string, string> => {
  const out: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" }
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v
  return out
}

export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Polls `check` until it returns a value: only for state that has no event to await. */
export const eventually = async <A>(check: () => A | undefined | Promise<A | undefined>, what: string, timeoutMs = 10_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the first stdout line matching `pattern` (already printed or still to come). */
  readonly line: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  readonly stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Start a process; stdout is read line by line. `detached` puts it in a process group of its own. */
export const start = (file: string, args: ReadonlyArray<string>, options: { env: Record<string, string>; cwd?: string; detached?: boolean }): Proc => {
  const child = spawn(file, [...args], { env: options.env, cwd: options.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"], detached: options.detached ?? false })
  let out = ""
  let err = ""
  const lines: Array<string> = []
  const waiters = new Set<() => void>()
  child.stderr!.on("data", (d) => (err += d))
  child.stdout!.on("data", (d) => (out += d))
  createInterface({ input: child.stdout! }).on("line", (l) => {
    lines.push(l)
    for (const w of [...waiters]) w()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once("exit", (code, signal) => done({ code, signal })))
  let gone = false
  void exited.then(() => {
    gone = true
    for (const w of [...waiters]) w()
  })
  const line = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<RegExpExecArray>((resolvePromise, reject) => {
      const check = () => {
        for (const l of lines) {
          const m = pattern.exec(l)
          if (m !== null) {
            waiters.delete(check)
            clearTimeout(timer)
            return resolvePromise(m)
          }
        }
        if (gone) {
          waiters.delete(check)
          clearTimeout(timer)
          reject(new Error(`${file} exited before printing ${pattern}:\nstdout: ${out}\nstderr: ${err}`))
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${pattern} from ${file}:\nstdout: ${out}\nstderr: ${err}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    line,
    exited,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
}

/** A built server CLI on port 0; resolves with its address once printed. */
export const startServer = async (bin: string, args: ReadonlyArray<string>, env: Record<string, string>) => {
  const proc = start(process.execPath, [bin, "--port", "0", ...args], { env })
  const url = (await proc.line(/listening on (http:\/\/\S+)/))[1]!
  return { ...proc, url }
}

export interface Pushed {
  readonly content: string
  readonly meta: Record<string, string>
}

export interface McpSession {
  readonly client: Client
  readonly pushed: Array<Pushed>
  readonly pid: number | null
  /** The first push (received or still to come) that matches. */
  readonly push: (predicate: (p: Pushed) => boolean, timeoutMs?: number) => Promise<Pushed>
  /** Call a tool; a tool error fails with its text. */
  readonly ok: (name: string, args?: Record<string, unknown>) => Promise<{ text: string; data: any }>
  readonly stderr: () => string
  readonly close: () => Promise<void>
}

/** An MCP session over stdio, as an agent starts one: `command args` with `env`. */
export const mcpSession = async (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  options: { readonly cwd?: string; readonly channels?: boolean } = {}
): Promise<McpSession> => {
  const transport = new StdioClientTransport({ command, args: [...args], env, stderr: "pipe", ...(options.cwd === undefined ? {} : { cwd: options.cwd }) })
  let stderr = ""
  transport.stderr?.on("data", (chunk) => (stderr += String(chunk)))
  const client = new Client({ name: "a2a-e2e", version: "1.0.0" }, { capabilities: options.channels === true ? { experimental: { "claude/channel": {} } } : {} })
  const pushed: Array<Pushed> = []
  const waiters = new Set<() => void>()
  client.fallbackNotificationHandler = async (notification) => {
    if (notification.method !== "notifications/claude/channel") return
    pushed.push(notification.params as unknown as Pushed)
    for (const w of [...waiters]) w()
  }
  await client.connect(transport)
  return {
    client,
    pushed,
    get pid() {
      return transport.pid
    },
    push: (predicate, timeoutMs = 10_000) =>
      new Promise((resolvePromise, reject) => {
        const check = () => {
          const found = pushed.find(predicate)
          if (found === undefined) return
          waiters.delete(check)
          clearTimeout(timer)
          resolvePromise(found)
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`timed out waiting for a channel push (${pushed.length} pushed)\nstderr: ${stderr}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      }),
    ok: async (name, toolArgs = {}) => {
      const result = (await client.callTool({ name, arguments: toolArgs })) as CallToolResult
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n")
      if (result.isError === true) throw new Error(`${name} failed: ${text}\nstderr: ${stderr}`)
      return { text, data: result.structuredContent }
    },
    stderr: () => stderr,
    close: () => client.close()
  }
}

/** A built broker on port 0 with its own home; `adminToken` read from the file it writes. */
export const startBroker = async (home = tempDir("a2a-e2e-broker-"), args: ReadonlyArray<string> = []) => {
  const proc = await startServer(BIN.broker, ["--home", home, "--db", join(home, "broker.db"), ...args], cleanEnv({ A2A_HOME: home }))
  const { readFileSync } = await import("node:fs")
  return { ...proc, home, adminToken: readFileSync(join(home, "broker.token"), "utf8").trim() }
}

/** The built `a2a-broker token create` for a tenant and roles. */
export const createToken = async (home: string, tenant: string, ...roles: Array<string>) => {
  const { execFile } = await import("node:child_process")
  const { promisify } = await import("node:util")
  const { stdout } = await promisify(execFile)(process.execPath, [BIN.broker, "token", "create", "--home", home, "--tenant", tenant, ...roles.flatMap((r) => ["--role", r])], { env: cleanEnv({ A2A_HOME: home }) })
  return stdout.trim()
}

/** The built `a2a-broker token create` with permission scopes (`--scope`, docs/security.md). */
export const createScopedToken = async (home: string, tenant: string, roles: ReadonlyArray<string>, scopes: ReadonlyArray<string>) => {
  const { execFile } = await import("node:child_process")
  const { promisify } = await import("node:util")
  const args = ["token", "create", "--home", home, "--tenant", tenant, ...roles.flatMap((r) => ["--role", r]), ...scopes.flatMap((s) => ["--scope", s])]
  const { stdout } = await promisify(execFile)(process.execPath, [BIN.broker, ...args], { env: cleanEnv({ A2A_HOME: home }) })
  return stdout.trim()
}

/** A session of the built `a2a-mcp` on a broker. */
export const a2aMcp = (broker: { url: string }, token: string, name: string, options: { readonly channels?: boolean; readonly env?: Record<string, string>; readonly home?: string } = {}) =>
  mcpSession(process.execPath, [BIN.mcp], cleanEnv({ HOME: options.home ?? tempDir("a2a-e2e-session-"), A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: name, ...options.env }), { channels: options.channels ?? true })
