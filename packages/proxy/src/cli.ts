#!/usr/bin/env node
/**
 * `a2a-proxy [serve]` serves the proxy; `a2a-proxy keys create|list|revoke` and `a2a-proxy usage`
 * talk to a running proxy's control plane over HTTP with the admin token (the proxy stays the
 * only writer of its key file). Its commands and settings are in ./CliSpec.ts.
 */
// First: GC flags take effect only for the heap growth that follows them.
import { gcTuning } from "./internal/gcTuning.js"
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { PostgresUrl, ProxyApi } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { CliSpec } from "@mks/a2a/internal"
import { Data, Effect, Logger, Redacted } from "effect"
import { spec } from "./CliSpec.js"
import * as KeyTables from "./KeyTables.js"
import * as ProxyConfig from "./ProxyConfig.js"
import * as ProxyServer from "./ProxyServer.js"

class CliError extends Data.TaggedError("CliError")<{ readonly message: string }> {}

/** A command-line mistake: one line on stderr, exit code 2 (before anything runs). */
const fail = (message: string): never => CliSpec.refuse(spec, message)

// Flags, environment variables and defaults come from one spec (./CliSpec.ts), as do `--help` and docs/proxy.md's tables.
const args = CliSpec.start(spec, ProxyServer.VERSION)

/** Each command, the flags it takes (one parser for all: the others are refused here) and how many positionals follow it. */
const COMMANDS: Record<string, { readonly flags: ReadonlyArray<string>; readonly operands: number }> = {
  serve: { flags: ["port", "host", "config"], operands: 0 },
  "keys create": { flags: ["url", "name", "tenant", "tier", "models", "rpm", "requests-per-5h", "tokens-per-5h", "expires", "json"], operands: 0 },
  "keys list": { flags: ["url", "json"], operands: 0 },
  "keys revoke": { flags: ["url"], operands: 1 },
  usage: { flags: ["url", "key", "json"], operands: 0 }
}

const command = (() => {
  const [first, second] = args.positionals
  if (first === undefined || first === "serve") return "serve"
  if (first === "usage") return "usage"
  if (first === "keys") {
    const name = `keys ${second}`
    return name in COMMANDS ? name : fail(`unknown keys command ${second ?? "(none)"} (create, list or revoke)`)
  }
  return fail(`unknown command ${first}`)
})()
{
  const { flags, operands } = COMMANDS[command]!
  const given = Object.keys(args.values).filter((flag) => args.values[flag] !== undefined && !flags.includes(flag))
  if (given.length > 0) fail(`${command} does not take --${given[0]}`)
  const words = command === "serve" ? (args.positionals[0] === "serve" ? 1 : 0) : command.split(" ").length
  const extra = args.positionals.slice(words + operands)
  if (extra.length > 0) fail(`Unexpected argument '${extra[0]}'`)
}

const int = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const n = Number(value)
  return Number.isInteger(n) && n >= 0 ? n : fail(`--${name} must be a whole number, got ${value}`)
}

const stdout = (line: string) => Effect.sync(() => void process.stdout.write(line + "\n"))
const stderr = (line: string) => Effect.sync(() => void process.stderr.write(line + "\n"))

const serve = (port: number | undefined) =>
  Effect.gen(function* () {
    let config = yield* ProxyConfig.load({ configPath: args.get("config"), port, host: args.get("host") })
    if (config.adminToken === undefined) {
      const file = ProxyConfig.adminTokenFile()
      // With OIDC admins configured no token file is created (as the broker does); an existing one still works.
      const found = yield* ProxyConfig.adminTokenFromFile(file, config.oidc === undefined)
      if (found !== undefined) {
        config = { ...config, adminToken: Redacted.make(found.token) }
        if (found.created) yield* stderr(`a2a-proxy: created an admin token in ${file} (mode 600)`)
      }
    }
    return yield* Effect.gen(function* () {
      const server = yield* ProxyServer.ProxyServer
      yield* stdout(`a2a-proxy listening on ${server.url}`)
      yield* stderr(
        `a2a-proxy: providers ${config.providers.map((p) => `${p.name} (${p.baseUrl.origin})`).join(", ")}; ${config.store !== undefined ? `keys and usage in PostgreSQL ${PostgresUrl.redact(config.store)}` : `keys ${config.keyFile ?? "in memory"}; usage ${config.usageFile ?? "in memory"}`}; gc ${gcTuning}`
      )
      return yield* Effect.never
    }).pipe(Effect.provide(ProxyServer.layer(config)))
  })

const controlClient = Effect.gen(function* () {
  // `--url`, else A2A_PROXY_URL, else the local proxy on A2A_PROXY_PORT (the control commands take no --port).
  const url = args.get("url") ?? `http://127.0.0.1:${args.get("port") ?? ProxyConfig.DEFAULT_PORT}`
  let token = args.get("A2A_PROXY_ADMIN_TOKEN")
  if (token === undefined) {
    const found = yield* ProxyConfig.adminTokenFromFile(ProxyConfig.adminTokenFile(), false)
    token = found?.token
  }
  if (token === undefined) {
    return yield* new CliError({ message: `no admin token: set A2A_PROXY_ADMIN_TOKEN or start the proxy once to create ${ProxyConfig.adminTokenFile()}` })
  }
  const bearer = token
  return yield* HttpApiClient.make(ProxyApi.ProxyControlApi, {
    baseUrl: url,
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(bearer))
  })
}).pipe(Effect.provide(FetchHttpClient.layer))

const pad = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")
}

/** `keys create`'s request, checked before anything runs. */
const createPayload = () => {
  const name = args.get("name") ?? fail("keys create needs --name")
  const tenant = args.get("tenant")
  const tier = args.get("tier")
  if (tier !== undefined && tier !== "tier1" && tier !== "tier2") fail("--tier must be tier1 or tier2")
  const rpm = int("rpm", args.get("rpm"))
  const per5h = int("requests-per-5h", args.get("requests-per-5h"))
  const tokens = int("tokens-per-5h", args.get("tokens-per-5h"))
  const expires = args.get("expires")
  const expiresAt = expires === undefined ? undefined : new Date(expires)
  if (expiresAt !== undefined && Number.isNaN(expiresAt.getTime())) fail(`--expires must be an ISO-8601 date, got ${expires}`)
  return {
    name,
    ...(tenant === undefined ? {} : { tenant }),
    ...(tier === undefined ? {} : { tier: tier as "tier1" | "tier2" }),
    ...(args.values.models === undefined ? {} : { models: args.list("models").flatMap((m) => m.split(",")).map((m) => m.trim()).filter((m) => m !== "") }),
    limits: {
      ...(rpm === undefined ? {} : { requestsPerMinute: rpm }),
      ...(per5h === undefined ? {} : { requestsPer5h: per5h }),
      ...(tokens === undefined ? {} : { tokensPer5h: tokens })
    },
    ...(expiresAt === undefined ? {} : { expiresAt: expiresAt.toISOString() })
  }
}

const keysCreate = (payload: ReturnType<typeof createPayload>) =>
  Effect.gen(function* () {
    const client = yield* controlClient
    const created = yield* client.keys.create({ payload })
    if (args.has("json")) return yield* stdout(JSON.stringify(created, null, 2))
    yield* stderr(`created ${created.record.id} (${created.record.name}, tenant ${created.record.tenant}); the key is shown only now:`)
    return yield* stdout(created.key)
  })

const keysList = Effect.gen(function* () {
  const client = yield* controlClient
  const { keys } = yield* client.keys.list()
  if (args.has("json")) return yield* stdout(JSON.stringify(keys, null, 2))
  const rows = [KeyTables.KEY_HEADER, ...keys.map((k) => KeyTables.keyRow(k))]
  return yield* stdout(pad(rows))
})

const keysRevoke = (id: string) =>
  Effect.gen(function* () {
    const client = yield* controlClient
    yield* client.keys.revoke({ path: { id: id as Ids.KeyId } })
    return yield* stdout(`revoked ${id}`)
  })

const usage = Effect.gen(function* () {
  const key = args.get("key")
  const client = yield* controlClient
  const { usage } = yield* client.keys.usage({ urlParams: key === undefined ? {} : { key: key as Ids.KeyId } })
  if (args.has("json")) return yield* stdout(JSON.stringify(usage, null, 2))
  const rows = [KeyTables.USAGE_HEADER, ...usage.map(KeyTables.usageRow)]
  return yield* stdout(pad(rows))
})

/** The command's program; its arguments are checked here, before anything runs (exit code 2). */
const main = ((): Effect.Effect<void, unknown> => {
  switch (command) {
    case "keys create":
      return keysCreate(createPayload())
    case "keys list":
      return keysList
    case "keys revoke":
      return keysRevoke(args.positionals[2] ?? fail("keys revoke needs a key id (see keys list)"))
    case "usage":
      return usage
    default:
      // The flag alone: A2A_PROXY_PORT is read under it by ProxyConfig (with its own check), over the config's `port`.
      return serve(int("port", typeof args.values.port === "string" ? args.values.port : undefined))
  }
})()

const message = (error: unknown): string => {
  if (error !== null && typeof error === "object") {
    const e = error as { _tag?: string; message?: string }
    if (e._tag === "RequestError" || e._tag === "ResponseError") return `cannot reach the proxy: ${e.message ?? String(error)}`
    if (typeof e.message === "string" && e.message !== "") return e._tag !== undefined && !e._tag.startsWith("Proxy") && e._tag !== "CliError" ? `${e._tag}: ${e.message}` : e.message
  }
  return String(error)
}

main.pipe(
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`a2a-proxy: ${message(error)}\n`)
      process.exitCode = 1
    })
  ),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true })
)
