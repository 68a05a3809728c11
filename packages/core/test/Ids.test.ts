import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Ids from "../src/Ids.js"

describe("Ids", () => {
  it("message ids are m_, 10 characters of time and 16 random ones, sort by creation time and decode as MessageId", () => {
    const ids = [Ids.messageId(1_000), Ids.messageId(1_001), Ids.messageId(Date.UTC(2026, 0, 1)), Ids.make.message()]
    for (const id of ids) {
      expect(id).toMatch(/^m_[0-9abcdefghjkmnpqrstvwxyz]{26}$/)
      expect(Schema.decodeUnknownSync(Ids.MessageId)(id)).toBe(id)
    }
    expect([...ids].sort()).toEqual(ids)
    // 80 random bits: no two alike, also within one millisecond.
    const same = new Set(Array.from({ length: 1000 }, () => Ids.messageId(5)))
    expect(same.size).toBe(1000)
  })
})
