import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, eventually, isAlive, KEY, type RunnerProcess, sse, startRunner } from "./helpers.js"

const sleeper = (name: string, extra: Record<string, unknown> = {}) => ({ name, command: "sleep", args: ["1000"], ...extra })

describe("local HTTP API against a real runner process", () => {
  let runner: RunnerProcess
  beforeAll(async () => {
    runner = await startRunner()
  })
  afterAll(() => runner.stop())

  it("auth: no key 401, bad key 401 (same length and not), good key 200; /health is open", async () => {
    expect((await api(runner, "GET", "/health", undefined, null)).json).toMatchObject({ status: "ok" })
    const none = await api(runner, "GET", "/agents", undefined, null)
    expect(none.status).toBe(401)
    expect(none.json).toMatchObject({ _tag: "Unauthorized", error: { type: "Unauthorized" } })
    expect((await api(runner, "GET", "/agents", undefined, "x".repeat(KEY.length))).status).toBe(401)
    expect((await api(runner, "GET", "/agents", undefined, "short")).status).toBe(401)
    expect((await api(runner, "GET", `/agents?token=${KEY}`, undefined, null)).status).toBe(200)
    expect((await api(runner, "GET", "/agents")).status).toBe(200)
    // The compare is constant-time in code: both sides hashed, then timingSafeEqual.
    const source = readFileSync(new URL("../src/internal/httpApi.ts", import.meta.url), "utf8")
    expect(source).toMatch(/timingSafeEqual\(digest\(expected\), digest\(given\)\)/)
  })

  it("create, list, detail, logs, stop, start, restart change the real process", async () => {
    const created = await api(runner, "POST", "/agents", { name: "life", command: "sh", args: ["-c", "echo hello-from-life; exec sleep 1000"] })
    expect(created.status).toBe(201)
    const pid1: number = created.json.agent.pid
    expect(created.json.agent).toMatchObject({ id: "life", status: "running", preset: "command", restarts: 0 })
    expect(isAlive(pid1)).toBe(true)

    const list = await api(runner, "GET", "/agents")
    expect(list.json.agents.find((a: any) => a.id === "life")).toMatchObject({ pid: pid1, status: "running" })

    await eventually(async () => (await api(runner, "GET", "/agents/life/logs?n=10")).json.lines.includes("hello-from-life"), "the agent's line in logs")
    const detail = await api(runner, "GET", "/agents/life")
    expect(detail.json.config).toMatchObject({ name: "life", command: "sh" })
    expect(detail.json.logs).toContain("hello-from-life")
    expect((await api(runner, "GET", "/agents/life/logs?n=1")).json.lines).toHaveLength(1)

    const stopped = await api(runner, "POST", "/agents/life/stop")
    expect(stopped.json.agent.status).toBe("stopped")
    expect(stopped.json.agent.pid).toBeUndefined()
    expect(isAlive(pid1)).toBe(false)

    const started = await api(runner, "POST", "/agents/life/start")
    const pid2: number = started.json.agent.pid
    expect(started.json.agent.status).toBe("running")
    expect(pid2).not.toBe(pid1)
    expect(isAlive(pid2)).toBe(true)

    // Restart answers only when the new process runs.
    const restarted = await api(runner, "POST", "/agents/life/restart")
    const pid3: number = restarted.json.agent.pid
    expect(restarted.json.agent).toMatchObject({ status: "running", restarts: 1 })
    expect(pid3).not.toBe(pid2)
    expect(isAlive(pid2)).toBe(false)
    expect(isAlive(pid3)).toBe(true)

    const removed = await api(runner, "DELETE", "/agents/life")
    expect(removed.status).toBe(200)
    expect(isAlive(pid3)).toBe(false)
    expect((await api(runner, "GET", "/agents/life")).status).toBe(404)
  })

  it("SSE: status events on stop/start and log lines arrive within 1 s", async () => {
    const status = await sse(runner, "/sse/status")
    await api(runner, "POST", "/agents", { name: "chatty", command: "sh", args: ["-c", "while read l; do echo got:$l; done"] })
    await status.next((d) => d.agent_id === "chatty" && d.new_status === "running", "running")

    let mark = status.events.length
    let t0 = performance.now()
    const stop = api(runner, "POST", "/agents/chatty/stop")
    const stopping = await status.next((d) => d.agent_id === "chatty" && d.new_status === "stopping", "stopping", 5_000, mark)
    expect(stopping.receivedAt - t0).toBeLessThan(1_000)
    const stoppedEvent = await status.next((d) => d.agent_id === "chatty" && d.new_status === "stopped", "stopped")
    expect(stoppedEvent.data).toMatchObject({ old_status: "stopping", new_status: "stopped" })
    expect(typeof stoppedEvent.data.at).toBe("string")
    await stop

    mark = status.events.length
    t0 = performance.now()
    const start = api(runner, "POST", "/agents/chatty/start")
    const starting = await status.next((d) => d.agent_id === "chatty" && d.new_status === "starting", "starting again", 5_000, mark)
    expect(starting.receivedAt - t0).toBeLessThan(1_000)
    const running = await status.next((d) => d.agent_id === "chatty" && d.new_status === "running", "running again", 5_000, mark)
    expect(running.receivedAt - t0).toBeLessThan(1_000)
    await start

    // A line written by the agent reaches the log SSE.
    const logs = await sse(runner, "/sse/agents/chatty/logs")
    const { terminal } = await import("./helpers.js")
    const term = await terminal(runner, "chatty")
    t0 = performance.now()
    term.type("ping-42\r")
    const line = await logs.next((d) => d.line === "got:ping-42", "the agent's line")
    expect(line.receivedAt - t0).toBeLessThan(1_000)
    expect(line.data.agent_id).toBe("chatty")
    term.ws.close()
    logs.close()
    status.close()
    await api(runner, "DELETE", "/agents/chatty")
  })

  it("bad input gets typed errors and the runner keeps serving", async () => {
    const unknown = await api(runner, "GET", "/agents/nope")
    expect(unknown.status).toBe(404)
    expect(unknown.json).toMatchObject({ _tag: "AgentNotFound", agent: "nope", error: { type: "AgentNotFound" } })
    for (const path of ["/agents/nope/start", "/agents/nope/stop", "/agents/nope/restart"]) expect((await api(runner, "POST", path)).status).toBe(404)
    expect((await api(runner, "DELETE", "/agents/nope")).status).toBe(404)
    expect((await api(runner, "GET", "/agents/nope/logs")).status).toBe(404)
    expect((await api(runner, "GET", "/sse/agents/nope/logs")).status).toBe(404)

    const missing = await api(runner, "POST", "/agents", { name: "bad", preset: "command" })
    expect(missing.status).toBe(400)
    expect(missing.json).toMatchObject({ _tag: "InvalidRequest", field: "command" })
    const noName = await api(runner, "POST", "/agents", { command: "sleep" })
    expect(noName.json).toMatchObject({ _tag: "InvalidRequest", field: "name" })
    const cwd = await api(runner, "POST", "/agents", sleeper("bad", { cwd: "/does/not/exist" }))
    expect(cwd.json).toMatchObject({ _tag: "InvalidRequest", field: "cwd" })
    const env = await api(runner, "POST", "/agents", sleeper("bad", { env: { A: 1 } }))
    expect(env.json).toMatchObject({ _tag: "InvalidRequest", field: "env.A" })
    const command = await api(runner, "POST", "/agents", { name: "bad", command: "no-such-command-xyz" })
    expect(command.json).toMatchObject({ _tag: "InvalidRequest", field: "command" })
    const restart = await api(runner, "POST", "/agents", sleeper("bad", { restart: "sometimes" }))
    expect(restart.json).toMatchObject({ _tag: "InvalidRequest", field: "restart" })
    const notJson = await api(runner, "POST", "/agents", "{nope")
    expect(notJson.status).toBe(400)
    expect((await api(runner, "GET", "/agents/x/logs?n=-1")).json).toMatchObject({ _tag: "InvalidRequest", field: "n" })

    const huge = await api(runner, "POST", "/agents", { name: "big", command: "sleep", env: { X: "x".repeat(2_000_000) } })
    expect(huge.status).toBe(413)
    expect(huge.json._tag).toBe("PayloadTooLarge")

    expect((await api(runner, "POST", "/agents", sleeper("dup"))).status).toBe(201)
    const dup = await api(runner, "POST", "/agents", sleeper("dup"))
    expect(dup.status).toBe(409)
    expect(dup.json._tag).toBe("AgentExists")
    await api(runner, "DELETE", "/agents/dup")

    expect((await api(runner, "GET", "/nowhere")).status).toBe(404)
    expect((await api(runner, "PUT", "/agents")).status).toBe(404)
    expect((await api(runner, "GET", "/health", undefined, null)).status).toBe(200)
    expect((await api(runner, "GET", "/agents")).json.agents.filter((a: any) => a.name === "bad")).toHaveLength(0)
    expect(runner.child.exitCode).toBeNull()
  })

  it("the status list answers within 200 ms with 50 agents", async () => {
    for (let i = 0; i < 50; i++) expect((await api(runner, "POST", "/agents", sleeper(`many-${i}`))).status).toBe(201)
    const times: Array<number> = []
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now()
      const list = await api(runner, "GET", "/agents")
      times.push(performance.now() - t0)
      expect(list.json.agents.filter((a: any) => a.name.startsWith("many-") && a.status === "running")).toHaveLength(50)
    }
    times.sort((a, b) => a - b)
    expect(times[Math.floor(times.length / 2)]!).toBeLessThan(200)
    await Promise.all(Array.from({ length: 50 }, (_, i) => api(runner, "DELETE", `/agents/many-${i}`)))
  })
})
