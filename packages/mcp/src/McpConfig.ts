/**
 * What the MCP server needs to know, read from the environment (the agent's MCP config sets
 * it): where the broker is and how to authenticate, and who this session is on the bus.
 */
import { BrokerClient } from "@mks/a2a"
import { Config, ConfigError, Effect, Either, Option, Schema } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/

/** A peer or team name as the broker accepts it (1-64 of `[A-Za-z0-9_.@-]`, starting alphanumeric). */
export const Name = Schema.String.pipe(
  Schema.pattern(NAME, { message: () => "must be 1-64 characters of [A-Za-z0-9_.@-], starting with a letter or digit" })
)

export interface McpConfig {
  readonly broker: BrokerClient.Options
  /** `A2A_PEER_NAME`: register (or resume) exactly this name. Unset: derived, see {@link deriveName}. */
  readonly name: Option.Option<string>
  /** `A2A_TEAMS`, comma-separated. */
  readonly teams: ReadonlyArray<string>
  /** `A2A_SPAWN_ID`, set by a runner for the sessions it spawns. */
  readonly spawnId: Option.Option<string>
  /** `A2A_TASK_ID`: the task a spawn is for (the broker claims it for this peer; the server keeps its lease alive). */
  readonly taskId: Option.Option<string>
  /** `A2A_AGENT`: agent kind; default: the MCP client's name (e.g. `claude-code`). */
  readonly agent: Option.Option<string>
  /** `A2A_SUMMARY`: the first summary shown to other peers. */
  readonly summary: Option.Option<string>
  /** `A2A_UNREGISTER_ON_EXIT=1`: delete the peer (and its inbox) on exit instead of going offline. */
  readonly unregisterOnExit: boolean
  /** `A2A_PUSH=0` turns channel push off even for clients that declare it. */
  readonly push: boolean
  /**
   * `A2A_CHANNELS=1`: the client shows channel notifications although it does not declare
   * `claude/channel` (Claude Code 2.1.330 started with the development-channels flag does not
   * declare it). Whoever enables channels in the client sets this; pushes are then acked.
   */
  readonly channels: boolean
  /**
   * `A2A_PUSH_SETTLE_MS` (default 2,000): how long after `initialized` pushes to Claude Code
   * start. Claude Code 2.1.330 registers its channel handler a while after the MCP handshake
   * (~0.45 s seen on a loaded machine) and silently drops a notification that arrives sooner;
   * messages that arrive meanwhile wait, unacked, and are pushed in order once it has passed.
   * Other clients are pushed to at once.
   */
  readonly pushSettleMs: number
  readonly cwd: string
  readonly gitRoot: string | null
  readonly host: string
  /** The agent's pid (`A2A_AGENT_PID`, else the parent process, skipping `npm exec`/`npx` wrappers). */
  readonly agentPid: number | null
  /** `A2A_TASK_LEASE_MS`: the lease of tasks this session claims (default 60,000); the server renews it every third of it while the session lives. */
  readonly taskLeaseMs: number
}

const names = (variable: string) =>
  Config.string(variable).pipe(
    Config.withDefault(""),
    Config.mapOrFail((raw) => {
      const items = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
      const bad = items.find((s) => !NAME.test(s))
      return bad === undefined
        ? Either.right(items)
        : Either.left(ConfigError.InvalidData([variable], `"${bad}" is not a valid team name (1-64 of [A-Za-z0-9_.@-])`))
    })
  )

const optionalName = (variable: string) =>
  Config.option(Config.string(variable)).pipe(
    Config.mapOrFail((value) =>
      Option.isSome(value) && !NAME.test(value.value)
        ? Either.left(ConfigError.InvalidData([variable], `"${value.value}" is not a valid peer name (1-64 of [A-Za-z0-9_.@-])`))
        : Either.right(Option.filter(value, (s) => s.length > 0))
    )
  )

const flag = (variable: string, fallback: boolean) =>
  Config.string(variable).pipe(
    Config.map((s) => !["0", "false", "no", "off", ""].includes(s.trim().toLowerCase())),
    Config.withDefault(fallback)
  )

/**
 * The git work tree containing `cwd`, or null (not in a repository): the nearest directory at or
 * above `cwd` holding a `.git` entry (a directory, or the file of a linked worktree or
 * submodule), which is what `git rev-parse --show-toplevel` answers. Looking for it costs
 * microseconds; spawning git before the MCP handshake cost 5–150 ms of every start (more on a
 * busy machine). Only when `GIT_DIR` or `GIT_WORK_TREE` point elsewhere is git asked.
 */
export const gitRootOf = (cwd: string): string | null => {
  if (process.env.GIT_DIR === undefined && process.env.GIT_WORK_TREE === undefined) {
    for (let dir = Path.resolve(cwd); ; dir = Path.dirname(dir)) {
      if (existsSync(Path.join(dir, ".git"))) return dir
      if (Path.dirname(dir) === dir) return null
    }
  }
  try {
    const out = execFileSync("git", ["rev-parse", "--show-toplevel"], { cwd, stdio: ["ignore", "pipe", "ignore"], timeout: 2_000 })
    const root = out.toString("utf8").trim()
    return root.length > 0 ? root : null
  } catch {
    return null
  }
}

const WRAPPERS = /(^|[/\s])(npm|npx|npm-cli\.js|npx-cli\.js|sh|dash|bash)(\s|$)|npm exec/

/**
 * The pid of the agent that started us. `npx @mks/a2a-mcp` puts `npm exec` (and sometimes a
 * shell) between the agent and this process; on Linux those wrappers are skipped by reading
 * `/proc/<pid>/cmdline` and `/proc/<pid>/stat`, at most four levels up.
 */
export const agentPidFrom = (ppid: number): number | null => {
  let pid = ppid
  for (let level = 0; level < 4; level++) {
    let cmdline: string
    let parent: number
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    } catch {
      return pid > 1 ? pid : null
    }
    if (!WRAPPERS.test(cmdline) || !(parent > 1)) return pid
    pid = parent
  }
  return pid
}

/**
 * The name to try when `A2A_PEER_NAME` is unset: the repository's (or directory's) base name,
 * reduced to the characters a peer name allows. The session then takes the first of `base`,
 * `base-2`, `base-3`, … that no online peer holds, so two sessions in one repository get two
 * peers, and a later session in the same place resumes the offline one with its inbox.
 */
export const deriveName = (cwd: string, gitRoot: string | null): string => {
  const base = Path.basename(gitRoot ?? cwd)
    .replace(/[^A-Za-z0-9_.@-]+/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "")
    .slice(0, 56)
  return base.length > 0 ? base : "agent"
}

export const candidates = (base: string, count = 50): ReadonlyArray<string> =>
  Array.from({ length: count }, (_, i) => (i === 0 ? base : `${base}-${i + 1}`))

/** The configuration from the environment; a `ConfigError` names the variable that is wrong. */
export const read: Effect.Effect<McpConfig, ConfigError.ConfigError> = Effect.gen(function*() {
  const broker = yield* BrokerClient.readConfig
  const name = yield* optionalName("A2A_PEER_NAME")
  const teams = yield* names("A2A_TEAMS")
  const spawnId = yield* Config.option(Config.nonEmptyString("A2A_SPAWN_ID"))
  const taskId = yield* Config.option(Config.nonEmptyString("A2A_TASK_ID"))
  const agent = yield* Config.option(Config.nonEmptyString("A2A_AGENT"))
  const summary = yield* Config.option(Config.string("A2A_SUMMARY"))
  const unregisterOnExit = yield* flag("A2A_UNREGISTER_ON_EXIT", false)
  const push = yield* flag("A2A_PUSH", true)
  const channels = yield* flag("A2A_CHANNELS", false)
  const pushSettleMs = yield* Config.integer("A2A_PUSH_SETTLE_MS").pipe(
    Config.validate({ message: "A2A_PUSH_SETTLE_MS must be between 0 and 60000", validation: (ms) => ms >= 0 && ms <= 60_000 }),
    Config.withDefault(2_000)
  )
  const agentPidEnv = yield* Config.option(Config.integer("A2A_AGENT_PID"))
  const taskLeaseMs = yield* Config.integer("A2A_TASK_LEASE_MS").pipe(
    Config.validate({ message: "A2A_TASK_LEASE_MS must be between 300 and 3600000", validation: (ms) => ms >= 300 && ms <= 3_600_000 }),
    Config.withDefault(60_000)
  )
  const cwd = process.cwd()
  return {
    broker,
    name,
    teams,
    spawnId,
    taskId,
    agent,
    summary: Option.map(summary, (s) => s.slice(0, 2_000)),
    unregisterOnExit,
    push,
    channels,
    pushSettleMs,
    cwd,
    gitRoot: gitRootOf(cwd),
    host: Os.hostname(),
    agentPid: Option.getOrElse(agentPidEnv, () => agentPidFrom(process.ppid)),
    taskLeaseMs
  }
})
