import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, eventually, FIXTURES, isAlive, type RunnerProcess, sse, startRunner, tempDir, terminal } from "./helpers.js"

describe("supervisor: restart policy, tree kill, definitions, terminal", () => {
  let runner: RunnerProcess
  beforeAll(async () => {
    runner = await startRunner()
  })
  afterAll(() => runner.stop())

  it("on-failure restarts a non-zero exit with backoff; never does not; on-failure leaves exit 0 alone; always restarts it", async () => {
    const status = await sse(runner, "/sse/status")
    await api(runner, "POST", "/agents", { name: "fails-never", command: "sh", args: ["-c", "exit 3"], restart: "never" })
    await api(runner, "POST", "/agents", { name: "ok-onfail", command: "sh", args: ["-c", "exit 0"], restart: "on-failure" })
    await api(runner, "POST", "/agents", { name: "ok-always", command: "sh", args: ["-c", "read x; exit 0"], restart: "always" })
    await api(runner, "POST", "/agents", { name: "loop", command: "sh", args: ["-c", "exit 7"], restart: "on-failure" })

    const crashed = await status.next((d) => d.agent_id === "fails-never" && d.new_status === "crashed", "never: crashed")
    expect(crashed).toBeDefined()
    await status.next((d) => d.agent_id === "ok-onfail" && d.new_status === "exited", "on-failure: exited 0")
    const term = await terminal(runner, "ok-always")
    term.type("\r")
    await status.next((d) => d.agent_id === "ok-always" && d.new_status === "exited", "always: exited 0")
    term.ws.close()

    // The crash loop: four starts, each wait longer than the one before (500, 1000, 2000 ms).
    const starts: Array<number> = []
    for (let n = 1; n <= 4; n++) {
      const ev = await eventually(
        () => {
          const all = status.events.filter((e) => e.data.agent_id === "loop" && e.data.new_status === "starting")
          return all.length >= n ? all[n - 1] : undefined
        },
        `start #${n} of the crash loop`,
        10_000
      )
      starts.push(Date.parse(ev.data.at))
    }
    // the runner's own timestamps of each start: a restart never comes before its backoff
    // (500, 1000, 2000 ms), so the loop backs off instead of spinning
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!)
    expect(gaps[0]!).toBeGreaterThanOrEqual(495)
    expect(gaps[1]!).toBeGreaterThanOrEqual(995)
    expect(gaps[2]!).toBeGreaterThanOrEqual(1_995)
    expect(gaps[2]!).toBeGreaterThan(gaps[0]!)


    await eventually(() => status.events.filter((e) => e.data.agent_id === "loop" && e.data.new_status === "crashed").length >= 4 || undefined, "the 4th crash")
    const loop = (await api(runner, "GET", "/agents/loop")).json.agent
    expect(loop).toMatchObject({ status: "crashed", restarts: 3 })
    expect(loop.exitCode).toBe(7)
    // Meanwhile: never and on-failure-with-0 stayed down; always came back.
    expect((await api(runner, "GET", "/agents/fails-never")).json.agent).toMatchObject({ status: "crashed", exitCode: 3, restarts: 0 })
    expect((await api(runner, "GET", "/agents/ok-onfail")).json.agent).toMatchObject({ status: "exited", exitCode: 0, restarts: 0 })
    expect((await api(runner, "GET", "/agents/ok-always")).json.agent).toMatchObject({ status: "running", restarts: 1 })
    // Stopping a crashed agent cancels its scheduled restart (due 500 ms after the crash).
    await api(runner, "POST", "/agents/loop/stop")
    await api(runner, "POST", "/agents", { name: "quick", command: "sh", args: ["-c", "exit 5"], restart: "on-failure" })
    await status.next((d) => d.agent_id === "quick" && d.new_status === "crashed", "quick crashed")
    expect((await api(runner, "POST", "/agents/quick/stop")).json.agent.status).toBe("stopped")
    await status.next((d) => d.agent_id === "quick" && d.new_status === "stopped", "quick stopped")
    const mark = status.events.length
    await api(runner, "POST", "/agents", { name: "marker", command: "sh", args: ["-c", "exit 9"], restart: "on-failure" })
    // The marker crashes after quick did and comes back 500 ms later: quick's cancelled restart was due before.
    await eventually(() => status.events.slice(mark).filter((e) => e.data.agent_id === "marker" && e.data.new_status === "starting").length >= 2 || undefined, "marker restarted")
    expect(status.events.slice(mark).filter((e) => e.data.agent_id === "quick")).toHaveLength(0)
    expect((await api(runner, "GET", "/agents/quick")).json.agent).toMatchObject({ status: "stopped", restarts: 0 })
    status.close()
    for (const id of ["fails-never", "ok-onfail", "ok-always", "loop", "quick", "marker"]) await api(runner, "DELETE", `/agents/${id}`)
  })

  it("stop kills grandchildren too (one that left the process group and ignores SIGTERM)", async () => {
    const created = await api(runner, "POST", "/agents", { name: "forker", command: process.execPath, args: [join(FIXTURES, "forker.mjs")] })
    const parent: number = created.json.agent.pid
    const line = await eventually(async () => (await api(runner, "GET", "/agents/forker/logs")).json.lines.find((l: string) => l.startsWith("child ")), "the child's pid")
    const child = Number(line.slice(6))
    expect(isAlive(parent)).toBe(true)
    expect(isAlive(child)).toBe(true)
    const t0 = Date.now()
    const stopped = await api(runner, "POST", "/agents/forker/stop")
    // The grandchild ignored SIGTERM: it was SIGKILLed after the 5 s grace.
    expect(Date.now() - t0).toBeGreaterThan(4_000)
    expect(stopped.json.agent.status).toBe("stopped")
    expect(isAlive(parent)).toBe(false)
    expect(isAlive(child)).toBe(false)
    await api(runner, "DELETE", "/agents/forker")
  })

  it("terminal attach: type `echo hi` into an interactive shell and read `hi` back", async () => {
    await api(runner, "POST", "/agents", { name: "shell", command: "bash", args: ["--norc", "-i"], env: { PS1: "$ " } })
    const term = await terminal(runner, "shell")
    term.type("echo hi\r")
    await term.until(/[\r\n]hi\r\n/)
    term.ws.send(JSON.stringify({ type: "resize", cols: 100, rows: 30 }))
    term.type("stty size\r")
    await term.until(/30 100/)
    term.ws.close()
    // Unknown agent and missing key are refused before the upgrade.
    await expect(terminal(runner, "nope")).rejects.toThrow(/404/)
    await expect(terminal(runner, "shell", null)).rejects.toThrow(/401/)
    await api(runner, "DELETE", "/agents/shell")
  })
})

describe("definitions and logs on disk", () => {
  it("agents in <data-dir>/agents/*.json start with the runner; POST /agents persists; logs rotate", async () => {
    const dataDir = tempDir()
    mkdirSync(join(dataDir, "agents"), { recursive: true })
    writeFileSync(join(dataDir, "agents", "boot.json"), JSON.stringify({ name: "boot", command: "sh", args: ["-c", "echo booted; exec sleep 1000"] }))
    writeFileSync(join(dataDir, "agents", "broken.json"), "{not json")
    writeFileSync(join(dataDir, "agents", "other-file-name.json"), JSON.stringify({ name: "named", command: "sleep", args: ["1000"] }))
    let runner = await startRunner([], { dataDir })
    try {
      const boot = await eventually(async () => (await api(runner, "GET", "/agents/boot")).json?.agent, "boot agent")
      expect(boot.status).toBe("running")
      expect(isAlive(boot.pid)).toBe(true)
      expect((await api(runner, "POST", "/agents", { name: "added", command: "sh", args: ["-c", "yes 0123456789012345678901234567890123456789 | head -c 12000000; exec sleep 1000"] })).status).toBe(201)
      // Output past the cap rotates: the file stays under 10 MiB and older output moved to .1.
      await eventually(() => readdirSync(join(dataDir, "logs")).includes("added.log.1"), "a rotated log", 10_000)
      expect(statSync(join(dataDir, "logs", "added.log")).size).toBeLessThanOrEqual(10 * 1024 * 1024)
      await runner.stop(true)
      expect(isAlive(boot.pid)).toBe(false)

      runner = await startRunner([], { dataDir })
      const agents = (await api(runner, "GET", "/agents")).json.agents
      expect(agents.map((a: any) => a.id).sort()).toEqual(["added", "boot", "named"])
      expect(agents.every((a: any) => a.status === "running")).toBe(true)
      await api(runner, "DELETE", "/agents/added")
      await api(runner, "DELETE", "/agents/named")
      expect(readdirSync(join(dataDir, "agents")).sort()).toEqual(["boot.json", "broken.json"])
    } finally {
      await runner.stop(true)
    }
  })
})
