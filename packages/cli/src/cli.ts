#!/usr/bin/env node
/**
 * `a2a`: the command line for people. Readable tables, `--json` for scripts, colours only on
 * a TTY, one clear line and a non-zero exit on any failure.
 */
import { BrokerClient } from "@mks/a2a"
import { CliSpec } from "@mks/a2a/internal"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Redacted } from "effect"
import * as Agents from "./Agents.js"
import * as Audit from "./Audit.js"
import * as Broker from "./Broker.js"
import { spec, UP_FLAGS } from "./CliSpec.js"
import { CliError, make as makeOutput, type Output } from "./Output.js"
import { VERSION } from "./version.js"

// Commands, flags, environment variables and defaults come from one spec (./CliSpec.ts), as do
// `--help` and docs/cli.md's tables. `up` parses its own flags (Up.ts, from the same spec); the
// other commands take every other flag.
const MAIN = { ...spec, settings: spec.settings.filter((s) => s.flag === undefined || !UP_FLAGS.includes(s.flag)) }

type Args = CliSpec.Parsed

/** A repeatable flag's values; `undefined` when it is not given. */
const many = (args: Args, flag: string): ReadonlyArray<string> | undefined => {
  const all = args.list(flag)
  return all.length === 0 ? undefined : all
}

// Commands that need the servers' packages, `ws` or the proxy client load them when they run,
// so `a2a --version`, `a2a peers` and friends start fast.
const Proxy = Effect.promise(() => import("./Proxy.js"))
const Relay = Effect.promise(() => import("./Relay.js"))
const Tasks = Effect.promise(() => import("./Tasks.js"))

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

/** `--broker` and `--token` (each else its variable) reach `BrokerClient.readConfig` through those variables. */
const brokerEnv = (args: Args) => {
  const url = args.get("broker")
  if (url !== undefined) process.env.A2A_BROKER_URL = url
  const token = args.get("token")
  if (token !== undefined) process.env.A2A_TOKEN = token
}

const brokerLayer = (args: Args) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      brokerEnv(args)
      const options = yield* BrokerClient.readConfig.pipe(Effect.mapError((e) => new CliError({ message: String(e).replace(/^\(?Invalid data at [^)]*\)?:?\s*/, "") })))
      return BrokerClient.layer({ url: options.url, token: Redacted.isRedacted(options.token) ? options.token : Redacted.make(options.token) })
    })
  )

const text = (words: ReadonlyArray<string>) =>
  words.length === 1 && words[0] === "-" ? Broker.readStdin : Effect.succeed(words.join(" "))

const command = (o: Output, name: string, rest: ReadonlyArray<string>, args: Args, afterDash: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    switch (name) {
      case "peers":
        return yield* Broker.peers(o, { team: args.list("team")[0], host: args.get("host"), all: args.has("all") })
      case "teams":
        return yield* Broker.teams(o)
      case "runners":
        return yield* Broker.runners(o)
      case "spawns":
        return yield* Broker.spawns(o)
      case "audit":
        return yield* Audit.audit(o, { after: yield* positiveInt("after", args.get("after")), limit: yield* positiveInt("limit", args.get("limit")) })
      case "send": {
        const team = args.list("team")[0]
        const to = team === undefined ? rest[0] : undefined
        const words = team === undefined ? rest.slice(1) : rest
        if (team === undefined && to === undefined) return yield* usage("send needs a peer (or --team T) and a text")
        if (words.length === 0) return yield* usage("send needs a text (or - to read it from stdin)")
        const body = yield* text(words)
        if (body.length === 0) return yield* usage("the message is empty")
        return yield* Broker.send(o, { as: args.get("as"), to, team, text: body, thread: args.get("thread"), replyTo: args.get("reply-to") })
      }
      case "tail": {
        const agent = args.get("logs")
        if (agent !== undefined) {
          if (rest.length > 0) return yield* usage("tail --logs takes one agent")
          const nText = args.get("n")
          const n = nText === undefined ? 200 : Number(nText)
          if (!Number.isInteger(n) || n < 0 || n > 10_000) return yield* usage(`--n must be a whole number from 0 to 10000, got "${nText}"`)
          return yield* (yield* Relay).logs(o, agent, n)
        }
        return yield* Broker.tail(o, { as: args.get("as"), noAck: args.has("no-ack"), quiet: args.has("quiet"), count: yield* positiveInt("count", args.get("count")) })
      }
      case "spawn": {
        const wait = args.get("wait") ?? "running"
        if (!["running", "registered", "none"].includes(wait)) return yield* usage(`--wait takes running, registered or none, not "${wait}"`)
        const [command, ...commandArgs] = afterDash
        const order: Record<string, unknown> = {
          runner: args.get("runner"),
          labels: yield* pairs("label", many(args, "label")),
          preset: args.get("preset"),
          name: args.get("name"),
          teams: many(args, "team"),
          prompt: args.get("prompt"),
          provider: args.get("provider"),
          model: args.get("model"),
          cwd: args.get("cwd"),
          env: yield* pairs("env", many(args, "env")),
          task: args.get("task"),
          command,
          args: command === undefined ? undefined : commandArgs
        }
        for (const key of Object.keys(order)) if (order[key] === undefined) delete order[key]
        return yield* Broker.spawn(o, {
          as: args.get("as"),
          spec: order,
          waitFor: wait === "none" ? undefined : (wait as "running" | "registered"),
          timeoutSeconds: (yield* positiveInt("timeout", args.get("timeout"))) ?? 60
        })
      }
      case "attach": {
        if (rest.length !== 1) return yield* usage("attach needs one agent: a spawn id, or a spawned peer's name or id")
        const code = yield* (yield* Relay).attach(o, rest[0]!)
        process.exitCode = code
        return
      }
      case "stop": {
        if (rest.length !== 1) return yield* usage("stop needs one peer name, peer id or spawn id")
        return yield* Broker.stop(o, rest[0]!)
      }
      case "agents":
        return yield* agentsCommand(o, rest, args)
      case "tasks":
        return yield* tasksCommand(o, rest, args)
      default:
        return yield* usage(`unknown command "${name}"`)
    }
  }).pipe(Effect.provide(brokerLayer(args)))

const STATES = ["open", "claimed", "done", "failed", "cancelled"]

/** `tasks list|create|claim|complete|fail|cancel`: the team task board (Tasks.ts). */
const tasksCommand = (o: Output, rest: ReadonlyArray<string>, args: Args) =>
  Effect.gen(function*() {
    const t = yield* Tasks
    const [sub = "list", ...operands] = rest
    const team = args.list("team")[0]
    const one = (what: string) => (operands.length === 1 ? Effect.succeed(operands[0]!) : Effect.fail(usage(`tasks ${what} needs one task id`)))
    switch (sub) {
      case "list": {
        if (operands.length > 0) return yield* usage(`tasks list takes no arguments (use --team, --state, --label), got "${operands[0]}"`)
        const state = args.get("state")
        if (state !== undefined && !STATES.includes(state)) return yield* usage(`--state takes ${STATES.join(", ")}, not "${state}"`)
        return yield* t.list(o, { team, state, labels: many(args, "label"), limit: yield* positiveInt("limit", args.get("limit")) })
      }
      case "create": {
        if (team === undefined) return yield* usage("tasks create needs --team")
        if (operands.length === 0) return yield* usage("tasks create needs a title (or - to read it from stdin)")
        const priorityText = args.get("priority")
        const priority = priorityText === undefined ? undefined : Number(priorityText)
        if (priority !== undefined && !Number.isInteger(priority)) return yield* usage(`--priority must be a whole number, got "${priorityText}"`)
        return yield* t.create(o, {
          team,
          title: yield* text(operands),
          body: args.get("body"),
          priority,
          labels: many(args, "label"),
          dependsOn: many(args, "depends-on"),
          maxAttempts: yield* positiveInt("max-attempts", args.get("max-attempts"))
        })
      }
      case "claim": {
        if (team === undefined) return yield* usage("tasks claim needs --team")
        const lease = yield* positiveInt("lease", args.get("lease"))
        return yield* t.claim(o, { as: args.get("as"), team, labels: many(args, "label"), leaseMs: lease === undefined ? undefined : lease * 1_000 })
      }
      case "complete":
        const result = args.get("result")
        return yield* t.complete(o, { as: args.get("as"), id: yield* one("complete"), result: result === "-" ? yield* Broker.readStdin : result })
      case "fail":
        return yield* t.fail(o, { as: args.get("as"), id: yield* one("fail"), reason: args.get("reason") })
      case "cancel":
        return yield* t.cancel(o, { id: yield* one("cancel"), reason: args.get("reason") })
      default:
        return yield* usage(`tasks takes list, create, claim, complete, fail or cancel, not "${sub}"`)
    }
  })

/** `agents add|list|remove`: remote A2A agents on the bus (Agents.ts). */
const agentsCommand = (o: Output, rest: ReadonlyArray<string>, args: Args) =>
  Effect.gen(function*() {
    brokerEnv(args)
    const [sub, ...operands] = rest
    switch (sub) {
      case "add": {
        if (operands.length !== 2) return yield* usage("agents add needs a name and the agent card's URL")
        const fromStdin = args.get("credential")
        const variable = args.get("credential-env")
        if (fromStdin !== undefined && fromStdin !== "-") return yield* usage("--credential takes only - (read it from stdin); use --credential-env VAR to read it from the environment")
        const fromEnv = variable === undefined ? undefined : process.env[variable]
        if (variable !== undefined && (fromEnv === undefined || fromEnv === "")) return yield* usage(`--credential-env: ${variable} is not set`)
        const credential = fromStdin === "-" ? (yield* Broker.readStdin).trim() : fromEnv
        return yield* Agents.add(o, { name: operands[0]!, cardUrl: operands[1]!, credential })
      }
      case "list":
        return yield* Agents.list(o)
      case "remove":
        if (operands.length !== 1) return yield* usage("agents remove needs one name")
        return yield* Agents.remove(o, operands[0]!)
      default:
        return yield* usage(`agents takes add, list or remove${sub === undefined ? "" : `, not "${sub}"`}`)
    }
  })

/** `keys` and `usage` talk to the proxy's control plane; they need no broker. */
const proxyCommand = (o: Output, name: string, rest: ReadonlyArray<string>, args: Args) =>
  Effect.gen(function*() {
    const options = { url: args.get("proxy"), adminToken: args.get("admin-token") }
    if (name === "usage") {
      if (rest.length > 0) return yield* usage(`usage takes no arguments (use --key K), got "${rest[0]}"`)
      return yield* (yield* Proxy).usage(o, options, args.get("key"))
    }
    const [sub, ...operands] = rest
    switch (sub) {
      case "create": {
        const keyName = args.get("name")
        const tier = args.get("tier")
        if (keyName === undefined) return yield* usage("keys create needs --name")
        if (tier !== undefined && tier !== "tier1" && tier !== "tier2") return yield* usage(`--tier takes tier1 or tier2, not "${tier}"`)
        return yield* (yield* Proxy).keysCreate(o, options, {
          name: keyName,
          tenant: args.get("tenant"),
          tier,
          models: many(args, "models")?.flatMap((m) => m.split(",")).map((m) => m.trim()).filter((m) => m.length > 0),
          rpm: yield* positiveInt("rpm", args.get("rpm")),
          requestsPer5h: yield* positiveInt("requests-per-5h", args.get("requests-per-5h")),
          tokensPer5h: yield* positiveInt("tokens-per-5h", args.get("tokens-per-5h")),
          expiresAt: args.get("expires")
        })
      }
      case "list":
        return yield* (yield* Proxy).keysList(o, options)
      case "revoke":
        if (operands.length !== 1) return yield* usage("keys revoke needs one key id (see a2a keys list)")
        return yield* (yield* Proxy).keysRevoke(o, options, operands[0]!)
      default:
        return yield* usage(`keys takes create, list or revoke${sub === undefined ? "" : `, not "${sub}"`}`)
    }
  })

const main = Effect.gen(function*() {
  const argv = process.argv.slice(2)
  const dash = argv.indexOf("--")
  const own = dash >= 0 ? argv.slice(0, dash) : argv
  const afterDash = dash >= 0 ? argv.slice(dash + 1) : []
  const args = yield* Effect.try({
    try: () => CliSpec.parse(MAIN, own),
    catch: (e) => usage((e as Error).message)
  })
  const o = makeOutput({ json: args.has("json"), noColor: args.has("no-color") })
  const [name, ...rest] = args.positionals
  if (args.has("version")) return o.out(VERSION)
  if (args.has("help") || name === undefined || name === "help") return void process.stdout.write(CliSpec.help(spec, VERSION))
  if (name === "keys" || name === "usage") return yield* proxyCommand(o, name, rest, args)
  return yield* command(o, name, rest, args, afterDash)
})

// `up` runs the local stack until SIGINT/SIGTERM (its own flags and logging, no broker client).
const exit =
  process.argv[2] === "up"
    ? await (await import("./Up.js")).run(process.argv.slice(3))
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
