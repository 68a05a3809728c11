/**
 * The bin's command-line answers (`--help`, `--version`, `--print-config`, unknown arguments),
 * parsed, and `--help` written, from the spec in ./CliSpec.ts (core's `CliSpec`, no effect).
 * Loaded by cli.ts only when it is given arguments, so serving MCP does not parse this (it
 * imports core for the default broker URL and the local stack's record).
 */
import { BrokerClient, StackRecord } from "@mks/a2a"
import { CliSpec, McpNodeFlags } from "@mks/a2a/internal"
import { spec } from "./CliSpec.js"
import { VERSION } from "./version.js"

/**
 * How to start this server again, for the way it is installed: `npx -y @mks/a2a-mcp` when npx
 * fetched it from a registry (it runs from npx's cache, `…/_npx/…`), else this Node and the
 * path of this very build (a checkout, or a package installed into a project or globally).
 */
export const selfCommand = (file: string): readonly [string, ...Array<string>] =>
  /[\\/]_npx[\\/]/.test(file) ? ["npx", "-y", "@mks/a2a-mcp"] : [process.execPath, ...NODE_FLAGS, file]

/** Node flags the launchers that start this server with `node` pass (`McpNodeFlags` in `@mks/a2a/internal`). */
export const NODE_FLAGS = McpNodeFlags.NODE_FLAGS

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

/** `a2a-mcp: unknown argument "…"` and the help on stderr; exit code 2. */
const unknown = (arg: string | undefined): number => {
  process.stderr.write(`a2a-mcp: unknown argument "${arg}"\n\n${CliSpec.help(spec, VERSION)}`)
  return 2
}

/** The argument `CliSpec.parse` refused: the first option the spec does not have (as given), else the first argument. */
const refused = (argv: ReadonlyArray<string>): string | undefined => {
  const known = new Set(Object.entries(CliSpec.options(spec)).flatMap(([name, o]) => [`--${name}`, ...(o.short === undefined ? [] : [`-${o.short}`])]))
  const end = argv.indexOf("--")
  return (end < 0 ? argv : argv.slice(0, end)).find((a) => a.startsWith("-") && a !== "-" && !known.has(a)) ?? argv[0]
}

/**
 * Answer the arguments `argv` (not empty) of the bin at `file` (the path of `dist/cli.js`, which
 * `--print-config` prints): writes to stdout or stderr and returns the exit code. The flags are
 * the spec's (./CliSpec.ts); `--print-config`'s kind is the one argument it allows.
 */
export const run = (argv: ReadonlyArray<string>, file: string): number => {
  let args: CliSpec.Parsed
  try {
    args = CliSpec.parse(spec, argv)
  } catch {
    return unknown(refused(argv))
  }
  if (args.has("help")) {
    process.stdout.write(CliSpec.help(spec, VERSION))
    return 0
  }
  if (args.has("version")) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  if (args.has("print-config")) {
    const [kind = "claude", extra] = args.positionals
    if (extra !== undefined) return unknown(extra)
    const out = printConfig(kind, args.has("channels"), file)
    if (out === undefined) {
      process.stderr.write(`a2a-mcp: --print-config takes claude, codex or json, not "${kind}"\n`)
      return 2
    }
    process.stdout.write(`${out}\n`)
    return 0
  }
  return unknown(argv[0])
}
