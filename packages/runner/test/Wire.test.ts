/**
 * The local API's wire as docs/runner.md documents it, against the built runner on 127.0.0.1
 * (port 0): every endpoint's success and error status and exact body, the error envelope, auth
 * before routing, the body limits, the streams' refusals; then core's typed client
 * (`RunnerApi.client`) against the same server. External clients were written from the docs:
 * a failure here is a wire change.
 */
import { FetchHttpClient } from "@effect/platform"
import { RunnerApi } from "@mks/a2a"
import { Effect } from "effect"
import { request as httpRequest } from "node:http"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { api, KEY, type RunnerProcess, sse, startRunner } from "./helpers.js"

const envelope = (body: Record<string, unknown>) => ({ ...body, error: { type: body._tag, message: body.message } })
const notFound = (id: string) => envelope({ _tag: "AgentNotFound", message: `no agent ${id}`, agent: id })
const UNAUTHORIZED = envelope({ _tag: "Unauthorized", message: "missing or invalid API key" })

/** A WebSocket upgrade that is refused: its status and body. */
const refusedUpgrade = (url: string, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; body: any }>((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    ws.on("unexpected-response", (_req, res) => {
      let text = ""
      res.on("data", (c) => (text += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }))
    })
    ws.on("open", () => reject(new Error("upgraded")))
    ws.on("error", () => undefined)
  })

/** A chunked POST (no content-length). */
const chunked = (url: string, path: string, chunks: ReadonlyArray<string>) =>
  new Promise<{ status: number; json: any }>((resolve, reject) => {
    const req = httpRequest(url + path, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", "transfer-encoding": "chunked" } }, (res) => {
      let text = ""
      res.on("data", (c) => (text += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }))
    })
    req.on("error", reject)
    for (const chunk of chunks) req.write(chunk)
    req.end()
  })

describe("the local API's wire (docs/runner.md)", () => {
  let runner: RunnerProcess
  beforeAll(async () => {
    runner = await startRunner(["--id", "wire-runner"])
  })
  afterAll(() => runner.stop())

  it("GET /health is open: 200 {status, version, runner}", async () => {
    const health = await api(runner, "GET", "/health", undefined, null)
    expect(health.status).toBe(200)
    expect(health.json).toEqual({ status: "ok", version: expect.any(String), runner: "wire-runner" })
    expect((await api(runner, "GET", "/health/", undefined, null)).status).toBe(200)
  })

  it("every other route needs the key, checked before routing and before the body", async () => {
    for (const [method, path] of [
      ["GET", "/agents"],
      ["POST", "/agents"],
      ["GET", "/agents/x"],
      ["DELETE", "/agents/x"],
      ["POST", "/agents/x/stop"],
      ["GET", "/agents/x/logs?n=-1"],
      ["GET", "/sse/status"],
      ["GET", "/nowhere"]
    ] as const) {
      const res = await api(runner, method, path, method === "POST" ? "{not json" : undefined, null)
      expect(res.status, `${method} ${path}`).toBe(401)
      expect(res.json).toEqual(UNAUTHORIZED)
    }
    expect((await api(runner, "GET", "/agents", undefined, "wrong-key-0123456789")).json).toEqual(UNAUTHORIZED)
    // The key as `?token=`, and any case of the scheme.
    expect((await api(runner, "GET", `/agents?token=${KEY}`, undefined, null)).status).toBe(200)
    const lower = await fetch(runner.url + "/agents", { headers: { authorization: `bearer ${KEY}` } })
    expect(lower.status).toBe(200)
    expect(lower.headers.get("content-type")).toBe("application/json")
  })

  it("agents: create 201, list, detail, logs, stop, start, restart, delete with their bodies", async () => {
    const created = await api(runner, "POST", "/agents", { name: "wire-1", command: "sleep", args: ["1000"], env: { A: "1" }, restart: "never" })
    expect(created.status).toBe(201)
    expect(Object.keys(created.json)).toEqual(["agent"])
    expect(created.json.agent).toEqual({
      id: "wire-1",
      name: "wire-1",
      status: "running",
      pid: expect.any(Number),
      startedAt: expect.stringMatching(/Z$/),
      restarts: 0,
      preset: "command",
      command: expect.stringMatching(/sleep$/),
      args: ["1000"],
      cwd: expect.any(String),
      restart: "never"
    })
    const list = await api(runner, "GET", "/agents/")
    expect(list.status).toBe(200)
    expect(list.json).toEqual({ agents: [created.json.agent] })

    const detail = await api(runner, "GET", "/agents/wire-1")
    expect(detail.status).toBe(200)
    expect(detail.json).toEqual({ agent: created.json.agent, config: { name: "wire-1", command: "sleep", args: ["1000"], env: { A: "1" }, restart: "never" }, logs: expect.any(Array) })
    const logs = await api(runner, "GET", "/agents/wire-1/logs?n=0")
    expect(logs).toMatchObject({ status: 200, json: { agent_id: "wire-1", lines: [] } })
    expect((await api(runner, "GET", "/agents/wire-1/logs")).json).toEqual({ agent_id: "wire-1", lines: expect.any(Array) })

    const stopped = await api(runner, "POST", "/agents/wire-1/stop")
    expect(stopped.status).toBe(200)
    expect(stopped.json.agent).toMatchObject({ id: "wire-1", status: "stopped" })
    const started = await api(runner, "POST", "/agents/wire-1/start")
    expect(started.status).toBe(200)
    expect(started.json.agent).toMatchObject({ status: "running" })
    const restarted = await api(runner, "POST", "/agents/wire-1/restart")
    expect(restarted.status).toBe(200)
    expect(restarted.json.agent).toMatchObject({ status: "running", restarts: 1 })

    const dup = await api(runner, "POST", "/agents", { name: "wire-1", command: "sleep", args: ["1"] })
    expect(dup.status).toBe(409)
    expect(dup.json).toEqual(envelope({ _tag: "AgentExists", message: "an agent named wire-1 exists on this runner", name: "wire-1" }))

    const removed = await api(runner, "DELETE", "/agents/wire-1")
    expect(removed.status).toBe(200)
    expect(Object.keys(removed.json)).toEqual(["agent"])
    expect(removed.json.agent.id).toBe("wire-1")
  })

  it("unknown agents: 404 AgentNotFound on every route, the streams included", async () => {
    for (const [method, path] of [
      ["GET", "/agents/nope"],
      ["DELETE", "/agents/nope"],
      ["POST", "/agents/nope/start"],
      ["POST", "/agents/nope/stop"],
      ["POST", "/agents/nope/restart"],
      ["GET", "/agents/nope/logs"],
      ["GET", "/sse/agents/nope/logs"]
    ] as const) {
      const res = await api(runner, method, path)
      expect(res.status, `${method} ${path}`).toBe(404)
      expect(res.json).toEqual(notFound("nope"))
    }
    const ws = runner.url.replace("http", "ws")
    expect(await refusedUpgrade(`${ws}/ws/agents/nope/terminal`, { authorization: `Bearer ${KEY}` })).toEqual({ status: 404, body: notFound("nope") })
    expect(await refusedUpgrade(`${ws}/ws/agents/nope/terminal`)).toEqual({ status: 401, body: UNAUTHORIZED })
    expect(await refusedUpgrade(`${ws}/ws/elsewhere?token=${KEY}`)).toEqual({ status: 404, body: envelope({ _tag: "RouteNotFound", message: "no WebSocket route /ws/elsewhere" }) })
  })

  it("routes: 404 RouteNotFound for an unknown path or method", async () => {
    expect(await api(runner, "GET", "/nowhere")).toMatchObject({ status: 404, json: envelope({ _tag: "RouteNotFound", message: "no route GET /nowhere" }) })
    expect(await api(runner, "PUT", "/agents")).toMatchObject({ status: 404, json: envelope({ _tag: "RouteNotFound", message: "PUT is not allowed on /agents" }) })
    expect(await api(runner, "GET", "/agents/x/stop")).toMatchObject({ status: 404, json: envelope({ _tag: "RouteNotFound", message: "GET is not allowed on /agents/x/stop" }) })
  })

  it("bad input: 400 InvalidRequest naming the field, 413 and 415 before decoding", async () => {
    const notJson = await api(runner, "POST", "/agents", "{nope")
    expect(notJson.status).toBe(400)
    expect(notJson.json).toEqual(envelope({ _tag: "InvalidRequest", message: "the request body is not valid JSON" }))
    const empty = await fetch(runner.url + "/agents", { method: "POST", headers: { authorization: `Bearer ${KEY}` } })
    expect(empty.status).toBe(400)
    expect(await empty.json()).toEqual(envelope({ _tag: "InvalidRequest", message: "the request body is not valid JSON" }))

    const command = await api(runner, "POST", "/agents", { name: "bad", preset: "command" })
    expect(command.status).toBe(400)
    expect(command.json).toEqual(envelope({ _tag: "InvalidRequest", message: "command: preset `command` needs a `command`", field: "command" }))
    const name = await api(runner, "POST", "/agents", { name: "-bad", command: "sleep" })
    expect(name.json).toMatchObject({ _tag: "InvalidRequest", field: "name", message: expect.stringMatching(/^name: PeerName must be/) })
    const env = await api(runner, "POST", "/agents", { name: "bad", command: "sleep", env: { A: 1 } })
    expect(env.json).toMatchObject({ _tag: "InvalidRequest", field: "env.A", message: expect.stringMatching(/^env\.A: /) })
    const n = await api(runner, "GET", "/agents/x/logs?n=-1")
    expect(n.status).toBe(400)
    expect(n.json).toMatchObject({ _tag: "InvalidRequest", field: "n", message: expect.stringMatching(/^n: /), error: { type: "InvalidRequest" } })
    expect((await api(runner, "GET", "/agents/x/logs?n=1.5")).json).toMatchObject({ _tag: "InvalidRequest", field: "n" })

    const limit = 1024 * 1024
    const tooLarge = envelope({ _tag: "PayloadTooLarge", message: `request body larger than ${limit} bytes`, limit })
    const huge = await api(runner, "POST", "/agents", { name: "big", command: "sleep", env: { X: "x".repeat(limit) } })
    expect(huge.status).toBe(413)
    expect(huge.json).toEqual(tooLarge)
    const streamed = await chunked(runner.url, "/agents", ['{"name":"big","command":"sleep","env":{"X":"', "x".repeat(limit), '"}}'])
    expect(streamed).toEqual({ status: 413, json: tooLarge })
    const ok = await chunked(runner.url, "/agents", ['{"name":"chunked",', '"command":"sleep","args":["1000"]}'])
    expect(ok.status).toBe(201)
    await api(runner, "DELETE", "/agents/chunked")

    const text = await fetch(runner.url + "/agents", { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "text/plain" }, body: "hi" })
    expect(text.status).toBe(415)
    expect(await text.json()).toEqual(envelope({ _tag: "UnsupportedMediaType", message: "the request body must be application/json, not text/plain" }))
    // Routes that take no body ignore one, whatever its type.
    const stopWithBody = await fetch(runner.url + "/agents/nope/stop", { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "text/plain" }, body: "hi" })
    expect(stopWithBody.status).toBe(404)
  })

  it("SSE: 200 text/event-stream opening with a comment; the key as ?token=", async () => {
    const res = await fetch(`${runner.url}/sse/status?token=${KEY}`)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("text/event-stream")
    expect(res.headers.get("cache-control")).toBe("no-cache")
    expect(res.headers.get("x-accel-buffering")).toBe("no")
    const reader = res.body!.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(": ok\n\n")
    await reader.cancel()
    const status = await sse(runner, "/sse/status")
    await api(runner, "POST", "/agents", { name: "wire-sse", command: "sleep", args: ["1000"] })
    const running = await status.next((d) => d.agent_id === "wire-sse" && d.new_status === "running", "running")
    expect(Object.keys(running.data).sort()).toEqual(["agent_id", "at", "new_status", "old_status"])
    status.close()
    await api(runner, "DELETE", "/agents/wire-sse")
  })

  it("GET /openapi.json (open) describes the API and its streams", async () => {
    const doc = await api(runner, "GET", "/openapi.json", undefined, null)
    expect(doc.status).toBe(200)
    expect(doc.json.openapi).toMatch(/^3\./)
    expect(Object.keys(doc.json.paths)).toEqual(
      expect.arrayContaining(["/health", "/agents", "/agents/{id}", "/agents/{id}/start", "/agents/{id}/stop", "/agents/{id}/restart", "/agents/{id}/logs", "/sse/status", "/sse/agents/{id}/logs", "/ws/agents/{id}/terminal"])
    )
    expect(Object.keys(doc.json.paths["/agents"].post.responses)).toEqual(expect.arrayContaining(["201", "400", "401", "409", "413", "415"]))
  })

  it("core's typed client (RunnerApi.client) against the real server", async () => {
    const program = Effect.gen(function* () {
      const client = yield* RunnerApi.client({ url: runner.url, apiKey: KEY })
      const health = yield* client.health()
      const { agent } = yield* client.agents.create({ payload: { name: "typed", command: "sleep", args: ["1000"] } })
      const listed = yield* client.agents.list()
      const detail = yield* client.agents.get({ path: { id: "typed" } })
      const logs = yield* client.agents.logs({ path: { id: "typed" }, urlParams: { n: 5 } })
      const dup = yield* Effect.flip(client.agents.create({ payload: { name: "typed", command: "sleep" } }))
      const stopped = yield* client.agents.stop({ path: { id: "typed" } })
      const removed = yield* client.agents.remove({ path: { id: "typed" } })
      const missing = yield* Effect.flip(client.agents.get({ path: { id: "typed" } }))
      const stranger = yield* RunnerApi.client({ url: runner.url, apiKey: "not-the-key-0123" })
      const refused = yield* Effect.flip(stranger.agents.list())
      return { health, agent, listed, detail, logs, dup, stopped, removed, missing, refused }
    }).pipe(Effect.provide(FetchHttpClient.layer))
    const r = await Effect.runPromise(program)
    expect(r.health).toEqual({ status: "ok", version: expect.any(String), runner: "wire-runner" })
    expect(r.agent).toMatchObject({ id: "typed", status: "running", preset: "command" })
    expect(r.listed.agents.map((a) => a.id)).toContain("typed")
    expect(r.detail.config).toMatchObject({ name: "typed", command: "sleep" })
    expect(r.logs.agent_id).toBe("typed")
    expect(r.dup).toBeInstanceOf(RunnerApi.AgentExists)
    expect(r.dup).toMatchObject({ name: "typed" })
    expect(r.stopped.agent.status).toBe("stopped")
    expect(r.removed.agent.id).toBe("typed")
    expect(r.missing).toBeInstanceOf(RunnerApi.AgentNotFound)
    expect(r.missing).toMatchObject({ agent: "typed", message: "no agent typed" })
    expect(r.refused).toMatchObject({ _tag: "Unauthorized" })
  })
})
