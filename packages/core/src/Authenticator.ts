/**
 * Authenticator: bearer token → Principal. Servers compose several (static hashed tokens,
 * OIDC JWTs) with `firstOf`.
 */
import { Context, Effect } from "effect"
import { Unauthorized } from "./Errors.js"
import type { Principal } from "./Principal.js"

export interface AuthenticatorService {
  /** The principal of a token, or `Unauthorized` (never saying which part was wrong beyond a short reason). */
  readonly authenticate: (token: string) => Effect.Effect<Principal, Unauthorized>
}

export class Authenticator extends Context.Tag("@mks/a2a/Authenticator")<Authenticator, AuthenticatorService>() {}
