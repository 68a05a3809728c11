/**
 * Authenticator: bearer token → Principal. Servers compose several (static hashed tokens,
 * OIDC JWTs) with `firstOf`.
 */
import { Context, Effect, Layer } from "effect"
import { Unauthorized } from "./Errors.js"
import * as internal from "./internal/authenticatorMemory.js"
import type { Principal } from "./Principal.js"

export interface AuthenticatorService {
  /** The principal of a token, or `Unauthorized` (never saying which part was wrong beyond a short reason). */
  readonly authenticate: (token: string) => Effect.Effect<Principal, Unauthorized>
}

export class Authenticator extends Context.Tag("@mks/a2a/Authenticator")<Authenticator, AuthenticatorService>() {}

/**
 * A table of bearer tokens kept only as SHA-256 hashes (compared in constant time). The broker
 * mints spawn-scoped peer tokens with `issue` and drops them with `revoke` / `revokeWhere`.
 */
export interface StaticTokensService extends AuthenticatorService {
  /** Mint a fresh token (`a2a_` + 256 random bits) for `principal`; the plaintext is returned here only. */
  readonly issue: (principal: Principal) => Effect.Effect<string>
  /** Stop a token working at once; `false` if it was not in the table. */
  readonly revoke: (token: string) => Effect.Effect<boolean>
  /** Revoke every token whose principal matches (e.g. all tokens of a finished spawn); returns how many. */
  readonly revokeWhere: (predicate: (principal: Principal) => boolean) => Effect.Effect<number>
}

export class StaticTokens extends Context.Tag("@mks/a2a/Authenticator/StaticTokens")<StaticTokens, StaticTokensService>() {}

/** A static token table in memory, seeded with `initial` (plaintext tokens, hashed on the way in). */
export const makeStaticTokens: (
  initial?: ReadonlyArray<{ readonly token: string; readonly principal: Principal }>
) => Effect.Effect<StaticTokensService> = internal.makeStaticTokens

/** Try each authenticator in order: the first success wins; `Unauthorized` if every one refuses. */
export const firstOf: (...authenticators: ReadonlyArray<AuthenticatorService>) => AuthenticatorService = internal.firstOf

/** `Authenticator` backed by an in-memory static token table, which is also provided as `StaticTokens`. */
export const layerMemory = (
  initial: ReadonlyArray<{ readonly token: string; readonly principal: Principal }> = []
): Layer.Layer<Authenticator | StaticTokens> =>
  Layer.effectContext(
    Effect.map(makeStaticTokens(initial), (tokens) => Context.make(StaticTokens, tokens).pipe(Context.add(Authenticator, tokens)))
  )
