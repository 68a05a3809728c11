/**
 * SpawnTokens: the short-lived peer tokens of spawn orders. The broker mints one per spawn
 * (it travels in the order to the runner, which hands it to the agent), accepts it until the
 * spawn ends, then revokes it. A server consults this service after whatever `Authenticator`
 * it was given (see `authenticateWith`), so a custom authenticator never needs to know about
 * spawn tokens.
 *
 * Tokens are kept only as SHA-256 hashes. Where they are kept is a `SpawnTokenBacking`: memory
 * here (one process), a database in the broker (several instances share it).
 */
import { Context, Effect, Layer } from "effect"
import { type ServiceUnavailable, Unauthorized } from "./Errors.js"
import { randomToken, nowIso, type SpawnId } from "./Ids.js"
import type { Permission } from "./Permission.js"
import { Principal } from "./Principal.js"
import type { AuthenticatorService } from "./Authenticator.js"
import { digestsEqual, hashSecret } from "./VirtualKey.js"

/** The prefix of every spawn token (the same as the broker's static tokens). */
export const TOKEN_PREFIX = "a2a_"

/** A spawn token as kept: never the secret. */
export interface SpawnTokenRecord {
  /** `st_<spawn id>`. */
  readonly id: string
  /** SHA-256 (hex) of the token. */
  readonly hash: string
  readonly tenant: string
  readonly roles: ReadonlyArray<"peer">
  readonly createdAt: string
  readonly spawnId: SpawnId
  /** The spec's `grants`, added to the peer role's permissions. */
  readonly scopes?: ReadonlyArray<Permission> | undefined
}

/** Where records are kept. */
export interface SpawnTokenBacking {
  readonly put: (record: SpawnTokenRecord) => Effect.Effect<void, ServiceUnavailable>
  readonly find: (hash: string) => Effect.Effect<SpawnTokenRecord | undefined, ServiceUnavailable>
  readonly revoke: (spawnId: string) => Effect.Effect<void, ServiceUnavailable>
}

export interface SpawnTokensService extends AuthenticatorService {
  /** Mint the token of a spawn: good for registering (and then acting as) that spawn's peer only. */
  readonly issue: (tenant: string, spawnId: SpawnId, grants?: ReadonlyArray<Permission>) => Effect.Effect<string, ServiceUnavailable>
  /** Stop the spawn's token working (idempotent). */
  readonly revoke: (spawnId: SpawnId) => Effect.Effect<void, ServiceUnavailable>
}

export class SpawnTokens extends Context.Tag("@mks/a2a/SpawnTokens")<SpawnTokens, SpawnTokensService>() {}

/** The principal a spawn token stands for. */
export const principalOf = (record: SpawnTokenRecord): Principal =>
  new Principal({
    subject: `spawn:${record.spawnId}`,
    tenant: record.tenant,
    roles: record.roles,
    spawnId: record.spawnId,
    ...(record.scopes !== undefined && record.scopes.length > 0 ? { scopes: record.scopes } : {})
  })

const unauthorized = new Unauthorized({ message: "invalid token" })

/** Spawn tokens over `backing`. A store failure while authenticating refuses the token (as a defect, logged by the server). */
export const make = (backing: SpawnTokenBacking): SpawnTokensService => ({
  authenticate: (token) => {
    if (!token.startsWith(TOKEN_PREFIX)) return Effect.fail(unauthorized)
    const hash = hashSecret(token)
    return backing.find(hash).pipe(
      Effect.orDie,
      Effect.flatMap((record) => (record !== undefined && digestsEqual(record.hash, hash) ? Effect.succeed(principalOf(record)) : Effect.fail(unauthorized)))
    )
  },
  issue: (tenant, spawnId, grants) =>
    Effect.suspend(() => {
      const token = TOKEN_PREFIX + randomToken(40)
      const record: SpawnTokenRecord = {
        id: `st_${spawnId}`,
        hash: hashSecret(token),
        tenant,
        roles: ["peer"],
        createdAt: nowIso(),
        spawnId,
        ...(grants !== undefined && grants.length > 0 ? { scopes: grants } : {})
      }
      return backing.put(record).pipe(Effect.as(token))
    }),
  revoke: (spawnId) => backing.revoke(spawnId)
})

/** A backing in this process's memory (tokens do not survive a restart). */
export const makeMemoryBacking = (): SpawnTokenBacking => {
  const byHash = new Map<string, SpawnTokenRecord>()
  return {
    put: (record) => Effect.sync(() => void byHash.set(record.hash, record)),
    find: (hash) => Effect.sync(() => byHash.get(hash)),
    revoke: (spawnId) =>
      Effect.sync(() => {
        for (const [hash, record] of byHash) if (record.spawnId === spawnId) byHash.delete(hash)
      })
  }
}

/** Spawn tokens in memory, for one process. */
export const layerMemory: Layer.Layer<SpawnTokens> = Layer.sync(SpawnTokens, () => make(makeMemoryBacking()))

/**
 * An authenticator that tries `authenticator` first, then the spawn tokens: what a server uses
 * so that spawned agents get in whatever authenticator it was given.
 */
export const authenticateWith = (authenticator: AuthenticatorService, spawnTokens: SpawnTokensService): AuthenticatorService => ({
  authenticate: (token) => authenticator.authenticate(token).pipe(Effect.catchTag("Unauthorized", (refused) => spawnTokens.authenticate(token).pipe(Effect.mapError(() => refused))))
})
