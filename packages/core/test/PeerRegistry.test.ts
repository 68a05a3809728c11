import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import type { RunnerId, SpawnId, TeamName } from "../src/Ids.js"
import type { PeerNotFound, ServiceUnavailable } from "../src/Errors.js"
import { PeerRegistration } from "../src/Peer.js"
import * as PeerRegistry from "../src/PeerRegistry.js"
import * as TeamDirectory from "../src/TeamDirectory.js"

const team = (name: string) => name as TeamName
const reg = (fields: ConstructorParameters<typeof PeerRegistration>[0] = {}) => new PeerRegistration(fields)

const Live = PeerRegistry.layerMemory.pipe(Layer.provideMerge(TeamDirectory.layerMemory))

/** Each test gets a fresh registry and directory. */
const run = <A, E>(
  f: (registry: PeerRegistry.PeerRegistryService, dir: TeamDirectory.TeamDirectoryService) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    return yield* f(yield* PeerRegistry.PeerRegistry, yield* TeamDirectory.TeamDirectory)
  }).pipe(Effect.provide(Live))

describe("PeerRegistry.layerMemory", () => {
  it.effect("registers with defaults, a fresh id and a generated name", () =>
    run((registry) =>
      Effect.gen(function*() {
        yield* TestClock.adjust("3 seconds")
        const { record, resumed } = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg() })
        const { peer } = record
        expect(resumed).toBe(false)
        expect(record.tenant).toBe("acme")
        expect(record.owner).toBe("alice")
        expect(peer.id).toMatch(/^p_[0-9a-z]{20}$/)
        expect(peer.name).toBe(`peer-${peer.id.slice(-8)}`)
        expect(peer).toMatchObject({
          summary: "",
          agent: "unknown",
          cwd: "",
          gitRoot: null,
          host: "",
          pid: null,
          teams: [],
          status: "online",
          meta: {},
          registeredAt: "1970-01-01T00:00:03.000Z",
          lastSeenAt: "1970-01-01T00:00:03.000Z"
        })
        expect(peer.spawnId).toBeUndefined()
        expect(peer.runnerId).toBeUndefined()
        // two anonymous peers never share an id or a name
        const other = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg() })
        expect(other.record.peer.id).not.toBe(peer.id)
        expect(other.record.peer.name).not.toBe(peer.name)
      })
    ))

  it.effect("the same name and owner resumes the peer: same id, same registeredAt, fields updated", () =>
    run((registry) =>
      Effect.gen(function*() {
        const first = yield* registry.register({
          tenant: "acme",
          owner: "alice",
          registration: reg({ name: "alice", summary: "parser", agent: "claude-code", cwd: "/a", host: "laptop", pid: 10, meta: { v: 1 } })
        })
        yield* registry.setStatus("acme", first.record.peer.id, "offline")
        yield* TestClock.adjust("90 seconds")
        const again = yield* registry.register({
          tenant: "acme",
          owner: "alice",
          registration: reg({ name: "alice", summary: "lexer", pid: 11, spawnId: "s_x" as SpawnId }),
          runnerId: "box-1" as RunnerId
        })
        expect(again.resumed).toBe(true)
        const peer = again.record.peer
        expect(peer.id).toBe(first.record.peer.id)
        expect(peer.registeredAt).toBe("1970-01-01T00:00:00.000Z")
        expect(peer.lastSeenAt).toBe("1970-01-01T00:01:30.000Z")
        expect(peer.status).toBe("online")
        // given fields replace, omitted ones are kept
        expect(peer).toMatchObject({ summary: "lexer", pid: 11, agent: "claude-code", cwd: "/a", host: "laptop", meta: { v: 1 } })
        expect(peer.spawnId).toBe("s_x")
        expect(peer.runnerId).toBe("box-1")
        expect(yield* registry.list("acme")).toHaveLength(1)
      })
    ))

  it.effect("a name owned by another subject is PeerNameTaken; other tenants may use it", () =>
    run((registry) =>
      Effect.gen(function*() {
        const alice = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg({ name: "worker" }) })
        const taken = yield* Effect.flip(registry.register({ tenant: "acme", owner: "mallory", registration: reg({ name: "worker", summary: "evil" }) }))
        expect(taken._tag).toBe("PeerNameTaken")
        expect(taken.name).toBe("worker")
        // nothing about the original changed
        const kept = yield* registry.get("acme", alice.record.peer.id)
        expect(kept.owner).toBe("alice")
        expect(kept.peer.summary).toBe("")

        const elsewhere = yield* registry.register({ tenant: "globex", owner: "mallory", registration: reg({ name: "worker" }) })
        expect(elsewhere.resumed).toBe(false)
        expect(elsewhere.record.peer.id).not.toBe(alice.record.peer.id)
      })
    ))

  it.effect("peers are invisible across tenants", () =>
    run((registry) =>
      Effect.gen(function*() {
        const { record } = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg({ name: "alice", teams: [team("web")] }) })
        const id = record.peer.id
        const notFound: ReadonlyArray<Effect.Effect<unknown, PeerNotFound | ServiceUnavailable>> = [
          registry.get("globex", id),
          registry.resolve("globex", id),
          registry.resolve("globex", "alice"),
          registry.update("globex", id, { summary: "x" }),
          registry.touch("globex", id),
          registry.setStatus("globex", id, "offline"),
          registry.unregister("globex", id)
        ]
        for (const attempt of notFound) {
          const error = yield* Effect.flip(attempt)
          expect(error._tag).toBe("PeerNotFound")
        }
        expect(yield* registry.list("globex")).toEqual([])
        expect((yield* registry.get("acme", id)).peer.summary).toBe("")
        expect((yield* registry.get("acme", id)).peer.status).toBe("online")
      })
    ))

  it.effect("registration teams are joined and Peer.teams follows the TeamDirectory", () =>
    run((registry, dir) =>
      Effect.gen(function*() {
        const { record } = yield* registry.register({
          tenant: "acme",
          owner: "alice",
          registration: reg({ name: "alice", teams: [team("web"), team("api")] })
        })
        const id = record.peer.id
        expect(record.peer.teams).toEqual(["api", "web"])
        expect(yield* dir.members("acme", team("web"))).toEqual([id])

        yield* dir.join("acme", team("ops"), id)
        yield* dir.leave("acme", team("web"), id)
        expect((yield* registry.get("acme", id)).peer.teams).toEqual(["api", "ops"])
        expect((yield* registry.list("acme", { team: team("ops") })).map((p) => p.id)).toEqual([id])
        expect(yield* registry.list("acme", { team: team("web") })).toEqual([])

        // resuming joins the new teams without leaving the others
        const again = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg({ name: "alice", teams: [team("qa")] }) })
        expect(again.record.peer.teams).toEqual(["api", "ops", "qa"])
      })
    ))

  it.effect("resolve tries the id first, then the name", () =>
    run((registry) =>
      Effect.gen(function*() {
        const bob = yield* registry.register({ tenant: "acme", owner: "bob", registration: reg({ name: "bob" }) })
        // a peer whose name is bob's id must not shadow bob
        const impostor = yield* registry.register({ tenant: "acme", owner: "eve", registration: reg({ name: bob.record.peer.id }) })
        expect((yield* registry.resolve("acme", bob.record.peer.id)).peer.name).toBe("bob")
        expect((yield* registry.resolve("acme", "bob")).peer.id).toBe(bob.record.peer.id)
        expect((yield* registry.resolve("acme", impostor.record.peer.id)).owner).toBe("eve")
        expect((yield* Effect.flip(registry.resolve("acme", "carol")))._tag).toBe("PeerNotFound")
      })
    ))

  it.effect("list is oldest first and applies every filter", () =>
    run((registry) =>
      Effect.gen(function*() {
        const names = ["c", "a", "b"]
        for (const [i, name] of names.entries()) {
          yield* registry.register({
            tenant: "acme",
            owner: "o",
            registration: reg({ name, host: i === 1 ? "box" : "laptop", gitRoot: "/repo", cwd: `/repo/${name}` })
          })
        }
        // same clock tick: registration order still decides
        const d = yield* registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "d", host: "laptop" }) })
        expect((yield* registry.list("acme")).map((p) => p.name)).toEqual(["c", "a", "b", "d"])
        expect((yield* registry.list("acme", { host: "laptop" })).map((p) => p.name)).toEqual(["c", "b", "d"])
        expect((yield* registry.list("acme", { host: "laptop", gitRoot: "/repo" })).map((p) => p.name)).toEqual(["c", "b"])
        expect((yield* registry.list("acme", { cwd: "/repo/a" })).map((p) => p.name)).toEqual(["a"])
        yield* registry.setStatus("acme", d.record.peer.id, "offline")
        expect((yield* registry.list("acme", { status: "offline" })).map((p) => p.name)).toEqual(["d"])
        expect((yield* registry.list("acme", { status: "online" })).map((p) => p.name)).toEqual(["c", "a", "b"])
        // resuming keeps the original place
        yield* TestClock.adjust("1 minute")
        yield* registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "c" }) })
        expect((yield* registry.list("acme")).map((p) => p.name)).toEqual(["c", "a", "b", "d"])
      })
    ))

  it.effect("update, touch and setStatus", () =>
    run((registry) =>
      Effect.gen(function*() {
        const { record } = yield* registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "a", summary: "s0", meta: { k: 1 } }) })
        const id = record.peer.id
        const updated = yield* registry.update("acme", id, { summary: "s1" })
        expect(updated.summary).toBe("s1")
        expect(updated.meta).toEqual({ k: 1 })
        expect((yield* registry.update("acme", id, { meta: { k: 2 } })).meta).toEqual({ k: 2 })
        expect((yield* registry.setStatus("acme", id, "offline")).status).toBe("offline")
        yield* TestClock.adjust("10 seconds")
        const touched = yield* registry.touch("acme", id)
        expect(touched.status).toBe("online")
        expect(touched.lastSeenAt).toBe("1970-01-01T00:00:10.000Z")
        expect(touched.summary).toBe("s1")
      })
    ))

  it.effect("unregister removes the peer and its memberships and frees the name", () =>
    run((registry, dir) =>
      Effect.gen(function*() {
        const { record } = yield* registry.register({ tenant: "acme", owner: "alice", registration: reg({ name: "alice", teams: [team("web")] }) })
        const id = record.peer.id
        const gone = yield* registry.unregister("acme", id)
        expect(gone.id).toBe(id)
        expect(gone.status).toBe("offline")
        expect(gone.teams).toEqual(["web"])
        expect(yield* dir.members("acme", team("web"))).toEqual([])
        expect((yield* Effect.flip(registry.get("acme", id)))._tag).toBe("PeerNotFound")
        expect((yield* Effect.flip(registry.unregister("acme", id)))._tag).toBe("PeerNotFound")
        expect(yield* registry.list("acme")).toEqual([])
        // the name is free again, even for another subject
        const next = yield* registry.register({ tenant: "acme", owner: "bob", registration: reg({ name: "alice" }) })
        expect(next.resumed).toBe(false)
        expect(next.record.peer.id).not.toBe(id)
      })
    ))

  it.effect("expire marks stale online peers offline in every tenant", () =>
    run((registry) =>
      Effect.gen(function*() {
        const old = yield* registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "old" }) })
        const far = yield* registry.register({ tenant: "globex", owner: "o", registration: reg({ name: "far" }) })
        yield* TestClock.adjust("30 seconds")
        const fresh = yield* registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "fresh" }) })
        yield* TestClock.adjust("40 seconds")
        // now = 70 s; cutoff = now - 60 s = 10 s: `old` and `far` (seen at 0 s) are stale
        const expired = yield* registry.expire(10_000)
        expect(expired.map((r) => [r.tenant, r.peer.name]).sort()).toEqual([["acme", "old"], ["globex", "far"]])
        expect(expired.every((r) => r.peer.status === "offline")).toBe(true)
        expect((yield* registry.get("acme", old.record.peer.id)).peer.status).toBe("offline")
        expect((yield* registry.get("globex", far.record.peer.id)).peer.status).toBe("offline")
        expect((yield* registry.get("acme", fresh.record.peer.id)).peer.status).toBe("online")
        // already offline: nothing changes the second time
        expect(yield* registry.expire(10_000)).toEqual([])
        // a heartbeat brings it back, and keeps it from the next sweep
        yield* registry.touch("acme", old.record.peer.id)
        expect((yield* registry.expire(10_000)).map((r) => r.peer.name)).toEqual([])
      })
    ))

  it.effect("concurrent registrations of one name yield a single peer", () =>
    run((registry) =>
      Effect.gen(function*() {
        const results = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => Effect.zipRight(Effect.yieldNow(), registry.register({ tenant: "acme", owner: "o", registration: reg({ name: "same", pid: i + 1 }) })),
          { concurrency: "unbounded" }
        )
        expect(new Set(results.map((r) => r.record.peer.id)).size).toBe(1)
        expect(results.filter((r) => !r.resumed)).toHaveLength(1)
        expect(yield* registry.list("acme")).toHaveLength(1)
      })
    ))
})
