/**
 * Permissions: what a principal may do with spawns and agents, as explicit names carried by
 * roles (defaults below) and token scopes (static tokens' `scopes`, an OIDC claim, a spawn
 * spec's `grants` for its own token). One rule for every store and embedder:
 *
 * | permission      | allows                                                            |
 * |-----------------|-------------------------------------------------------------------|
 * | `spawn`         | create spawns of the `claude` preset                              |
 * | `spawn:command` | create spawns of the `command` preset (any argv on the runner)    |
 * | `stop`          | stop spawns this principal created                                |
 * | `stop:any`      | stop any spawn of the tenant                                      |
 * | `attach`        | read the log / use the terminal of spawns this principal created  |
 * | `attach:any`    | the same for any spawn of the tenant                              |
 * | `audit`         | read the tenant's audit log                                       |
 * | `metrics`       | read the broker's process-wide `/metrics` (every tenant's totals)  |
 *
 * Roles carry: `admin` every permission but `metrics`; `peer` `spawn`, `stop`, `attach`; `runner`
 * none. `metrics` is an operator's: a scope, or the admin role in the operator tenant (`default`,
 * where the broker's own admin token lives; see `canReadMetrics`).
 * A spawn's own token carries none of them except those its spec `grants` (which the creator
 * must hold itself). Scopes add to what the roles carry; they never take away.
 */
import { Either, Schema } from "effect"
import { Forbidden } from "./Errors.js"
import type { Principal, Role } from "./Principal.js"
import type { SpawnSpec } from "./Spawn.js"

export const Permission = Schema.Literal("spawn", "spawn:command", "stop", "stop:any", "attach", "attach:any", "audit", "metrics")
export type Permission = typeof Permission.Type

export const ALL: ReadonlyArray<Permission> = Permission.literals

/** What each role carries by default. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, ReadonlyArray<Permission>>> = {
  admin: ALL.filter((p) => p !== "metrics"),
  peer: ["spawn", "stop", "attach"],
  runner: []
}

const isPermission = Schema.is(Permission)

/** The known permission names in a claim (an array or a space/comma-separated string); others are ignored. */
export const fromClaim = (claim: unknown): ReadonlyArray<Permission> => {
  const raw = Array.isArray(claim) ? claim : typeof claim === "string" ? claim.split(/[\s,]+/) : []
  return [...new Set(raw.filter(isPermission))]
}

/** Every permission `principal` holds: its roles' (none for a spawn's own token) and its scopes. */
export const permissionsOf = (principal: Principal): ReadonlySet<Permission> => {
  const out = new Set<Permission>()
  if (principal.spawnId === undefined || principal.roles.includes("admin")) {
    for (const role of principal.roles) for (const p of ROLE_PERMISSIONS[role]) out.add(p)
  }
  for (const p of principal.scopes ?? []) out.add(p)
  return out
}

export const has = (principal: Principal, permission: Permission): boolean => permissionsOf(principal).has(permission)

/** The tenant whose admins operate the broker (its first-start admin token is of this tenant). */
export const OPERATOR_TENANT = "default"

/**
 * Whether `principal` may read process-wide metrics, which count every tenant: the `metrics`
 * scope, or the admin role (not a spawn's token) in the operator tenant.
 */
export const canReadMetrics = (principal: Principal): boolean =>
  has(principal, "metrics") || (principal.spawnId === undefined && principal.roles.includes("admin") && principal.tenant === OPERATOR_TENANT)

const refuse = (message: string) => Either.left(new Forbidden({ message }))

/** The permission a spec's preset needs. */
export const spawnPermissionOf = (spec: Pick<SpawnSpec, "preset" | "command">): Permission =>
  (spec.preset ?? (spec.command !== undefined ? "command" : "claude")) === "command" ? "spawn:command" : "spawn"

/**
 * May `principal` create this spawn? Its preset needs `spawn` (claude) or `spawn:command`, and
 * every permission the spec `grants` its token must be one the principal holds itself.
 */
export const authorizeSpawn = (principal: Principal, spec: Pick<SpawnSpec, "preset" | "command" | "grants">): Either.Either<void, Forbidden> => {
  const held = permissionsOf(principal)
  const needed = spawnPermissionOf(spec)
  if (!held.has(needed)) {
    return refuse(
      principal.spawnId !== undefined
        ? `a spawn's token may not spawn unless its spec grants "${needed}"`
        : `spawning the ${needed === "spawn:command" ? "command" : "claude"} preset needs the "${needed}" permission`
    )
  }
  const extra = (spec.grants ?? []).filter((p) => !held.has(p))
  if (extra.length > 0) return refuse(`a spawn can be granted only permissions its creator holds (not ${extra.join(", ")})`)
  return Either.right(undefined)
}

/** Whether `principal` created the spawn (its `owner`), or is that spawn's own token. */
export const owns = (principal: Principal, spawn: { readonly id: string; readonly spec: Pick<SpawnSpec, "owner"> }): boolean =>
  (spawn.spec.owner !== undefined && spawn.spec.owner === principal.subject) || principal.spawnId === spawn.id

const onSpawn =
  (own: Permission, any: Permission, verb: string, action: string) =>
  (principal: Principal, spawn: { readonly id: string; readonly spec: Pick<SpawnSpec, "owner"> }): Either.Either<void, Forbidden> => {
    const held = permissionsOf(principal)
    if (held.has(any)) return Either.right(undefined)
    if (held.has(own) && owns(principal, spawn)) return Either.right(undefined)
    if (held.has(own)) return refuse(`${verb} spawn ${spawn.id} needs "${any}": it was created by another principal`)
    return refuse(principal.spawnId !== undefined ? `a spawn's token may not ${action} spawns unless its spec grants "${own}"` : `${verb} a spawn needs the "${own}" permission`)
  }

/** May `principal` stop this spawn? `stop` for its own, `stop:any` for any of the tenant. */
export const authorizeStop = onSpawn("stop", "stop:any", "Stopping", "stop")
/** May `principal` read this spawn's log or use its terminal? `attach` for its own, `attach:any` for any. */
export const authorizeAttach = onSpawn("attach", "attach:any", "Attaching to", "attach to")
