/**
 * UC4: a session spawns a peer through a runner, talks to it, and stops it. Built broker and
 * runner processes; the session is the built `a2a-mcp` driven by the MCP SDK client; the
 * spawned peer is a scripted agent (fixtures/agent.mjs) that answers in the same thread.
 */
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { a2aMcp, BIN, cleanEnv, createScopedToken, createToken, isAlive, startBroker, startServer, tempDir, type McpSession } from "./support.js"

const AGENT = join(import.meta.dirname, "fixtures", "agent.mjs")

describe("UC4: spawn, talk, stop", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>
  let runner: Awaited<ReturnType<typeof startServer>>
  let lead: McpSession
  beforeAll(async () => {
    broker = await startBroker()
    const runnerToken = await createToken(broker.home, "default", "runner")
    const dataDir = tempDir("a2a-e2e-runner-")
    runner = await startServer(BIN.runner, ["--data-dir", dataDir, "--api-key", "e2e-runner-key-0123", "--id", "box-1", "--broker", broker.url, "--token", runnerToken], cleanEnv({ A2A_HOME: join(dataDir, "home") }))
    lead = await a2aMcp(broker, await createScopedToken(broker.home, "default", ["peer"], ["spawn:command"]), "lead")
  })
  afterAll(async () => {
    await lead?.close()
    await runner?.stop()
    await broker?.stop()
  })

  it("the lead sees the runner, spawns a helper on it, talks to it, and stops it", async () => {
    await lead.ok("whoami")
    const runners = (await lead.ok("list_runners")).data.runners as Array<{ id: string; status: string }>
    expect(runners.map((r) => [r.id, r.status])).toEqual([["box-1", "online"]])

    const spawned = await lead.ok("spawn_peer", { name: "helper", preset: "command", command: process.execPath, args: [AGENT], env: { REPORT_TO: "lead" } })
    const spawnId: string = spawned.data.spawn.id
    expect(spawned.data.spawn.runnerId).toBe("box-1")
    // Status changes are pushed to the requester as they happen.
    const running = await lead.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === spawnId && p.meta.status === "running", 20_000)
    const registered = await lead.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === spawnId && p.meta.status === "registered", 20_000)
    const pid = Number(running.meta.pid)
    expect(isAlive(pid)).toBe(true)

    const helper = ((await lead.ok("list_peers")).data.peers as Array<{ id: string; name: string; spawnId?: string; runnerId?: string }>).find((p) => p.name === "helper")
    expect(helper).toMatchObject({ id: registered.meta.peer_id, spawnId, runnerId: "box-1" })

    await lead.ok("send_peer_message", { to: "helper", message: "please run the tests" })
    const answer = await lead.push((p) => p.content === "echo:helper please run the tests")
    expect(answer.meta).toMatchObject({ from_name: "helper", from_id: helper!.id })

    await lead.ok("stop_peer", { peer: "helper" })
    await lead.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === spawnId && p.meta.status === "exited", 20_000)
    expect(isAlive(pid)).toBe(false)
  })
})
