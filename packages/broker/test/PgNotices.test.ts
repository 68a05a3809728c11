/**
 * The wake-up notifications of a PostgreSQL group commit (`PgGroupCommit.notices`): small
 * messages travel in them (so the instance holding the recipient's socket need not read the
 * table), every payload stays under PostgreSQL's 8,000-byte limit counted in bytes, and every
 * append is announced once, in order.
 */
import { describe, expect, it } from "vitest"
import { INLINE_MESSAGE_BYTES, notices, type Appended } from "../src/PgGroupCommit.js"

const parse = (payloads: ReadonlyArray<string>) => payloads.map((p) => JSON.parse(p) as { i: string; t: string; d: Array<[string, number, string?]> })

describe("PgGroupCommit.notices", () => {
  it("carries small messages, announces large ones, one notice per tenant, in order", () => {
    const small = JSON.stringify({ body: "hi" })
    const large = JSON.stringify({ body: "x".repeat(INLINE_MESSAGE_BYTES) })
    const appended: Array<Appended> = [
      ["acme", "p1", 1, small],
      ["other", "p9", 7, small],
      ["acme", "p2", 4, large],
      ["acme", "p1", 2]
    ]
    const out = parse(notices("inst", appended))
    expect(out).toEqual([
      { i: "inst", t: "acme", d: [["p1", 1, small], ["p2", 4], ["p1", 2]] },
      { i: "inst", t: "other", d: [["p9", 7, small]] }
    ])
  })

  it("counts bytes, not characters: multi-byte and escaped messages never push a payload past the limit", () => {
    const appended: Array<Appended> = []
    // 300 bytes of characters that take 3–4 bytes each, and control characters that JSON
    // escapes to six: a size counted in string length would pass PostgreSQL's limit.
    for (let seq = 1; seq <= 400; seq++) {
      const body = seq % 2 === 0 ? "€🚀".repeat(60) : "\u0001".repeat(300)
      appended.push(["acme", `p${seq % 7}`, seq, JSON.stringify({ body })])
    }
    const payloads = notices("inst", appended)
    expect(payloads.length).toBeGreaterThan(1)
    for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThan(8_000)
    const entries = parse(payloads).flatMap((n) => n.d)
    expect(entries.map((e) => e[1])).toEqual(appended.map((a) => a[2]))
    // An entry whose escaped form passes the inline limit is announced without its message.
    for (const e of entries) {
      if (e[2] !== undefined) expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThanOrEqual(INLINE_MESSAGE_BYTES)
    }
    expect(entries.some((e) => e[2] === undefined)).toBe(true)
    expect(entries.some((e) => e[2] !== undefined)).toBe(true)
  })
})
