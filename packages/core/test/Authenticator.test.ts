import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { Authenticator, Errors, Principal, VirtualKey } from "../src/index.js"
import type { SpawnId } from "../src/Ids.js"

const admin = new Principal.Principal({ subject: "tok_admin", tenant: "acme", roles: ["admin"] })
const runner = new Principal.Principal({ subject: "tok_runner", tenant: "acme", roles: ["runner"] })

/** An authenticator that accepts one token and records every call, to observe order. */
const fixed = (name: string, token: string, principal: Principal.Principal, calls: Ref.Ref<Array<string>>) => ({
  authenticate: (presented: string) =>
    Ref.update(calls, (c) => [...c, name]).pipe(
      Effect.zipRight(
        presented === token ? Effect.succeed(principal) : Effect.fail(new Errors.Unauthorized({ message: `${name}: no` }))
      )
    )
})

describe("Authenticator static tokens", () => {
  it.effect("layerMemory accepts its initial tokens and refuses others", () =>
    Effect.gen(function* () {
      const auth = yield* Authenticator.Authenticator
      expect(yield* auth.authenticate("secret-admin")).toBe(admin)
      expect(yield* auth.authenticate("secret-runner")).toBe(runner)
      expect(yield* Effect.flip(auth.authenticate("secret-admin "))).toMatchObject({ _tag: "Unauthorized", message: "invalid token" })
      expect(yield* Effect.flip(auth.authenticate(""))).toMatchObject({ _tag: "Unauthorized", message: "missing token" })
    }).pipe(
      Effect.provide(
        Authenticator.layerMemory([
          { token: "secret-admin", principal: admin },
          { token: "secret-runner", principal: runner }
        ])
      )
    ))

  it.effect("only hashes are kept: a stored hash presented as a token is refused", () =>
    Effect.gen(function* () {
      const tokens = yield* Authenticator.makeStaticTokens([{ token: "secret-admin", principal: admin }])
      expect(yield* Effect.flip(tokens.authenticate(VirtualKey.hashSecret("secret-admin")))).toMatchObject({ _tag: "Unauthorized" })
      expect(yield* tokens.authenticate("secret-admin")).toBe(admin)
    }))

  it.effect("issue mints distinct high-entropy tokens for a principal; revoke stops one at once", () =>
    Effect.gen(function* () {
      const tokens = yield* Authenticator.StaticTokens
      const auth = yield* Authenticator.Authenticator
      const spawnId = "s_0123456789abcdefghjk" as SpawnId
      const peer = new Principal.Principal({ subject: `spawn:${spawnId}`, tenant: "acme", roles: ["peer"], spawnId })
      const a = yield* tokens.issue(peer)
      const b = yield* tokens.issue(peer)
      expect(a).not.toBe(b)
      expect(a).toMatch(/^a2a_[A-Za-z0-9_-]{43}$/)
      // The layer's Authenticator and StaticTokens are one table.
      expect(yield* auth.authenticate(a)).toBe(peer)
      expect((yield* auth.authenticate(b)).spawnId).toBe(spawnId)

      expect(yield* tokens.revoke(a)).toBe(true)
      expect(yield* tokens.revoke(a)).toBe(false)
      expect(yield* Effect.flip(auth.authenticate(a))).toMatchObject({ _tag: "Unauthorized" })
      expect(yield* auth.authenticate(b)).toBe(peer)
    }).pipe(Effect.provide(Authenticator.layerMemory())))

  it.effect("revokeWhere drops every token of a spawn and keeps the rest", () =>
    Effect.gen(function* () {
      const tokens = yield* Authenticator.makeStaticTokens([{ token: "secret-admin", principal: admin }])
      const p1 = new Principal.Principal({ subject: "s1", tenant: "acme", roles: ["peer"], spawnId: "s_1" as SpawnId })
      const p2 = new Principal.Principal({ subject: "s2", tenant: "acme", roles: ["peer"], spawnId: "s_2" as SpawnId })
      const t1 = yield* tokens.issue(p1)
      const t1b = yield* tokens.issue(p1)
      const t2 = yield* tokens.issue(p2)
      expect(yield* tokens.revokeWhere((p) => p.spawnId === "s_1")).toBe(2)
      expect(yield* Effect.flip(tokens.authenticate(t1))).toMatchObject({ _tag: "Unauthorized" })
      expect(yield* Effect.flip(tokens.authenticate(t1b))).toMatchObject({ _tag: "Unauthorized" })
      expect(yield* tokens.authenticate(t2)).toBe(p2)
      expect(yield* tokens.authenticate("secret-admin")).toBe(admin)
    }))
})

describe("Authenticator.firstOf", () => {
  it.effect("tries in order, stops at the first success", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make<Array<string>>([])
      const auth = Authenticator.firstOf(
        fixed("static", "t1", admin, calls),
        fixed("oidc", "t2", runner, calls),
        fixed("never", "t2", admin, calls)
      )
      expect(yield* auth.authenticate("t1")).toBe(admin)
      expect(yield* Ref.getAndSet(calls, [])).toEqual(["static"])
      // Both later ones would accept t2: the earlier one wins.
      expect(yield* auth.authenticate("t2")).toBe(runner)
      expect(yield* Ref.getAndSet(calls, [])).toEqual(["static", "oidc"])
    }))

  it.effect("Unauthorized when every one refuses, after asking each once", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make<Array<string>>([])
      const auth = Authenticator.firstOf(fixed("static", "t1", admin, calls), fixed("oidc", "t2", runner, calls))
      expect(yield* Effect.flip(auth.authenticate("nope"))).toMatchObject({ _tag: "Unauthorized", message: "oidc: no" })
      expect(yield* Ref.get(calls)).toEqual(["static", "oidc"])
      expect(yield* Effect.flip(Authenticator.firstOf().authenticate("t1"))).toMatchObject({ _tag: "Unauthorized" })
    }))

  it.effect("composes with a static table: revoked static tokens fall through to the next", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make<Array<string>>([])
      const table = yield* Authenticator.makeStaticTokens()
      const issued = yield* table.issue(admin)
      const auth = Authenticator.firstOf(table, fixed("oidc", "jwt", runner, calls))
      expect(yield* auth.authenticate(issued)).toBe(admin)
      expect(yield* auth.authenticate("jwt")).toBe(runner)
      yield* table.revoke(issued)
      expect(yield* Effect.flip(auth.authenticate(issued))).toMatchObject({ _tag: "Unauthorized" })
    }))
})
