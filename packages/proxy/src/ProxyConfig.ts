/**
 * Configuration of the proxy: providers (with presets for the Anthropic-compatible APIs of
 * Anthropic, DeepSeek, Z.ai GLM, MiniMax, Moonshot and OpenRouter), routes, aliases, the default
 * provider, stores, timeouts and limits. Read from a JSON or YAML file plus the environment.
 */
import { Oidc } from "@mks/a2a"
import { Data, Effect, ParseResult, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as YAML from "yaml"
import { readIfExists, writeAtomic } from "./internal/atomicFile.js"

export class ProxyConfigError extends Data.TaggedError("ProxyConfigError")<{ readonly message: string }> {}

/** How the provider's real key is sent upstream. */
export const AuthStyle = Schema.Literal("x-api-key", "bearer")
export type AuthStyle = typeof AuthStyle.Type

export const PresetName = Schema.Literal("anthropic", "deepseek", "glm", "minimax", "moonshot", "openrouter")
export type PresetName = typeof PresetName.Type

export interface Preset {
  readonly baseUrl: string
  readonly auth: AuthStyle
  readonly apiKeyEnv: string
}

/**
 * Documented Anthropic-compatible base URLs. Anthropic takes `x-api-key`; the others document
 * `ANTHROPIC_AUTH_TOKEN` for Claude Code, i.e. `Authorization: Bearer`.
 */
export const presets: Readonly<Record<PresetName, Preset>> = {
  anthropic: { baseUrl: "https://api.anthropic.com", auth: "x-api-key", apiKeyEnv: "ANTHROPIC_API_KEY" },
  deepseek: { baseUrl: "https://api.deepseek.com/anthropic", auth: "bearer", apiKeyEnv: "DEEPSEEK_API_KEY" },
  glm: { baseUrl: "https://api.z.ai/api/anthropic", auth: "bearer", apiKeyEnv: "GLM_API_KEY" },
  minimax: { baseUrl: "https://api.minimax.io/anthropic", auth: "bearer", apiKeyEnv: "MINIMAX_API_KEY" },
  moonshot: { baseUrl: "https://api.moonshot.ai/anthropic", auth: "bearer", apiKeyEnv: "MOONSHOT_API_KEY" },
  openrouter: { baseUrl: "https://openrouter.ai/api", auth: "bearer", apiKeyEnv: "OPENROUTER_API_KEY" }
}

const Millis = Schema.Int.pipe(Schema.positive())

export const Timeouts = Schema.Struct({
  /** TCP/TLS connect to the upstream; past it the client gets 504. */
  connectMs: Schema.optional(Millis),
  /** From sending the request to the upstream's complete response headers; past it, 504. */
  headersMs: Schema.optional(Millis),
  /** Longest silence inside a response body; past it the stream is ended with an `error` event. */
  idleMs: Schema.optional(Millis)
})

export const ProviderInput = Schema.Struct({
  /** Used in `provider/model` and in routes; no `/`. */
  name: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, { message: () => "provider name must be 1-64 characters of [A-Za-z0-9_.-]" })),
  preset: Schema.optional(PresetName),
  baseUrl: Schema.optional(Schema.String),
  /** Name of the environment variable holding the provider's key (preset default otherwise). */
  apiKeyEnv: Schema.optional(Schema.String),
  /** The key itself; prefer `apiKeyEnv` so config files hold no secrets. */
  apiKey: Schema.optional(Schema.String),
  auth: Schema.optional(AuthStyle),
  /** Model patterns this provider serves: implicit routes, and the concrete ones are listed by `/v1/models`. */
  models: Schema.optional(Schema.Array(Schema.String)),
  /** Extra headers sent upstream with every request (e.g. an organisation id). */
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  timeouts: Schema.optional(Timeouts)
})
export type ProviderInput = typeof ProviderInput.Type

export const RouteInput = Schema.Struct({
  /** Glob over the requested model (`*` any run of characters). */
  match: Schema.String,
  provider: Schema.String,
  /** Model name sent upstream; absent: the requested name unchanged. */
  model: Schema.optional(Schema.String)
})

/**
 * OIDC admins for the control plane (core's `Oidc.OidcConfig`, every field optional here because
 * the `A2A_PROXY_OIDC_*` variables may supply or override each one).
 */
export const OidcInput = Schema.Struct({
  issuer: Schema.optional(Schema.String),
  audience: Schema.optional(Schema.String),
  allowedClients: Schema.optional(Schema.Array(Schema.String)),
  jwksUri: Schema.optional(Schema.String),
  tenantClaim: Schema.optional(Schema.String),
  defaultTenant: Schema.optional(Schema.String),
  rolesClaim: Schema.optional(Schema.String)
})
export type OidcInput = typeof OidcInput.Type

/** The file format (JSON or YAML). */
export const ProxyConfigInput = Schema.Struct({
  host: Schema.optional(Schema.String),
  port: Schema.optional(Schema.Int.pipe(Schema.between(0, 65535))),
  providers: Schema.optional(Schema.Array(ProviderInput)),
  routes: Schema.optional(Schema.Array(RouteInput)),
  /** `name → "provider/model"` (or a model name resolved by routes and the default). */
  aliases: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  /** `provider` (model unchanged) or `provider/model`. */
  default: Schema.optional(Schema.String),
  /** Key file path, or `:memory:`. Default `$A2A_HOME/proxy-keys.json`. */
  keyFile: Schema.optional(Schema.String),
  /** Usage file path, or `:memory:`. Default `$A2A_HOME/proxy-usage.json`. */
  usageFile: Schema.optional(Schema.String),
  /** `postgres://…`: keys and usage in PostgreSQL, shared by several proxies (overrides keyFile and usageFile). */
  store: Schema.optional(Schema.String),
  timeouts: Schema.optional(Timeouts),
  maxBodyBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** What a client disconnect mid-response does upstream: `cancel` it, or `drain` it to count the final usage. */
  onClientAbort: Schema.optional(Schema.Literal("cancel", "drain")),
  /** max_tokens assumed for the reservation when a request omits it. */
  defaultMaxTokens: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** How often usage and key `lastUsedAt` are written to their files. */
  flushIntervalMs: Schema.optional(Millis),
  /** OIDC access tokens (JWT) with the `admin` role may use the control plane. */
  oidc: Schema.optional(OidcInput)
})
export type ProxyConfigInput = typeof ProxyConfigInput.Type

export interface Provider {
  readonly name: string
  readonly baseUrl: URL
  readonly apiKey: Redacted.Redacted<string> | undefined
  readonly auth: AuthStyle
  readonly models: ReadonlyArray<string>
  readonly headers: Readonly<Record<string, string>>
  readonly timeouts: Required<typeof Timeouts.Type>
}

export interface Route {
  readonly match: string
  readonly provider: string
  readonly model: string | undefined
}

/** A validated, resolved configuration: what `ProxyServer.layer` takes. */
export interface ProxyConfig {
  readonly host: string
  readonly port: number
  readonly providers: ReadonlyArray<Provider>
  readonly routes: ReadonlyArray<Route>
  readonly aliases: Readonly<Record<string, string>>
  readonly default: { readonly provider: string; readonly model: string | undefined } | undefined
  /** `undefined`: keys in memory only. */
  readonly keyFile: string | undefined
  /** `undefined`: usage in memory only. */
  readonly usageFile: string | undefined
  /** A `postgres://` URL: keys and usage in that database (`A2A_PROXY_STORE`), instead of the files. */
  readonly store?: string | undefined
  /** `undefined`: no admin token (then only OIDC admins, if any, may use the admin endpoints). */
  readonly adminToken: Redacted.Redacted<string> | undefined
  /** OIDC admin JWTs for the control plane; `undefined`: none accepted. */
  readonly oidc: Oidc.OidcConfig | undefined
  readonly maxBodyBytes: number
  readonly onClientAbort: "cancel" | "drain"
  readonly defaultMaxTokens: number
  readonly flushIntervalMs: number
}

export const DEFAULT_PORT = 3200
export const MAX_BODY_BYTES = 32 * 1024 * 1024
export const DEFAULT_TIMEOUTS: Required<typeof Timeouts.Type> = { connectMs: 10_000, headersMs: 600_000, idleMs: 300_000 }

type Env = Readonly<Record<string, string | undefined>>

/** `$A2A_HOME`, else `~/.a2a`. */
export const dataDir = (env: Env = process.env): string => env.A2A_HOME || path.join(os.homedir(), ".a2a")

const fail = (message: string) => Effect.fail(new ProxyConfigError({ message }))

/** `providers.0.apiKeyEnv: Expected string, actual 42` — the path and the first words, not the whole schema. */
const describeIssues = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .slice(0, 3)
    .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message.split("\n")[0]}`)
    .join("; ")

const decodeInput = (input: unknown, source: string) =>
  Schema.decodeUnknown(ProxyConfigInput, { onExcessProperty: "error", errors: "all" })(input).pipe(
    Effect.mapError((error) => new ProxyConfigError({ message: `invalid config ${source}: ${describeIssues(error)}` }))
  )

const resolveProvider = (input: ProviderInput, defaults: Required<typeof Timeouts.Type>, env: Env) =>
  Effect.gen(function* () {
    const preset = input.preset === undefined ? undefined : presets[input.preset]
    const base = input.baseUrl ?? preset?.baseUrl
    if (base === undefined) return yield* fail(`provider ${input.name}: needs a "preset" or a "baseUrl"`)
    const url = yield* Effect.try({
      try: () => new URL(base),
      catch: () => new ProxyConfigError({ message: `provider ${input.name}: baseUrl ${base} is not a URL` })
    })
    if (url.protocol !== "http:" && url.protocol !== "https:") return yield* fail(`provider ${input.name}: baseUrl must be http or https`)
    let apiKey: string | undefined = input.apiKey
    const keyEnv = input.apiKeyEnv ?? (input.apiKey === undefined ? preset?.apiKeyEnv : undefined)
    if (apiKey === undefined && keyEnv !== undefined) {
      apiKey = env[keyEnv]
      if (apiKey === undefined || apiKey === "") {
        return yield* fail(`provider ${input.name}: environment variable ${keyEnv} (its API key) is not set`)
      }
    }
    return {
      name: input.name,
      baseUrl: url,
      apiKey: apiKey === undefined ? undefined : Redacted.make(apiKey),
      auth: input.auth ?? preset?.auth ?? "x-api-key",
      models: input.models ?? [],
      headers: input.headers ?? {},
      timeouts: { ...defaults, ...input.timeouts }
    } satisfies Provider
  })

/** `A2A_PROXY_OIDC_*` variable of each OIDC field (the broker's `A2A_OIDC_*` names with the proxy's prefix). */
export const OIDC_ENV = {
  issuer: "A2A_PROXY_OIDC_ISSUER",
  audience: "A2A_PROXY_OIDC_AUDIENCE",
  allowedClients: "A2A_PROXY_OIDC_ALLOWED_CLIENTS",
  jwksUri: "A2A_PROXY_OIDC_JWKS_URI",
  tenantClaim: "A2A_PROXY_OIDC_TENANT_CLAIM",
  defaultTenant: "A2A_PROXY_OIDC_DEFAULT_TENANT",
  rolesClaim: "A2A_PROXY_OIDC_ROLES_CLAIM"
} as const

const httpUrl = (value: string, what: string) =>
  Effect.gen(function* () {
    const url = yield* Effect.try({ try: () => new URL(value), catch: () => new ProxyConfigError({ message: `${what} ${value} is not a URL` }) })
    if (url.protocol !== "http:" && url.protocol !== "https:") return yield* fail(`${what} must be http or https, got ${value}`)
    return url
  })

/** The file's `oidc` section with the environment over it, field by field; `undefined` when no issuer is set anywhere. */
const resolveOidc = (input: OidcInput | undefined, env: Env): Effect.Effect<Oidc.OidcConfig | undefined, ProxyConfigError> =>
  Effect.gen(function* () {
    const set = (name: string) => (env[name] === undefined || env[name] === "" ? undefined : env[name])
    const merged: Record<string, unknown> = { ...input }
    for (const [field, name] of Object.entries(OIDC_ENV)) {
      const value = set(name)
      if (value !== undefined) merged[field] = field === "allowedClients" ? value.split(/[\s,]+/).filter((c) => c !== "") : value
    }
    if (merged.issuer === undefined) {
      if (Object.keys(merged).length === 0) return undefined
      return yield* fail(`oidc: an issuer is required (oidc.issuer or ${OIDC_ENV.issuer}) when other OIDC settings are given`)
    }
    if (merged.audience === undefined) return yield* fail(`oidc: an audience is required with the issuer (oidc.audience or ${OIDC_ENV.audience})`)
    yield* httpUrl(merged.issuer as string, "oidc: issuer")
    if (merged.jwksUri !== undefined) yield* httpUrl(merged.jwksUri as string, "oidc: jwksUri")
    return yield* Schema.decodeUnknown(Oidc.OidcConfig, { errors: "all" })(merged).pipe(
      Effect.mapError((error) => new ProxyConfigError({ message: `invalid oidc settings: ${describeIssues(error)}` }))
    )
  })

const splitTarget = (target: string): { readonly provider: string; readonly model: string | undefined } => {
  const slash = target.indexOf("/")
  return slash === -1 ? { provider: target, model: undefined } : { provider: target.slice(0, slash), model: target.slice(slash + 1) }
}

const storePath = (value: string | undefined, fallback: string): string | undefined =>
  value === ":memory:" ? undefined : path.resolve(value ?? fallback)

/**
 * Validate a configuration object (the file's content, or one built in code) against the
 * environment: every provider resolvable with its key, routes and aliases pointing at providers.
 */
export const make = (
  input: unknown,
  options: { readonly env?: Env; readonly source?: string; readonly adminToken?: string | undefined } = {}
): Effect.Effect<ProxyConfig, ProxyConfigError> =>
  Effect.gen(function* () {
    const env = options.env ?? process.env
    const config = yield* decodeInput(input, options.source ?? "object")
    const timeouts = { ...DEFAULT_TIMEOUTS, ...config.timeouts }
    const inputs = config.providers ?? []
    if (inputs.length === 0) {
      return yield* fail("no providers configured: pass --config FILE (or set A2A_PROXY_CONFIG) with at least one provider")
    }
    const providers: Array<Provider> = []
    for (const p of inputs) {
      if (providers.some((q) => q.name === p.name)) return yield* fail(`provider ${p.name} is configured twice`)
      providers.push(yield* resolveProvider(p, timeouts, env))
    }
    const known = (name: string) => providers.some((p) => p.name === name)
    const routes: Array<Route> = []
    for (const r of config.routes ?? []) {
      if (!known(r.provider)) return yield* fail(`route ${r.match}: unknown provider ${r.provider}`)
      routes.push({ match: r.match, provider: r.provider, model: r.model })
    }
    const aliases = config.aliases ?? {}
    for (const [name, target] of Object.entries(aliases)) {
      const { provider, model } = splitTarget(target)
      if (model !== undefined && !known(provider)) return yield* fail(`alias ${name}: unknown provider ${provider}`)
    }
    let fallback: ProxyConfig["default"] = undefined
    if (config.default !== undefined) {
      fallback = splitTarget(config.default)
      if (!known(fallback.provider)) return yield* fail(`default: unknown provider ${fallback.provider}`)
    }
    const home = dataDir(env)
    const port = env.A2A_PROXY_PORT === undefined || env.A2A_PROXY_PORT === "" ? config.port : Number(env.A2A_PROXY_PORT)
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
      return yield* fail(`A2A_PROXY_PORT must be a port number, got ${env.A2A_PROXY_PORT}`)
    }
    const adminToken = options.adminToken ?? env.A2A_PROXY_ADMIN_TOKEN
    const oidc = yield* resolveOidc(config.oidc, env)
    const store = env.A2A_PROXY_STORE !== undefined && env.A2A_PROXY_STORE !== "" ? env.A2A_PROXY_STORE : config.store
    if (store !== undefined && !/^postgres(ql)?:\/\/./.test(store)) {
      return yield* fail(`store must be a postgres:// URL (store or A2A_PROXY_STORE), got ${store.slice(0, 40)}`)
    }
    return {
      host: config.host ?? "127.0.0.1",
      port: port ?? DEFAULT_PORT,
      providers,
      routes,
      aliases,
      default: fallback,
      keyFile: storePath(config.keyFile, path.join(home, "proxy-keys.json")),
      usageFile: storePath(config.usageFile, path.join(home, "proxy-usage.json")),
      store,
      adminToken: adminToken === undefined || adminToken === "" ? undefined : Redacted.make(adminToken),
      oidc,
      maxBodyBytes: config.maxBodyBytes ?? MAX_BODY_BYTES,
      onClientAbort: config.onClientAbort ?? "cancel",
      defaultMaxTokens: config.defaultMaxTokens ?? 64_000,
      flushIntervalMs: config.flushIntervalMs ?? 1_000
    } satisfies ProxyConfig
  })

/** Parse a config file's text: `.json` as JSON, anything else as YAML (a superset of JSON). */
export const parse = (text: string, file: string): Effect.Effect<unknown, ProxyConfigError> =>
  Effect.try({
    try: () => (file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text)),
    catch: (error) => new ProxyConfigError({ message: `cannot parse config ${file}: ${error instanceof Error ? error.message : String(error)}` })
  })

/** Where the CLI keeps the generated admin token when none is configured. */
export const adminTokenFile = (env: Env = process.env): string => path.join(dataDir(env), "proxy.token")

/**
 * Read the admin token file, creating it (0600, 256 random bits) when `create` is set and it is
 * missing. Returns the token and whether it was just created.
 */
export const adminTokenFromFile = (file: string, create: boolean) =>
  Effect.gen(function* () {
    const existing = yield* readIfExists(file).pipe(Effect.mapError((e) => new ProxyConfigError({ message: e.message })))
    if (existing !== undefined && existing.trim() !== "") return { token: existing.trim(), created: false } as const
    if (!create) return undefined
    const token = "a2a_admin_" + randomBytes(32).toString("base64url")
    yield* writeAtomic(file, token + "\n").pipe(Effect.mapError((e) => new ProxyConfigError({ message: e.message })))
    return { token, created: true } as const
  })

export interface LoadOptions {
  /** `--config`; else `A2A_PROXY_CONFIG`. */
  readonly configPath?: string | undefined
  /** `--port`; overrides `A2A_PROXY_PORT` and the file. */
  readonly port?: number | undefined
  readonly host?: string | undefined
  readonly env?: Env
}

/** The CLI's view: file (JSON/YAML) + environment + flags, validated. */
export const load = (options: LoadOptions = {}): Effect.Effect<ProxyConfig, ProxyConfigError> =>
  Effect.gen(function* () {
    const env = options.env ?? process.env
    const file = options.configPath ?? (env.A2A_PROXY_CONFIG === "" ? undefined : env.A2A_PROXY_CONFIG)
    let input: unknown = {}
    if (file !== undefined) {
      const text = yield* Effect.tryPromise({
        try: () => fs.readFile(file, "utf8"),
        catch: (error) =>
          new ProxyConfigError({ message: `cannot read config ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` })
      })
      input = yield* parse(text, file)
      if (input === null || typeof input !== "object") return yield* fail(`config ${file} must be an object`)
    }
    const config = yield* make(input, { env, source: file ?? "(none)" })
    return {
      ...config,
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.host === undefined ? {} : { host: options.host })
    }
  })
