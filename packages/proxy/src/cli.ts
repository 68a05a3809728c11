#!/usr/bin/env node
/**
 * `a2a-proxy [--port 3200] [--host 127.0.0.1] [--config FILE]` serves the proxy;
 * `a2a-proxy keys create|list|revoke` and `a2a-proxy usage` talk to a running proxy's control
 * plane over HTTP with the admin token (the proxy stays the only writer of its key file).
 */
// First: GC flags take effect only for the heap growth that follows them.
import { gcTuning } from "./internal/gcTuning.js"
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { PostgresUrl, ProxyApi } from "@mks/a2a"
import type { Ids } from "@mks/a2a"
import { Data, Effect, Logger, Redacted } from "effect"
import { parseArgs } from "node:util"
import * as KeyTables from "./KeyTables.js"
import * as ProxyConfig from "./ProxyConfig.js"
import * as ProxyServer from "./ProxyServer.js"

class CliError extends Data.TaggedError("CliError")<{ readonly message: string }> {}

const USAGE = `usage:
  a2a-proxy [--port N] [--host H] [--config FILE]     serve (env A2A_PROXY_PORT, A2A_PROXY_CONFIG, A2A_PROXY_ADMIN_TOKEN,
                                                      A2A_PROXY_OIDC_ISSUER, A2A_PROXY_OIDC_AUDIENCE, ...)
  a2a-proxy keys create --name NAME [--tenant T] [--tier tier1|tier2] [--models 'glob,glob']
                        [--rpm N] [--requests-per-5h N] [--tokens-per-5h N] [--expires ISO-8601] [--json]
  a2a-proxy keys list [--json]
  a2a-proxy keys revoke KEY_ID
  a2a-proxy usage [--key KEY_ID] [--json]
keys/usage accept --url URL (else env A2A_PROXY_URL, else http://127.0.0.1:$A2A_PROXY_PORT or 3200)
with the admin token from A2A_PROXY_ADMIN_TOKEN or $A2A_HOME/proxy.token (~/.a2a/proxy.token).`

const stdout = (line: string) => Effect.sync(() => void process.stdout.write(line + "\n"))
const stderr = (line: string) => Effect.sync(() => void process.stderr.write(line + "\n"))

const int = (flag: string, value: string | undefined): Effect.Effect<number | undefined, CliError> => {
  if (value === undefined) return Effect.succeed(undefined)
  const n = Number(value)
  return Number.isInteger(n) && n >= 0 ? Effect.succeed(n) : Effect.fail(new CliError({ message: `--${flag} must be a whole number, got ${value}` }))
}

const serve = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { values } = yield* Effect.try({
      try: () => parseArgs({ args: [...args], options: { port: { type: "string" }, host: { type: "string" }, config: { type: "string" } } }),
      catch: (e) => new CliError({ message: `${(e as Error).message}\n${USAGE}` })
    })
    const port = yield* int("port", values.port)
    let config = yield* ProxyConfig.load({ configPath: values.config, port, host: values.host })
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

/** `--url` of the control commands, taken out of argv before each command parses its own flags. */
let urlFlag: string | undefined

const controlClient = Effect.gen(function* () {
  const env = process.env
  const url = urlFlag ?? env.A2A_PROXY_URL ?? `http://127.0.0.1:${env.A2A_PROXY_PORT ?? ProxyConfig.DEFAULT_PORT}`
  let token = env.A2A_PROXY_ADMIN_TOKEN
  if (token === undefined || token === "") {
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


const keys = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const [command, ...rest] = args
    const client = yield* controlClient
    switch (command) {
      case "create": {
        const { values } = parseArgs({
          args: rest,
          options: {
            name: { type: "string" },
            tenant: { type: "string" },
            tier: { type: "string" },
            models: { type: "string", multiple: true },
            rpm: { type: "string" },
            "requests-per-5h": { type: "string" },
            "tokens-per-5h": { type: "string" },
            expires: { type: "string" },
            json: { type: "boolean" }
          }
        })
        if (values.name === undefined) return yield* new CliError({ message: "keys create needs --name" })
        if (values.tier !== undefined && values.tier !== "tier1" && values.tier !== "tier2") {
          return yield* new CliError({ message: "--tier must be tier1 or tier2" })
        }
        const rpm = yield* int("rpm", values.rpm)
        const per5h = yield* int("requests-per-5h", values["requests-per-5h"])
        const tokens = yield* int("tokens-per-5h", values["tokens-per-5h"])
        const created = yield* client.keys.create({
          payload: {
            name: values.name,
            ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
            ...(values.tier === undefined ? {} : { tier: values.tier }),
            ...(values.models === undefined ? {} : { models: values.models.flatMap((m) => m.split(",")).map((m) => m.trim()).filter((m) => m !== "") }),
            limits: {
              ...(rpm === undefined ? {} : { requestsPerMinute: rpm }),
              ...(per5h === undefined ? {} : { requestsPer5h: per5h }),
              ...(tokens === undefined ? {} : { tokensPer5h: tokens })
            },
            ...(values.expires === undefined ? {} : { expiresAt: new Date(values.expires).toISOString() })
          }
        })
        if (values.json === true) return yield* stdout(JSON.stringify(created, null, 2))
        yield* stderr(`created ${created.record.id} (${created.record.name}, tenant ${created.record.tenant}); the key is shown only now:`)
        return yield* stdout(created.key)
      }
      case "list": {
        const { values } = parseArgs({ args: rest, options: { json: { type: "boolean" } } })
        const { keys } = yield* client.keys.list()
        if (values.json === true) return yield* stdout(JSON.stringify(keys, null, 2))
        const rows = [KeyTables.KEY_HEADER, ...keys.map((k) => KeyTables.keyRow(k))]
        return yield* stdout(pad(rows))
      }
      case "revoke": {
        const id = rest[0]
        if (id === undefined) return yield* new CliError({ message: "keys revoke needs a key id (see keys list)" })
        yield* client.keys.revoke({ path: { id: id as Ids.KeyId } })
        return yield* stdout(`revoked ${id}`)
      }
      default:
        return yield* new CliError({ message: USAGE })
    }
  })

const usage = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { values } = parseArgs({ args: [...args], options: { key: { type: "string" }, json: { type: "boolean" } } })
    const client = yield* controlClient
    const { usage } = yield* client.keys.usage({ urlParams: values.key === undefined ? {} : { key: values.key as Ids.KeyId } })
    if (values.json === true) return yield* stdout(JSON.stringify(usage, null, 2))
    const rows = [KeyTables.USAGE_HEADER, ...usage.map(KeyTables.usageRow)]
    return yield* stdout(pad(rows))
  })

const main = (args: ReadonlyArray<string>): Effect.Effect<void, unknown> => {
  const argv = [...args]
  const at = argv.findIndex((a) => a === "--url" || a.startsWith("--url="))
  if (at !== -1 && (argv[0] === "keys" || argv[0] === "usage")) {
    const [flag] = argv.splice(at, 1)
    urlFlag = flag!.includes("=") ? flag!.slice(6) : argv.splice(at, 1)[0]
  }
  const [command, ...rest] = argv
  if (command === "keys") return keys(rest)
  if (command === "usage") return usage(rest)
  if (command === "help" || command === "--help" || command === "-h") return stdout(USAGE)
  return serve(command === "serve" ? rest : argv)
}

const message = (error: unknown): string => {
  if (error !== null && typeof error === "object") {
    const e = error as { _tag?: string; message?: string }
    if (e._tag === "RequestError" || e._tag === "ResponseError") return `cannot reach the proxy: ${e.message ?? String(error)}`
    if (typeof e.message === "string" && e.message !== "") return e._tag !== undefined && !e._tag.startsWith("Proxy") && e._tag !== "CliError" ? `${e._tag}: ${e.message}` : e.message
  }
  return String(error)
}

main(process.argv.slice(2)).pipe(
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`a2a-proxy: ${message(error)}\n`)
      process.exitCode = 1
    })
  ),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true })
)
