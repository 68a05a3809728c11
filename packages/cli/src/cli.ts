#!/usr/bin/env node
/**
 * `a2a`: the command line for people. Readable tables, `--json` for scripts, colours only on
 * a TTY, one clear line and a non-zero exit on any failure.
 */
import { BrokerClient } from "@mks/a2a"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Redacted } from "effect"
import { parseArgs } from "node:util"
import * as Agents from "./Agents.js"
import * as Audit from "./Audit.js"
import * as Broker from "./Broker.js"
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
        [--prompt P] [--provider P] [--model M] [--cwd D] [--env K=V]... [--task ID]
        [--wait running|registered|none] [--timeout S] [-- command args...]
  stop <peer|spawn-id>                       stop a spawned agent
  audit [--after SEQ] [--limit N]            who spawned, stopped, attached what, when, with what result
  agents add <name> <card-url> [--credential-env VAR | --credential -]
                                             bridge a remote A2A agent onto the bus as peer <name>
  agents list | agents remove <name>         the bridged A2A agents (docs/a2a.md)
  tasks [list] [--team T] [--state S] [--label L]... [--limit N]
                                             a team's task board (docs/tasks.md)
  tasks create --team T <title|-> [--body B] [--priority N] [--label L]...
               [--depends-on ID]... [--max-attempts N]
                                             put a task on the board
  tasks claim --team T [--label L]... [--lease S]
                                             claim the next task as this CLI's peer (joins the team)
  tasks complete <id> [--result R|-] | tasks fail <id> [--reason R] | tasks cancel <id> [--reason R]

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
  up --check-config                          check ports and the proxy config, start nothing

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
  after: { type: "string" },
  limit: { type: "string" },
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
  key: { type: "string" },
  "credential-env": { type: "string" },
  credential: { type: "string" },
  state: { type: "string" },
  body: { type: "string" },
  priority: { type: "string" },
  "depends-on": { type: "string", multiple: true },
  "max-attempts": { type: "string" },
  result: { type: "string" },
  reason: { type: "string" },
  lease: { type: "string" },
  task: { type: "string" }
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"]

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
      case "audit":
        return yield* Audit.audit(o, { after: yield* positiveInt("after", values.after), limit: yield* positiveInt("limit", values.limit) })
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
          return yield* (yield* Relay).logs(o, values.logs, n)
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
          task: values.task,
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
        const code = yield* (yield* Relay).attach(o, rest[0]!)
        process.exitCode = code
        return
      }
      case "stop": {
        if (rest.length !== 1) return yield* usage("stop needs one peer name, peer id or spawn id")
        return yield* Broker.stop(o, rest[0]!)
      }
      case "agents":
        return yield* agentsCommand(o, rest, values)
      case "tasks":
        return yield* tasksCommand(o, rest, values)
      default:
        return yield* usage(`unknown command "${name}"`)
    }
  }).pipe(Effect.provide(brokerLayer(values)))

const STATES = ["open", "claimed", "done", "failed", "cancelled"]

/** `tasks list|create|claim|complete|fail|cancel`: the team task board (Tasks.ts). */
const tasksCommand = (o: Output, rest: ReadonlyArray<string>, values: Values) =>
  Effect.gen(function*() {
    const t = yield* Tasks
    const [sub = "list", ...args] = rest
    const team = values.team?.[0]
    const one = (what: string) => (args.length === 1 ? Effect.succeed(args[0]!) : Effect.fail(usage(`tasks ${what} needs one task id`)))
    switch (sub) {
      case "list": {
        if (args.length > 0) return yield* usage(`tasks list takes no arguments (use --team, --state, --label), got "${args[0]}"`)
        if (values.state !== undefined && !STATES.includes(values.state)) return yield* usage(`--state takes ${STATES.join(", ")}, not "${values.state}"`)
        return yield* t.list(o, { team, state: values.state, labels: values.label, limit: yield* positiveInt("limit", values.limit) })
      }
      case "create": {
        if (team === undefined) return yield* usage("tasks create needs --team")
        if (args.length === 0) return yield* usage("tasks create needs a title (or - to read it from stdin)")
        const priority = values.priority === undefined ? undefined : Number(values.priority)
        if (priority !== undefined && !Number.isInteger(priority)) return yield* usage(`--priority must be a whole number, got "${values.priority}"`)
        return yield* t.create(o, {
          team,
          title: yield* text(args),
          body: values.body,
          priority,
          labels: values.label,
          dependsOn: values["depends-on"],
          maxAttempts: yield* positiveInt("max-attempts", values["max-attempts"])
        })
      }
      case "claim": {
        if (team === undefined) return yield* usage("tasks claim needs --team")
        const lease = yield* positiveInt("lease", values.lease)
        return yield* t.claim(o, { as: values.as, team, labels: values.label, leaseMs: lease === undefined ? undefined : lease * 1_000 })
      }
      case "complete":
        return yield* t.complete(o, { as: values.as, id: yield* one("complete"), result: values.result === "-" ? yield* Broker.readStdin : values.result })
      case "fail":
        return yield* t.fail(o, { as: values.as, id: yield* one("fail"), reason: values.reason })
      case "cancel":
        return yield* t.cancel(o, { id: yield* one("cancel"), reason: values.reason })
      default:
        return yield* usage(`tasks takes list, create, claim, complete, fail or cancel, not "${sub}"`)
    }
  })

/** `agents add|list|remove`: remote A2A agents on the bus (Agents.ts). */
const agentsCommand = (o: Output, rest: ReadonlyArray<string>, values: Values) =>
  Effect.gen(function*() {
    if (values.broker !== undefined) process.env.A2A_BROKER_URL = values.broker
    if (values.token !== undefined) process.env.A2A_TOKEN = values.token
    const [sub, ...args] = rest
    switch (sub) {
      case "add": {
        if (args.length !== 2) return yield* usage("agents add needs a name and the agent card's URL")
        if (values.credential !== undefined && values.credential !== "-") return yield* usage("--credential takes only - (read it from stdin); use --credential-env VAR to read it from the environment")
        const fromEnv = values["credential-env"] === undefined ? undefined : process.env[values["credential-env"]]
        if (values["credential-env"] !== undefined && (fromEnv === undefined || fromEnv === "")) return yield* usage(`--credential-env: ${values["credential-env"]} is not set`)
        const credential = values.credential === "-" ? (yield* Broker.readStdin).trim() : fromEnv
        return yield* Agents.add(o, { name: args[0]!, cardUrl: args[1]!, credential })
      }
      case "list":
        return yield* Agents.list(o)
      case "remove":
        if (args.length !== 1) return yield* usage("agents remove needs one name")
        return yield* Agents.remove(o, args[0]!)
      default:
        return yield* usage(`agents takes add, list or remove${sub === undefined ? "" : `, not "${sub}"`}`)
    }
  })

/** `keys` and `usage` talk to the proxy's control plane; they need no broker. */
const proxyCommand = (o: Output, name: string, rest: ReadonlyArray<string>, values: Values) =>
  Effect.gen(function*() {
    const options = { url: values.proxy, adminToken: values["admin-token"] }
    if (name === "usage") {
      if (rest.length > 0) return yield* usage(`usage takes no arguments (use --key K), got "${rest[0]}"`)
      return yield* (yield* Proxy).usage(o, options, values.key)
    }
    const [sub, ...args] = rest
    switch (sub) {
      case "create": {
        if (values.name === undefined) return yield* usage("keys create needs --name")
        if (values.tier !== undefined && values.tier !== "tier1" && values.tier !== "tier2") return yield* usage(`--tier takes tier1 or tier2, not "${values.tier}"`)
        return yield* (yield* Proxy).keysCreate(o, options, {
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
        return yield* (yield* Proxy).keysList(o, options)
      case "revoke":
        if (args.length !== 1) return yield* usage("keys revoke needs one key id (see a2a keys list)")
        return yield* (yield* Proxy).keysRevoke(o, options, args[0]!)
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
