/**
 * The `a2a-broker` command line: commands, flags, environment variables and defaults, in one
 * place. `--help` and the tables in docs/broker.md are generated from it (core's `CliSpec`).
 */
import { ServerLimits } from "@mks/a2a"
import { CliSpec } from "@mks/a2a/internal"

export const spec: CliSpec.Spec = {
  bin: "a2a-broker",
  summary: "the a2a broker (peers, messages, teams, spawns, tasks)",
  commands: [
    { usage: "[--port N] [--host H] [--db DB] [--home DIR] [--public-url URL] [--advertise-url URL]", what: "serve; one line with the address on stdout, logs on stderr" },
    {
      usage: "token create --tenant T --role admin|peer|runner [--role …] [--scope PERMISSION …] [--name N]",
      what: "a static token, printed alone on stdout (same `--home` as the running broker; it takes effect at once)"
    },
    { usage: "token list [--json]", what: "the static tokens (no secrets)" },
    { usage: "token revoke ID", what: "revoke a static token; its open sockets close with 4003" }
  ],
  settings: [
    { flag: "port", arg: "N", env: "A2A_BROKER_PORT", default: "`4200`", what: "`0` picks a free port (printed on stdout)" },
    { flag: "host", arg: "H", env: "A2A_BROKER_HOST", default: "`127.0.0.1`", what: "address to bind" },
    {
      flag: "db",
      arg: "DB",
      env: "A2A_BROKER_DB",
      default: "`<home>/broker.db`",
      what: "SQLite file, `:memory:`, `memory`, or `postgres://…` to share one database with other instances (see [Store](#store))"
    },
    { flag: "home", arg: "DIR", env: "A2A_HOME", default: "`~/.a2a`", what: "tokens file, first-start admin token, default database" },
    {
      flag: "public-url",
      arg: "URL",
      env: "A2A_BROKER_PUBLIC_URL",
      default: "`http://<host>:<port>`",
      what: "the broker URL written into spawn orders, for agents on other machines"
    },
    {
      flag: "advertise-url",
      arg: "URL",
      env: "A2A_BROKER_ADVERTISE_URL",
      default: "the listening address (`127.0.0.1` / `[::1]` for a wildcard)",
      what: "PostgreSQL only: where the other instances reach this one to relay logs and terminals of runners linked here ([scaling.md](scaling.md))"
    },
    { flag: "tenant", arg: "T", what: "`token create`: the token's tenant" },
    { flag: "role", arg: "R", multiple: true, what: "`token create`: `admin`, `peer` or `runner` (repeat for several)" },
    { flag: "scope", arg: "PERMISSION", multiple: true, what: "`token create`: limit the token to these permissions ([security.md](security.md))" },
    { flag: "name", arg: "N", what: "`token create`: a label shown by `token list`" },
    { flag: "json", what: "`token list`: JSON instead of a table" },
    { env: "A2A_AUDIT_RETENTION_DAYS", default: "`30`", what: "how long the audit log keeps entries, in days" },
    { env: "A2A_BROKER_PRESENCE_MS", default: "`100`", what: "at most how often presence changes are published to watchers, in milliseconds ([protocol.md](protocol.md))" },
    { env: "A2A_BROKER_PG_CATCHUP_MS", default: "`1000`", what: "PostgreSQL only: catch-up period, 10–60,000 ms ([scaling.md](scaling.md))" },
    { env: "A2A_BROKER_PG_LISTEN", default: "`on`", what: "PostgreSQL only: `off` runs without a LISTEN connection, on catch-up alone" },
    {
      env: "A2A_COMPILE_CACHE",
      default: "`$XDG_CACHE_HOME/a2a`, else `~/.cache/a2a`",
      what: "where the bin keeps V8's code cache of its bundle (written once per version, makes later starts ~100 ms faster); `off` for none ([benchmarks.md](benchmarks.md))"
    },
    ...CliSpec.connectionLimits("A2A_BROKER", ServerLimits.defaults),
    { env: "A2A_OIDC_ISSUER", default: "unset", what: "enables OIDC access tokens (see [OIDC](#oidc-access-tokens))" },
    { env: "A2A_OIDC_AUDIENCE", default: "required with the issuer", what: "expected `aud`" },
    { env: "A2A_ALLOWED_CLIENTS", default: "empty: any client", what: "allowed client ids (`azp` or `client_id`), comma- or space-separated" },
    { env: "A2A_OIDC_JWKS_URI", default: "discovered", what: "JWKS URL; otherwise read from `<issuer>/.well-known/openid-configuration`" },
    { env: "A2A_OIDC_TENANT_CLAIM", default: "`tenant`", what: "claim that holds the tenant" },
    { env: "A2A_OIDC_DEFAULT_TENANT", default: "`default`", what: "tenant of tokens without that claim" },
    { env: "A2A_OIDC_ROLES_CLAIM", default: "`roles`", what: "claim that holds the roles (an array, or a space-separated string)" },
    {
      env: "A2A_OIDC_PERMISSIONS_CLAIM",
      default: "`a2a_permissions`",
      what: "claim that holds extra permissions (`spawn:command`, `stop:any`, …; see [security.md](security.md)); unknown names are ignored"
    }
  ]
}
