import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, TestClock } from "effect"
import { KeyStore, VirtualKey } from "../src/index.js"
import type { KeyId } from "../src/Ids.js"

const withStore = <A, E>(f: (store: KeyStore.KeyStoreService) => Effect.Effect<A, E>) =>
  Effect.flatMap(KeyStore.KeyStore, f).pipe(Effect.provide(KeyStore.layerMemory))

const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(effect), (exit) => (Exit.isFailure(exit) ? exit.cause : undefined))

const expectUnauthorized = (effect: Effect.Effect<unknown, { readonly _tag: string }>, message: string) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    expect(error).toMatchObject({ _tag: "Unauthorized", message })
  })

describe("KeyStore.layerMemory", () => {
  it.effect("create returns the secret once; records carry only a prefix, never the secret or its hash", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const { key, record } = yield* store.create({ name: "alice", tenant: "acme" })
        expect(key.startsWith(VirtualKey.KEY_PREFIX)).toBe(true)
        expect(key.length).toBe(VirtualKey.KEY_PREFIX.length + 43)
        expect(record.prefix).toBe(VirtualKey.displayPrefix(key))
        expect(key.startsWith(record.prefix) && record.prefix.length < key.length).toBe(true)
        expect(record).toMatchObject({ tenant: "acme", tier: "tier1", models: [], limits: {}, disabled: false })

        // Everything the store gives back after creation, serialised: no secret, no hash.
        const seen = JSON.stringify([yield* store.list(), yield* store.get(record.id), yield* store.authenticate(key)])
        expect(seen).not.toContain(key)
        expect(seen).not.toContain(VirtualKey.hashSecret(key))
        expect(seen).toContain(record.prefix)
      })
    ))

  it.effect("authenticate checks the hash: the secret works, a near miss and the hash itself do not", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const { key, record } = yield* store.create({ name: "bob", tenant: "acme", tier: "tier2", models: ["glm-*"] })
        expect((yield* store.authenticate(key)).id).toBe(record.id)
        const last = key[key.length - 1] === "a" ? "b" : "a"
        yield* expectUnauthorized(store.authenticate(key.slice(0, -1) + last), "invalid API key")
        yield* expectUnauthorized(store.authenticate(VirtualKey.hashSecret(key)), "invalid API key")
        yield* expectUnauthorized(store.authenticate(""), "invalid API key")
      })
    ))

  it.effect("revoked keys stop at once; disabled keys are refused until enabled again", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const a = yield* store.create({ name: "a", tenant: "acme" })
        const b = yield* store.create({ name: "b", tenant: "acme" })
        yield* store.update(b.record.id, { disabled: true })
        yield* expectUnauthorized(store.authenticate(b.key), "API key revoked/disabled")
        yield* store.update(b.record.id, { disabled: false })
        expect((yield* store.authenticate(b.key)).disabled).toBe(false)

        yield* store.revoke(a.record.id)
        yield* expectUnauthorized(store.authenticate(a.key), "invalid API key")
        expect(yield* Effect.flip(store.get(a.record.id))).toMatchObject({ _tag: "KeyNotFound", key: a.record.id })
        expect(yield* Effect.flip(store.revoke(a.record.id))).toMatchObject({ _tag: "KeyNotFound" })
        expect((yield* store.list()).map((r) => r.id)).toEqual([b.record.id])
      })
    ))

  it.effect("expiresAt is judged by the Clock; update with null clears it", () =>
    withStore((store) =>
      Effect.gen(function* () {
        // TestClock starts at epoch 0; the key expires one minute later.
        const { key, record } = yield* store.create({ name: "temp", tenant: "acme", expiresAt: "1970-01-01T00:01:00.000Z" })
        expect((yield* store.authenticate(key)).expiresAt).toBe("1970-01-01T00:01:00.000Z")
        yield* TestClock.adjust("59 seconds")
        yield* store.authenticate(key)
        yield* TestClock.adjust("1 second")
        yield* expectUnauthorized(store.authenticate(key), "API key expired")

        const cleared = yield* store.update(record.id, { expiresAt: null })
        expect(cleared.expiresAt).toBeUndefined()
        expect((yield* store.authenticate(key)).id).toBe(record.id)

        yield* store.update(record.id, { expiresAt: "1970-01-01T00:00:30.000Z" })
        yield* expectUnauthorized(store.authenticate(key), "API key expired")
      })
    ))

  it.effect("list filters by tenant; update patches only what it names; touch sets lastUsedAt", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const a = yield* store.create({ name: "a", tenant: "acme", limits: { requestsPerMinute: 5 } })
        const b = yield* store.create({ name: "b", tenant: "other" })
        expect((yield* store.list("acme")).map((r) => r.id)).toEqual([a.record.id])
        expect((yield* store.list("other")).map((r) => r.id)).toEqual([b.record.id])
        expect(yield* store.list()).toHaveLength(2)
        expect(yield* store.list("nobody")).toEqual([])

        const renamed = yield* store.update(a.record.id, { name: "a2", models: ["claude-*"] })
        expect(renamed).toMatchObject({ name: "a2", models: ["claude-*"], limits: { requestsPerMinute: 5 }, tenant: "acme" })
        expect((yield* store.authenticate(a.key)).name).toBe("a2")
        expect(yield* Effect.flip(store.update("k_missing" as KeyId, { name: "x" }))).toMatchObject({ _tag: "KeyNotFound" })

        yield* store.touch(a.record.id, Date.UTC(2026, 0, 2, 3, 4, 5))
        expect((yield* store.get(a.record.id)).lastUsedAt).toBe("2026-01-02T03:04:05.000Z")
        // Best effort: touching an unknown key is not an error.
        expect(yield* failureOf(store.touch("k_missing" as KeyId, 0))).toBeUndefined()
      })
    ))

  it.effect("every key gets a distinct secret and id", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const keys = yield* Effect.all(Array.from({ length: 50 }, (_, i) => store.create({ name: `k${i}`, tenant: "acme" })))
        expect(new Set(keys.map((k) => k.key)).size).toBe(50)
        expect(new Set(keys.map((k) => k.record.id)).size).toBe(50)
        for (const k of keys) expect((yield* store.authenticate(k.key)).id).toBe(k.record.id)
      })
    ))
})
