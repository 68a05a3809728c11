import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { createServer } from "node:http"
import { describe, expect, it } from "vitest"
import { RunnerConfig, RunnerServer, Supervisor } from "../src/index.js"
import { api, isAlive, KEY, sse, tempDir, terminal } from "./helpers.js"

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

  it("layerApp: mounted under /runner in a host app beside its own route; JSON, SSE and the terminal through the mount", async () => {
    const config = RunnerConfig.make({ apiKey: KEY, dataDir: tempDir() })
    const App = Layer.unwrapEffect(
      Effect.map(RunnerServer.RunnerApp, ({ app }) =>
        HttpServer.serve(HttpRouter.empty.pipe(HttpRouter.get("/hello", HttpServerResponse.text("from the host")), HttpRouter.mountApp("/runner", app)))
      )
    )
    const Main = App.pipe(
      Layer.provideMerge(RunnerServer.layerApp(config)),
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
    )
    const runtime = ManagedRuntime.make(Main)
    const address = (await runtime.runPromise(HttpServer.HttpServer)).address
    const host = `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
    const runner = { url: `${host}/runner` }
    expect(await (await fetch(`${host}/hello`)).text()).toBe("from the host")
    expect((await api(runner, "GET", "/health", undefined, null)).json).toMatchObject({ status: "ok" })
    expect((await api(runner, "GET", "/agents", undefined, null)).status).toBe(401)

    const status = await sse(runner, "/sse/status")
    const created = await api(runner, "POST", "/agents", { name: "mounted", command: "sh", args: ["-c", "while read l; do echo got:$l; done"] })
    expect(created.status).toBe(201)
    await status.next((d) => d.agent_id === "mounted" && d.new_status === "running", "running over the mounted SSE")
    const term = await terminal(runner, "mounted")
    term.type("through-the-mount\r")
    await term.until(/got:through-the-mount/)
    term.ws.close()
    status.close()

    await runtime.dispose()
    expect(isAlive(created.json.agent.pid)).toBe(false)
  })
})
