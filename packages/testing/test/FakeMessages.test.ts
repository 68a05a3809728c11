import Anthropic from "@anthropic-ai/sdk"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { FakeMessages, startFakeMessages } from "../src/index.js"

describe("FakeMessages", () => {
  let fake: Awaited<ReturnType<typeof startFakeMessages>>
  let client: Anthropic
  beforeAll(async () => {
    fake = await startFakeMessages({
      script: (r) =>
        r.lastUserText === "weather?"
          ? FakeMessages.toolUse("get_weather", { city: "Zürich" }, { text: "Checking." })
          : r.lastUserText === "fail"
            ? FakeMessages.error(529, "overloaded_error", "Overloaded")
            : r.toolResults.length > 0
              ? `the tool said ${r.toolResults[0]!.text}`
              : undefined
    })
    client = new Anthropic({ baseURL: fake.url, apiKey: "test", maxRetries: 0 })
  })
  afterAll(() => fake.close())

  it("answers JSON and SSE with the same message, usage included, and records the request", async () => {
    const plain = await client.messages.create({ model: "m-1", max_tokens: 10, messages: [{ role: "user", content: "hi" }] })
    expect(plain.content).toEqual([{ type: "text", text: "ok (m-1)" }])
    expect(plain.usage).toMatchObject(FakeMessages.defaultUsage)
    const streamed = await client.messages.stream({ model: "m-2", max_tokens: 10, messages: [{ role: "user", content: "hi again" }] }).finalMessage()
    expect(streamed.content).toEqual([{ type: "text", text: "ok (m-2)" }])
    expect(streamed.usage.output_tokens).toBe(FakeMessages.defaultUsage.output_tokens)
    const seen = await fake.waitFor((r) => r.model === "m-2")
    expect(seen).toMatchObject({ path: "/v1/messages", stream: true, lastUserText: "hi again" })
    expect(seen.headers["x-api-key"] ?? seen.headers.authorization).toMatch(/^(Bearer )?test$/)
  })

  it("scripts tool calls, reads tool results, and answers errors in Anthropic's shape", async () => {
    const first = await client.messages.stream({ model: "m", max_tokens: 10, messages: [{ role: "user", content: "weather?" }] }).finalMessage()
    expect(first.stop_reason).toBe("tool_use")
    const call = first.content.find((b) => b.type === "tool_use")!
    expect(call).toMatchObject({ name: "get_weather", input: { city: "Zürich" } })
    const second = await client.messages.create({
      model: "m",
      max_tokens: 10,
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: call.type === "tool_use" ? call.id : "", content: "sunny" }] }
      ]
    })
    expect(second.content).toEqual([{ type: "text", text: "the tool said sunny" }])
    const failed = await client.messages.create({ model: "m", max_tokens: 10, messages: [{ role: "user", content: "fail" }] }).catch((e) => e)
    expect(failed).toBeInstanceOf(Anthropic.APIError)
    expect(failed.status).toBe(529)
    expect(failed.error).toMatchObject({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
  })

  it("a list script is used in order, then the default; count_tokens and models answer; waitFor times out clearly", async () => {
    fake.setScript(["one", FakeMessages.text("two")])
    const texts = []
    for (let i = 0; i < 3; i++) {
      const m = await client.messages.create({ model: "x", max_tokens: 5, messages: [{ role: "user", content: "n" }] })
      texts.push(m.content[0]!.type === "text" ? m.content[0]!.text : "")
    }
    expect(texts).toEqual(["one", "two", "ok (x)"])
    expect((await client.messages.countTokens({ model: "x", messages: [{ role: "user", content: "n" }] })).input_tokens).toBe(42)
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(["claude-fake-1"])
    const bad = await fetch(fake.url + "/v1/messages", { method: "POST", body: "{not json" })
    expect(bad.status).toBe(400)
    await expect(fake.waitFor((r) => r.model === "never", { timeoutMs: 50, what: "model never" })).rejects.toThrow(/timed out after 50 ms waiting for model never/)
  })

  it("stops listening on close", async () => {
    const other = await startFakeMessages()
    await other.close()
    await expect(fetch(other.url + "/v1/models")).rejects.toThrow()
  })
})
