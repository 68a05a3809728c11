/**
 * The `claude` preset: everything a Claude Code session needs to start unattended, in one
 * place, because it leans on undocumented internals of the pinned Claude Code version (see
 * docs/runner.md): a per-session `CLAUDE_CONFIG_DIR` seeded so the start is quiet and channels
 * are on, an MCP config that runs the a2a MCP server, the proxy env, the argv, and a driver
 * that accepts the development-channels confirmation and types the first prompt.
 */
import { AtomicFile } from "@mks/a2a/internal"
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import type { Launch, TerminalIo } from "./internal/agentProcess.js"
import { stripAnsi } from "./internal/agentLog.js"

/** The MCP server's name in the session: tools are `mcp__a2a__*`, channels `server:a2a`. */
export const MCP_SERVER_NAME = "a2a"

/** Directories of the user's own config shared into each session by symlink. */
export const SHARED_DIRS = ["skills", "agents", "plugins", "commands"] as const

/** The model a session asks for when only a provider is given (the proxy routes `provider/model`). */
export const DEFAULT_MODEL = "claude-sonnet-5-5"

/** Environment that keeps Claude Code offline except for its base URL, and reading the seeded feature cache. */
export const QUIET_ENV: Readonly<Record<string, string>> = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
  DISABLE_AUTOUPDATER: "1",
  DISABLE_TELEMETRY: "1",
  DISABLE_ERROR_REPORTING: "1",
  CLAUDE_CODE_GB_DISK_CACHE_WHEN_TELEMETRY_OFF: "1",
  ENABLE_TOOL_SEARCH: "false"
}

export interface SeedOptions {
  /** The session's working directory (its trust dialog is accepted). */
  readonly cwd: string
  /** The key the session sends (its approval prompt is pre-answered). */
  readonly apiKey?: string | undefined
  /** The user's config dir whose skills/agents/plugins/commands are linked in. */
  readonly shareFrom?: string | undefined
}

const readJson = (path: string): Record<string, any> => {
  try {
    const value = JSON.parse(readFileSync(path, "utf8"))
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : {}
  } catch {
    return {}
  }
}

/** 0600: the file holds the session's API key. */
const writeJsonAtomic = (path: string, value: unknown) => AtomicFile.writeSync(path, JSON.stringify(value, null, 2), { mode: 0o600, syncDir: false })

/**
 * Seed (or refresh) a session's `CLAUDE_CONFIG_DIR`: onboarding done, theme chosen, the cwd
 * trusted, the key approved, channels' feature flag cached on. Keeps whatever Claude Code
 * wrote there before (a restarted session keeps its history).
 */
export const seedConfigDir = (dir: string, options: SeedOptions): void => {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const path = join(dir, ".claude.json")
  const state = readJson(path)
  const approved: Array<string> = Array.isArray(state.customApiKeyResponses?.approved) ? state.customApiKeyResponses.approved : []
  const keyTail = options.apiKey?.slice(-20)
  const projects = typeof state.projects === "object" && state.projects !== null ? state.projects : {}
  const seeded = {
    ...state,
    hasCompletedOnboarding: true,
    theme: state.theme ?? "dark",
    autoUpdates: false,
    cachedGrowthBookFeatures: { ...(state.cachedGrowthBookFeatures ?? {}), tengu_harbor: true },
    customApiKeyResponses: {
      rejected: Array.isArray(state.customApiKeyResponses?.rejected) ? state.customApiKeyResponses.rejected : [],
      approved: keyTail !== undefined && !approved.includes(keyTail) ? [...approved, keyTail] : approved
    },
    projects: {
      ...projects,
      [options.cwd]: {
        ...(projects[options.cwd] ?? {}),
        hasTrustDialogAccepted: true,
        hasCompletedProjectOnboarding: true,
        projectOnboardingSeenCount: 1
      }
    }
  }
  writeJsonAtomic(path, seeded)
  if (options.shareFrom !== undefined && existsSync(options.shareFrom)) {
    for (const name of SHARED_DIRS) {
      const from = join(options.shareFrom, name)
      const to = join(dir, name)
      if (!existsSync(from)) continue
      try {
        lstatSync(to)
      } catch {
        symlinkSync(from, to, "dir")
      }
    }
  }
}

export interface McpOptions {
  readonly command: ReadonlyArray<string>
  readonly brokerUrl?: string | undefined
  readonly token?: string | undefined
  readonly peerName?: string | undefined
  readonly teams?: ReadonlyArray<string> | undefined
  readonly spawnId?: string | undefined
  /** The task a spawn is for: the MCP server keeps its lease alive (`A2A_TASK_ID`). */
  readonly taskId?: string | undefined
  /**
   * The session loads the server as a development channel: tell the server (`A2A_CHANNELS=1`)
   * that its notifications are shown, since Claude Code does not declare `claude/channel`.
   */
  readonly channels?: boolean | undefined
}

/** Write the session's MCP config (the a2a server only) and return its path. */
export const writeMcpConfig = (dir: string, options: McpOptions): string => {
  const env: Record<string, string> = {}
  if (options.brokerUrl !== undefined) env.A2A_BROKER_URL = options.brokerUrl
  if (options.token !== undefined) env.A2A_TOKEN = options.token
  if (options.peerName !== undefined) env.A2A_PEER_NAME = options.peerName
  if (options.teams !== undefined && options.teams.length > 0) env.A2A_TEAMS = options.teams.join(",")
  if (options.spawnId !== undefined) env.A2A_SPAWN_ID = options.spawnId
  if (options.taskId !== undefined) env.A2A_TASK_ID = options.taskId
  if (options.channels === true) env.A2A_CHANNELS = "1"
  const [command, ...args] = options.command
  const path = join(dir, ".mcp.json")
  writeJsonAtomic(path, { mcpServers: { [MCP_SERVER_NAME]: { type: "stdio", command, args, env } } })
  return path
}

export interface SessionOptions {
  readonly bin: string
  readonly cwd: string
  readonly configDir: string
  readonly baseEnv: Readonly<Record<string, string>>
  readonly proxy?: { readonly url: string; readonly key: string } | undefined
  readonly mcp: McpOptions
  readonly provider?: string | undefined
  readonly model?: string | undefined
  /** Load the a2a server as a development channel (pushes messages into the session). */
  readonly channels: boolean
  /** Typed into the session once it is ready. */
  readonly prompt?: string | undefined
  readonly extraArgs?: ReadonlyArray<string> | undefined
}

/** The model argument: `provider/model` when a provider is named (the proxy routes on it). */
export const modelArg = (provider: string | undefined, model: string | undefined): string | undefined =>
  provider !== undefined && provider.length > 0 ? `${provider}/${model ?? DEFAULT_MODEL}` : model

/** Seed the config dir, write the MCP config, and build argv, env and the driver. */
export const prepare = (options: SessionOptions): Launch => {
  seedConfigDir(options.configDir, { cwd: options.cwd, apiKey: options.proxy?.key ?? options.baseEnv.ANTHROPIC_AUTH_TOKEN ?? options.baseEnv.ANTHROPIC_API_KEY })
  const mcpConfig = writeMcpConfig(options.configDir, { ...options.mcp, channels: options.channels })
  const args = ["--mcp-config", mcpConfig, "--strict-mcp-config", "--allowedTools", `mcp__${MCP_SERVER_NAME}`]
  const model = modelArg(options.provider, options.model)
  if (model !== undefined) args.push("--model", model)
  if (options.channels) args.push("--dangerously-load-development-channels", `server:${MCP_SERVER_NAME}`)
  args.push(...(options.extraArgs ?? []))
  const env: Record<string, string> = { ...options.baseEnv, ...QUIET_ENV, CLAUDE_CONFIG_DIR: options.configDir }
  if (options.proxy !== undefined) {
    env.ANTHROPIC_BASE_URL = options.proxy.url
    env.ANTHROPIC_AUTH_TOKEN = options.proxy.key
    delete env.ANTHROPIC_API_KEY
  }
  return { file: options.bin, args, cwd: options.cwd, env, drive: driver(options.channels, options.prompt) }
}

/**
 * Screen text (escapes and whitespace removed: the TUI positions words with cursor moves) of
 * the development-channels confirmation, and of the ready input box.
 */
const CONFIRM = /Iamusingthisforlocaldevelopment|Entertoconfirm/i
/** The input box: a prompt mark right under the box's top rule, or the mode/shortcut hints under it. */
const READY = /─{8,}❯|\?forshortcuts|\(shift\+tabtocycle\)/

/**
 * Accept the channels confirmation (Enter) when it shows, then type the prompt once the input
 * box is ready. Watches the screen text only: no timing guesses. If the input box shows with no
 * confirmation first (a release without it), the prompt is typed all the same.
 */
export const driver =
  (channels: boolean, prompt: string | undefined) =>
  (io: TerminalIo): void => {
    if (!channels && prompt === undefined) return
    let screen = ""
    let confirmed = !channels
    let typed = prompt === undefined
    const stop = io.onData((data) => {
      screen = (screen + stripAnsi(data).replace(/\s+/g, "")).slice(-8_192)
      if (!confirmed && CONFIRM.test(screen)) {
        confirmed = true
        screen = ""
        setTimeout(() => io.write("\r"), 50)
        return
      }
      if (!typed && READY.test(screen)) {
        confirmed = true
        typed = true
        // Bracketed paste keeps newlines inside the prompt from submitting it early.
        setTimeout(() => {
          io.write(`\u001b[200~${prompt}\u001b[201~`)
          setTimeout(() => io.write("\r"), 150)
        }, 100)
      }
      if (confirmed && typed) stop()
    })
  }
