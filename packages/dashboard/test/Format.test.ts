/** The spawn form's parsing and relative times, without a browser. */
import { describe, expect, it } from "vitest"
import { ago, parseLabels, splitArgs } from "../src/format.js"

describe("spawn form parsing", () => {
  it("splits arguments on spaces, keeping quoted groups", () => {
    expect(splitArgs('agent.js --say "two words" \'single q\' "esc \\"q\\""')).toEqual(["agent.js", "--say", "two words", "single q", 'esc "q"'])
    expect(splitArgs("   ")).toEqual([])
  })

  it("reads labels as key=value pairs and refuses anything else", () => {
    expect(parseLabels("zone=eu, gpu = yes\nos=linux")).toEqual({ zone: "eu", gpu: "yes", os: "linux" })
    expect(parseLabels(" ")).toBeUndefined()
    expect(() => parseLabels("zone")).toThrow(/not key=value/)
  })

  it("says how long ago in seconds, minutes, hours, days", () => {
    const now = Date.parse("2026-12-01T12:00:00.000Z")
    expect(ago("2026-12-01T11:59:55.000Z", now)).toBe("5 s ago")
    expect(ago("2026-12-01T11:57:00.000Z", now)).toBe("3 min ago")
    expect(ago("2026-12-01T09:00:00.000Z", now)).toBe("3 h ago")
    expect(ago("2026-11-28T12:00:00.000Z", now)).toBe("3 d ago")
    expect(ago("garbage", now)).toBe("—")
  })
})
