import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { PeerId, TeamName } from "../src/Ids.js"
import * as TeamDirectory from "../src/TeamDirectory.js"

const peer = (n: number) => `p_team${String(n).padStart(16, "0")}` as PeerId
const team = (name: string) => name as TeamName
const [a, b, c] = [peer(1), peer(2), peer(3)]

/** Each test gets a fresh directory. */
const run = <A, E>(f: (dir: TeamDirectory.TeamDirectoryService) => Effect.Effect<A, E>) =>
  Effect.flatMap(TeamDirectory.TeamDirectory, f).pipe(Effect.provide(TeamDirectory.layerMemory))

describe("TeamDirectory.layerMemory", () => {
  it.effect("join creates the team, is idempotent and keeps join order", () =>
    run((dir) =>
      Effect.gen(function*() {
        yield* TestClock.adjust("5 seconds")
        const first = yield* dir.join("acme", team("web"), b)
        expect(first.members).toEqual([b])
        expect(first.description).toBe("")
        expect(first.createdAt).toBe("1970-01-01T00:00:05.000Z")
        yield* dir.join("acme", team("web"), a)
        yield* dir.join("acme", team("web"), c)
        const again = yield* dir.join("acme", team("web"), b)
        expect(again.members).toEqual([b, a, c])
        expect(yield* dir.members("acme", team("web"))).toEqual([b, a, c])
        // createdAt is the creation time, not the time of a later join
        yield* TestClock.adjust("1 minute")
        expect((yield* dir.join("acme", team("web"), a)).createdAt).toBe("1970-01-01T00:00:05.000Z")
      })
    ))

  it.effect("create fails with TeamExists for a taken name and keeps the description", () =>
    run((dir) =>
      Effect.gen(function*() {
        const created = yield* dir.create("acme", { name: team("ops"), description: "on call" })
        expect(created.members).toEqual([])
        const error = yield* Effect.flip(dir.create("acme", { name: team("ops") }).pipe(Effect.catchTag("ServiceUnavailable", Effect.die)))
        expect(error._tag).toBe("TeamExists")
        expect(error.team).toBe("ops")
        yield* dir.join("acme", team("ops"), a)
        const got = yield* dir.get("acme", team("ops"))
        expect(got.description).toBe("on call")
        expect(got.members).toEqual([a])
        // a team created by join is taken too
        yield* dir.join("acme", team("web"), a)
        expect((yield* Effect.flip(dir.create("acme", { name: team("web") })))._tag).toBe("TeamExists")
      })
    ))

  it.effect("leave removes the member, is a no-op for non-members, and fails on unknown teams", () =>
    run((dir) =>
      Effect.gen(function*() {
        yield* dir.join("acme", team("web"), a)
        yield* dir.join("acme", team("web"), b)
        expect((yield* dir.leave("acme", team("web"), a)).members).toEqual([b])
        expect((yield* dir.leave("acme", team("web"), a)).members).toEqual([b])
        expect((yield* dir.leave("acme", team("web"), c)).members).toEqual([b])
        const missing = yield* Effect.flip(dir.leave("acme", team("nope"), a).pipe(Effect.catchTag("ServiceUnavailable", Effect.die)))
        expect(missing._tag).toBe("TeamNotFound")
        expect(missing.team).toBe("nope")
        expect((yield* Effect.flip(dir.members("acme", team("nope"))))._tag).toBe("TeamNotFound")
        expect((yield* Effect.flip(dir.get("acme", team("nope"))))._tag).toBe("TeamNotFound")
        // an emptied team still exists
        yield* dir.leave("acme", team("web"), b)
        expect((yield* dir.get("acme", team("web"))).members).toEqual([])
      })
    ))

  it.effect("list and teamsOf are sorted by name; removePeer leaves every team", () =>
    run((dir) =>
      Effect.gen(function*() {
        for (const name of ["zeta", "alpha", "mid"]) yield* dir.join("acme", team(name), a)
        yield* dir.join("acme", team("mid"), b)
        expect((yield* dir.list("acme")).map((t) => t.name)).toEqual(["alpha", "mid", "zeta"])
        expect(yield* dir.teamsOf("acme", a)).toEqual(["alpha", "mid", "zeta"])
        expect(yield* dir.teamsOf("acme", b)).toEqual(["mid"])
        expect(yield* dir.teamsOf("acme", c)).toEqual([])

        expect(yield* dir.removePeer("acme", a)).toEqual(["alpha", "mid", "zeta"])
        expect(yield* dir.teamsOf("acme", a)).toEqual([])
        expect(yield* dir.members("acme", team("mid"))).toEqual([b])
        expect(yield* dir.removePeer("acme", a)).toEqual([])
        // teams outlive their members
        expect((yield* dir.list("acme")).map((t) => t.name)).toEqual(["alpha", "mid", "zeta"])
      })
    ))

  it.effect("tenants never see each other's teams", () =>
    run((dir) =>
      Effect.gen(function*() {
        yield* dir.join("acme", team("web"), a)
        yield* dir.create("acme", { name: team("ops") })
        expect(yield* dir.list("globex")).toEqual([])
        expect(yield* dir.teamsOf("globex", a)).toEqual([])
        expect((yield* Effect.flip(dir.get("globex", team("web"))))._tag).toBe("TeamNotFound")
        expect((yield* Effect.flip(dir.leave("globex", team("web"), a)))._tag).toBe("TeamNotFound")
        // the same name is free in another tenant, and removePeer stays in its tenant
        yield* dir.create("globex", { name: team("ops") })
        yield* dir.join("globex", team("web"), a)
        expect(yield* dir.removePeer("globex", a)).toEqual(["web"])
        expect(yield* dir.members("acme", team("web"))).toEqual([a])
      })
    ))

  it.effect("concurrent joins lose no member and add none twice", () =>
    run((dir) =>
      Effect.gen(function*() {
        const peers = Array.from({ length: 60 }, (_, i) => peer(i))
        yield* Effect.forEach(
          [...peers, ...peers],
          (id) => Effect.zipRight(Effect.yieldNow(), dir.join("acme", team("crowd"), id)),
          { concurrency: "unbounded", discard: true }
        )
        const members = yield* dir.members("acme", team("crowd"))
        expect(members).toHaveLength(60)
        expect(new Set(members)).toEqual(new Set(peers))
      })
    ))
})
