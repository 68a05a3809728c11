#!/usr/bin/env node
/**
 * a2a-broker [--port 4200] [--host 127.0.0.1] [--db FILE|:memory:|memory|postgres://…] [--home DIR] [--public-url URL] [--advertise-url URL]
 * a2a-broker token create --tenant T --role R [--scope P …] [--name N]   (prints the token alone on stdout)
 * a2a-broker token list [--json]
 * a2a-broker token revoke ID
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Permission, ServerLimits } from "@mks/a2a"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as BrokerConfig from "./BrokerConfig.js"
import * as BrokerServer from "./BrokerServer.js"
import { isAdvertiseUrl } from "./RelayForward.js"
import * as TokenStore from "./TokenStore.js"
import { VERSION } from "./version.js"

const usage = `usage: a2a-broker [--port N] [--host H] [--db FILE|:memory:|memory|postgres://…] [--home DIR] [--public-url URL] [--advertise-url URL]
       a2a-broker token create --tenant T --role admin|peer|runner [--role …] [--scope PERMISSION …] [--name N]
       a2a-broker token list [--json]
       a2a-broker token revoke ID`

const fail = (message: string): never => {
  process.stderr.write(`a2a-broker: ${message}\n`)
  process.exit(2)
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        db: { type: "string" },
        home: { type: "string" },
        "public-url": { type: "string" },
        "advertise-url": { type: "string" },
        tenant: { type: "string" },
        role: { type: "string", multiple: true },
        scope: { type: "string", multiple: true },
        name: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" }
      }
    })
  } catch (e) {
    return fail(`${(e as Error).message}\n${usage}`)
  }
})()

if (values.help) {
  process.stdout.write(usage + "\n")
  process.exit(0)
}
if (values.version) {
  process.stdout.write(VERSION + "\n")
  process.exit(0)
}

const env = process.env

/** `A2A_AUDIT_RETENTION_DAYS`: how long the audit log keeps entries. */
const auditDays = (text: string): number => {
  const days = Number(text)
  return Number.isFinite(days) && days > 0 ? days * 24 * 60 * 60 * 1000 : fail(`A2A_AUDIT_RETENTION_DAYS must be a positive number of days, got "${text}"`)
}
const home = values.home ?? BrokerConfig.defaultHome()
const portText = values.port ?? env.A2A_BROKER_PORT
const port = portText === undefined ? 4200 : Number(portText)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port: ${portText}`)

const splitList = (text: string | undefined) => (text ?? "").split(/[\s,]+/).filter((s) => s.length > 0)

const config = BrokerConfig.make({
  home,
  port,
  host: values.host ?? env.A2A_BROKER_HOST ?? "127.0.0.1",
  db: values.db ?? env.A2A_BROKER_DB ?? join(home, "broker.db"),
  publicUrl: values["public-url"] ?? env.A2A_BROKER_PUBLIC_URL,
  // A2A_BROKER_ADVERTISE_URL is read by the broker itself (RelayForward.ts); the flag wins.
  ...(values["advertise-url"] !== undefined
    ? { advertiseUrl: isAdvertiseUrl(values["advertise-url"]) ? values["advertise-url"] : fail(`--advertise-url must be an http:// or https:// URL, got "${values["advertise-url"]}"`) }
    : {}),
  ...(env.A2A_AUDIT_RETENTION_DAYS !== undefined ? { auditRetention: auditDays(env.A2A_AUDIT_RETENTION_DAYS) } : {}),
  version: VERSION,
  // A2A_BROKER_HEADERS_TIMEOUT_MS, _REQUEST_TIMEOUT_MS, _KEEP_ALIVE_TIMEOUT_MS, _MAX_PENDING_CONNECTIONS, _LISTEN_BACKLOG.
  limits: (() => {
    try {
      return ServerLimits.fromEnv("A2A_BROKER")
    } catch (e) {
      return fail(`invalid connection limits: ${String(e)}`)
    }
  })(),
  ...(env.A2A_BROKER_PRESENCE_MS === undefined
    ? {}
    : { presenceInterval: Number.isInteger(Number(env.A2A_BROKER_PRESENCE_MS)) && Number(env.A2A_BROKER_PRESENCE_MS) >= 1 ? Number(env.A2A_BROKER_PRESENCE_MS) : fail(`invalid A2A_BROKER_PRESENCE_MS: ${env.A2A_BROKER_PRESENCE_MS}`) }),
  oidc:
    env.A2A_OIDC_ISSUER === undefined
      ? undefined
      : {
          issuer: env.A2A_OIDC_ISSUER,
          audience: env.A2A_OIDC_AUDIENCE ?? fail("A2A_OIDC_AUDIENCE is required with A2A_OIDC_ISSUER"),
          allowedClients: splitList(env.A2A_ALLOWED_CLIENTS),
          jwksUri: env.A2A_OIDC_JWKS_URI,
          tenantClaim: env.A2A_OIDC_TENANT_CLAIM ?? "tenant",
          defaultTenant: env.A2A_OIDC_DEFAULT_TENANT ?? "default",
          rolesClaim: env.A2A_OIDC_ROLES_CLAIM ?? "roles",
          permissionsClaim: env.A2A_OIDC_PERMISSIONS_CLAIM ?? "a2a_permissions"
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
        return fail(usage)
    }
  })

// Logs go to stderr as logfmt; stdout carries only what scripts read (the address, a new token).
const logger = Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.withConsoleError))

if (positionals[0] === "token") {
  Effect.runPromise(tokenCommand(positionals[1], positionals[2])).catch((e) => fail(String(e?.message ?? e)))
} else if (positionals.length > 0) {
  fail(`unknown command ${positionals[0]}\n${usage}`)
} else {
  const main = Layer.launch(
    Layer.effectDiscard(
      Effect.gen(function* () {
        const { url } = yield* BrokerServer.BrokerAddress
        // One line on stdout with the address, for scripts and `--port 0`.
        process.stdout.write(`a2a-broker listening on ${url}\n`)
      })
    ).pipe(Layer.provide(BrokerServer.layer(config)))
  )
  NodeRuntime.runMain(main.pipe(Effect.provide(logger), Logger.withMinimumLogLevel(LogLevel.Info)), { disablePrettyLogger: true })
}
