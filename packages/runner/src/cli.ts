#!/usr/bin/env node
/** `a2a-runner`: serve the local API (and the broker link), or `launch claude`. Its commands and settings are in ./CliSpec.ts. */
import { NodeRuntime } from "@effect/platform-node"
import { RunnerPolicy, ServerLimits } from "@mks/a2a"
import { CliSpec } from "@mks/a2a/internal"
import { Effect, Either, Layer, Logger, LogLevel, Schema } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"
import { userInfo } from "node:os"
import * as ClaudeSession from "./ClaudeSession.js"
import { spec } from "./CliSpec.js"
import * as Preset from "./Preset.js"
import * as RunnerConfig from "./RunnerConfig.js"
import * as RunnerServer from "./RunnerServer.js"
import { VERSION } from "./version.js"

const fail = (message: string): never => CliSpec.refuse(spec, message)

// Flags, environment variables and defaults come from one spec (./CliSpec.ts), as do `--help` and docs/runner.md's table.
const args = CliSpec.start(spec, VERSION)
const values = args.values as { readonly [K in "provider" | "model" | "name"]?: string } & { readonly team?: ReadonlyArray<string>; readonly channels?: boolean }
const positionals = args.positionals

const home = RunnerConfig.defaultHome()
const dataDir = args.get("data-dir") ?? join(home, "runner")

const splitList = (texts: ReadonlyArray<string> | string | undefined) =>
  (Array.isArray(texts) ? texts : texts === undefined ? [] : [texts]).flatMap((t: string) => t.split(/[\s,]+/)).filter((s: string) => s.length > 0)

const parseLabels = (texts: ReadonlyArray<string> | string | undefined): Record<string, string> =>
  Object.fromEntries(
    splitList(texts).map((pair) => {
      const i = pair.indexOf("=")
      if (i <= 0) return fail(`bad label ${pair}: expected key=value`)
      return [pair.slice(0, i), pair.slice(i + 1)]
    })
  )

const intOf = (text: string | undefined, name: string, fallback: number, min: number, max: number) => {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < min || n > max) return fail(`invalid ${name}: ${text}`)
  return n
}

/** The broker token: flag, env, then the local broker's admin token file. */
const brokerToken = (): string | undefined => {
  const given = args.get("token")
  if (given !== undefined) return given
  const file = join(home, "broker.token")
  return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined
}

/** The API key: flag, env, else `<data-dir>/runner.key` (created 0600 on first start). */
const apiKey = (): string => {
  const given = args.get("api-key")
  if (given !== undefined) {
    if (given.length < 8) fail("the API key must be at least 8 characters")
    return given
  }
  const file = join(dataDir, "runner.key")
  if (existsSync(file)) return readFileSync(file, "utf8").trim()
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const key = `rk_${randomBytes(24).toString("base64url")}`
  writeFileSync(file, key + "\n", { mode: 0o600, flag: "wx" })
  process.stderr.write(`a2a-runner: created an API key in ${file}\n`)
  return key
}

const claudeSettings = (): RunnerConfig.RunnerConfigShape["claude"] => {
  const mcpCommand = args.get("mcp-command")
  return {
    bin: args.get("claude-bin") ?? "claude",
    mcpCommand: mcpCommand !== undefined ? splitList(mcpCommand) : RunnerConfig.defaultMcpCommand(),
    shareFrom: args.get("CLAUDE_CONFIG_DIR") ?? join(userInfo().homedir, ".claude")
  }
}

const proxySettings = () => {
  const url = args.get("proxy")
  const key = args.get("proxy-key")
  if (url === undefined) return undefined
  if (key === undefined) return fail("--proxy needs --proxy-key (a virtual key sk-mks-…)")
  return { url, key }
}

const brokerUrl = args.get("broker")

/** The policy file (`--policy`, `A2A_RUNNER_POLICY`): a JSON `RunnerPolicy`; a bad one stops the runner at start. */
const policySettings = () => {
  const file = args.get("policy")
  if (file === undefined) return undefined
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    return fail(`cannot read the policy file ${file}: ${(e as Error).message}`)
  }
  const decoded = Schema.decodeUnknownEither(Schema.parseJson(RunnerPolicy.RunnerPolicy))(text)
  return Either.isRight(decoded) ? decoded.right : fail(`bad policy file ${file}: ${decoded.left.message}`)
}

const logger = Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.withConsoleError))

if (positionals[0] === "launch") {
  if (positionals[1] !== "claude") fail("launch knows only `claude`")
  // Everything after `--` goes to claude as is.
  const dashDash = process.argv.indexOf("--")
  const extra = dashDash >= 0 ? process.argv.slice(dashDash + 1) : positionals.slice(2)
  const cwd = process.cwd()
  const name = values.name ?? `${userInfo().username}-${basename(cwd)}`.replace(/[^A-Za-z0-9_.@-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64)
  const claude = claudeSettings()
  const bin = Preset.resolveCommand(claude.bin, cwd, process.env.PATH) ?? fail(`Claude Code not found: ${claude.bin} (install it, or pass --claude-bin)`)
  const launch = ClaudeSession.prepare({
    bin,
    cwd,
    configDir: join(dataDir, "claude", `launch-${name}`),
    baseEnv: Preset.baseEnv(),
    proxy: proxySettings(),
    mcp: { command: claude.mcpCommand, brokerUrl: brokerUrl, token: brokerToken(), peerName: name, teams: splitList(values.team) },
    provider: values.provider,
    model: values.model,
    channels: values.channels ?? false,
    extraArgs: extra
  })
  // In the current terminal: the person answers what shows (e.g. the channels confirmation).
  const child = spawn(launch.file, [...launch.args], { cwd: launch.cwd, env: launch.env, stdio: "inherit" })
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => child.kill(signal))
  child.on("error", (e) => fail(`could not start ${launch.file}: ${e.message}`))
  child.on("exit", (code, signal) => process.exit(code ?? (signal !== null ? 128 : 1)))
} else if (positionals.length > 0) {
  fail(`unknown command ${positionals[0]}`)
} else {
  const token = brokerUrl === undefined ? undefined : (brokerToken() ?? fail(`--broker needs a token (--token, A2A_TOKEN or ${join(home, "broker.token")})`))
  const config = RunnerConfig.make({
    id: args.get("id") ?? RunnerConfig.defaultId(),
    host: args.get("host") ?? "127.0.0.1",
    port: intOf(args.get("port"), "port", 8487, 0, 65535),
    apiKey: apiKey(),
    dataDir,
    labels: parseLabels(args.list("labels")),
    capacity: intOf(args.get("capacity"), "capacity", 8, 0, 10_000),
    // A2A_RUNNER_HEADERS_TIMEOUT_MS, _REQUEST_TIMEOUT_MS, _KEEP_ALIVE_TIMEOUT_MS, _MAX_PENDING_CONNECTIONS, _LISTEN_BACKLOG.
    limits: (() => {
      try {
        return ServerLimits.fromEnv("A2A_RUNNER")
      } catch (e) {
        return fail(`invalid connection limits: ${String(e)}`)
      }
    })(),
    broker: brokerUrl === undefined ? undefined : { url: brokerUrl, token: token! },
    proxy: proxySettings(),
    claude: claudeSettings(),
    policy: policySettings(),
    version: VERSION
  })
  const main = Layer.launch(
    Layer.effectDiscard(
      Effect.gen(function* () {
        const { url } = yield* RunnerServer.RunnerAddress
        // One line on stdout with the address, for scripts and `--port 0`.
        process.stdout.write(`a2a-runner listening on ${url}\n`)
      })
    ).pipe(Layer.provide(RunnerServer.layer(config)))
  )
  NodeRuntime.runMain(
    main.pipe(
      Effect.catchTag("ListenError", (error) =>
        Effect.sync(() => {
          process.stderr.write(`a2a-runner: ${error.message}\n`)
          process.exitCode = 1
        })
      ),
      Effect.provide(logger),
      Logger.withMinimumLogLevel(LogLevel.Info)
    ),
    { disablePrettyLogger: true }
  )
}
