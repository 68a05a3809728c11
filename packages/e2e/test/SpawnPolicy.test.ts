/**
 * A runner's policy (docs/runner.md#policy), end to end: built broker, runner (with
 * `--policy examples/runner-policy.json`'s kind of file), `a2a` CLI and `a2a-mcp` session. An
 * order the policy refuses is refused with its typed reason (`SpawnRefused`, and the rule) in
 * the answer to `a2a spawn` and to the `spawn_peer` tool; the runner list shows the policy; an
 * allowed order runs. The runner itself refuses too (maximum per principal).
 */
import { execFile } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { a2aMcp, BIN, cleanEnv, createScopedToken, createToken, startBroker, startServer, tempDir, type McpSession } from "./support.js"

const AGENT = join(import.meta.dirname, "fixtures", "agent.mjs")
const run = promisify(execFile)

describe("runner policy: the runner's owner decides what runs", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>
  let runner: Awaited<ReturnType<typeof startServer>>
  let lead: McpSession
  let peerToken: string
  let work: string

  const a2a = (args: ReadonlyArray<string>) =>
    run(process.execPath, [BIN.a2a, ...args], { env: cleanEnv({ A2A_BROKER_URL: broker.url, A2A_TOKEN: peerToken, HOME: tempDir() }) }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr })
    )
  /** The tool's error text (the session's `ok` throws with it). */
  const toolError = (args: Record<string, unknown>) =>
    lead.ok("spawn_peer", args).then(
      () => "",
      (e: Error) => e.message
    )

  beforeAll(async () => {
    broker = await startBroker()
    work = tempDir("a2a-e2e-work-")
    mkdirSync(join(work, "repo"))
    const policyFile = join(tempDir(), "policy.json")
    writeFileSync(
      policyFile,
      JSON.stringify({ presets: ["command"], commands: [[process.execPath, AGENT]], cwds: [work], denyEnv: ["LD_PRELOAD", "NODE_OPTIONS", "AWS_*"], maxPerPrincipal: 1 })
    )
    const dataDir = tempDir("a2a-e2e-runner-")
    const runnerToken = await createToken(broker.home, "default", "runner")
    runner = await startServer(
      BIN.runner,
      ["--data-dir", dataDir, "--api-key", "e2e-runner-key-0123", "--id", "locked", "--broker", broker.url, "--token", runnerToken, "--policy", policyFile],
      cleanEnv({ A2A_HOME: join(dataDir, "home") })
    )
    peerToken = await createScopedToken(broker.home, "default", ["peer"], ["spawn:command"])
    lead = await a2aMcp(broker, peerToken, "lead")
  }, 60_000)
  afterAll(async () => {
    await lead?.close()
    await runner?.stop()
    await broker?.stop()
  })

  it("list_runners shows the runner's policy claim", async () => {
    const runners = (await lead.ok("list_runners")).data.runners as Array<{ id: string; presets: Array<string>; policy?: any }>
    const locked = runners.find((r) => r.id === "locked")!
    expect(locked.presets).toEqual(["command"])
    expect(locked.policy).toMatchObject({ presets: ["command"], cwds: [work], denyEnv: ["LD_PRELOAD", "NODE_OPTIONS", "AWS_*"], maxPerPrincipal: 1 })
  })

  it("a2a spawn shows the refusal and its rule: a command, a cwd, an env key, a preset", async () => {
    const command = await a2a(["spawn", "--runner", "locked", "--", "/bin/sh", "-c", "id"])
    expect(command.code).not.toBe(0)
    expect(command.stderr).toMatch(/SpawnRefused/)
    expect(command.stderr).toMatch(/runner locked refuses: command "\/bin\/sh" is not allowed here/)

    const cwd = await a2a(["spawn", "--runner", "locked", "--cwd", "/etc", "--", process.execPath, AGENT])
    expect(cwd.code).not.toBe(0)
    expect(cwd.stderr).toMatch(/SpawnRefused.*working directory "\/etc" is not allowed here|working directory "\/etc" is not allowed here[\s\S]*SpawnRefused/)

    const escape = await a2a(["spawn", "--runner", "locked", "--cwd", `${work}/../..`, "--", process.execPath, AGENT])
    expect(escape.stderr).toMatch(/working directory .* is not allowed here/)

    const env = await a2a(["spawn", "--runner", "locked", "--env", "AWS_SECRET_ACCESS_KEY=x", "--", process.execPath, AGENT])
    expect(env.code).not.toBe(0)
    expect(env.stderr).toMatch(/environment AWS_SECRET_ACCESS_KEY is not passed here/)

    const preset = await a2a(["spawn", "--runner", "locked", "--preset", "claude"])
    expect(preset.code).not.toBe(0)
    expect(preset.stderr).toMatch(/preset claude is not allowed here/)
    // Nothing was created for any of them.
    expect((await a2a(["spawns", "--json"])).stdout).not.toMatch(/"status"/)
  }, 60_000)

  it("the MCP spawn_peer tool shows the same typed refusal", async () => {
    expect(await toolError({ runner: "locked", preset: "command", command: "/bin/sh", args: ["-c", "id"] })).toMatch(/SpawnRefused[\s\S]*command "\/bin\/sh" is not allowed here/)
    expect(await toolError({ runner: "locked", preset: "command", command: process.execPath, args: [AGENT], cwd: "/tmp" })).toMatch(/SpawnRefused[\s\S]*working directory "\/tmp"/)
    expect(await toolError({ runner: "locked", preset: "command", command: process.execPath, args: [AGENT], env: { NODE_OPTIONS: "--require /tmp/x.js" } })).toMatch(
      /SpawnRefused[\s\S]*environment NODE_OPTIONS is not passed here/
    )
  }, 60_000)

  it("an allowed order runs (in the first allowed directory); a second one of the same principal is refused (max per principal)", async () => {
    const spawned = await lead.ok("spawn_peer", { name: "worker", runner: "locked", preset: "command", command: process.execPath, args: [AGENT, "--extra"], env: { REPORT_TO: "lead" } })
    const id: string = spawned.data.spawn.id
    await lead.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === id && p.meta.status === "registered", 20_000)
    const agents = (await (await fetch(`${runner.url}/agents`, { headers: { authorization: "Bearer e2e-runner-key-0123" } })).json()) as any
    expect((agents.agents ?? agents).find((a: { spawnId?: string }) => a.spawnId === id)?.cwd).toBe(work)
    expect(await toolError({ runner: "locked", preset: "command", command: process.execPath, args: [AGENT] })).toMatch(/SpawnRefused[\s\S]*already runs 1 agents here \(at most 1\)/)
    await lead.ok("stop_peer", { spawn_id: id })
    await lead.push((p) => p.meta.kind === "spawn_status" && p.meta.spawn_id === id && p.meta.status === "exited", 20_000)
  }, 60_000)
})
