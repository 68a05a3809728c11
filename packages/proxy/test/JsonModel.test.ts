/**
 * The body scan of the data plane: over any JSON object (any nesting, escapes, whitespace,
 * duplicate keys) it reads the same top-level model, stream and max_tokens as `JSON.parse`, and
 * replacing the model changes those bytes only; a body that is not one object is "malformed".
 * Through a real proxy: a renamed model arrives with every other byte as sent, and a large body
 * is routed without being parsed as a whole.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { scanTopLevel, spliceModel } from "../src/internal/jsonModel.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, postMessages, startProxy } from "./helpers/proxy.js"

/** JSON text of `value` with random whitespace and, for some strings, `\u` escapes. */
const spaced = (value: unknown, ws: () => string, escape: () => boolean): string => {
  if (Array.isArray(value)) return `[${ws()}${value.map((v) => spaced(v, ws, escape)).join(`${ws()},${ws()}`)}${ws()}]`
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => `${str(k, escape())}${ws()}:${ws()}${spaced(v, ws, escape)}`)
    return `{${ws()}${entries.join(`${ws()},${ws()}`)}${ws()}}`
  }
  if (typeof value === "string") return str(value, escape())
  return JSON.stringify(value)
}
const str = (s: string, escapeAll: boolean) =>
  escapeAll ? `"${[...s].map((c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")).join("")}"` : JSON.stringify(s)

const jsonValue = fc.jsonValue({ maxDepth: 4 })
const topKey = fc.oneof(fc.constantFrom("model", "stream", "max_tokens", "messages", "system", "modelx", "Model"), fc.string({ maxLength: 12 }))
const topValue = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom(true, false, null, 0, -1, 1.5e3, 64000),
  fc.integer(),
  jsonValue
)
const body = fc.array(fc.tuple(topKey, topValue), { maxLength: 8 })

describe("scanTopLevel", () => {
  it("property: reads what JSON.parse reads, for any object, spacing and escaping", () => {
    fc.assert(
      fc.property(body, fc.array(fc.constantFrom("", " ", "\n", "\t  ", "\r\n"), { minLength: 1, maxLength: 20 }), fc.array(fc.boolean(), { minLength: 1 }), (entries, spaces, escapes) => {
        let w = 0
        let e = 0
        const ws = () => spaces[w++ % spaces.length]!
        const esc = () => escapes[e++ % escapes.length]!
        // Duplicate keys are kept as written: JSON.parse keeps the last, and so must the scan.
        const text = `${ws()}{${ws()}${entries.map(([k, v]) => `${str(k, esc())}${ws()}:${ws()}${spaced(v, ws, esc)}`).join(`${ws()},${ws()}`)}${ws()}}${ws()}`
        const buf = Buffer.from(text, "utf8")
        const parsed = JSON.parse(text) as Record<string, unknown>
        const top = scanTopLevel(buf)
        expect(top).not.toBe("malformed")
        if (top === "malformed") return
        expect(top.stream).toBe(parsed.stream === true)
        expect(top.maxTokens).toBe(typeof parsed.max_tokens === "number" ? parsed.max_tokens : undefined)
        if (!("model" in parsed)) expect(top.model).toBe("absent")
        else if (typeof parsed.model !== "string") expect(top.model).toBe("not_a_string")
        else {
          expect(typeof top.model === "object" && top.model.value).toBe(parsed.model)
          if (typeof top.model !== "object") return
          const spliced = spliceModel(buf, top.model.start, top.model.end, "glm/4.5 \"air\"")
          expect(JSON.parse(spliced.toString("utf8"))).toEqual({ ...parsed, model: 'glm/4.5 "air"' })
          // Only the model's bytes changed.
          expect(spliced.subarray(0, top.model.start).equals(buf.subarray(0, top.model.start))).toBe(true)
          expect(spliced.subarray(spliced.length - (buf.length - top.model.end)).equals(buf.subarray(top.model.end))).toBe(true)
        }
      }),
      { numRuns: 500 }
    )
  })

  it("a body that is not one JSON object is malformed; so are unclosed strings, mismatched or unbalanced brackets and bad top-level values", () => {
    for (const text of [
      "",
      "   ",
      "[1,2]",
      '"model"',
      "42",
      '{"model": "claude-haiku-1", ',
      '{"model": "x"',
      '{"model": "x"}}',
      '{"model": "x"} {}',
      '{"model": "x", "messages": [}',
      '{"model": "x", "messages": [{]}',
      '{"model": "x", "messages": ["unclosed]}',
      '{"model": "x" "stream": true}',
      '{"model" "x"}',
      "{model: 'x'}",
      '{"model": "x", "max_tokens": 12abc}',
      '{"model": "x", "stream": tru}',
      '{"model": "x",}',
      '\ufeff{"model": "x"}'
    ]) {
      expect(scanTopLevel(Buffer.from(text, "utf8")), text).toBe("malformed")
    }
  })
})

describe("through a proxy", () => {
  let fake: FakeUpstream
  let proxy: Harness
  let key: string
  beforeAll(async () => {
    fake = await startFake()
    proxy = await startProxy(oneProvider(fake.url, { routes: [{ match: "cheap-*", provider: "fake", model: "glm-4.5-air" }] }))
    key = (await proxy.createKey({ name: "scan", limits: { tokensPer5h: 10_000_000 } })).key
  })
  afterAll(async () => {
    await proxy?.close()
    await fake?.close()
  })

  it("a renamed model arrives with every other byte as sent (escapes, spacing, key order, duplicates)", async () => {
    const text = '{ "messages" : [{"role":"user","content":"say \\"model\\": \\u00e9t\\u00e9"}],\n "model":"ignored", "max_tokens" :7,  "model" : "cheap-\\u0031"  , "metadata":{"model":"nested"} }'
    const res = await postMessages(proxy.url, key, text)
    expect(res.status, res.text).toBe(200)
    const received = fake.requests.at(-1)!.body.toString("utf8")
    expect(received).toBe(text.replace('"cheap-\\u0031"', '"glm-4.5-air"'))
  })

  it("a 1 MB body is routed, reserved by its size and forwarded byte for byte", async () => {
    const conversation = Array.from({ length: 400 }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: `turn ${i}: ${"lorem \"ipsum\" ".repeat(180)}` }))
    const text = JSON.stringify({ messages: conversation, system: "s".repeat(20_000), model: "cheap-big", max_tokens: 1000, stream: false })
    expect(text.length).toBeGreaterThan(1_000_000)
    const settled = proxy.settled((s) => s.requestedModel === "cheap-big")
    const res = await postMessages(proxy.url, key, text)
    expect(res.status, res.text).toBe(200)
    expect((await settled).model).toBe("glm-4.5-air")
    const received = fake.requests.at(-1)!
    expect(received.json.model).toBe("glm-4.5-air")
    expect(received.body.length).toBe(text.length - "cheap-big".length + "glm-4.5-air".length)
  })

  it("a body malformed deep inside is not parsed by the proxy: the provider gets it (and answers for it)", async () => {
    const text = '{"model":"claude-text","max_tokens":5,"messages":[{"role":"user","content":[1 2]}]}'
    await postMessages(proxy.url, key, text)
    expect(fake.requests.at(-1)!.body.toString("utf8")).toBe(text)
  })
})
