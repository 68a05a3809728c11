/**
 * OIDC access tokens (JWT) verified against the issuer's JWKS with `jose`: signature, `iss`,
 * `aud`, `exp`/`nbf`, and the client id (`azp` or `client_id`) against an allowlist. Tenant and
 * roles come from configurable claims. client_credentials tokens are the machine-to-machine case.
 */
import { Authenticator, Errors, Principal } from "@mks/a2a"
import { Effect } from "effect"
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose"
import type { OidcConfig } from "./BrokerConfig.js"

const ROLES = new Set<Principal.Role>(["admin", "peer", "runner"])

const rolesOf = (claim: unknown): ReadonlyArray<Principal.Role> => {
  const raw = Array.isArray(claim) ? claim : typeof claim === "string" ? claim.split(/\s+/) : []
  const roles = raw.filter((r): r is Principal.Role => typeof r === "string" && ROLES.has(r as Principal.Role))
  return roles.length > 0 ? roles : ["peer"]
}

/** Whether a bearer token looks like a JWT (three base64url segments). */
export const isJwt = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)

const discoverJwks = (config: OidcConfig) =>
  config.jwksUri !== undefined
    ? Effect.succeed(config.jwksUri)
    : Effect.tryPromise({
        try: async () => {
          const res = await fetch(`${config.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`)
          if (!res.ok) throw new Error(`HTTP ${res.status}`)
          const doc = (await res.json()) as { jwks_uri?: string }
          if (typeof doc.jwks_uri !== "string") throw new Error("no jwks_uri")
          return doc.jwks_uri
        },
        catch: (e) => new Errors.ServiceUnavailable({ message: `OIDC discovery for ${config.issuer} failed: ${String(e)}` })
      })

/** An authenticator for the issuer; JWKS is discovered on first use and cached (with key rotation handled by jose). */
export const make = (config: OidcConfig) =>
  Effect.gen(function* () {
    const jwks = yield* Effect.cached(discoverJwks(config).pipe(Effect.map((uri) => createRemoteJWKSet(new URL(uri)))))
    const service: Authenticator.AuthenticatorService = {
      authenticate: (token) =>
        Effect.gen(function* () {
          if (!isJwt(token)) return yield* Effect.fail(new Errors.Unauthorized({ message: "invalid token" }))
          const keys = yield* jwks.pipe(Effect.mapError((e) => new Errors.Unauthorized({ message: e.message })))
          const payload: JWTPayload = yield* Effect.tryPromise({
            try: () => jwtVerify(token, keys, { issuer: config.issuer, audience: config.audience }).then((r) => r.payload),
            catch: (e) => new Errors.Unauthorized({ message: `invalid token: ${(e as { code?: string }).code ?? "verification failed"}` })
          })
          const clientId = typeof payload.azp === "string" ? payload.azp : typeof payload.client_id === "string" ? (payload.client_id as string) : undefined
          if (config.allowedClients.length > 0 && (clientId === undefined || !config.allowedClients.includes(clientId))) {
            return yield* Effect.fail(new Errors.Unauthorized({ message: "invalid token: client not allowed" }))
          }
          const tenant = payload[config.tenantClaim]
          return new Principal.Principal({
            subject: payload.sub ?? clientId ?? "unknown",
            tenant: typeof tenant === "string" && tenant.length > 0 ? tenant : config.defaultTenant,
            roles: rolesOf(payload[config.rolesClaim]),
            clientId
          })
        })
    }
    return service
  })
