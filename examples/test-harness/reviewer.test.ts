// A vitest test of the reviewer agent against a whole a2a stack from @mks/a2a-testing: a real
// broker, a runner and the proxy in this process, with a scripted fake model behind the proxy.
// Run: npx vitest run --root examples/test-harness   (in your project: npm install -D @mks/a2a-testing vitest)
import { startStack, type TestStack } from "@mks/a2a-testing"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
// @ts-expect-error: a plain JavaScript module
import { startReviewer } from "./reviewer.mjs"

describe("reviewer", () => {
  let stack: TestStack
  beforeAll(async () => {
    stack = await startStack({
      proxy: { providers: [{ name: "fake", script: (request) => `LGTM (${request.lastUserText.length} characters)` }] }
    })
  })
  afterAll(() => stack.close())

  it("answers a review request with the model's verdict, in the same thread", async () => {
    const { key } = await stack.proxy!.createKey({ name: "reviewer" })
    const reviewer = await startReviewer({ brokerUrl: stack.broker.url, token: await stack.token(), modelUrl: stack.proxy!.url, modelKey: key })
    const author = await stack.peer("author")

    const { message } = await author.send("reviewer", "please review: x = 1")
    const verdict = await author.nextMessage((m) => m.replyTo === message.id)
    expect(verdict).toMatchObject({ body: "LGTM (20 characters)", fromName: "reviewer", threadId: message.threadId })

    // What the model was asked, as the fake behind the proxy received it.
    const request = await stack.fakes.fake!.waitFor((r) => r.lastUserText === "please review: x = 1")
    expect(request.body.system).toContain("code reviewer")
    await reviewer.stop()
  })

  it("runs as an agent spawned on the stack's runner, and stops with it", async () => {
    const boss = await stack.peer("boss")
    const { key } = await stack.proxy!.createKey({ name: "spawned reviewer" })
    const admin = stack.client()
    const { spawn } = await admin.spawn.create({
      preset: "command",
      command: process.execPath,
      args: [join(import.meta.dirname, "reviewer.mjs")],
      name: "reviewer-2",
      env: { ANTHROPIC_BASE_URL: stack.proxy!.url, ANTHROPIC_API_KEY: key },
      requestedBy: boss.id
    })
    const registered = await boss.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "registered", 20_000)
    expect(registered.type === "spawn_status" && registered.spawn.peerId).toBeTruthy()

    const { message } = await boss.send("reviewer-2", "and this: y = 2")
    expect((await boss.nextMessage((m) => m.replyTo === message.id)).body).toBe("LGTM (15 characters)")

    await admin.spawn.stop(spawn.id)
    await boss.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "exited", 20_000)
  })
})
