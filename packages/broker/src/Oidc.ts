/**
 * OIDC access tokens (JWT) for the broker: core's `Oidc` verifier (jose, JWKS, `iss`/`aud`/
 * `exp`/`nbf`, client allowlist, tenant and role claims), re-exported for the broker's config.
 */
import { Oidc } from "@mks/a2a"
import type { Authenticator } from "@mks/a2a"
import type { Effect } from "effect"
import type { OidcConfig } from "./BrokerConfig.js"

/** Whether a bearer token looks like a JWT (three base64url segments). */
export const isJwt: (token: string) => boolean = Oidc.isJwt

/** An authenticator for the issuer; JWKS is discovered on first use and cached (with key rotation handled by jose). */
export const make = (config: OidcConfig): Effect.Effect<Authenticator.AuthenticatorService> => Oidc.make(config)
