/**
 * In-memory KeyStore: records plus the SHA-256 hash of each secret; the secret itself is
 * returned once by `create` and never kept.
 */
import { Clock, Effect } from "effect"
import { KeyNotFound, Unauthorized } from "../Errors.js"
import * as Ids from "../Ids.js"
import type { KeyId } from "../Ids.js"
import type { KeyStoreService } from "../KeyStore.js"
import { applyUpdate, digestsEqual, hashSecret, mint, VirtualKey } from "../VirtualKey.js"

interface Stored {
  record: VirtualKey
  readonly hash: string
}

export const make: Effect.Effect<KeyStoreService> = Effect.sync(() => {
  const byId = new Map<KeyId, Stored>()
  // Keyed by the hash: looking up a SHA-256 of a 256-bit secret leaks nothing an attacker can use;
  // the constant-time comparison below guards the final check all the same.
  const byHash = new Map<string, KeyId>()

  const find = (id: KeyId): Effect.Effect<Stored, KeyNotFound> => {
    const stored = byId.get(id)
    return stored === undefined ? Effect.fail(new KeyNotFound({ message: `no key ${id}`, key: id })) : Effect.succeed(stored)
  }

  const create: KeyStoreService["create"] = (input) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const { secret, hash, record } = mint(input, now)
      byId.set(record.id, { record, hash })
      byHash.set(hash, record.id)
      return { key: secret, record }
    })

  const authenticate: KeyStoreService["authenticate"] = (secret) =>
    Effect.gen(function* () {
      const hash = hashSecret(secret)
      const id = byHash.get(hash)
      const stored = id === undefined ? undefined : byId.get(id)
      if (stored === undefined || !digestsEqual(stored.hash, hash)) {
        return yield* new Unauthorized({ message: "invalid API key" })
      }
      if (stored.record.disabled) return yield* new Unauthorized({ message: "API key revoked/disabled" })
      const expiresAt = stored.record.expiresAt
      if (expiresAt !== undefined && Date.parse(expiresAt) <= (yield* Clock.currentTimeMillis)) {
        return yield* new Unauthorized({ message: "API key expired" })
      }
      return stored.record
    })

  const get: KeyStoreService["get"] = (id) => find(id).pipe(Effect.map((s) => s.record))

  const list: KeyStoreService["list"] = (tenant) =>
    Effect.sync(() => [...byId.values()].map((s) => s.record).filter((r) => tenant === undefined || r.tenant === tenant))

  const update: KeyStoreService["update"] = (id, patch) =>
    Effect.gen(function* () {
      const stored = yield* find(id)
      stored.record = applyUpdate(stored.record, patch)
      return stored.record
    })

  const revoke: KeyStoreService["revoke"] = (id) =>
    Effect.gen(function* () {
      const stored = yield* find(id)
      byId.delete(id)
      byHash.delete(stored.hash)
    })

  const touch: KeyStoreService["touch"] = (id, at) =>
    Effect.sync(() => {
      const stored = byId.get(id)
      if (stored !== undefined) stored.record = new VirtualKey({ ...stored.record, lastUsedAt: Ids.nowIso(at) })
    })

  return { create, authenticate, get, list, update, revoke, touch } satisfies KeyStoreService
})
