/**
 * OIDC access tokens (JWT) as an `Authenticator`: verified with `jose` against the issuer's
 * JWKS (signature, `iss`, `aud`, `exp`/`nbf`), the client id (`azp` or `client_id`) checked
 * against an allowlist; tenant and roles come from configurable claims. client_credentials
 * tokens are the machine-to-machine case. Used by the broker (all roles) and by the proxy's
 * control plane (admins).
 */
import { Effect, Layer, Schema } from "effect"
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose"
import { Authenticator, type AuthenticatorService } from "./Authenticator.js"
import { ServiceUnavailable, Unauthorized } from "./Errors.js"
import { Tenant } from "./Ids.js"
import { fromClaim } from "./Permission.js"
import { Principal, type Role } from "./Principal.js"

/** How to verify an issuer's tokens. Decoding fills the defaults (`tenant`, `default`, `roles`, no allowlist). */
export const OidcConfig = Schema.Struct({
  /** Expected `iss`; also where `/.well-known/openid-configuration` is read when `jwksUri` is absent. */
  issuer: Schema.String.pipe(Schema.nonEmptyString()),
  /** Expected `aud`. */
  audience: Schema.String.pipe(Schema.nonEmptyString()),
  /** Allowed OAuth client ids (`azp` or `client_id`); empty allows any client of the issuer. */
  allowedClients: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  /** JWKS URL; discovered from the issuer when absent. */
  jwksUri: Schema.optional(Schema.String),
  /** Claim holding the tenant; tokens without it get `defaultTenant`. */
  tenantClaim: Schema.optionalWith(Schema.String, { default: () => "tenant" }),
  defaultTenant: Schema.optionalWith(Schema.String, { default: () => "default" }),
  /** Claim holding the roles (an array, or a space-separated string); tokens with none get `["peer"]`. */
  rolesClaim: Schema.optionalWith(Schema.String, { default: () => "roles" }),
  /** Claim holding extra permissions (default `a2a_permissions`; `Permission.ts`: an array, or a space/comma-separated string); unknown names are ignored. */
  permissionsClaim: Schema.optional(Schema.String)
})
export type OidcConfig = typeof OidcConfig.Type

const isTenant = Schema.is(Tenant)

const ROLES = new Set<Role>(["admin", "peer", "runner"])

const rolesOf = (claim: unknown): ReadonlyArray<Role> => {
  const raw = Array.isArray(claim) ? claim : typeof claim === "string" ? claim.split(/\s+/) : []
  const roles = raw.filter((r): r is Role => typeof r === "string" && ROLES.has(r as Role))
  return roles.length > 0 ? roles : ["peer"]
}

const scopesOf = (claim: unknown) => {
  const scopes = fromClaim(claim)
  return scopes.length > 0 ? { scopes } : {}
}

/** Whether a bearer token looks like a JWT (three base64url segments). */
export const isJwt = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)

const discoverJwks = (config: OidcConfig): Effect.Effect<URL, ServiceUnavailable> =>
  Effect.tryPromise({
    try: async () => {
      if (config.jwksUri !== undefined) return new URL(config.jwksUri)
      const res = await fetch(`${config.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(10_000) })
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
      const doc = (await res.json()) as { jwks_uri?: unknown }
      if (typeof doc.jwks_uri !== "string") throw new Error("no jwks_uri")
      return new URL(doc.jwks_uri)
    },
    catch: (e) => new ServiceUnavailable({ message: `OIDC discovery for ${config.issuer} failed: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * An authenticator for the issuer. The JWKS URL is discovered on first use; a failed discovery
 * is retried by the next token (it is not cached), and key rotation is handled by jose.
 */
export const make = (config: OidcConfig): Effect.Effect<AuthenticatorService> =>
  Effect.sync(() => {
    // Discovered once; a failed discovery is not kept, so the next token tries again.
    let keys: ReturnType<typeof createRemoteJWKSet> | undefined
    const keySet = Effect.suspend(() =>
      keys !== undefined
        ? Effect.succeed(keys)
        : Effect.map(discoverJwks(config), (url) => (keys = createRemoteJWKSet(url)))
    )
    const service: AuthenticatorService = {
      authenticate: (token) =>
        Effect.gen(function* () {
          if (!isJwt(token)) return yield* Effect.fail(new Unauthorized({ message: "invalid token" }))
          const set = yield* keySet.pipe(Effect.mapError((e) => new Unauthorized({ message: e.message })))
          const payload: JWTPayload = yield* Effect.tryPromise({
            try: () => jwtVerify(token, set, { issuer: config.issuer, audience: config.audience }).then((r) => r.payload),
            catch: (e) => new Unauthorized({ message: `invalid token: ${(e as { code?: string }).code ?? "verification failed"}` })
          })
          const clientId =
            typeof payload.azp === "string" ? payload.azp : typeof payload.client_id === "string" ? (payload.client_id as string) : undefined
          if (config.allowedClients.length > 0 && (clientId === undefined || !config.allowedClients.includes(clientId))) {
            return yield* Effect.fail(new Unauthorized({ message: "invalid token: client not allowed" }))
          }
          const claimed = payload[config.tenantClaim]
          const tenant = typeof claimed === "string" && claimed.length > 0 ? claimed : config.defaultTenant
          if (!isTenant(tenant)) return yield* Effect.fail(new Unauthorized({ message: `invalid token: ${config.tenantClaim} is not a tenant name` }))
          return new Principal({
            subject: payload.sub ?? clientId ?? "unknown",
            tenant,
            roles: rolesOf(payload[config.rolesClaim]),
            clientId,
            ...scopesOf(payload[config.permissionsClaim ?? "a2a_permissions"])
          })
        })
    }
    return service
  })

/** `Authenticator` that accepts only the issuer's tokens. */
export const layer = (config: OidcConfig): Layer.Layer<Authenticator> => Layer.effect(Authenticator, make(config))
