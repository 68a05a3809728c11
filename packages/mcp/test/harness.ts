/**
 * Drives the built `a2a-mcp` binary over stdio with the official MCP SDK client, against a
 * real broker. Each session is a child process with its own env, exactly as an agent starts it.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { join } from "node:path"

export const CLI = join(import.meta.dirname, "..", "dist", "cli.js")

export interface Pushed {
  readonly content: string
  readonly meta: Record<string, string>
  readonly at: number
}

export interface McpSession {
  readonly client: Client
  readonly transport: StdioClientTransport
  readonly pushed: Array<Pushed>
  /** Resolves with the `n`-th push (0-based) once it has arrived. */
  readonly push: (n: number) => Promise<Pushed>
  readonly call: (name: string, args?: Record<string, unknown>) => Promise<CallToolResult & { text: string }>
  /** Calls a tool and fails the test when it returns `isError`. */
  readonly ok: (name: string, args?: Record<string, unknown>) => Promise<{ text: string; data: any }>
  readonly stderr: () => string
  readonly pid: number | null
  readonly close: () => Promise<void>
}

export interface SessionOptions {
  readonly url: string
  readonly token: string
  readonly name?: string
  readonly teams?: string
  readonly channels?: boolean
  /** The `clientInfo.name` the client gives in `initialize` (default `a2a-test-client`). */
  readonly clientName?: string
  readonly env?: Record<string, string>
  readonly cwd?: string
  /** Node flags before the bin (e.g. the launchers' `NODE_FLAGS`); none by default, as `.mcp.json` with plain `node` starts it. */
  readonly nodeFlags?: ReadonlyArray<string>
}

export const startSession = async (options: SessionOptions): Promise<McpSession> => {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    A2A_BROKER_URL: options.url,
    A2A_TOKEN: options.token,
    ...(options.name === undefined ? {} : { A2A_PEER_NAME: options.name }),
    ...(options.teams === undefined ? {} : { A2A_TEAMS: options.teams }),
    ...options.env
  }
  const transport = new StdioClientTransport({ command: process.execPath, args: [...(options.nodeFlags ?? []), CLI], env, stderr: "pipe", cwd: options.cwd })
  let stderr = ""
  transport.stderr?.on("data", (chunk) => (stderr += String(chunk)))
  const client = new Client(
    { name: options.clientName ?? "a2a-test-client", version: "1.0.0" },
    { capabilities: options.channels === true ? { experimental: { "claude/channel": {} } } : {} }
  )
  const pushed: Array<Pushed> = []
  const waiting = new Map<number, (p: Pushed) => void>()
  client.fallbackNotificationHandler = async (notification) => {
    if (notification.method !== "notifications/claude/channel") return
    const params = notification.params as { content: string; meta: Record<string, string> }
    const item = { content: params.content, meta: params.meta, at: performance.now() }
    pushed.push(item)
    waiting.get(pushed.length - 1)?.(item)
  }
  await client.connect(transport)
  const call = async (name: string, args: Record<string, unknown> = {}) => {
    const result = (await client.callTool({ name, arguments: args })) as CallToolResult
    const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n")
    return { ...result, text }
  }
  return {
    client,
    transport,
    pushed,
    push: (n) =>
      pushed[n] !== undefined ? Promise.resolve(pushed[n]!) : new Promise((resolve) => waiting.set(n, resolve)),
    call,
    ok: async (name, args) => {
      const result = await call(name, args)
      if (result.isError === true) throw new Error(`${name} failed: ${result.text}\nstderr: ${stderr}`)
      return { text: result.text, data: result.structuredContent }
    },
    stderr: () => stderr,
    get pid() {
      return transport.pid
    },
    close: () => client.close()
  }
}

/** Polls `check` until it returns a value (for state that has no event to await, e.g. broker-side status). */
export const eventually = async <A>(check: () => Promise<A | undefined>, timeoutMs = 10_000, what = "condition"): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/**
 * Wait until the session's channel to the broker is open (whoami says so). Events (task and
 * presence changes) reach only open channels, and only an open channel's close takes the peer
 * offline: a test about either must not race the session's connect, which a loaded machine
 * stretches well past the first tool answer.
 */
export const channelOpen = (session: McpSession, timeoutMs = 60_000) =>
  eventually(async () => ((await session.ok("whoami")).data.channel === "open" ? true : undefined), timeoutMs, "the session's channel open")
