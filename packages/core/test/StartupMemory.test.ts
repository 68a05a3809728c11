/**
 * StartupMemory (the broker's bin starts in a small young generation): in a fresh Node process,
 * an allocation burst after the `hold` flag leaves the young generation at its initial size, and
 * after `resume`'s flag the same burst grows it as without either. This checks that the runtime
 * still reads the flag at every growth: if it did not, the broker's idle footprint would
 * silently go back up by the 30 MiB start-up grew.
 */
import { execFileSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import * as StartupMemory from "../src/StartupMemory.js"

/** The young generation's committed size in MiB after an allocation burst, after setting `flags` in order. */
const youngAfterBurst = (flags: ReadonlyArray<string>): number => {
  const script = `
    const { getHeapSpaceStatistics, setFlagsFromString } = require("node:v8")
    for (const flag of ${JSON.stringify(flags)}) setFlagsFromString(flag)
    let keep = []
    for (let i = 0; i < 2e6; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 100000) keep = [] }
    const young = getHeapSpaceStatistics().find((s) => s.space_name === "new_space")
    process.stdout.write(String(young.space_size / 1048576))
  `
  return Number(execFileSync(process.execPath, ["-e", script], { encoding: "utf8" }))
}

describe("StartupMemory", () => {
  it("hold keeps the young generation at its initial size through an allocation burst; resume lets it grow", () => {
    const held = youngAfterBurst([StartupMemory.HOLD_FLAG])
    const resumed = youngAfterBurst([StartupMemory.HOLD_FLAG, StartupMemory.RESUME_FLAG])
    const unheld = youngAfterBurst([])
    expect(held).toBeLessThanOrEqual(2)
    expect(unheld).toBeGreaterThanOrEqual(8)
    expect(resumed).toBe(unheld)
  })

})
