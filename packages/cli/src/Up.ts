/**
 * `a2a up` (what `npm start` runs): the local stack in one process, composed from the servers'
 * layers: the broker on embedded SQLite in `~/.a2a`, a runner linked to it, and the proxy when
 * providers are configured (`~/.a2a/proxy.yaml` or `A2A_PROXY_CONFIG`). It prints the URLs,
 * where the tokens are, and how to join Claude Code to the bus; SIGINT/SIGTERM stop it all.
 */
import { KeyStore, StackRecord } from "@mks/a2a"
import { CliSpec } from "@mks/a2a/internal"
import { BrokerConfig, BrokerServer, TokenStore, VERSION as BROKER_VERSION } from "@mks/a2a-broker"
import { ProxyConfig, ProxyServer } from "@mks/a2a-proxy"
import { BrokerLink, RunnerConfig, RunnerServer } from "@mks/a2a-runner"
import { Cause, Context, Data, Duration, Effect, Exit, Fiber, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { homedir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { spec, UP_FLAGS } from "./CliSpec.js"
import { CliError, make as makeOutput, progress } from "./Output.js"

export class UpError extends Data.TaggedError("UpError")<{ readonly message: string }> {}

export interface UpOptions {
  /** Data directory (default `A2A_HOME`, else `~/.a2a`). */
  readonly home?: string | undefined
  readonly host?: string | undefined
  /** Broker port (default `A2A_BROKER_PORT`, else 4200; 0 picks a free one). */
  readonly brokerPort?: number | undefined
  /** Runner port (default `A2A_RUNNER_PORT`, else 8487). */
  readonly runnerPort?: number | undefined
  /** Proxy port (default `A2A_PROXY_PORT`, the config's `port`, else 3200). */
  readonly proxyPort?: number | undefined
  /** Proxy config file (default `A2A_PROXY_CONFIG`, else `<home>/proxy.yaml` when it exists). */
  readonly proxyConfig?: string | undefined
  /** Start the runner (default true). */
  readonly runner?: boolean | undefined
  /** Only check the configuration (see {@link check}); start nothing. */
  readonly checkOnly?: boolean | undefined
  /** Where the summary goes (default stdout). */
  readonly print?: ((line: string) => void) | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

/** What is running, once it is. */
export interface StackInfo {
  readonly home: string
  readonly broker: { readonly url: string; readonly tokenFile: string }
  readonly runner: { readonly url: string; readonly id: string; readonly keyFile: string } | undefined
  readonly proxy: { readonly url: string; readonly tokenFile: string; readonly config: string } | { readonly off: string }
  /** argv of the a2a MCP server for Claude Code. */
  readonly mcpCommand: ReadonlyArray<string>
}

export class Stack extends Context.Tag("@mks/a2a-cli/Up/Stack")<Stack, StackInfo>() {}

/** The first `code` (EADDRINUSE, EACCES, …) in an error or its causes. */
const codeOf = (e: unknown, depth = 0): string | undefined => {
  if (typeof e !== "object" || e === null || depth > 5) return undefined
  const code = (e as { code?: unknown }).code
  return typeof code === "string" ? code : codeOf((e as { cause?: unknown }).cause, depth + 1)
}

const listenFailure = (what: string, host: string, port: number, variable: string) => (e: unknown) => {
  const code = codeOf(e)
  const message =
    code === "EADDRINUSE"
      ? `${what} cannot listen on ${host}:${port}: the port is in use (another a2a up? set ${variable}, or 0 for any free port)`
      : code !== undefined
        ? `${what} cannot listen on ${host}:${port}: ${code}`
        : `${what} did not start: ${messageOf(e)}`
  return new UpError({ message })
}

/** Fail clearly when a fixed port is taken (0 always works). */
const ensureFree = (what: string, host: string, port: number, variable: string): Effect.Effect<void, UpError> =>
  port === 0
    ? Effect.void
    : Effect.async<void, UpError>((resume) => {
        const probe = createServer()
        probe.once("error", (e) => resume(Effect.fail(listenFailure(what, host, port, variable)(e))))
        probe.listen(port, host, () => probe.close(() => resume(Effect.void)))
      })

const messageOf = (e: unknown): string => {
  if (typeof e === "object" && e !== null) {
    const m = (e as { message?: unknown }).message
    const cause = (e as { cause?: { message?: unknown; code?: unknown } }).cause
    const detail = cause?.code ?? cause?.message
    if (typeof m === "string" && m !== "") return detail !== undefined && !m.includes(String(detail)) ? `${m} (${String(detail)})` : m
  }
  return String(e)
}

const portOf = (name: string, text: string | undefined, fallback: number): Effect.Effect<number, UpError> => {
  if (text === undefined || text === "") return Effect.succeed(fallback)
  const n = Number(text)
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? Effect.succeed(n) : Effect.fail(new UpError({ message: `${name} must be a port number (0-65535), got "${text}"` }))
}

/** Read a secret file, or create it (0600) with `make()`. */
const secretFile = (file: string, make: () => string) =>
  Effect.try({
    try: () => {
      if (existsSync(file)) {
        const text = readFileSync(file, "utf8").trim()
        if (text !== "") return text
      }
      mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 })
      const value = make()
      writeFileSync(file, value + "\n", { mode: 0o600 })
      return value
    },
    catch: (e) => new UpError({ message: `cannot use ${file}: ${messageOf(e)}` })
  })

/**
 * Check the configuration without starting anything (`a2a up --check-config`, which `npm start`
 * runs before it rebuilds): ports are numbers and free, the proxy config (when there is one)
 * loads, with the API key variables it names set.
 */
export const check = (options: UpOptions = {}): Effect.Effect<void, UpError> =>
  Effect.gen(function* () {
    const env = options.env ?? process.env
    const home = options.home ?? (env.A2A_HOME || join(homedir(), ".a2a"))
    const host = options.host ?? "127.0.0.1"
    const brokerPort = options.brokerPort ?? (yield* portOf("A2A_BROKER_PORT", env.A2A_BROKER_PORT, 4200))
    const runnerPort = options.runnerPort ?? (yield* portOf("A2A_RUNNER_PORT", env.A2A_RUNNER_PORT, 8487))
    yield* ensureFree("the broker", host, brokerPort, "A2A_BROKER_PORT or --port")
    if (options.runner !== false) yield* ensureFree("the runner", host, runnerPort, "A2A_RUNNER_PORT or --runner-port")
    const configFile = options.proxyConfig ?? (env.A2A_PROXY_CONFIG || undefined) ?? (existsSync(join(home, "proxy.yaml")) ? join(home, "proxy.yaml") : undefined)
    if (configFile === undefined) return
    const config = yield* ProxyConfig.load({ configPath: configFile, port: options.proxyPort, host, env: { ...env, A2A_HOME: home } }).pipe(
      Effect.mapError((e) => new UpError({ message: `proxy: ${e.message}` }))
    )
    yield* ensureFree("the proxy", config.host, config.port, "A2A_PROXY_PORT or --proxy-port")
  })

/** The stack as one layer: broker, then proxy (when configured), then the runner linked to both. */
export const layer = (options: UpOptions = {}): Layer.Layer<Stack, UpError> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const env = options.env ?? process.env
      const home = options.home ?? (env.A2A_HOME || join(homedir(), ".a2a"))
      const host = options.host ?? "127.0.0.1"
      const brokerPort = options.brokerPort ?? (yield* portOf("A2A_BROKER_PORT", env.A2A_BROKER_PORT, 4200))
      const runnerPort = options.runnerPort ?? (yield* portOf("A2A_RUNNER_PORT", env.A2A_RUNNER_PORT, 8487))
      yield* Effect.try({ try: () => mkdirSync(home, { recursive: true, mode: 0o700 }), catch: (e) => new UpError({ message: `cannot create ${home}: ${messageOf(e)}` }) })

      // The servers' own listen errors are not all typed; check fixed ports first for a clear message.
      yield* ensureFree("the broker", host, brokerPort, "A2A_BROKER_PORT or --port")
      if (options.runner !== false) yield* ensureFree("the runner", host, runnerPort, "A2A_RUNNER_PORT or --runner-port")
      const Broker = BrokerServer.layer(BrokerConfig.make({ home, host, port: brokerPort, db: join(home, "broker.db"), version: BROKER_VERSION })).pipe(
        Layer.mapError(listenFailure("the broker", host, brokerPort, "A2A_BROKER_PORT or --port"))
      )

      // The proxy runs when a config names providers; without one, the summary says how to add it.
      const configFile = options.proxyConfig ?? (env.A2A_PROXY_CONFIG || undefined) ?? (existsSync(join(home, "proxy.yaml")) ? join(home, "proxy.yaml") : undefined)
      const proxyEnv = { ...env, A2A_HOME: home }
      const proxyConfig =
        configFile === undefined
          ? undefined
          : yield* ProxyConfig.load({ configPath: configFile, port: options.proxyPort, host, env: proxyEnv }).pipe(
              Effect.mapError((e) => new UpError({ message: `proxy: ${e.message}` }))
            )
      const proxyTokenFile = ProxyConfig.adminTokenFile(proxyEnv)
      const Proxy =
        proxyConfig === undefined
          ? Layer.empty
          : Layer.unwrapEffect(
              Effect.gen(function* () {
                let config = proxyConfig
                if (config.adminToken === undefined) {
                  const found = yield* ProxyConfig.adminTokenFromFile(proxyTokenFile, config.oidc === undefined)
                  if (found !== undefined) config = { ...config, adminToken: Redacted.make(found.token) }
                }
                yield* ensureFree("the proxy", config.host, config.port, "A2A_PROXY_PORT or --proxy-port")
                return ProxyServer.layerWith(config).pipe(Layer.provideMerge(ProxyServer.layerStores(config)))
              })
            ).pipe(Layer.mapError((e) => (e instanceof UpError ? e : new UpError({ message: `the proxy did not start: ${messageOf(e)}` }))))

      const mcpCommand = RunnerConfig.defaultMcpCommand()
      const runnerDir = join(home, "runner")
      const runnerKeyFile = join(runnerDir, "runner.key")

      const Runner = Layer.unwrapEffect(
        Effect.gen(function* () {
          const broker = yield* BrokerServer.BrokerAddress
          const tokenFile = TokenStore.adminTokenPath(home)
          const info = {
            home,
            broker: { url: broker.url, tokenFile },
            runner: undefined as StackInfo["runner"],
            proxy: (proxyConfig === undefined ? { off: "no providers configured" } : { url: "", tokenFile: proxyTokenFile, config: configFile! }) as StackInfo["proxy"],
            mcpCommand
          }
          const proxy = yield* Effect.serviceOption(ProxyServer.ProxyServer)
          let proxyLink: { url: string; key: string } | undefined
          if (Option.isSome(proxy)) info.proxy = { url: proxy.value.url, tokenFile: proxyTokenFile, config: configFile! }
          if (options.runner === false) return Layer.succeed(Stack, info)
          if (Option.isSome(proxy)) {
            // The runner's claude preset needs a virtual key: kept in the runner's dir, made once.
            const keys = Option.getOrThrow(yield* Effect.serviceOption(KeyStore.KeyStore))
            const keyFile = join(runnerDir, "proxy.key")
            const known = existsSync(keyFile) ? readFileSync(keyFile, "utf8").trim() : ""
            const valid = known !== "" && (yield* keys.authenticate(known).pipe(Effect.as(true), Effect.orElseSucceed(() => false)))
            const key = valid ? known : (yield* keys.create({ name: "a2a up runner", tenant: "default" }).pipe(Effect.mapError((e) => new UpError({ message: `proxy: ${e.message}` })))).key
            if (!valid) {
              yield* Effect.try({
                try: () => {
                  mkdirSync(runnerDir, { recursive: true, mode: 0o700 })
                  writeFileSync(keyFile, key + "\n", { mode: 0o600 })
                },
                catch: (e) => new UpError({ message: `cannot write ${keyFile}: ${messageOf(e)}` })
              })
            }
            proxyLink = { url: proxy.value.url, key }
          }
          if (!existsSync(tokenFile)) {
            return yield* new UpError({ message: `no admin token in ${tokenFile} for the runner (the broker writes it on its first start; with OIDC, start a2a-runner yourself with a runner token)` })
          }
          const token = readFileSync(tokenFile, "utf8").trim()
          const apiKey = yield* secretFile(runnerKeyFile, () => `rk_${randomBytes(24).toString("base64url")}`)
          const config = RunnerConfig.make({
            id: env.A2A_RUNNER_ID || RunnerConfig.defaultId(),
            host,
            port: runnerPort,
            apiKey,
            dataDir: runnerDir,
            broker: { url: broker.url, token },
            proxy: proxyLink,
            claude: { bin: env.A2A_CLAUDE_BIN || "claude", mcpCommand, shareFrom: env.CLAUDE_CONFIG_DIR || join(homedir(), ".claude") }
          })
          return Layer.effect(
            Stack,
            Effect.gen(function* () {
              const address = yield* RunnerServer.RunnerAddress
              // Announce once the runner's link is up (bounded: a slow link is reported by the runner itself).
              const link = yield* BrokerLink.BrokerLink
              yield* Effect.promise(() => link.whenOpen()).pipe(Effect.timeout(Duration.seconds(5)), Effect.ignore)
              return { ...info, runner: { url: address.url, id: config.id, keyFile: runnerKeyFile } }
            })
          ).pipe(Layer.provide(RunnerServer.layer(config)))
        })
      )
      return Runner.pipe(
        Layer.provide(Layer.merge(Broker, Proxy)),
        // the runner's own listen failure (a port taken after the check above) as one clear line
        Layer.mapError((e): UpError => (e instanceof UpError ? e : new UpError({ message: `runner: ${e.message}` })))
      )
    })
  )

const shell = (s: string) => (/^[A-Za-z0-9_\/.:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)

/** The `.mcp.json` that joins a Claude Code session to this stack's bus. */
export const mcpJson = (info: StackInfo, env: Readonly<Record<string, string | undefined>> = process.env) => {
  const [command, ...args] = info.mcpCommand
  const defaultHome = join(homedir(), ".a2a")
  const serverEnv: Record<string, string> = { A2A_BROKER_URL: info.broker.url, A2A_CHANNELS: "1" }
  if (info.home !== defaultHome || (env.A2A_HOME !== undefined && env.A2A_HOME !== "")) serverEnv.A2A_HOME = info.home
  return { mcpServers: { a2a: { type: "stdio", command: command!, args, env: serverEnv } } }
}

/** What `stack.json` holds for this stack. */
export const record = (info: StackInfo): StackRecord.StackRecord =>
  new StackRecord.StackRecord({
    pid: process.pid,
    startedAt: new Date().toISOString(),
    broker: info.broker.url,
    dashboard: `${info.broker.url}/ui`,
    runner: info.runner?.url,
    proxy: "url" in info.proxy ? info.proxy.url : undefined
  })

/** The summary printed once everything listens. */
export const summary = (info: StackInfo): ReadonlyArray<string> => {
  const json = JSON.stringify(mcpJson(info))
  return [
    `a2a stack up (data in ${info.home})`,
    `  broker     ${info.broker.url}  admin token in ${info.broker.tokenFile}`,
    `  dashboard  ${info.broker.url}/ui`,
    info.runner === undefined ? `  runner     off` : `  runner     ${info.runner.url}  id ${info.runner.id}, API key in ${info.runner.keyFile}`,
    "off" in info.proxy
      ? `  proxy      off: ${info.proxy.off}; to add providers, copy examples/proxy-providers/proxy.yaml to ${join(info.home, "proxy.yaml")} (or set A2A_PROXY_CONFIG=FILE), export the API keys it names, and restart`
      : `  proxy      ${info.proxy.url}  admin token in ${info.proxy.tokenFile}, config ${info.proxy.config}`,
    "",
    "Join Claude Code to the bus: save this as .mcp.json in your project",
    `  ${json}`,
    "then start Claude Code with channels, so messages arrive in the conversation:",
    "  claude --dangerously-load-development-channels server:a2a",
    "or in one command from anywhere:",
    `  claude --mcp-config ${shell(json)} --dangerously-load-development-channels server:a2a`,
    "",
    "Ctrl-C stops everything."
  ]
}

/** Whether the stack came up in this process (`run` prints the "stopped" line only then). */
let ready = false

/** Run the stack until interrupted (SIGINT/SIGTERM when run by `run`); a spinner on a TTY while it starts. */
export const up = (options: UpOptions = {}): Effect.Effect<never, UpError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const context = yield* progress(makeOutput({ json: false }), "starting broker, runner and proxy…", Layer.build(layer(options)))
      const print = options.print ?? ((line: string) => void process.stdout.write(line + "\n"))
      const info = Context.get(context, Stack)
      // Where the stack runs (URLs, no secrets), for the CLI, the MCP server and `a2a-runner launch`.
      yield* Effect.acquireRelease(
        StackRecord.write(record(info), info.home).pipe(
          Effect.catchAll((e) => Effect.logWarning(`cannot record the stack in ${StackRecord.file(info.home)}: ${e.message}`))
        ),
        () => StackRecord.remove(info.home)
      )
      for (const line of summary(info)) print(line)
      ready = true
      return yield* Effect.never
    })
  )

const USAGE = "usage: a2a up [--home DIR] [--port N] [--runner-port N] [--proxy-port N] [--proxy-config FILE] [--no-runner] [--check-config]"

/** `up`'s flags, from the `a2a` spec (./CliSpec.ts); their variables are read by {@link layer} and {@link check}. */
const UP_OPTIONS = Object.fromEntries(Object.entries(CliSpec.options(spec)).filter(([flag]) => flag === "help" || UP_FLAGS.includes(flag)))

/** Options from `a2a up`'s arguments. */
export const parse = (argv: ReadonlyArray<string>): Effect.Effect<UpOptions, CliError> =>
  Effect.gen(function* () {
    const parsed = yield* Effect.try({
      try: () =>
        parseArgs({
          args: [...argv],
          allowPositionals: true,
          strict: true,
          options: UP_OPTIONS
        }),
      catch: (e) => new CliError({ message: `up: ${(e as Error).message}`, usage: true })
    })
    const values = parsed.values as { readonly [K in "home" | "port" | "runner-port" | "proxy-port" | "proxy-config"]?: string } & {
      readonly [K in "no-runner" | "check-config" | "help"]?: boolean
    }
    const positionals = parsed.positionals
    if (values.help === true) {
      process.stdout.write(USAGE + "\n")
      return yield* Effect.interrupt
    }
    if (positionals.length > 0) return yield* new CliError({ message: `up takes no arguments, got "${positionals[0]}"`, usage: true })
    const port = (flag: string, text: string | undefined) =>
      text === undefined ? Effect.succeed(undefined) : portOf(`--${flag}`, text, 0).pipe(Effect.mapError((e) => new CliError({ message: e.message, usage: true })))
    return {
      home: values.home,
      brokerPort: yield* port("port", values.port),
      runnerPort: yield* port("runner-port", values["runner-port"]),
      proxyPort: yield* port("proxy-port", values["proxy-port"]),
      proxyConfig: values["proxy-config"],
      runner: values["no-runner"] !== true,
      checkOnly: values["check-config"] === true
    } satisfies UpOptions
  })

/**
 * `a2a up ARGS` for the CLI's entry point: runs until SIGINT/SIGTERM, then stops every layer
 * (the runner stops its agents first) and resolves. A failure resolves as a `CliError` exit.
 */
export const run = async (argv: ReadonlyArray<string>): Promise<Exit.Exit<void, CliError>> => {
  const level = process.env.A2A_LOG_LEVEL === "debug" ? LogLevel.Debug : process.env.A2A_LOG_LEVEL === "info" ? LogLevel.Info : LogLevel.Warning
  const logger = Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.withConsoleError))
  const program = parse(argv).pipe(
    Effect.flatMap((options) => (options.checkOnly === true ? check(options) : up(options)).pipe(Effect.mapError((e) => new CliError({ message: e.message })))),
    Effect.provide(logger),
    Logger.withMinimumLogLevel(level)
  )
  const fiber = Effect.runFork(program)
  // `on`, not `once`: Ctrl-C under `npm start` delivers SIGINT twice (the terminal's to the group,
  // and npm's forwarded copy); the second must not kill the process in the middle of stopping.
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.on("SIGINT", stop)
  process.on("SIGTERM", stop)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  process.off("SIGINT", stop)
  process.off("SIGTERM", stop)
  if (ready && Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) process.stdout.write("a2a stack stopped\n")
  // Everything is closed; a handle some library left open must not keep the process alive.
  setTimeout(() => process.exit(), 2_000).unref()
  return Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) ? Exit.void : (exit as Exit.Exit<void, CliError>)
}
