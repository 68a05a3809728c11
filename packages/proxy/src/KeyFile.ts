/**
 * A file-backed `KeyStore` (core's tag): one JSON file, mode 0600, holding each key's record
 * and the SHA-256 of its secret — never the secret. Every change is written atomically (temp
 * file + fsync + rename) before it is acknowledged, so a crash at any moment leaves either the
 * old file or the new one.
 *
 * Fail closed: a file that exists but cannot be read refuses the start; a file that is (or
 * becomes) corrupt turns every call into `ServiceUnavailable` with one clear log line, until
 * the file is repaired (changes made by others are picked up by a directory watch).
 */
import { Errors, Ids, KeyStore, VirtualKey } from "@mks/a2a"
import { Clock, Context, Effect, FiberSet, Layer, ParseResult, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { FileError, readIfExists, writeAtomic } from "./internal/atomicFile.js"

export interface KeyFileService {
  /** Why the store refuses every call, if it does. */
  readonly problem: () => string | undefined
  /** Write pending `lastUsedAt` updates now (also done periodically and on close). */
  readonly flush: Effect.Effect<void>
  /**
   * The same lookups as `store`, as plain calls: the data plane uses them on every request to
   * spare a fiber per call (only when `store` is the `KeyStore` it was given).
   */
  readonly direct?: {
    readonly store: KeyStore.KeyStoreService
    readonly authenticate: (secret: string, now: number) => VirtualKey.VirtualKey | Errors.Unauthorized | Errors.ServiceUnavailable
    readonly touch: (id: Ids.KeyId, at: number) => void
  }
}

export class KeyFile extends Context.Tag("@mks/a2a-proxy/KeyFile")<KeyFile, KeyFileService>() {}

const Entry = Schema.Struct({
  hash: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  record: VirtualKey.VirtualKey
})

export const FileFormat = Schema.Struct({ version: Schema.Literal(1), keys: Schema.Array(Entry) })

const decodeFile = Schema.decodeUnknownEither(Schema.parseJson(FileFormat))
const encodeFile = Schema.encodeSync(FileFormat)

interface Stored {
  readonly record: VirtualKey.VirtualKey
  readonly hash: string
}

export interface Options {
  readonly path: string
  /** How often `lastUsedAt` changes are written. */
  readonly flushIntervalMs?: number
}

const unavailable = (message: string) => new Errors.ServiceUnavailable({ message })

export const make = (options: Options) =>
  Effect.gen(function* () {
    const file = options.path
    let byId = new Map<Ids.KeyId, Stored>()
    let byHash = new Map<string, Ids.KeyId>()
    // Kept apart from the records so a request does not rebuild (and re-validate) one.
    const lastUsed = new Map<Ids.KeyId, number>()
    let usedDirty = false
    let corrupt: string | undefined
    /** The file's content as last written or read by us: a watch event with other content is someone else's edit. */
    let onDisk: string | undefined
    const lock = yield* Effect.makeSemaphore(1)

    const withLastUsed = (s: Stored): VirtualKey.VirtualKey => {
      const at = lastUsed.get(s.record.id)
      return at === undefined ? s.record : new VirtualKey.VirtualKey({ ...s.record, lastUsedAt: new Date(at).toISOString() }, { disableValidation: true })
    }

    const serialize = (entries: Map<Ids.KeyId, Stored>): string =>
      JSON.stringify(encodeFile({ version: 1, keys: [...entries.values()].map((s) => ({ hash: s.hash, record: withLastUsed(s) })) }), null, 2) + "\n"

    const adopt = (text: string): string | undefined => {
      const decoded = decodeFile(text)
      if (decoded._tag === "Left") {
        return `key store ${file} is corrupt (${ParseResult.TreeFormatter.formatErrorSync(decoded.left).split("\n").slice(0, 2).join(" ").trim()}); refusing every request until it is repaired`
      }
      byId = new Map(decoded.right.keys.map((e) => [e.record.id, { record: e.record, hash: e.hash }]))
      byHash = new Map(decoded.right.keys.map((e) => [e.hash, e.record.id]))
      onDisk = text
      return undefined
    }

    const write = (entries: Map<Ids.KeyId, Stored>) =>
      Effect.suspend(() => {
        const text = serialize(entries)
        return Effect.as(writeAtomic(file, text), text)
      })

    /** Apply a change to a copy, write it, and only then make it the live state. */
    const mutate = <A, E>(change: (next: Map<Ids.KeyId, Stored>) => Effect.Effect<A, E>) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          if (corrupt !== undefined) return yield* Effect.fail(unavailable(corrupt))
          const next = new Map(byId)
          const result = yield* change(next)
          const text = yield* write(next).pipe(Effect.mapError((e) => unavailable(`key store unavailable: ${e.message}`)))
          byId = next
          byHash = new Map([...next.values()].map((s) => [s.hash, s.record.id]))
          onDisk = text
          usedDirty = false
          return result
        })
      )

    // Temp files of writes a crash interrupted: never the live file, safe to drop.
    const base = path.basename(file)
    for (const name of fs.existsSync(path.dirname(file)) ? fs.readdirSync(path.dirname(file)) : []) {
      if (name.startsWith(`.${base}.`) && name.endsWith(".tmp")) fs.rmSync(path.join(path.dirname(file), name), { force: true })
    }
    // Start: a missing file is a first start (write an empty store); an unreadable one refuses.
    const initial = yield* readIfExists(file)
    if (initial === undefined) {
      onDisk = yield* write(byId)
    } else {
      corrupt = adopt(initial)
      if (corrupt !== undefined) yield* Effect.logError(corrupt)
      const mode = fs.statSync(file).mode & 0o777
      if ((mode & 0o077) !== 0) {
        yield* Effect.logWarning(`key store ${file} had mode ${mode.toString(8)}; set to 600`)
        fs.chmodSync(file, 0o600)
      }
    }

    const reload = lock.withPermits(1)(
      Effect.gen(function* () {
        const text = yield* readIfExists(file).pipe(Effect.catchAll((e) => Effect.succeed(e)))
        if (typeof text === "string" && text === onDisk && corrupt === undefined) return
        if (text === undefined || text instanceof FileError) {
          const reason = text === undefined ? "was deleted" : `cannot be read (${text.message})`
          if (corrupt === undefined) {
            corrupt = `key store ${file} ${reason}; refusing every request until it is restored`
            yield* Effect.logError(corrupt)
          }
          return
        }
        const problem = adopt(text)
        if (problem !== undefined) {
          if (problem !== corrupt) yield* Effect.logError(problem)
          corrupt = problem
          return
        }
        corrupt = undefined
        yield* Effect.logInfo(`key store ${file} reloaded after an outside change (${byId.size} keys)`)
      })
    )

    const run = yield* FiberSet.makeRuntime<never>()
    let debounce: NodeJS.Timeout | undefined
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        fs.watch(path.dirname(file), (_event, name) => {
          if (name !== base) return
          // Several events arrive for one rename; one reload after they settle is enough.
          if (debounce !== undefined) clearTimeout(debounce)
          debounce = setTimeout(() => run(reload), 25)
        })
      ),
      (watcher) =>
        Effect.sync(() => {
          if (debounce !== undefined) clearTimeout(debounce)
          watcher.close()
        })
    )

    const flush: Effect.Effect<void> = lock.withPermits(1)(
      Effect.suspend(() => {
        if (!usedDirty || corrupt !== undefined) return Effect.void
        usedDirty = false
        return write(byId).pipe(
          Effect.tap((text) => Effect.sync(() => void (onDisk = text))),
          Effect.catchAll((e) => Effect.sync(() => void (usedDirty = true)).pipe(Effect.zipRight(Effect.logWarning(e.message))))
        )
      })
    )
    yield* flush.pipe(Effect.repeat(Schedule.spaced(options.flushIntervalMs ?? 5_000)), Effect.interruptible, Effect.forkScoped)
    yield* Effect.addFinalizer(() => flush)

    const find = (entries: Map<Ids.KeyId, Stored>, id: Ids.KeyId) => {
      const stored = entries.get(id)
      return stored === undefined ? Effect.fail(new Errors.KeyNotFound({ message: `no key ${id}`, key: id })) : Effect.succeed(stored)
    }
    const guard = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | Errors.ServiceUnavailable> =>
      Effect.suspend((): Effect.Effect<A, E | Errors.ServiceUnavailable> => (corrupt !== undefined ? Effect.fail(unavailable(corrupt)) : effect))

    const authenticateNow = (secret: string, now: number): VirtualKey.VirtualKey | Errors.Unauthorized | Errors.ServiceUnavailable => {
      if (corrupt !== undefined) return unavailable(corrupt)
      const hash = VirtualKey.hashSecret(secret)
      const id = byHash.get(hash)
      const stored = id === undefined ? undefined : byId.get(id)
      if (stored === undefined || !VirtualKey.digestsEqual(stored.hash, hash)) return new Errors.Unauthorized({ message: "invalid x-api-key" })
      if (stored.record.disabled) return new Errors.Unauthorized({ message: "API key is disabled" })
      const expiresAt = stored.record.expiresAt
      if (expiresAt !== undefined && Date.parse(expiresAt) <= now) return new Errors.Unauthorized({ message: "API key has expired" })
      return stored.record
    }
    const touchNow = (id: Ids.KeyId, at: number): void => {
      lastUsed.set(id, at)
      usedDirty = true
    }

    const store: KeyStore.KeyStoreService = {
      create: (input) =>
        mutate((next) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            const { secret, hash, record } = VirtualKey.mint(input, now)
            next.set(record.id, { record, hash })
            return { key: secret, record }
          })
        ),
      authenticate: (secret) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const result = authenticateNow(secret, now)
          return result instanceof VirtualKey.VirtualKey ? Effect.succeed(result) : Effect.fail(result)
        }),
      get: (id) => guard(Effect.map(find(byId, id), withLastUsed)),
      list: (tenant) =>
        guard(Effect.sync(() => [...byId.values()].filter((s) => tenant === undefined || s.record.tenant === tenant).map(withLastUsed))),
      update: (id, patch) =>
        mutate((next) =>
          Effect.map(find(next, id), (stored) => {
            const record = VirtualKey.applyUpdate(stored.record, patch)
            next.set(id, { record, hash: stored.hash })
            return withLastUsed({ record, hash: stored.hash })
          })
        ),
      revoke: (id) =>
        mutate((next) =>
          Effect.map(find(next, id), () => {
            next.delete(id)
            lastUsed.delete(id)
          })
        ),
      touch: (id, at) => Effect.sync(() => touchNow(id, at))
    }
    const direct = { store, authenticate: authenticateNow, touch: touchNow }
    return { store, file: { problem: () => corrupt, flush, direct } satisfies KeyFileService }
  })

/** `KeyStore` backed by `options.path` (created empty on first start). */
export const layer = (options: Options): Layer.Layer<KeyStore.KeyStore | KeyFile, FileError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ file, store }) => Context.make(KeyStore.KeyStore, store).pipe(Context.add(KeyFile, file)))
  )
