/**
 * The bin's command-line answers (`--help`, `--version`, `--print-config`, unknown arguments).
 * Loaded by cli.ts only when it is given arguments, so serving MCP does not parse this (it
 * imports core for the default broker URL and the local stack's record).
 */
import { BrokerClient, StackRecord } from "@mks/a2a"
import { VERSION } from "./version.js"

const HELP = `a2a-mcp ${VERSION}: MCP stdio server that puts this agent session on the a2a bus

Usage:
  a2a-mcp                         serve MCP on stdin/stdout (started by the agent)
  a2a-mcp --print-config claude   print a .mcp.json snippet for Claude Code
          [--channels]            with A2A_CHANNELS=1, for sessions started with
                                  --dangerously-load-development-channels server:a2a
  a2a-mcp --print-config codex    print a ~/.codex/config.toml snippet
  a2a-mcp --help | --version

Environment:
  A2A_BROKER_URL   broker base URL (default ${BrokerClient.DEFAULT_URL})
  A2A_TOKEN        bearer token (default: contents of ~/.a2a/broker.token)
  A2A_PEER_NAME    peer name to register or resume (default: derived from the git repo / cwd)
  A2A_TEAMS        comma-separated teams to join
  A2A_SPAWN_ID     spawn id (set by a runner)
  A2A_AGENT        agent kind (default: the MCP client's name)
  A2A_SUMMARY      first summary
  A2A_CHANNELS=1   the client shows channel messages though it does not declare claude/channel
                   (Claude Code started with --dangerously-load-development-channels server:a2a)
  A2A_PUSH=0       never push messages, even to clients that declare claude/channel
  A2A_PUSH_SETTLE_MS   ms after initialized before pushes to Claude Code begin (default 2000;
                   it drops channel messages that arrive before its handler is registered)
  A2A_UNREGISTER_ON_EXIT=1   delete the peer and its inbox on exit (default: go offline, keep them)
`

/**
 * How to start this server again, for the way it is installed: `npx -y @mks/a2a-mcp` when npx
 * fetched it from a registry (it runs from npx's cache, `…/_npx/…`), else this Node and the
 * path of this very build (a checkout, or a package installed into a project or globally).
 */
export const selfCommand = (file: string): readonly [string, ...Array<string>] =>
  /[\\/]_npx[\\/]/.test(file) ? ["npx", "-y", "@mks/a2a-mcp"] : [process.execPath, ...NODE_FLAGS, file]

/**
 * Node flags the launchers that start this server with `node` pass (this `--print-config`, the
 * runner's default MCP command, `a2a up`): a 2 MiB young generation. Node lets it grow to 16 MiB
 * during start-up, and a session's MCP server never needs that throughput: idle RSS 86 → ~73 MiB
 * (bench/footprint.mjs), with shorter scavenges. V8 sizes the heap when the process starts, so
 * the bin cannot set this itself (`v8.setFlagsFromString` after start was measured to change nothing).
 */
export const NODE_FLAGS = ["--max-semi-space-size=2"] as const

const passEnv = ["A2A_BROKER_URL", "A2A_TOKEN", "A2A_PEER_NAME", "A2A_TEAMS"] as const

export const printConfig = (kind: string, channels: boolean, file: string): string | undefined => {
  const env: Record<string, string> = {}
  for (const name of passEnv) {
    const value = process.env[name]
    if (value !== undefined && value !== "") env[name] = value
  }
  if (env.A2A_BROKER_URL === undefined) env.A2A_BROKER_URL = StackRecord.readSync()?.broker ?? BrokerClient.DEFAULT_URL
  if (channels) env.A2A_CHANNELS = "1"
  const [command, ...args] = selfCommand(file)
  switch (kind) {
    case "claude":
    case "json":
      return JSON.stringify({ mcpServers: { a2a: { type: "stdio", command, args, env } } }, null, 2)
    case "codex":
      return [
        "[mcp_servers.a2a]",
        `command = ${JSON.stringify(command)}`,
        `args = [${args.map((a) => JSON.stringify(a)).join(", ")}]`,
        `env = { ${Object.entries(env).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")} }`
      ].join("\n")
    default:
      return undefined
  }
}

/**
 * Answer the arguments `argv` (not empty) of the bin at `file` (the path of `dist/cli.js`, which
 * `--print-config` prints): writes to stdout or stderr and returns the exit code.
 */
export const run = (argv: ReadonlyArray<string>, file: string): number => {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP)
    return 0
  }
  if (argv.includes("--version")) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const printAt = argv.indexOf("--print-config")
  if (printAt >= 0) {
    const kind = argv[printAt + 1] === undefined || argv[printAt + 1]!.startsWith("--") ? "claude" : argv[printAt + 1]!
    const out = printConfig(kind, argv.includes("--channels"), file)
    if (out === undefined) {
      process.stderr.write(`a2a-mcp: --print-config takes claude, codex or json, not "${kind}"\n`)
      return 2
    }
    process.stdout.write(`${out}\n`)
    return 0
  }
  process.stderr.write(`a2a-mcp: unknown argument "${argv[0]}"\n\n${HELP}`)
  return 2
}
