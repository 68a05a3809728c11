/**
 * UC5: two "machines" (two built runner processes with their own data dirs and labels) on one
 * broker, and three peers talking A↔B↔C: ann runs on machine a, ben on machine b (both the
 * scripted agent of fixtures/agent.mjs), and cat is an agent session (built `a2a-mcp`).
 */
import { existsSync, readdirSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { a2aMcp, BIN, cleanEnv, createScopedToken, createToken, isAlive, startBroker, startServer, tempDir, type McpSession } from "./support.js"

const AGENT = join(import.meta.dirname, "fixtures", "agent.mjs")

describe("UC5: two machines, three peers", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>
  const runners: Array<Awaited<ReturnType<typeof startServer>> & { dataDir: string }> = []
  let cat: McpSession
  beforeAll(async () => {
    broker = await startBroker()
    for (const machine of ["a", "b"]) {
      const dataDir = tempDir(`a2a-e2e-machine-${machine}-`)
      const token = await createToken(broker.home, "default", "runner")
      const runner = await startServer(
        BIN.runner,
        ["--data-dir", dataDir, "--api-key", `e2e-runner-key-${machine}-0123`, "--id", `machine-${machine}`, "--labels", `machine=${machine},zone=e2e`, "--broker", broker.url, "--token", token],
        cleanEnv({ A2A_HOME: join(dataDir, "home") })
      )
      runners.push({ ...runner, dataDir })
    }
    cat = await a2aMcp(broker, await createScopedToken(broker.home, "default", ["peer"], ["spawn:command"]), "cat")
  })
  afterAll(async () => {
    await cat?.close()
    for (const r of runners) await r.stop()
    await broker?.stop()
  })

  it("spawns one peer per machine by label, and all three talk to each other", async () => {
    await cat.ok("whoami")
    const listed = (await cat.ok("list_runners")).data.runners as Array<{ id: string; status: string; labels: Record<string, string> }>
    expect(listed.map((r) => [r.id, r.status, r.labels.machine]).sort()).toEqual([
      ["machine-a", "online", "a"],
      ["machine-b", "online", "b"]
    ])

    const spawnOn = async (name: string, machine: string) => {
      const { data } = await cat.ok("spawn_peer", { name, preset: "command", command: process.execPath, args: [AGENT], env: { REPORT_TO: "cat" }, labels: { machine } })
      const id: string = data.spawn.id
      const running = await cat.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === id && p.meta.status === "running", 20_000)
      await cat.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === id && p.meta.status === "registered", 20_000)
      return { id, runnerId: data.spawn.runnerId as string, pid: Number(running.meta.pid) }
    }
    const ann = await spawnOn("ann", "a")
    const ben = await spawnOn("ben", "b")
    expect([ann.runnerId, ben.runnerId]).toEqual(["machine-a", "machine-b"])
    // Each machine keeps its own agent's records in its own data dir.
    expect(readdirSync(join(runners[0]!.dataDir, "spawns")).some((f) => f.startsWith(ann.id))).toBe(true)
    expect(existsSync(join(runners[1]!.dataDir, "spawns")) && readdirSync(join(runners[1]!.dataDir, "spawns")).some((f) => f.startsWith(ann.id))).toBe(false)

    // C ↔ A and C ↔ B.
    await cat.ok("send_peer_message", { to: "ann", message: "hi ann" })
    expect((await cat.push((p) => p.content === "echo:ann hi ann")).meta.from_name).toBe("ann")
    await cat.ok("send_peer_message", { to: "ben", message: "hi ben" })
    expect((await cat.push((p) => p.content === "echo:ben hi ben")).meta.from_name).toBe("ben")

    // A → B → A (across machines), then A → C reports it; and the other way round.
    await cat.ok("send_peer_message", { to: "ann", message: "to:ben hello from ann" })
    expect((await cat.push((p) => p.content === "got echo:ben hello from ann from ben")).meta.from_name).toBe("ann")
    await cat.ok("send_peer_message", { to: "ben", message: "to:ann hello from ben" })
    expect((await cat.push((p) => p.content === "got echo:ann hello from ben from ann")).meta.from_name).toBe("ben")

    const peers = ((await cat.ok("list_peers")).data.peers as Array<{ name: string; runnerId?: string }>).map((p) => [p.name, p.runnerId]).sort()
    expect(peers).toEqual([
      ["ann", "machine-a"],
      ["ben", "machine-b"]
    ])

    for (const [name, agent] of [["ann", ann], ["ben", ben]] as const) {
      await cat.ok("stop_peer", { peer: name })
      await cat.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === agent.id && p.meta.status === "exited", 20_000)
      expect(isAlive(agent.pid)).toBe(false)
    }
  })
})
