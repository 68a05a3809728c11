/**
 * The `a2a-proxy` command line: commands, flags, environment variables and defaults, in one
 * place. `--help` and the tables in docs/proxy.md are generated from it (core's `CliSpec`).
 */
import { CliSpec } from "@mks/a2a/internal"
import * as KeyTables from "./KeyTables.js"
import { PROXY_LIMITS } from "./ProxyLimits.js"

/** The presets' key variables (`ProxyConfig.presets`; a test checks they match). */
const presetKey = (env: string, preset: string): CliSpec.Setting => ({
  env,
  what: `API key of providers with \`preset: ${preset}\` unless they set \`apiKeyEnv\` or \`apiKey\` ([Presets](#presets)); unset, the start is refused`
})

export const spec: CliSpec.Spec = {
  bin: "a2a-proxy",
  summary: "the a2a proxy: one metered Anthropic-compatible URL for many providers",
  commands: [
    {
      usage: "[serve] [--port N] [--host H] [--config FILE]",
      what: "serve; one line with the address on stdout (`a2a-proxy listening on http://HOST:PORT`), logs on stderr"
    },
    {
      usage: "keys create --name N [--tenant T] [--tier tier1|tier2] [--models 'a-*,b'] [--rpm N] [--requests-per-5h N] [--tokens-per-5h N] [--expires ISO] [--json]",
      what: "create a virtual key: the key alone on stdout (for scripts), a note on stderr"
    },
    { usage: "keys list [--json]", what: "the keys, masked (`sk-mks-AbC123…`), with state and last use" },
    { usage: "keys revoke KEY_ID", what: "revoke a key: its secret stops working at once" },
    { usage: "usage [--key KEY_ID] [--json]", what: "each key's current window and what remains of each limit" }
  ],
  settings: [
    {
      flag: "port",
      arg: "N",
      env: "A2A_PROXY_PORT",
      default: "the config's `port`, else `3200`",
      what: "port to serve on; `0` picks a free port (printed on stdout). `keys` and `usage` take the variable (not the flag) for their default `--url`"
    },
    { flag: "host", arg: "H", default: "the config's `host`, else `127.0.0.1`", what: "address to bind" },
    {
      flag: "config",
      arg: "FILE",
      env: "A2A_PROXY_CONFIG",
      default: "none",
      what: "the configuration, JSON (`.json`) or YAML (any other extension; see [Configuration reference](#configuration-reference)); without providers the start is refused"
    },
    {
      flag: "url",
      arg: "URL",
      env: "A2A_PROXY_URL",
      default: "`http://127.0.0.1:$A2A_PROXY_PORT`, else port `3200`",
      what: "`keys`, `usage`: the running proxy whose control plane they use"
    },
    { flag: "name", arg: "N", what: "`keys create`: the key's name (required)" },
    ...KeyTables.CREATE_SETTINGS,
    { flag: "key", arg: "KEY_ID", what: "`usage`: this key only" },
    { flag: "json", what: "`keys create`, `keys list`, `usage`: JSON instead of a table (`keys create`: the key and its record)" },
    {
      env: "A2A_PROXY_ADMIN_TOKEN",
      default: "`<home>/proxy.token`",
      what:
        "the static admin token of the control plane; `keys` and `usage` send it (an OIDC admin's access token works too). Unset, the file is used, and the first start creates it (mode 0600) unless OIDC admins are configured"
    },
    { env: "A2A_HOME", default: "`~/.a2a`", what: "`proxy.token`, and the default key and usage files (`proxy-keys.json`, `proxy-usage.json`)" },
    {
      env: "A2A_PROXY_STORE",
      default: "the config's `store`, else the files",
      what: "`postgres://…`: keys and usage in PostgreSQL instead of the key and usage files, shared by every proxy pointed at it ([scaling.md](scaling.md#the-proxy-cluster))"
    },
    {
      env: "A2A_PROXY_QUOTA_LEASES",
      default: "`false`",
      what: "PostgreSQL store only: `true` admits keys with a token quota on local leases of their budget ([scaling.md](scaling.md#quota-leases))"
    },
    { env: "A2A_PROXY_QUOTA_FLUSH_MS", default: "`200`", what: "10–10,000: how often settled usage is written and leases renewed" },
    { env: "A2A_PROXY_QUOTA_LEASE_TTL_MS", default: "`30000`", what: "1,000–3,600,000, at least 4 × the flush: a lease not renewed this long is swept" },
    { env: "A2A_PROXY_QUOTA_LEASE_MIN_FREE", default: "`100000`", what: "free tokens below which no lease slice is granted (the exact path)" },
    ...CliSpec.connectionLimits("A2A_PROXY", PROXY_LIMITS),
    {
      env: "A2A_PROXY_GC_TUNING",
      default: "on",
      what: "`0` keeps V8's GC defaults; otherwise young-generation GC pauses are kept short, unless node was given GC flags (`NODE_OPTIONS`; see [Embedding](#embedding))"
    },
    {
      env: "A2A_PROXY_OIDC_ISSUER",
      default: "the config's `oidc.issuer`, else OIDC off",
      what: "OIDC admins for the control plane: the expected `iss`, an http(s) URL; each `A2A_PROXY_OIDC_*` variable overrides its field of the config's `oidc` (see [OIDC admins](#oidc-admins))"
    },
    { env: "A2A_PROXY_OIDC_AUDIENCE", default: "required with the issuer", what: "expected `aud`" },
    {
      env: "A2A_PROXY_OIDC_ALLOWED_CLIENTS",
      default: "any client",
      what: "allowed client ids (`azp` or `client_id`), comma- or space-separated; when set, a token without a client id is refused too"
    },
    { env: "A2A_PROXY_OIDC_JWKS_URI", default: "discovered", what: "JWKS URL; otherwise read from `<issuer>/.well-known/openid-configuration`" },
    { env: "A2A_PROXY_OIDC_TENANT_CLAIM", default: "`tenant`", what: "claim that holds the admin's tenant: the keys it may see and create" },
    { env: "A2A_PROXY_OIDC_DEFAULT_TENANT", default: "`default`", what: "tenant of tokens without that claim" },
    { env: "A2A_PROXY_OIDC_ROLES_CLAIM", default: "`roles`", what: "claim that holds the roles (an array, or a space-separated string); `admin` in it makes an admin" },
    presetKey("ANTHROPIC_API_KEY", "anthropic"),
    presetKey("DEEPSEEK_API_KEY", "deepseek"),
    presetKey("GLM_API_KEY", "glm"),
    presetKey("MINIMAX_API_KEY", "minimax"),
    presetKey("MOONSHOT_API_KEY", "moonshot"),
    presetKey("OPENROUTER_API_KEY", "openrouter")
  ],
  footer: [
    "keys and usage talk to the running proxy's control plane over HTTP (--url) with the admin token",
    "(A2A_PROXY_ADMIN_TOKEN, else <home>/proxy.token); they never edit the key file themselves."
  ]
}
