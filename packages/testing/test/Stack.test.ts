import Anthropic from "@anthropic-ai/sdk"
import { layer } from "@effect/vitest"
import { BrokerClient } from "@mks/a2a"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Stack, startStack, type TestStack } from "../src/index.js"

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("startStack (Promise face)", () => {
  let stack: TestStack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(() => stack?.close())

  it("two peers on the broker exchange messages over their live channels", async () => {
    const alice = await stack.peer("alice", { teams: ["crew"] })
    const bob = await stack.peer("bob", { teams: ["crew"] })
    const sent = await alice.send("bob", "hello bob")
    const got = await bob.nextMessage()
    expect(got).toMatchObject({ id: sent.message.id, body: "hello bob", fromName: "alice" })
    await bob.send(alice.id, "hello alice", { replyTo: got.id })
    expect(await alice.nextMessage((m) => m.replyTo === got.id)).toMatchObject({ body: "hello alice", from: bob.id })
    await bob.sendTeam("crew", "to everyone")
    expect((await alice.nextMessage()).body).toBe("to everyone")
  })

  it("peers share a team task board: the helpers create, claim and complete, and await task events", async () => {
    const lead = await stack.peer("lead", { teams: ["board"] })
    const hand = await stack.peer("hand", { teams: ["board"] })
    const task = await lead.tasks.create("board", "write the changelog", { priority: 1 })
    await hand.tasks.event("created", task.id)
    const claimed = await hand.tasks.claimNext("board")
    expect(claimed).toMatchObject({ id: task.id, state: "claimed", assignee: hand.id })
    expect(await lead.tasks.claimNext("board")).toBeNull()
    await hand.tasks.complete(task.id, "done, see CHANGELOG.md")
    const done = await lead.tasks.event("done", task.id)
    expect(done.task.result).toBe("done, see CHANGELOG.md")
  })

  it("the proxy forwards to the fake with the provider's key and meters a virtual key", async () => {
    const { key, record } = await stack.proxy!.createKey({ name: "test" })
    const client = new Anthropic({ baseURL: stack.proxy!.url, apiKey: key, maxRetries: 0 })
    const reply = await client.messages.stream({ model: "claude-any", max_tokens: 20, messages: [{ role: "user", content: "through the proxy" }] }).finalMessage()
    expect(reply.content).toEqual([{ type: "text", text: "ok (claude-any)" }])
    const seen = await stack.fakes.fake!.waitFor((r) => r.lastUserText === "through the proxy")
    expect(seen.headers["x-api-key"]).toBe("fake-upstream-key-fake")
    const usage = await fetch(`${stack.proxy!.url}/v1/usage?key=${record.id}`, { headers: { authorization: `Bearer ${stack.proxy!.adminToken}` } })
    expect(((await usage.json()) as any).usage[0].window.requests).toBe(1)
    const refused = await client.messages.create({ model: "m", max_tokens: 5, messages: [] }, { headers: { "x-api-key": "sk-mks-wrong" } }).catch((e) => e)
    expect(refused.status).toBe(401)
  })

  it("the runner is online at the broker and runs spawn orders", async () => {
    const admin = stack.client()
    const { runners } = await admin.runners.list()
    expect(runners.map((r) => [r.id, r.status])).toEqual([["test-runner", "online"]])
    const boss = await stack.peer("boss")
    const { spawn } = await admin.spawn.create({ runner: "test-runner", preset: "command", command: process.execPath, args: ["-e", "setInterval(() => {}, 1000)"], name: "sleeper", requestedBy: boss.id })
    const running = await boss.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "running")
    const pid = running.type === "spawn_status" ? running.spawn.pid! : 0
    expect(isAlive(pid)).toBe(true)
    // Left running on purpose: closing the stack must stop it (checked below).
    sleeperPid = pid
  })

  it("bad settings fail with one clear error and leave nothing behind", async () => {
    await expect(startStack({ proxy: { providers: [{ name: "bad/name" }] }, runner: false })).rejects.toThrow(/invalid proxy settings: .*provider name/)
  })
})

let sleeperPid = 0

describe("close", () => {
  it("stops the runner's agents, every server and removes the temp dirs (SQLite file store)", async () => {
    const stack = await startStack({ broker: { db: "file" } })
    expect(existsSync(join(stack.broker.home, "broker.db"))).toBe(true)
    const admin = stack.client()
    const boss = await stack.peer("boss")
    const { spawn } = await admin.spawn.create({ preset: "command", command: process.execPath, args: ["-e", "setInterval(() => {}, 1000)"], requestedBy: boss.id })
    const running = await boss.event((e) => e.type === "spawn_status" && e.spawn.id === spawn.id && e.spawn.status === "running")
    const pid = running.type === "spawn_status" ? running.spawn.pid! : 0
    expect(isAlive(pid)).toBe(true)
    const { broker, runner, proxy } = stack
    await stack.close()
    expect(isAlive(pid)).toBe(false)
    for (const url of [broker.url + "/healthz", runner!.url + "/health", proxy!.url + "/health", stack.fakes.fake!.url + "/v1/models"]) {
      await expect(fetch(url), url).rejects.toThrow()
    }
    expect(existsSync(broker.home)).toBe(false)
    expect(existsSync(runner!.dataDir)).toBe(false)
    // The first suite's stack was closed by its afterAll: its agent is gone too.
    if (sleeperPid !== 0) expect(isAlive(sleeperPid)).toBe(false)
  })
})

describe("Stack.layer (Effect)", () => {
  layer(Stack.layer({ runner: false, proxy: { providers: [{ name: "alpha" }, { name: "beta", script: () => "from beta" }] } }))("two providers, no runner", (it) => {
    it.effect("routes provider/model to that provider's fake, and the typed client works", () =>
      Effect.gen(function* () {
        const stack = yield* Stack.Stack
        expect(stack.runner).toBeUndefined()
        const { key } = yield* stack.proxy!.createKey({ name: "effect" })
        const ask = (model: string) =>
          Effect.promise(() => new Anthropic({ baseURL: stack.proxy!.url, apiKey: key, maxRetries: 0 }).messages.create({ model, max_tokens: 5, messages: [{ role: "user", content: "hi" }] }))
        expect((yield* ask("alpha/a-model")).content).toEqual([{ type: "text", text: "ok (a-model)" }])
        expect((yield* ask("beta/b-model")).content).toEqual([{ type: "text", text: "from beta" }])
        expect(stack.fakes.alpha!.requests.map((r) => r.model)).toEqual(["a-model"])
        expect(stack.fakes.beta!.requests.map((r) => r.model)).toEqual(["b-model"])

        const peerToken = yield* stack.broker.createToken("other", ["peer"])
        const names = yield* Effect.gen(function* () {
          const client = yield* BrokerClient.BrokerClient
          yield* client.api.peers.register({ payload: { name: "effect-peer" } })
          return (yield* client.api.peers.list({ urlParams: {} })).peers.map((p) => p.name)
        }).pipe(Effect.provide(stack.brokerClient(peerToken)))
        expect(names).toEqual(["effect-peer"])
      })
    )
  })
})
