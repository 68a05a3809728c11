/**
 * Static bearer tokens of the broker, stored only as SHA-256 hashes in a 0600 JSON file that is
 * written atomically (temp file, fsync, rename), or only in memory (`layerMemory`, for a broker
 * embedded in an app). The short-lived peer tokens of spawn orders are not here: they are
 * core's `SpawnTokens` service, which the broker consults after any authenticator
 * (`spawnTokensLayer` picks where they are kept).
 */
import { Authenticator, Errors, Ids, Permission, Principal, SpawnTokens, VirtualKey } from "@mks/a2a"
import { AtomicFile } from "@mks/a2a/internal"
import { Context, Effect, Layer, Option, Ref, Schema } from "effect"
import { existsSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"

export const TokenRecord = Schema.Struct({
  id: Schema.String,
  name: Schema.optional(Schema.String),
  hash: Schema.String,
  tenant: Ids.Tenant,
  roles: Schema.Array(Principal.Role),
  createdAt: Schema.String,
  spawnId: Schema.optional(Ids.SpawnId),
  /** Permissions added to the roles' (`Permission.ts`); for a spawn token, its spec's `grants`. */
  scopes: Schema.optional(Schema.Array(Permission.Permission))
})
export type TokenRecord = typeof TokenRecord.Type

const TokenFile = Schema.parseJson(Schema.Struct({ version: Schema.Literal(1), tokens: Schema.Array(TokenRecord) }))

/** A listed token: never the hash, never the secret. */
export type TokenInfo = Omit<TokenRecord, "hash">

export interface TokenStoreService extends Authenticator.AuthenticatorService {
  /** Create a token; the secret is returned here only. */
  readonly create: (input: {
    readonly tenant: string
    readonly roles: ReadonlyArray<Principal.Role>
    readonly name?: string | undefined
    readonly scopes?: ReadonlyArray<Permission.Permission> | undefined
  }) => Effect.Effect<{ readonly token: string; readonly info: TokenInfo }, Errors.ServiceUnavailable>
  readonly list: Effect.Effect<ReadonlyArray<TokenInfo>>
  readonly revoke: (id: string) => Effect.Effect<void, Errors.Unauthorized | Errors.ServiceUnavailable>
  /** The id of the static token `token` is (not a spawn token), if it is one in force. */
  readonly idOf: (token: string) => Effect.Effect<string | undefined>
  /** The ids of the static tokens in force, after reloading the file if it changed (a revoke by the CLI). */
  readonly activeIds: Effect.Effect<ReadonlySet<string>>
}

export class TokenStore extends Context.Tag("@mks/a2a-broker/TokenStore")<TokenStore, TokenStoreService>() {}

/**
 * Where spawn tokens live when several brokers share a store (PostgreSQL): a token issued by
 * one instance is accepted, and revoked, by all. Without it they are kept in this process.
 */
export interface SharedSpawnTokensService {
  readonly put: (record: TokenRecord) => Effect.Effect<void>
  readonly find: (hash: string) => Effect.Effect<TokenRecord | undefined>
  readonly revoke: (spawnId: string) => Effect.Effect<void>
}

export class SharedSpawnTokens extends Context.Tag("@mks/a2a-broker/SharedSpawnTokens")<SharedSpawnTokens, SharedSpawnTokensService>() {}

export const TOKEN_PREFIX = SpawnTokens.TOKEN_PREFIX
export const newSecret = (): string => TOKEN_PREFIX + Ids.randomToken(40)

/** Write `data` to `path` atomically with mode 0600: a crash leaves the old or the new file, never half of one. */
export const writeFileAtomic = (path: string, data: string): void => AtomicFile.writeSync(path, data, { mode: 0o600 })

const readTokens = (path: string): Effect.Effect<ReadonlyArray<TokenRecord>, Errors.ServiceUnavailable> =>
  existsSync(path)
    ? Effect.try({
        try: () => readFileSync(path, "utf8"),
        catch: (e) => new Errors.ServiceUnavailable({ message: `cannot read token file ${path}: ${String(e)}` })
      }).pipe(
        Effect.flatMap((text) => Schema.decode(TokenFile)(text)),
        Effect.map((file) => file.tokens),
        Effect.mapError((e) => (e._tag === "ServiceUnavailable" ? e : new Errors.ServiceUnavailable({ message: `token file ${path} is corrupt` })))
      )
    : Effect.succeed([])

// A record's principal, built once per record (a Schema class validates on construction, which
// showed in the profile of the HTTP send path). A revoked or reloaded token is a record no longer
// in the list, so the cache never outlives a revoke.
const principals = new WeakMap<TokenRecord, Principal.Principal>()
const principalOf = (record: TokenRecord): Principal.Principal => {
  let principal = principals.get(record)
  if (principal === undefined) principals.set(record, (principal = makePrincipal(record)))
  return principal
}
const makePrincipal = (record: TokenRecord): Principal.Principal =>
  new Principal.Principal({
    subject: record.spawnId !== undefined ? `spawn:${record.spawnId}` : record.id,
    tenant: record.tenant,
    roles: record.roles,
    spawnId: record.spawnId,
    ...(record.scopes !== undefined && record.scopes.length > 0 ? { scopes: record.scopes } : {})
  })

/** A token store backed by `path` (`<home>/tokens.json`), or by memory only when `path` is undefined. */
export const make = (path: string | undefined) =>
  Effect.gen(function* () {
    // One stat per authentication (no existsSync first): this runs on every request.
    const mtimeOf = () => (path === undefined ? 0 : (statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0))
    let loadedAt = mtimeOf()
    const records = yield* Ref.make<ReadonlyArray<TokenRecord>>(path === undefined ? [] : yield* readTokens(path))
    // The CLI edits the file while the broker runs: reload when it changed, so a revoke takes effect at once.
    const fresh = Effect.suspend(() => {
      const mtime = mtimeOf()
      if (path === undefined || mtime === loadedAt) return Effect.void
      return readTokens(path).pipe(
        Effect.flatMap((next) => Ref.set(records, next)),
        Effect.tap(() => Effect.sync(() => (loadedAt = mtime))),
        Effect.catchAll((e) => Effect.logError(e.message))
      )
    })
    // The id set of the last records seen by activeIds (rebuilt only when the records change).
    let idsFor: ReadonlyArray<TokenRecord> | undefined
    let ids: ReadonlySet<string> = new Set()
    const lock = yield* Effect.makeSemaphore(1)

    const persist = (next: ReadonlyArray<TokenRecord>) =>
      Effect.try({
        try: () => (path === undefined ? undefined : writeFileAtomic(path, JSON.stringify({ version: 1, tokens: next }, null, 2) + "\n")),
        catch: (e) => new Errors.ServiceUnavailable({ message: `cannot write token file ${path}: ${String(e)}` })
      }).pipe(Effect.zipRight(Ref.set(records, next)), Effect.tap(() => Effect.sync(() => (loadedAt = mtimeOf()))))

    const unauthorized = new Errors.Unauthorized({ message: "invalid token" })

    const service: TokenStoreService = {
      authenticate: (token) =>
        Effect.gen(function* () {
          if (!token.startsWith(TOKEN_PREFIX)) return yield* Effect.fail(unauthorized)
          const hash = VirtualKey.hashSecret(token)
          yield* fresh
          const found = (yield* Ref.get(records)).find((r) => VirtualKey.digestsEqual(r.hash, hash))
          return found === undefined ? yield* Effect.fail(unauthorized) : principalOf(found)
        }),
      create: ({ tenant, roles, name, scopes }) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            // Start from the file as it is now: the CLI may have changed it since it was loaded.
            yield* fresh
            const token = newSecret()
            const record: TokenRecord = {
              id: `t_${Ids.randomToken(12)}`,
              name,
              hash: VirtualKey.hashSecret(token),
              tenant,
              roles,
              createdAt: Ids.nowIso(),
              ...(scopes !== undefined && scopes.length > 0 ? { scopes } : {})
            }
            yield* persist([...(yield* Ref.get(records)), record])
            const { hash: _hash, ...info } = record
            return { token, info }
          })
        ),
      list: fresh.pipe(Effect.zipRight(Ref.get(records)), Effect.map((all) => all.map(({ hash: _hash, ...info }) => info))),
      revoke: (id) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            yield* fresh
            const all = yield* Ref.get(records)
            if (!all.some((r) => r.id === id)) return yield* Effect.fail(new Errors.Unauthorized({ message: `no token ${id}` }))
            yield* persist(all.filter((r) => r.id !== id))
          })
        ),
      idOf: (token) =>
        Effect.gen(function* () {
          if (!token.startsWith(TOKEN_PREFIX)) return undefined
          const hash = VirtualKey.hashSecret(token)
          yield* fresh
          return (yield* Ref.get(records)).find((r) => VirtualKey.digestsEqual(r.hash, hash))?.id
        }),
      activeIds: fresh.pipe(
        Effect.zipRight(Ref.get(records)),
        Effect.map((all) => {
          if (all !== idsFor) {
            idsFor = all
            ids = new Set(all.map((r) => r.id))
          }
          return ids
        })
      )
    }
    return service
  })

export const layer = (path: string) => Layer.effect(TokenStore, make(path))

/** A token store in memory only (nothing written): for a broker embedded in an app that mints its tokens with `create`. */
export const layerMemory: Layer.Layer<TokenStore> = Layer.effect(TokenStore, Effect.orDie(make(undefined)))

/**
 * Core's `SpawnTokens` for this broker: in its store when the store keeps them (SQLite,
 * PostgreSQL: a token issued by one instance is accepted, and revoked, by all), else in memory
 * (a spawned agent that outlives a broker restart re-registers through its runner's next order).
 */
export const spawnTokensLayer: Layer.Layer<SpawnTokens.SpawnTokens> = Layer.effect(
  SpawnTokens.SpawnTokens,
  Effect.map(Effect.serviceOption(SharedSpawnTokens), (shared) =>
    SpawnTokens.make(
      Option.isNone(shared)
        ? SpawnTokens.makeMemoryBacking()
        : {
            put: (record) => shared.value.put(record as TokenRecord),
            find: (hash) => shared.value.find(hash) as Effect.Effect<SpawnTokens.SpawnTokenRecord | undefined>,
            revoke: (spawnId) => shared.value.revoke(spawnId)
          }
    )
  )
)

/** Where the first-start admin token is written. */
export const adminTokenPath = (home: string) => join(home, "broker.token")

/**
 * First start with nothing configured: create an admin token, write it to `<home>/broker.token`
 * (0600) for local clients, and say where it is. Returns the path when one was created.
 */
export const ensureAdminToken = (home: string, hasOidc: boolean) =>
  Effect.gen(function* () {
    const store = yield* TokenStore
    const existing = yield* store.list
    const file = adminTokenPath(home)
    if (existing.length > 0 || hasOidc) return undefined
    const { token } = yield* store.create({ tenant: "default", roles: ["admin"], name: "first-start admin" })
    yield* Effect.try({
      try: () => writeFileAtomic(file, token + "\n"),
      catch: (e) => new Errors.ServiceUnavailable({ message: `cannot write ${file}: ${String(e)}` })
    })
    yield* Effect.logInfo(`created an admin token for tenant "default"; it is in ${file}`)
    return file
  })
