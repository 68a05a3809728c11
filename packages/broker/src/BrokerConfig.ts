/**
 * Broker configuration: flags, environment, defaults. Every duration is in milliseconds.
 */
import { ServerLimits } from "@mks/a2a"
import { Context } from "effect"
import { homedir } from "node:os"
import { join } from "node:path"

export interface OidcConfig {
  readonly issuer: string
  readonly audience: string
  /** Allowed OAuth client ids (`azp` or `client_id`); empty allows any client of the issuer. */
  readonly allowedClients: ReadonlyArray<string>
  /** JWKS URL; discovered from the issuer's `/.well-known/openid-configuration` when absent. */
  readonly jwksUri?: string | undefined
  /** Claim holding the tenant (default `tenant`); tokens without it get `defaultTenant`. */
  readonly tenantClaim: string
  readonly defaultTenant: string
  /** Claim holding the roles (default `roles`, an array or a space-separated string); default `["peer"]`. */
  readonly rolesClaim: string
  /** Claim holding extra permissions (default `a2a_permissions`; see docs/security.md). */
  readonly permissionsClaim?: string | undefined
}

export interface BrokerConfigShape {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /** Data directory (`A2A_HOME`, default `~/.a2a`): tokens file, admin token, SQLite database. */
  readonly home: string
  /** SQLite file path, `:memory:`, `memory`, or a `postgres://` URL (instances sharing one database act as one broker). */
  readonly db: string
  /** URL spawned agents use to reach this broker; defaults to `http://<host>:<port>`. */
  readonly publicUrl?: string | undefined
  /**
   * URL the other instances of a PostgreSQL cluster reach this one at, for the relay of logs and
   * terminals (`--advertise-url`, `A2A_BROKER_ADVERTISE_URL`); defaults to the listening address,
   * `127.0.0.1` / `::1` when listening on a wildcard address. Unused on SQLite.
   */
  readonly advertiseUrl?: string | undefined
  readonly oidc?: OidcConfig | undefined
  /** A peer with no socket and no heartbeat for this long goes offline (default 60 s). */
  readonly peerTimeout: number
  /** A runner silent for this long is stale and its spawns `lost` (default 120 s). */
  readonly runnerStaleAfter: number
  /** A spawn order waiting for its runner this long fails (default 60 s). */
  readonly spawnPendingTimeout: number
  /** How often the GC runs (default 5 s). */
  readonly gcInterval: number
  /** Acked messages are deleted after this long (default 24 h). */
  readonly retention: number
  /** Audit log entries (spawn, stop, attach) are deleted after this long (default 30 days). */
  readonly auditRetention?: number | undefined
  /** Unacked messages per inbox before sends fail with InboxFull (default 10,000). */
  readonly inboxCapacity: number
  /** Largest accepted HTTP body / WebSocket frame in bytes (default 1 MiB − 1). */
  readonly maxBodyBytes: number
  /** Presence changes are coalesced and published at most once per this many ms (default 100). */
  readonly presenceInterval: number
  /** Timeouts and the pending-connection cap of the listening socket (see docs/operations.md). */
  readonly limits: ServerLimits.ServerLimits
  readonly version: string
}

export class BrokerConfig extends Context.Tag("@mks/a2a-broker/BrokerConfig")<BrokerConfig, BrokerConfigShape>() {}

export const defaultHome = (): string => process.env.A2A_HOME || join(homedir(), ".a2a")

/** Defaults, with `overrides` on top. */
export const make = (overrides: Partial<BrokerConfigShape> = {}): BrokerConfigShape => {
  const home = overrides.home ?? defaultHome()
  return {
    host: "127.0.0.1",
    port: 4200,
    home,
    db: join(home, "broker.db"),
    peerTimeout: 60_000,
    runnerStaleAfter: 120_000,
    spawnPendingTimeout: 60_000,
    gcInterval: 5_000,
    retention: 24 * 60 * 60 * 1000,
    inboxCapacity: 10_000,
    maxBodyBytes: 1024 * 1024 - 1,
    presenceInterval: 100,
    limits: ServerLimits.defaults,
    version: "0.0.0",
    ...overrides
  }
}
