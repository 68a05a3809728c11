#!/usr/bin/env node
/**
 * `a2a-mcp` (also `npx @mks/a2a-mcp`): the stdio MCP server of one agent session.
 * stdout carries only MCP JSON-RPC; every log line goes to stderr.
 */
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { BrokerClient, StackRecord } from "@mks/a2a"
// Subpaths, not the package index: the index would pull every platform module into the bin.
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Deferred, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { fileURLToPath } from "node:url"
import * as McpConfig from "./McpConfig.js"
import * as McpServer from "./McpServer.js"
import { VERSION } from "./version.js"

/** The agent that started us; read first thing, so a parent that dies during start-up is still noticed. */
const initialParent = process.ppid

// Nothing but JSON-RPC may reach stdout: route stray console output to stderr.
console.log = console.error
console.info = console.error
console.debug = console.error

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
export const selfCommand = (file: string = fileURLToPath(import.meta.url)): readonly [string, ...Array<string>] =>
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

export const printConfig = (kind: string, channels = false): string | undefined => {
  const env: Record<string, string> = {}
  for (const name of passEnv) {
    const value = process.env[name]
    if (value !== undefined && value !== "") env[name] = value
  }
  if (env.A2A_BROKER_URL === undefined) env.A2A_BROKER_URL = StackRecord.readSync()?.broker ?? BrokerClient.DEFAULT_URL
  if (channels) env.A2A_CHANNELS = "1"
  const [command, ...args] = selfCommand()
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

const argv = process.argv.slice(2)
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(HELP)
  process.exit(0)
}
if (argv.includes("--version")) {
  process.stdout.write(`${VERSION}\n`)
  process.exit(0)
}
const printAt = argv.indexOf("--print-config")
if (printAt >= 0) {
  const kind = argv[printAt + 1] === undefined || argv[printAt + 1]!.startsWith("--") ? "claude" : argv[printAt + 1]!
  const out = printConfig(kind, argv.includes("--channels"))
  if (out === undefined) {
    process.stderr.write(`a2a-mcp: --print-config takes claude, codex or json, not "${kind}"\n`)
    process.exit(2)
  }
  process.stdout.write(`${out}\n`)
  process.exit(0)
}
if (argv.length > 0) {
  process.stderr.write(`a2a-mcp: unknown argument "${argv[0]}"\n\n${HELP}`)
  process.exit(2)
}

/** Completes when the agent is gone: stdin closed, or the parent process died (checked every second). */
const watchAgent = Effect.gen(function*() {
  const gone = yield* Deferred.make<string>()
  const done = (why: string) => Effect.runSync(Deferred.succeed(gone, why))
  process.stdin.once("end", () => done("stdin closed"))
  process.stdin.once("close", () => done("stdin closed"))
  const check = () => {
    if (process.ppid !== initialParent) done(`parent process ${initialParent} exited`)
  }
  check()
  const timer = setInterval(check, 1_000)
  timer.unref()
  yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
  return gone
})

const program = Effect.gen(function*() {
  const config = yield* McpConfig.read
  const transport = new StdioServerTransport()
  // node:http rather than the fetch-based client of BrokerClient.layer: Node's fetch (undici)
  // costs tens of milliseconds and several MiB when it loads on the first request.
  const broker = Layer.effect(BrokerClient.BrokerClient, BrokerClient.make(config.broker)).pipe(Layer.provide(NodeHttpClient.layer))
  yield* McpServer.serve(config, transport).pipe(Effect.provide(broker))
  const gone = yield* watchAgent
  yield* Effect.logDebug(`a2a-mcp ${VERSION} serving on stdio for broker ${config.broker.url}, agent pid ${initialParent}`)
  const why = yield* Deferred.await(gone)
  yield* Effect.logDebug(`shutting down: ${why}`)
}).pipe(
  Effect.scoped,
  Effect.catchTag("ConfigError", (error) =>
    Effect.sync(() => {
      process.stderr.write(`a2a-mcp: ${String(error)}\n`)
      process.exitCode = 2
    })
  ),
  Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause))),
  Effect.provide(Layer.merge(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)), Logger.minimumLogLevel(
    Option.getOrElse(Option.fromNullable(process.env.A2A_LOG_LEVEL === "debug" ? LogLevel.Debug : undefined), () => LogLevel.Info)
  )))
)

NodeRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
