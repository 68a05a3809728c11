/**
 * In-memory static token table (only SHA-256 hashes kept) and the `firstOf` combinator.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import type { AuthenticatorService, StaticTokensService } from "../Authenticator.js"
import { Unauthorized } from "../Errors.js"
import type { Principal } from "../Principal.js"
import { digestsEqual, hashSecret } from "../VirtualKey.js"

/** Prefix of broker tokens, so a leaked one is recognisable (secret scanners, logs). */
const TOKEN_PREFIX = "a2a_"

/** 32 random bytes, base64url: 256 bits of entropy. */
const mintToken = (): string => TOKEN_PREFIX + randomBytes(32).toString("base64url")

export const makeStaticTokens = (
  initial: ReadonlyArray<{ readonly token: string; readonly principal: Principal }> = []
): Effect.Effect<StaticTokensService> =>
  Effect.sync(() => {
    // Keyed by hash: a lookup by the digest of a high-entropy token leaks nothing usable;
    // the final comparison is constant-time all the same.
    const table = new Map<string, { readonly hash: string; readonly principal: Principal }>()
    for (const { principal, token } of initial) {
      const hash = hashSecret(token)
      table.set(hash, { hash, principal })
    }

    const authenticate: StaticTokensService["authenticate"] = (token) =>
      Effect.suspend(() => {
        if (token.length === 0) return Effect.fail(new Unauthorized({ message: "missing token" }))
        const hash = hashSecret(token)
        const entry = table.get(hash)
        return entry !== undefined && digestsEqual(entry.hash, hash)
          ? Effect.succeed(entry.principal)
          : Effect.fail(new Unauthorized({ message: "invalid token" }))
      })

    const issue: StaticTokensService["issue"] = (principal) =>
      Effect.sync(() => {
        const token = mintToken()
        const hash = hashSecret(token)
        table.set(hash, { hash, principal })
        return token
      })

    const revoke: StaticTokensService["revoke"] = (token) => Effect.sync(() => table.delete(hashSecret(token)))

    const revokeWhere: StaticTokensService["revokeWhere"] = (predicate) =>
      Effect.sync(() => {
        let removed = 0
        for (const [hash, entry] of table) {
          if (predicate(entry.principal)) {
            table.delete(hash)
            removed++
          }
        }
        return removed
      })

    return { authenticate, issue, revoke, revokeWhere } satisfies StaticTokensService
  })

export const firstOf = (...authenticators: ReadonlyArray<AuthenticatorService>): AuthenticatorService => ({
  authenticate: (token) =>
    authenticators.reduce<Effect.Effect<Principal, Unauthorized>>(
      // Each failure hands over to the next; the last one's short reason is what the caller sees.
      (previous, next) => Effect.catchTag(previous, "Unauthorized", () => next.authenticate(token)),
      Effect.fail(new Unauthorized({ message: "no authenticator configured" }))
    )
})
