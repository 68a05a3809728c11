/**
 * Test helpers: the built `a2a-runner` CLI as a child process on 127.0.0.1 port 0 with its
 * own temporary data dir, raw HTTP with the API key, and SSE / WebSocket readers that let a
 * test await an event (never sleep).
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import WebSocket from "ws"

// A2A_TEST_RUNNER_CLI: another build of the CLI (e.g. a previous release, to compare its wire).
export const CLI = process.env.A2A_TEST_RUNNER_CLI ?? join(import.meta.dirname, "..", "dist", "cli.js")
export const FIXTURES = join(import.meta.dirname, "fixtures")
export const KEY = "test-runner-key-0123456789"

export const tempDir = (prefix = "a2a-runner-test-") => mkdtempSync(join(tmpdir(), prefix))

export interface RunnerProcess {
  readonly url: string
  readonly port: number
  readonly dataDir: string
  readonly child: ChildProcess
  readonly exited: Promise<number | NodeJS.Signals | null>
  readonly stderr: () => string
  /** SIGTERM and wait; removes the data dir unless `keep`. */
  readonly stop: (keep?: boolean) => Promise<void>
}

/** Start the built CLI; resolves once it printed its address. */
export const startRunner = (args: ReadonlyArray<string> = [], options: { dataDir?: string; env?: Record<string, string> } = {}): Promise<RunnerProcess> =>
  new Promise((resolve, reject) => {
    const dataDir = options.dataDir ?? tempDir()
    const child = spawn(process.execPath, [CLI, "--port", "0", "--data-dir", dataDir, "--api-key", KEY, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, A2A_HOME: join(dataDir, "home"), ...options.env }
    })
    const exited = new Promise<number | NodeJS.Signals | null>((done) => child.once("exit", (code, signal) => done(signal ?? code)))
    let stderr = ""
    child.stderr!.on("data", (chunk) => (stderr += chunk))
    const lines = createInterface({ input: child.stdout! })
    lines.on("line", (line) => {
      const match = /listening on (http:\/\/[^\s]+)/.exec(line)
      if (match) {
        const url = match[1]!
        resolve({
          url,
          port: Number(new URL(url).port),
          dataDir,
          child,
          exited,
          stderr: () => stderr,
          stop: async (keep = false) => {
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
            await exited
            if (!keep && options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true })
          }
        })
      }
    })
    child.once("exit", (code) => reject(new Error(`runner exited (${code}) before listening: ${stderr}`)))
  })

/** Raw HTTP; `key` defaults to the test key, `null` sends none. */
export const api = async (runner: { url: string }, method: string, path: string, body?: unknown, key: string | null = KEY) => {
  const res = await fetch(runner.url + path, {
    method,
    headers: {
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" })
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
  return { status: res.status, json, text }
}

/** Whether a process exists and is not a zombie waiting to be reaped. */
export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return true
  }
}

/** Poll a condition with a deadline (only where no event exists, e.g. a process being gone). */
export const eventually = async <A>(check: () => A | undefined | false | Promise<A | undefined | false>, what: string, timeoutMs = 5_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** An SSE stream: collects `data:` events and lets a test await one. */
export const sse = async (runner: { url: string }, path: string) => {
  const controller = new AbortController()
  const res = await fetch(runner.url + path, { headers: { authorization: `Bearer ${KEY}` }, signal: controller.signal })
  if (res.status !== 200) throw new Error(`SSE ${path}: ${res.status} ${await res.text()}`)
  const events: Array<{ data: any; receivedAt: number }> = []
  const waiters = new Set<() => void>()
  ;(async () => {
    const decoder = new TextDecoder()
    let buffer = ""
    try {
      for await (const chunk of res.body as any as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let i: number
        while ((i = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, i)
          buffer = buffer.slice(i + 2)
          const data = block
            .split("\n")
            .filter((l) => l.startsWith("data: "))
            .map((l) => l.slice(6))
            .join("\n")
          if (data.length > 0) events.push({ data: JSON.parse(data), receivedAt: performance.now() })
          waiters.forEach((w) => w())
        }
      }
    } catch {
      // aborted
    }
  })()
  /** The first event matching, among those from index `from` on (`events.length` = only new ones). */
  const next = (predicate: (data: any) => boolean, what: string, timeoutMs = 5_000, from = 0) =>
    new Promise<{ data: any; receivedAt: number }>((resolve, reject) => {
      const check = () => {
        const found = events.slice(from).find((e) => predicate(e.data))
        if (found !== undefined) {
          waiters.delete(check)
          clearTimeout(timer)
          resolve(found)
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(events.map((e) => e.data)).slice(0, 2000)}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return { events, next, close: () => controller.abort() }
}

/** A terminal WebSocket: collects output, sends keystrokes. */
export const terminal = (runner: { url: string }, id: string, key: string | null = KEY) =>
  new Promise<{ ws: WebSocket; output: () => string; until: (re: RegExp, timeoutMs?: number) => Promise<string>; type: (data: string) => void }>((resolve, reject) => {
    const ws = new WebSocket(`${runner.url.replace("http", "ws")}/ws/agents/${id}/terminal`, key === null ? {} : { headers: { authorization: `Bearer ${key}` } })
    let output = ""
    const waiters = new Set<() => void>()
    ws.on("message", (raw) => {
      const frame = JSON.parse(String(raw))
      if (frame.type === "output") output += frame.data
      waiters.forEach((w) => w())
    })
    ws.on("unexpected-response", (_req, res) => reject(new Error(`terminal refused: ${res.statusCode}`)))
    ws.on("error", reject)
    ws.on("open", () =>
      resolve({
        ws,
        output: () => output,
        type: (data) => ws.send(JSON.stringify({ type: "input", data })),
        until: (re, timeoutMs = 5_000) =>
          new Promise((res, rej) => {
            const check = () => {
              // eslint-disable-next-line no-control-regex
              const m = re.exec(output.replace(/\u001b\[[0-?]*[ -/]*[@-~]/g, ""))
              if (m !== null) {
                waiters.delete(check)
                clearTimeout(timer)
                res(m[0])
              }
            }
            const timer = setTimeout(() => {
              waiters.delete(check)
              rej(new Error(`timed out waiting for ${re}; output: ${JSON.stringify(output.slice(-2000))}`))
            }, timeoutMs)
            waiters.add(check)
            check()
          })
      })
    )
  })
