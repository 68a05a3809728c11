#!/usr/bin/env node
/** `a2a-broker`: serve, or manage static tokens. Its commands and settings are in ./CliSpec.ts. */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Permission, ServerLimits } from "@mks/a2a"
import { CliSpec, StartupMemory } from "@mks/a2a/internal"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { join } from "node:path"
import * as BrokerConfig from "./BrokerConfig.js"
import * as BrokerServer from "./BrokerServer.js"
import { spec } from "./CliSpec.js"
import { isAdvertiseUrl } from "./RelayForward.js"
import * as TokenStore from "./TokenStore.js"
import { VERSION } from "./version.js"

const fail = (message: string): never => CliSpec.refuse(spec, message)

// Flags, environment variables and defaults come from one spec (./CliSpec.ts), as do `--help` and docs/broker.md's tables.
const args = CliSpec.start(spec, VERSION)
const values = args.values as { readonly [K in "tenant" | "name"]?: string } & { readonly role?: ReadonlyArray<string>; readonly scope?: ReadonlyArray<string>; readonly json?: boolean }
const positionals = args.positionals

/** `A2A_AUDIT_RETENTION_DAYS`: how long the audit log keeps entries. */
const auditDays = (text: string): number => {
  const days = Number(text)
  return Number.isFinite(days) && days > 0 ? days * 24 * 60 * 60 * 1000 : fail(`A2A_AUDIT_RETENTION_DAYS must be a positive number of days, got "${text}"`)
}
const home = args.get("home") ?? BrokerConfig.defaultHome()
const portText = args.get("port")
const port = portText === undefined ? 4200 : Number(portText)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port: ${portText}`)

const advertiseFlag = typeof args.values["advertise-url"] === "string" ? args.values["advertise-url"] : undefined
const auditText = args.get("A2A_AUDIT_RETENTION_DAYS")
const presenceText = args.get("A2A_BROKER_PRESENCE_MS")
const issuer = args.get("A2A_OIDC_ISSUER")

const config = BrokerConfig.make({
  home,
  port,
  host: args.get("host") ?? "127.0.0.1",
  db: args.get("db") ?? join(home, "broker.db"),
  publicUrl: args.get("public-url"),
  // A2A_BROKER_ADVERTISE_URL is read by the broker itself (RelayForward.ts); the flag wins.
  ...(advertiseFlag !== undefined
    ? { advertiseUrl: isAdvertiseUrl(advertiseFlag) ? advertiseFlag : fail(`--advertise-url must be an http:// or https:// URL, got "${advertiseFlag}"`) }
    : {}),
  ...(auditText !== undefined ? { auditRetention: auditDays(auditText) } : {}),
  version: VERSION,
  // A2A_BROKER_HEADERS_TIMEOUT_MS, _REQUEST_TIMEOUT_MS, _KEEP_ALIVE_TIMEOUT_MS, _MAX_PENDING_CONNECTIONS, _LISTEN_BACKLOG.
  limits: (() => {
    try {
      return ServerLimits.fromEnv("A2A_BROKER")
    } catch (e) {
      return fail(`invalid connection limits: ${String(e)}`)
    }
  })(),
  ...(presenceText === undefined
    ? {}
    : { presenceInterval: Number.isInteger(Number(presenceText)) && Number(presenceText) >= 1 ? Number(presenceText) : fail(`invalid A2A_BROKER_PRESENCE_MS: ${presenceText}`) }),
  oidc:
    issuer === undefined
      ? undefined
      : {
          issuer,
          audience: args.get("A2A_OIDC_AUDIENCE") ?? fail("A2A_OIDC_AUDIENCE is required with A2A_OIDC_ISSUER"),
          allowedClients: args.list("A2A_ALLOWED_CLIENTS"),
          jwksUri: args.get("A2A_OIDC_JWKS_URI"),
          tenantClaim: args.get("A2A_OIDC_TENANT_CLAIM") ?? "tenant",
          defaultTenant: args.get("A2A_OIDC_DEFAULT_TENANT") ?? "default",
          rolesClaim: args.get("A2A_OIDC_ROLES_CLAIM") ?? "roles",
          permissionsClaim: args.get("A2A_OIDC_PERMISSIONS_CLAIM") ?? "a2a_permissions"
        }
})

const tokenCommand = (command: string | undefined, arg: string | undefined) =>
  Effect.gen(function* () {
    const store = yield* TokenStore.make(join(home, "tokens.json"))
    switch (command) {
      case "create": {
        const roles = (values.role ?? []) as Array<string>
        if (values.tenant === undefined || roles.length === 0) return fail("token create needs --tenant and --role")
        const bad = roles.find((r) => !["admin", "peer", "runner"].includes(r))
        if (bad !== undefined) return fail(`unknown role ${bad} (admin, peer or runner)`)
        const scopes = (values.scope ?? []) as Array<string>
        const unknown = scopes.find((p) => !(Permission.ALL as ReadonlyArray<string>).includes(p))
        if (unknown !== undefined) return fail(`unknown permission ${unknown} (${Permission.ALL.join(", ")})`)
        const { token } = yield* store.create({
          tenant: values.tenant,
          roles: roles as Array<"admin" | "peer" | "runner">,
          name: values.name,
          ...(scopes.length > 0 ? { scopes: scopes as Array<Permission.Permission> } : {})
        })
        process.stdout.write(token + "\n")
        return
      }
      case "list": {
        const all = yield* store.list
        if (values.json) process.stdout.write(JSON.stringify(all, null, 2) + "\n")
        else for (const t of all) process.stdout.write(`${t.id}\t${t.tenant}\t${t.roles.join(",")}\t${t.createdAt}\t${t.name ?? ""}\n`)
        return
      }
      case "revoke":
        if (arg === undefined) return fail("token revoke needs an ID")
        yield* store.revoke(arg).pipe(Effect.catchTag("Unauthorized", () => Effect.sync(() => fail(`no token ${arg}`))))
        process.stderr.write(`revoked ${arg}\n`)
        return
      default:
        return fail(`unknown token command ${command ?? "(none)"} (see a2a-broker --help)`)
    }
  })

// Logs go to stderr as logfmt; stdout carries only what scripts read (the address, a new token).
const logger = Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.withConsoleError))

if (positionals[0] === "token") {
  Effect.runPromise(Effect.scoped(tokenCommand(positionals[1], positionals[2]))).catch((e) => fail(String(e?.message ?? e)))
} else if (positionals.length > 0) {
  fail(`unknown command ${positionals[0]}`)
} else {
  const main = Layer.launch(
    Layer.effectDiscard(
      Effect.gen(function* () {
        const { url } = yield* BrokerServer.BrokerAddress
        // One line on stdout with the address, for scripts and `--port 0`.
        process.stdout.write(`a2a-broker listening on ${url}\n`)
        // Start-up ran in a small young generation (bin.ts); under load it may grow again.
        StartupMemory.resume()
      })
    ).pipe(Layer.provide(BrokerServer.layer(config)))
  )
  NodeRuntime.runMain(main.pipe(Effect.provide(logger), Logger.withMinimumLogLevel(LogLevel.Info)), { disablePrettyLogger: true })
}
