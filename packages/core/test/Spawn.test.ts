import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import fc from "fast-check"
import { Spawn } from "../src/index.js"
import type { SpawnStatus } from "../src/Spawn.js"

const ALL: ReadonlyArray<SpawnStatus> = [
  "pending",
  "dispatched",
  "starting",
  "running",
  "registered",
  "stopping",
  "exited",
  "failed",
  "lost"
]

/**
 * The legal moves, written out by hand from the diagram at the top of Spawn.ts rather than
 * derived from the code under test. Three readings the diagram leaves open, as the code decides them:
 * - `pending → stopping` and `pending → lost` are illegal: a pending order is on no runner, so
 *   there is nothing to stop or lose (stopping a pending order withdraws it: `exited`);
 * - `lost → starting` is legal: a runner may reconcile an agent it is still starting.
 */
const LEGAL: Record<SpawnStatus, ReadonlyArray<SpawnStatus>> = {
  pending: ["dispatched", "starting", "running", "registered", "exited", "failed"],
  dispatched: ["starting", "running", "registered", "stopping", "exited", "failed", "lost"],
  starting: ["running", "registered", "stopping", "exited", "failed", "lost"],
  running: ["registered", "stopping", "exited", "failed", "lost"],
  registered: ["stopping", "exited", "failed", "lost"],
  stopping: ["exited", "failed", "lost"],
  exited: [],
  failed: [],
  lost: ["starting", "running", "registered", "stopping", "exited", "failed"]
}

const pairs = ALL.flatMap((from) => ALL.map((to) => ({ from, to, legal: LEGAL[from].includes(to) })))

describe("Spawn status machine", () => {
  it("covers all 81 pairs, 37 of them legal", () => {
    expect(pairs).toHaveLength(81)
    expect(pairs.filter((p) => p.legal)).toHaveLength(37)
  })

  it.each(pairs)("$from → $to legal: $legal", ({ from, legal, to }) => {
    expect(Spawn.canTransition(from, to)).toBe(legal)
    const result = Spawn.transition("s_test", from, to)
    if (legal) {
      expect(result).toEqual(Either.right(to))
    } else {
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("IllegalTransition")
        expect(result.left).toMatchObject({ spawn: "s_test", from, to })
        expect(result.left.message).toContain(`from ${from} to ${to}`)
      }
    }
  })

  it("never leaves a final state, never re-enters pending, never stays put", () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALL), fc.constantFrom(...ALL), (from, to) => {
        if (Spawn.isFinal(from) || to === "pending" || from === to) {
          expect(Spawn.canTransition(from, to)).toBe(false)
        }
      })
    )
  })

  it("a random walk over the machine's legal moves passes pending and dispatched once and ends at most once", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (choices) => {
        let status: SpawnStatus = "pending"
        const seen: Array<SpawnStatus> = [status]
        for (const c of choices) {
          const next = ALL.filter((to) => Spawn.canTransition(status, to))
          if (next.length === 0) break
          status = next[c % next.length]!
          seen.push(status)
        }
        expect(seen.filter((s) => s === "pending")).toHaveLength(1)
        expect(seen.filter((s) => s === "dispatched").length).toBeLessThanOrEqual(1)
        const finals = seen.filter(Spawn.isFinal)
        expect(finals.length).toBeLessThanOrEqual(1)
        if (finals.length === 1) expect(seen[seen.length - 1]).toBe(finals[0])
      })
    )
  })

  it("isActive: every state but the final ones and lost holds a runner slot", () => {
    expect(ALL.filter(Spawn.isActive)).toEqual(["pending", "dispatched", "starting", "running", "registered", "stopping"])
  })

  it("presetOf defaults to command when a command is given, else claude", () => {
    expect(Spawn.presetOf({ command: "node" })).toBe("command")
    expect(Spawn.presetOf({})).toBe("claude")
    expect(Spawn.presetOf({ preset: "claude", command: "x" })).toBe("claude")
  })
})
