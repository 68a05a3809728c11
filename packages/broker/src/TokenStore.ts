/**
 * Static bearer tokens of the broker, stored only as SHA-256 hashes in a 0600 JSON file that is
 * written atomically (temp file, fsync, rename), or only in memory (`layerMemory`, for a broker
 * embedded in an app). The short-lived peer tokens of spawn orders are not here: they are
 * core's `SpawnTokens` service, which the broker consults after any authenticator
 * (`spawnTokensLayer` picks where they are kept).
 */
import { Authenticator, Errors, Ids, Permission, Principal, SpawnTokens, VirtualKey } from "@mks/a2a"
import { AtomicFile } from "@mks/a2a/internal"
import { Clock, Context, Effect, Layer, Option, Ref, Schema } from "effect"
import type { Scope } from "effect"
import { closeSync, type FSWatcher, fstatSync, openSync, readFileSync, watch } from "node:fs"
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

/** Tokens whose lookup `authenticate` remembers at most (a flood of unknown tokens just clears it). */
const MEMO_MAX = 1_024

/** Write `data` to `path` atomically with mode 0600: a crash leaves the old or the new file, never half of one. */
export const writeFileAtomic = (path: string, data: string): void => AtomicFile.writeSync(path, data, { mode: 0o600 })

/**
 * The token file as last read, held open. Whether it changed is known without a system call per
 * request where the platform can tell (an inotify watch, `fs.watch`, set before each read: an
 * event marks the records stale), with one `fstat` of the descriptor every `RECHECK_MS` as a
 * backstop; otherwise (no watch possible) it is one `fstat` per request — a syscall cost 3 % of
 * the broker's CPU on the HTTP send path. The CLI replaces the file by rename, which leaves the
 * inode we hold with no links; an edit in place changes its mtime or size.
 */
interface Opened {
  readonly fd: number
  readonly mtimeMs: number
  readonly size: number
}

const changedSince = (opened: Opened | undefined, path: string): boolean => {
  if (opened === undefined) {
    // No file when last looked (or it could not be opened): it counts as changed once it exists.
    try {
      closeSync(openSync(path, "r"))
      return true
    } catch {
      return false
    }
  }
  const now = fstatSync(opened.fd)
  return now.nlink === 0 || now.mtimeMs !== opened.mtimeMs || now.size !== opened.size
}

type Loaded = { readonly opened: Opened | undefined; readonly tokens: ReadonlyArray<TokenRecord> }

/** Open and read the token file (none: no tokens), closing the previous descriptor. */
const readTokens = (
  path: string,
  previous: Opened | undefined
): Effect.Effect<Loaded, Errors.ServiceUnavailable> =>
  Effect.suspend((): Effect.Effect<Loaded, Errors.ServiceUnavailable> => {
    if (previous !== undefined) closeSync(previous.fd)
    let fd: number
    try {
      fd = openSync(path, "r")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return Effect.succeed({ opened: undefined, tokens: [] })
      return Effect.fail(new Errors.ServiceUnavailable({ message: `cannot read token file ${path}: ${String(e)}` }))
    }
    const stat = fstatSync(fd)
    const opened: Opened = { fd, mtimeMs: stat.mtimeMs, size: stat.size }
    return Effect.try({
      try: () => readFileSync(fd, "utf8"),
      catch: (e) => new Errors.ServiceUnavailable({ message: `cannot read token file ${path}: ${String(e)}` })
    }).pipe(
      Effect.flatMap((text) => Schema.decode(TokenFile)(text)),
      Effect.map((file) => ({ opened, tokens: file.tokens })),
      Effect.mapError((e) => (e._tag === "ServiceUnavailable" ? e : new Errors.ServiceUnavailable({ message: `token file ${path} is corrupt` }))),
      // Not kept open when it could not be used: the next request looks again.
      Effect.tapError(() => Effect.sync(() => closeSync(fd)))
    )
  })

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

/**
 * How often the file is looked at (one `fstat`) even while a watch is set: a file system that
 * takes an inotify watch but does not report changes made by other hosts (a home shared over NFS)
 * still has a revoke seen within this time.
 */
export const RECHECK_MS = 1_000

/** For tests: how the file is watched (`fs.watch`). */
export interface MakeOptions {
  readonly watch?: (file: string, onChange: () => void) => FSWatcher
}

/** A token store backed by `path` (`<home>/tokens.json`), or by memory only when `path` is undefined. */
export const make = (path: string | undefined, options: MakeOptions = {}): Effect.Effect<TokenStoreService, Errors.ServiceUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const watchFile = options.watch ?? ((file: string, onChange: () => void) => watch(file, { persistent: false }, onChange))
    let checkedAt = 0 // when the file was last looked at by `changedSince` (Clock millis)
    let opened: Opened | undefined
    let watcher: FSWatcher | undefined
    let stale = false // set by the watcher's events
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        watcher?.close()
        if (opened !== undefined) closeSync(opened.fd)
      })
    )
    /** Watch the file as it is now (before reading it, so no change can fall in between). */
    const rewatch = (file: string) => {
      watcher?.close()
      watcher = undefined
      stale = false
      try {
        const w = watchFile(file, () => (stale = true))
        // A watch that fails later (the file's file system went away) falls back to fstat.
        w.on("error", () => {
          w.close()
          if (watcher === w) watcher = undefined
        })
        watcher = w
      } catch {
        watcher = undefined // no such file yet, or no change notification here
      }
    }
    const load = (file: string) =>
      Effect.sync(() => rewatch(file)).pipe(
        Effect.zipRight(readTokens(file, opened)),
        Effect.tap((read) => Effect.sync(() => (opened = read.opened))),
        Effect.tapError(() => Effect.sync(() => (opened = undefined))),
        Effect.map((read) => read.tokens)
      )
    const records = yield* Ref.make<ReadonlyArray<TokenRecord>>(path === undefined ? [] : yield* load(path))
    // The CLI edits the file while the broker runs: reload when it changed, so a revoke takes
    // effect at once (checked on every request; the watcher's event is in before a request
    // made after the change has been read).
    const changed = (file: string, now: number): boolean => {
      if (watcher !== undefined && stale) return true
      if (watcher !== undefined && now - checkedAt < RECHECK_MS) return false
      checkedAt = now
      return changedSince(opened, file)
    }
    const fresh = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (path === undefined || !changed(path, now)) return Effect.void
      return load(path).pipe(
        Effect.flatMap((next) => Ref.set(records, next)),
        Effect.catchAll((e) => Effect.logError(e.message))
      )
    })
    /**
     * The principal of each token seen with the records in force (hashing and scanning once per
     * token, not per request): cleared whenever the records change, so it never outlives a
     * revoke, and when it holds `MEMO_MAX` tokens.
     */
    let memoFor: ReadonlyArray<TokenRecord> | undefined
    const memo = new Map<string, TokenRecord | null>()
    const lookup = (all: ReadonlyArray<TokenRecord>, token: string): TokenRecord | undefined => {
      if (memoFor !== all || memo.size >= MEMO_MAX) {
        memo.clear()
        memoFor = all
      }
      let found = memo.get(token)
      if (found === undefined) {
        const hash = VirtualKey.hashSecret(token)
        found = all.find((r) => VirtualKey.digestsEqual(r.hash, hash)) ?? null
        memo.set(token, found)
      }
      return found ?? undefined
    }
    // The id set of the last records seen by activeIds (rebuilt only when the records change).
    let idsFor: ReadonlyArray<TokenRecord> | undefined
    let ids: ReadonlySet<string> = new Set()
    const lock = yield* Effect.makeSemaphore(1)

    const persist = (next: ReadonlyArray<TokenRecord>) =>
      Effect.try({
        try: () => (path === undefined ? undefined : writeFileAtomic(path, JSON.stringify({ version: 1, tokens: next }, null, 2) + "\n")),
        catch: (e) => new Errors.ServiceUnavailable({ message: `cannot write token file ${path}: ${String(e)}` })
      }).pipe(
        Effect.zipRight(path === undefined ? Effect.void : load(path)),
        Effect.zipRight(Ref.set(records, next))
      )

    const unauthorized = new Errors.Unauthorized({ message: "invalid token" })

    const service: TokenStoreService = {
      authenticate: (token) =>
        Effect.gen(function* () {
          if (!token.startsWith(TOKEN_PREFIX)) return yield* Effect.fail(unauthorized)
          yield* fresh
          const found = lookup(yield* Ref.get(records), token)
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
          yield* fresh
          return lookup(yield* Ref.get(records), token)?.id
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

export const layer = (path: string) => Layer.scoped(TokenStore, make(path))

/** A token store in memory only (nothing written): for a broker embedded in an app that mints its tokens with `create`. */
export const layerMemory: Layer.Layer<TokenStore> = Layer.scoped(TokenStore, Effect.orDie(make(undefined)))

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
