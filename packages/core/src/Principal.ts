/**
 * Who is calling: the result of authenticating a bearer token (static or OIDC).
 */
import { Context, Schema } from "effect"
import { SpawnId, Tenant } from "./Ids.js"
import { Permission } from "./Permission.js"

export const Role = Schema.Literal("admin", "peer", "runner")
export type Role = typeof Role.Type

export class Principal extends Schema.Class<Principal>("Principal")({
  /** Stable subject: the static token's id or the JWT `sub`. */
  subject: Schema.String,
  tenant: Tenant,
  roles: Schema.Array(Role),
  /** OAuth client id (`azp` / `client_id`) for OIDC tokens. */
  clientId: Schema.optional(Schema.String),
  /** Set on peer tokens minted for one spawn: the token may only register that spawn's peer. */
  spawnId: Schema.optional(SpawnId),
  /** Permissions added to the roles' (see `Permission.ts`): a token's scopes, an OIDC claim, a spawn's grants. */
  scopes: Schema.optional(Schema.Array(Permission))
}) {
  hasRole(role: Role): boolean {
    return this.roles.includes(role) || this.roles.includes("admin")
  }
  get isAdmin(): boolean {
    return this.roles.includes("admin")
  }
}

/** The authenticated principal of the current request or connection. */
export class CurrentPrincipal extends Context.Tag("@mks/a2a/Principal/CurrentPrincipal")<
  CurrentPrincipal,
  Principal
>() {}
