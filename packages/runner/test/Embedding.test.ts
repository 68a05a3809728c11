import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { describe, expect, it } from "vitest"
import { RunnerConfig, RunnerServer, Supervisor } from "../src/index.js"
import { api, isAlive, KEY, sse, tempDir } from "./helpers.js"

describe("RunnerServer.layer embedded in a program", () => {
  it("serves the API, exposes the Supervisor service, and stops every agent when the layer closes", async () => {
    const config = RunnerConfig.make({ port: 0, apiKey: KEY, dataDir: tempDir() })
    const runtime = ManagedRuntime.make(RunnerServer.layer(config).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))))
    const { url } = await runtime.runPromise(RunnerServer.RunnerAddress)
    expect((await api({ url }, "GET", "/health", undefined, null)).json.status).toBe("ok")

    const status = await sse({ url }, "/sse/status")
    const agent = await runtime.runPromise(Effect.flatMap(Supervisor.Supervisor, (s) => s.create({ name: "embedded", command: "sleep", args: ["1000"] })))
    expect(agent).toMatchObject({ status: "running", name: "embedded" })
    expect(isAlive(agent.pid!)).toBe(true)
    await status.next((d) => d.agent_id === "embedded" && d.new_status === "running", "running over SSE")
    expect((await api({ url }, "GET", "/agents/embedded")).json.agent.pid).toBe(agent.pid)
    // Typed failures of the service.
    const missing = await runtime.runPromise(Effect.flip(Effect.flatMap(Supervisor.Supervisor, (s) => s.stop("nope"))))
    expect(missing._tag).toBe("AgentNotFound")
    status.close()

    await runtime.dispose()
    expect(isAlive(agent.pid!)).toBe(false)
    await expect(fetch(url + "/health")).rejects.toThrow()
  })
})
