/**
 * Presets turn a spec into what to execute: `command` runs its argv; `claude` runs a Claude
 * Code session (see ClaudeSession). Specs are checked here first, so a bad one is a clear
 * `InvalidRequest` naming the field, not a process that dies at once.
 */
import { Errors } from "@mks/a2a"
import { Effect } from "effect"
import { accessSync, constants, statSync } from "node:fs"
import { delimiter, isAbsolute, join, resolve } from "node:path"
import type { AgentSpec } from "./Agent.js"
import * as ClaudeSession from "./ClaudeSession.js"
import type { Launch } from "./internal/agentProcess.js"
import type { RunnerConfigShape } from "./RunnerConfig.js"

/** What a spawn order adds: the agent joins the bus with these. */
export interface SpawnContext {
  readonly spawnId: string
  readonly brokerUrl: string
  readonly token: string
  /** The task the spawn is for (`A2A_TASK_ID`): its peer holds it once registered. */
  readonly task?: string | undefined
}

export const presetOf = (spec: AgentSpec): "command" | "claude" => spec.preset ?? (spec.command !== undefined ? "command" : "claude")

const isExecutableFile = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/** The executable a command names: a path (relative to `cwd`) or a name on `PATH`. */
export const resolveCommand = (command: string, cwd: string, path: string | undefined): string | undefined => {
  if (command.includes("/")) {
    const full = isAbsolute(command) ? command : resolve(cwd, command)
    return isExecutableFile(full) ? full : undefined
  }
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir.length === 0) continue
    const full = join(dir, command)
    if (isExecutableFile(full)) return full
  }
  return undefined
}

const isDirectory = (path: string) => {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** The runner's environment for its agents, without the runner's own secrets. */
export const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  delete env.A2A_RUNNER_API_KEY
  delete env.A2A_TOKEN
  delete env.A2A_TASK_ID
  env.TERM = "xterm-256color"
  return env
}

/** Check what can be checked before starting: cwd exists, the executable is there. */
export const validate = (spec: AgentSpec, config: RunnerConfigShape): Effect.Effect<void, Errors.InvalidRequest> =>
  Effect.suspend(() => {
    const cwd = spec.cwd ?? process.cwd()
    if (!isAbsolute(cwd)) return Effect.fail(new Errors.InvalidRequest({ message: `cwd must be an absolute path: ${cwd}`, field: "cwd" }))
    if (!isDirectory(cwd)) return Effect.fail(new Errors.InvalidRequest({ message: `cwd does not exist or is not a directory: ${cwd}`, field: "cwd" }))
    const path = spec.env?.PATH ?? process.env.PATH
    if (presetOf(spec) === "command") {
      if (resolveCommand(spec.command!, cwd, path) === undefined) {
        return Effect.fail(new Errors.InvalidRequest({ message: `command not found or not executable: ${spec.command}`, field: "command" }))
      }
    } else if (resolveCommand(config.claude.bin, cwd, path) === undefined) {
      return Effect.fail(new Errors.InvalidRequest({ message: `the claude preset needs Claude Code, not found: ${config.claude.bin}`, field: "preset" }))
    }
    return Effect.void
  })

/** Build the launch of an agent (called at every start: a claude session is re-seeded). */
export const launchOf = (
  agentId: string,
  name: string,
  spec: AgentSpec,
  config: RunnerConfigShape,
  spawn: SpawnContext | undefined
): Launch => {
  const cwd = spec.cwd ?? process.cwd()
  const env = baseEnv()
  const teams = spec.teams ?? []
  if (spawn !== undefined) {
    env.A2A_BROKER_URL = spawn.brokerUrl
    env.A2A_TOKEN = spawn.token
    env.A2A_SPAWN_ID = spawn.spawnId
    if (spawn.task !== undefined) env.A2A_TASK_ID = spawn.task
  } else if (config.broker !== undefined) {
    env.A2A_BROKER_URL = config.broker.url
  }
  env.A2A_PEER_NAME = name
  if (teams.length > 0) env.A2A_TEAMS = teams.join(",")
  else delete env.A2A_TEAMS
  Object.assign(env, spec.env ?? {})
  const path = env.PATH
  if (presetOf(spec) === "command") {
    const file = resolveCommand(spec.command!, cwd, path) ?? spec.command!
    return { file, args: spec.args ?? [], cwd, env }
  }
  const bin = resolveCommand(config.claude.bin, cwd, path) ?? config.claude.bin
  return ClaudeSession.prepare({
    bin,
    cwd,
    configDir: join(config.dataDir, "claude", agentId),
    baseEnv: { ...env, ...(config.claude.env ?? {}) },
    proxy: config.proxy,
    mcp: {
      command: config.claude.mcpCommand,
      brokerUrl: spawn?.brokerUrl ?? config.broker?.url,
      token: spawn?.token,
      peerName: name,
      teams,
      spawnId: spawn?.spawnId,
      taskId: spawn?.task
    },
    provider: spec.provider,
    model: spec.model,
    channels: true,
    prompt: spec.prompt,
    extraArgs: spec.args
  })
}
