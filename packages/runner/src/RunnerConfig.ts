/**
 * The runner's settings, as one service. `make` fills defaults; the CLI reads flags and env.
 */
import type { RunnerPolicy, ServerLimits } from "@mks/a2a"
import { McpNodeFlags } from "@mks/a2a/internal"
import { Context } from "effect"
import { homedir, hostname } from "node:os"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { VERSION } from "./version.js"

export interface RunnerConfigShape {
  /** Runner id on the broker (defaults to the host name). */
  readonly id: string
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /** Bearer key of the local API. */
  readonly apiKey: string
  /** Agents' definitions, logs, spawn records and claude config dirs live here. */
  readonly dataDir: string
  readonly labels: Readonly<Record<string, string>>
  /** Spawn orders this runner takes at once. */
  readonly capacity: number
  /** The broker link; without it the runner works alone. */
  readonly broker?: { readonly url: string; readonly token: string } | undefined
  /** The proxy the `claude` preset points Claude Code at, with a virtual key. */
  readonly proxy?: { readonly url: string; readonly key: string } | undefined
  readonly claude: {
    /** The Claude Code executable. */
    readonly bin: string
    /** argv of the a2a MCP server (default: the installed `@mks/a2a-mcp`). */
    readonly mcpCommand: ReadonlyArray<string>
    /** The user's Claude config dir whose skills/agents/plugins/commands are shared by symlink. */
    readonly shareFrom?: string | undefined
    /** Extra environment for every claude session (e.g. a base URL when no proxy is configured). */
    readonly env?: Readonly<Record<string, string>> | undefined
  }
  /** What spawn orders may run here (docs/runner.md#policy); absent: anything the broker sends. */
  readonly policy?: RunnerPolicy.RunnerPolicy | undefined
  /** SIGTERM → SIGKILL grace when stopping. */
  readonly graceMs: number
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly resetAfterMs: number }
  readonly maxBodyBytes: number
  /** Timeouts and the pending-connection cap of the local API's socket (default `ServerLimits.defaults`). */
  readonly limits?: ServerLimits.ServerLimits | undefined
  /** Heartbeat period on the broker link (the broker calls a runner stale after 120 s). */
  readonly heartbeatMs: number
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number }
  readonly log: { readonly maxBytes: number; readonly keep: number; readonly tailLines: number; readonly backlogBytes: number }
  readonly version: string
}

export class RunnerConfig extends Context.Tag("@mks/a2a-runner/RunnerConfig")<RunnerConfig, RunnerConfigShape>() {}

/** `A2A_HOME` or `~/.a2a`. */
/** `A2A_HOME`, else `~/.a2a` (an empty variable counts as unset, as for every setting). */
export const defaultHome = (): string => process.env.A2A_HOME || join(homedir(), ".a2a")

/** A runner id from the host name, kept to the id alphabet. */
export const defaultId = (): string => hostname().replace(/[^A-Za-z0-9_.:-]/g, "-").replace(/^[^A-Za-z0-9]+/, "") || "runner"

/**
 * argv of the installed `@mks/a2a-mcp` (its `dist/cli.js` under this Node, with the Node flags
 * its own `--print-config` gives, `McpNodeFlags`: a small young generation and the interpreter
 * only, ~20 MiB less idle RSS per session), else `npx`.
 */
const defaultMcpCommand = (): ReadonlyArray<string> => {
  try {
    const pkg = createRequire(import.meta.url).resolve("@mks/a2a-mcp/package.json")
    return [process.execPath, ...McpNodeFlags.NODE_FLAGS, join(dirname(pkg), "dist", "cli.js")]
  } catch {
    return ["npx", "-y", "@mks/a2a-mcp"]
  }
}

export const make = (options: Partial<RunnerConfigShape> & { readonly apiKey: string }): RunnerConfigShape => ({
  id: options.id ?? defaultId(),
  host: options.host ?? "127.0.0.1",
  port: options.port ?? 8487,
  apiKey: options.apiKey,
  dataDir: options.dataDir ?? join(defaultHome(), "runner"),
  labels: options.labels ?? {},
  capacity: options.capacity ?? 8,
  broker: options.broker,
  proxy: options.proxy,
  policy: options.policy,
  claude: options.claude ?? { bin: "claude", mcpCommand: defaultMcpCommand(), shareFrom: join(homedir(), ".claude") },
  graceMs: options.graceMs ?? 5_000,
  backoff: options.backoff ?? { initialMs: 500, maxMs: 30_000, resetAfterMs: 10_000 },
  maxBodyBytes: options.maxBodyBytes ?? 1_048_576,
  limits: options.limits,
  heartbeatMs: options.heartbeatMs ?? 20_000,
  reconnect: options.reconnect ?? { initialMs: 200, maxMs: 10_000 },
  log: options.log ?? { maxBytes: 10 * 1024 * 1024, keep: 3, tailLines: 2_000, backlogBytes: 64 * 1024 },
  version: options.version ?? VERSION
})

export { defaultMcpCommand }
