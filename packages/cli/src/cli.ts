#!/usr/bin/env node
/**
 * `a2a`: the command line for people. Readable tables, `--json` for scripts, colours only on
 * a TTY, one clear line and a non-zero exit on any failure.
 */
import { BrokerClient } from "@mks/a2a"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Redacted } from "effect"
import { parseArgs } from "node:util"
import * as Broker from "./Broker.js"
import * as Proxy from "./Proxy.js"
import * as Up from "./Up.js"
import * as Relay from "./Relay.js"
import { CliError, make as makeOutput, type Output } from "./Output.js"
import { VERSION } from "./version.js"

const HELP = `a2a ${VERSION}: the a2a command line

Usage: a2a <command> [options]

Broker (--broker URL or A2A_BROKER_URL, default ${BrokerClient.DEFAULT_URL};
        --token T or A2A_TOKEN, default ~/.a2a/broker.token):
  peers [--team T] [--host H] [--all]        peers online (--all: offline too)
  teams                                      teams and their members
  runners                                    runners, capacity and load
  spawns                                     spawn orders and their status
  send <peer> <text|->                       message a peer by name or id (- reads stdin)
  send --team <team> <text|->                message a team
       [--thread ID] [--reply-to ID]
  tail [--quiet] [--no-ack] [--count N]      follow messages to you (and events) live
  tail --logs <agent> [--n N]                follow an agent's log (last N lines first, default 200)
  attach <agent>                             attach this terminal to an agent's (Ctrl-] detaches)
  spawn [--runner R] [--label k=v]... [--preset claude|command] [--name N] [--team T]...
        [--prompt P] [--provider P] [--model M] [--cwd D] [--env K=V]...
        [--wait running|registered|none] [--timeout S] [-- command args...]
  stop <peer|spawn-id>                       stop a spawned agent

  <agent> is a spawn id (s_...) or the name or id of a peer started by a spawn order.

Proxy (--proxy URL or A2A_PROXY_URL, default http://127.0.0.1:3200; --admin-token T or
       A2A_PROXY_ADMIN_TOKEN, default ~/.a2a/proxy.token; an OIDC admin JWT works too):
  keys create --name N [--tenant T] [--tier tier1|tier2] [--models 'glob,glob'] [--rpm N]
              [--requests-per-5h N] [--tokens-per-5h N] [--expires ISO-8601]
                                             a virtual key (printed once)
  keys list                                  keys, masked, with limits and state
  keys revoke <key-id>                       revoke a key at once
  usage [--key K]                            usage in the current 5-hour window, per key

Local stack (what npm start runs):
  up [--home DIR] [--port N] [--runner-port N] [--proxy-port N] [--proxy-config FILE] [--no-runner]
                                             broker, runner and proxy in one process; Ctrl-C stops all

Common: --as NAME (this CLI's peer name, default cli-<user>), --json, --no-color, --help, --version
`

const COMMON = {
  broker: { type: "string" },
  token: { type: "string" },
  as: { type: "string" },
  json: { type: "boolean", default: false },
  "no-color": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", default: false }
} as const

const OPTIONS = {
  ...COMMON,
  team: { type: "string", multiple: true },
  host: { type: "string" },
  all: { type: "boolean", default: false },
  thread: { type: "string" },
  "reply-to": { type: "string" },
  quiet: { type: "boolean", default: false },
  "no-ack": { type: "boolean", default: false },
  count: { type: "string" },
  logs: { type: "string" },
  n: { type: "string" },
  runner: { type: "string" },
  label: { type: "string", multiple: true },
  preset: { type: "string" },
  name: { type: "string" },
  prompt: { type: "string" },
  provider: { type: "string" },
  model: { type: "string" },
  cwd: { type: "string" },
  env: { type: "string", multiple: true },
  wait: { type: "string" },
  timeout: { type: "string" },
  proxy: { type: "string" },
  "admin-token": { type: "string" },
  tenant: { type: "string" },
  tier: { type: "string" },
  models: { type: "string" },
  rpm: { type: "string" },
  "requests-per-5h": { type: "string" },
  "tokens-per-5h": { type: "string" },
  expires: { type: "string" },
  key: { type: "string" }
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"]

const usage = (message: string) => new CliError({ message, usage: true })

const pairs = (flag: string, items: ReadonlyArray<string> | undefined): Effect.Effect<Record<string, string> | undefined, CliError> => {
  if (items === undefined || items.length === 0) return Effect.succeed(undefined)
  const out: Record<string, string> = {}
  for (const item of items) {
    const at = item.indexOf("=")
    if (at <= 0) return Effect.fail(usage(`--${flag} takes KEY=VALUE, got "${item}"`))
    out[item.slice(0, at)] = item.slice(at + 1)
  }
  return Effect.succeed(out)
}

const positiveInt = (flag: string, value: string | undefined) =>
  value === undefined
    ? Effect.succeed(undefined)
    : Number.isInteger(Number(value)) && Number(value) > 0
    ? Effect.succeed(Number(value))
    : Effect.fail(usage(`--${flag} must be a positive whole number, got "${value}"`))

const brokerLayer = (values: Values) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      if (values.broker !== undefined) process.env.A2A_BROKER_URL = values.broker
      if (values.token !== undefined) process.env.A2A_TOKEN = values.token
      const options = yield* BrokerClient.readConfig.pipe(Effect.mapError((e) => new CliError({ message: String(e).replace(/^\(?Invalid data at [^)]*\)?:?\s*/, "") })))
      return BrokerClient.layer({ url: options.url, token: Redacted.isRedacted(options.token) ? options.token : Redacted.make(options.token) })
    })
  )

const text = (words: ReadonlyArray<string>) =>
  words.length === 1 && words[0] === "-" ? Broker.readStdin : Effect.succeed(words.join(" "))

const command = (o: Output, name: string, rest: ReadonlyArray<string>, values: Values, afterDash: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    switch (name) {
      case "peers":
        return yield* Broker.peers(o, { team: values.team?.[0], host: values.host, all: values.all })
      case "teams":
        return yield* Broker.teams(o)
      case "runners":
        return yield* Broker.runners(o)
      case "spawns":
        return yield* Broker.spawns(o)
      case "send": {
        const team = values.team?.[0]
        const to = team === undefined ? rest[0] : undefined
        const words = team === undefined ? rest.slice(1) : rest
        if (team === undefined && to === undefined) return yield* usage("send needs a peer (or --team T) and a text")
        if (words.length === 0) return yield* usage("send needs a text (or - to read it from stdin)")
        const body = yield* text(words)
        if (body.length === 0) return yield* usage("the message is empty")
        return yield* Broker.send(o, { as: values.as, to, team, text: body, thread: values.thread, replyTo: values["reply-to"] })
      }
      case "tail":
        if (values.logs !== undefined) {
          if (rest.length > 0) return yield* usage("tail --logs takes one agent")
          const n = values.n === undefined ? 200 : Number(values.n)
          if (!Number.isInteger(n) || n < 0 || n > 10_000) return yield* usage(`--n must be a whole number from 0 to 10000, got "${values.n}"`)
          return yield* Relay.logs(o, values.logs, n)
        }
        return yield* Broker.tail(o, { as: values.as, noAck: values["no-ack"], quiet: values.quiet, count: yield* positiveInt("count", values.count) })
      case "spawn": {
        const wait = values.wait ?? "running"
        if (!["running", "registered", "none"].includes(wait)) return yield* usage(`--wait takes running, registered or none, not "${wait}"`)
        const [command, ...args] = afterDash
        const spec: Record<string, unknown> = {
          runner: values.runner,
          labels: yield* pairs("label", values.label),
          preset: values.preset,
          name: values.name,
          teams: values.team,
          prompt: values.prompt,
          provider: values.provider,
          model: values.model,
          cwd: values.cwd,
          env: yield* pairs("env", values.env),
          command,
          args: command === undefined ? undefined : args
        }
        for (const key of Object.keys(spec)) if (spec[key] === undefined) delete spec[key]
        return yield* Broker.spawn(o, {
          as: values.as,
          spec,
          waitFor: wait === "none" ? undefined : (wait as "running" | "registered"),
          timeoutSeconds: (yield* positiveInt("timeout", values.timeout)) ?? 60
        })
      }
      case "attach": {
        if (rest.length !== 1) return yield* usage("attach needs one agent: a spawn id, or a spawned peer's name or id")
        const code = yield* Relay.attach(o, rest[0]!)
        process.exitCode = code
        return
      }
      case "stop": {
        if (rest.length !== 1) return yield* usage("stop needs one peer name, peer id or spawn id")
        return yield* Broker.stop(o, rest[0]!)
      }
      default:
        return yield* usage(`unknown command "${name}"`)
    }
  }).pipe(Effect.provide(brokerLayer(values)))

/** `keys` and `usage` talk to the proxy's control plane; they need no broker. */
const proxyCommand = (o: Output, name: string, rest: ReadonlyArray<string>, values: Values) =>
  Effect.gen(function*() {
    const options = { url: values.proxy, adminToken: values["admin-token"] }
    if (name === "usage") {
      if (rest.length > 0) return yield* usage(`usage takes no arguments (use --key K), got "${rest[0]}"`)
      return yield* Proxy.usage(o, options, values.key)
    }
    const [sub, ...args] = rest
    switch (sub) {
      case "create": {
        if (values.name === undefined) return yield* usage("keys create needs --name")
        if (values.tier !== undefined && values.tier !== "tier1" && values.tier !== "tier2") return yield* usage(`--tier takes tier1 or tier2, not "${values.tier}"`)
        return yield* Proxy.keysCreate(o, options, {
          name: values.name,
          tenant: values.tenant,
          tier: values.tier,
          models: values.models?.split(",").map((m) => m.trim()).filter((m) => m.length > 0),
          rpm: yield* positiveInt("rpm", values.rpm),
          requestsPer5h: yield* positiveInt("requests-per-5h", values["requests-per-5h"]),
          tokensPer5h: yield* positiveInt("tokens-per-5h", values["tokens-per-5h"]),
          expiresAt: values.expires
        })
      }
      case "list":
        return yield* Proxy.keysList(o, options)
      case "revoke":
        if (args.length !== 1) return yield* usage("keys revoke needs one key id (see a2a keys list)")
        return yield* Proxy.keysRevoke(o, options, args[0]!)
      default:
        return yield* usage(`keys takes create, list or revoke${sub === undefined ? "" : `, not "${sub}"`}`)
    }
  })

const main = Effect.gen(function*() {
  const argv = process.argv.slice(2)
  const dash = argv.indexOf("--")
  const own = dash >= 0 ? argv.slice(0, dash) : argv
  const afterDash = dash >= 0 ? argv.slice(dash + 1) : []
  const parsed = yield* Effect.try({
    try: () => parseArgs({ args: own, options: OPTIONS, allowPositionals: true, strict: true }),
    catch: (e) => usage((e as Error).message)
  })
  const o = makeOutput({ json: parsed.values.json, noColor: parsed.values["no-color"] })
  const [name, ...rest] = parsed.positionals
  if (parsed.values.version) return o.out(VERSION)
  if (parsed.values.help || name === undefined || name === "help") return o.out(HELP)
  if (name === "keys" || name === "usage") return yield* proxyCommand(o, name, rest, parsed.values)
  return yield* command(o, name, rest, parsed.values, afterDash)
})

// `up` runs the local stack until SIGINT/SIGTERM (its own flags and logging, no broker client).
const exit =
  process.argv[2] === "up"
    ? await Up.run(process.argv.slice(3))
    : await Effect.runPromiseExit(main.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))))
if (Exit.isFailure(exit)) {
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    process.stderr.write(`a2a: ${failure.value.message}${failure.value.usage === true ? " (a2a --help shows the commands)" : ""}\n`)
    process.exitCode = failure.value.usage === true ? 2 : 1
  } else if (!Cause.isInterruptedOnly(exit.cause)) {
    process.stderr.write(`a2a: internal error: ${Cause.pretty(exit.cause).split("\n")[0]}\n`)
    process.exitCode = 1
  }
}
