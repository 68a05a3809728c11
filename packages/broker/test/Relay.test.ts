/**
 * The relay of agent logs and terminals: a real broker in this process, a real `a2a-runner`
 * process linked to it running a real shell agent, and clients on
 * `/ws/broker/spawns/:id/logs|terminal`. Also the refusals (before the upgrade) and the
 * failures after it: a runner that is not linked or too old, a spawn the runner does not know.
 */
import { join } from "node:path"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, FIXTURES, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"
import { openRelay, refusedRelay } from "../../runner/test/relay.js"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { runCli } from "./probe.js"
import { fakeRunner } from "./support.js"

const SHELL = join(FIXTURES, "shell-agent.mjs")

/** A line of shell output (the prompt may land before it: the shell and the pty's echo race). */
const shellLine = (text: string) => new RegExp(`(^|\\$ )${text}$`, "m")

describe("relay of agent logs and terminals through the broker", () => {
  let broker: TestBroker
  let runner: RunnerProcess
  let runnerToken: string
  let peerToken: string
  let spawnId: string

  beforeAll(async () => {
    broker = await startBroker({ gcInterval: 50 })
    runnerToken = await broker.token("default", "runner")
    // An operator's peer token: it reaches and stops spawns others created (docs/security.md).
    peerToken = await broker.scopedToken("default", ["peer"], ["attach:any", "stop:any"])
    runner = await startRunner(["--broker", broker.url, "--token", runnerToken, "--id", "rt-relay", "--capacity", "4"])
    const admin = client(broker, broker.adminToken)
    await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-relay" && r.status === "online"), "the runner online")
    const created = await admin.spawn.create({ runner: "rt-relay", command: process.execPath, args: [SHELL], name: "shelly" })
    spawnId = created.spawn.id
    await eventually(async () => ((await admin.spawn.get(spawnId)).spawn.status === "registered" ? true : undefined), "the shell agent registered", 10_000)
    await admin.close()
  }, 30_000)

  afterAll(async () => {
    await runner?.stop()
    await broker?.close()
  })

  it("the log: the last lines first, then live ones, for a peer token with a Bearer header", async () => {
    const logs = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs?n=50`, peerToken)
    expect(await logs.untilLine(/^agent shelly says hello$/)).toBe("agent shelly says hello")
    expect(logs.frames[0]).toMatchObject({ type: "log" })
    expect(Date.parse(logs.frames[0].at)).toBeGreaterThan(0)
    // A line printed now arrives live, through the terminal of the same agent.
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal?cols=100&rows=30`, peerToken)
    term.send({ type: "input", data: "echo live-$((40+2))\r" })
    // The pty echoes the typed line; the output line may follow the prompt.
    expect(await logs.untilLine(/(^|\s)live-42$/)).toMatch(/live-42$/)
    logs.ws.close()
    term.ws.close()
    await Promise.all([logs.closed, term.closed])
  })

  it("the terminal: `echo hi` shows hi; resize reaches the pty; ?token= works for browsers", async () => {
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, broker.adminToken, { query: true })
    term.send({ type: "input", data: "echo hi\r" })
    expect(await term.untilOutput(shellLine("hi"))).toMatch(/hi$/)
    term.send({ type: "resize", cols: 77, rows: 19 })
    term.send({ type: "input", data: "stty size\r" })
    expect(await term.untilOutput(shellLine("19 77"))).toMatch(/19 77$/)
    term.ws.close()
    const closed = await term.closed
    expect(closed.code).toBe(1005)
  })

  it("keystroke round trip through broker, runner and pty (measured)", async () => {
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, peerToken)
    // Each key is echoed by the pty: time from sending a key to seeing it come back.
    const times: Array<number> = []
    for (let i = 0; i < 100; i++) {
      const key = String.fromCharCode(97 + (i % 26))
      const from = term.frames.length
      const started = performance.now()
      term.send({ type: "input", data: key })
      await term.next((f) => f.type === "output" && f.data.includes(key), `the echo of ${key}`, 5_000, from)
      times.push(performance.now() - started)
    }
    term.send({ type: "input", data: "\u0015" }) // Ctrl-U: drop the typed line
    times.sort((x, y) => x - y)
    const p50 = times[49]!
    const p99 = times[98]!
    console.log(`relay keystroke echo: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`)
    expect(p99).toBeLessThan(500)
    term.ws.close()
  })

  it("bad client frames get an error frame, nothing reaches the agent, the socket stays usable", async () => {
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, peerToken)
    term.send({ type: "input", data: "echo " + "x".repeat(70_000) + "\r" })
    const tooLarge = await term.next((f) => f.type === "error", "the refusal")
    expect(tooLarge.error).toMatchObject({ _tag: "PayloadTooLarge", limit: 65_536 })
    term.send("not json")
    term.send({ type: "resize", cols: 0, rows: 10 })
    term.send({ type: "launch" })
    const errors = await term.next((f) => f.type === "error" && f.error.field === "type", "three refusals", 5_000, 1)
    expect(errors.error._tag).toBe("InvalidRequest")
    expect(term.frames.filter((f) => f.type === "error").map((f) => f.error._tag)).toEqual(["PayloadTooLarge", "InvalidRequest", "InvalidRequest", "InvalidRequest"])
    expect(term.frames.find((f) => f.type === "error" && f.error.field === "cols")).toBeDefined()
    term.send({ type: "input", data: "echo still-$((1+1))\r" })
    await term.untilOutput(shellLine("still-2"))
    expect(term.output()).not.toMatch(/x{1000}/)
    term.ws.close()
  })

  it("refuses before the upgrade: no token 401, runner role 403, unknown spawn 404, another tenant's spawn 404, bad query 400", async () => {
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs`, undefined)).toMatchObject({ status: 401, body: { _tag: "Unauthorized" } })
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, runnerToken)).toMatchObject({ status: 403, body: { _tag: "Forbidden" } })
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/s_nope/terminal`, peerToken)).toMatchObject({ status: 404, body: { _tag: "SpawnNotFound" } })
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/bad%20id/logs`, peerToken)).toMatchObject({ status: 400, body: { _tag: "InvalidRequest" } })
    const acme = await broker.token("acme", "peer", "admin")
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs`, acme)).toMatchObject({ status: 404, body: { _tag: "SpawnNotFound" } })
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs?n=-1`, peerToken)).toMatchObject({ status: 400, body: { _tag: "InvalidRequest", field: "n" } })
    expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal?cols=5000`, peerToken)).toMatchObject({ status: 400, body: { field: "cols" } })
    // A plain GET (no upgrade) is refused too, with the contract's error.
    expect((await http(broker, peerToken, "GET", `/ws/broker/spawns/${spawnId}/logs`)).json).toMatchObject({ _tag: "InvalidRequest" })
  })

  it("a runner that is not linked, or too old to relay: an error frame and close 4503", async () => {
    const admin = client(broker, broker.adminToken)
    const old = await fakeRunner(broker.url, runnerToken, "rt-old")
    const created = await admin.spawn.create({ runner: "rt-old", command: "true" })
    await old.next("spawn")
    const logs = await openRelay(broker.url, `/ws/broker/spawns/${created.spawn.id}/logs`, peerToken)
    expect((await logs.closed).code).toBe(4503)
    expect(logs.frames).toEqual([{ type: "error", error: expect.objectContaining({ _tag: "ServiceUnavailable", message: expect.stringMatching(/does not relay/) }) }])
    old.ws.close()
    await eventually(async () => ((await admin.runners.list()).runners.find((r) => r.id === "rt-old")?.status === "offline" ? true : undefined), "rt-old offline")
    const away = await openRelay(broker.url, `/ws/broker/spawns/${created.spawn.id}/terminal`, peerToken)
    expect((await away.closed).code).toBe(4503)
    expect(away.frames[0].error.message).toMatch(/not linked/)
    await admin.close()
  })

  it("routes by stream: a runner's stream_error is the client's error (4404), its stream_end ends the log; a link that drops fails open streams", async () => {
    const admin = client(broker, broker.adminToken)
    const fake = await fakeRunner(broker.url, runnerToken, "rt-fake", ["relay"])
    const created = await admin.spawn.create({ runner: "rt-fake", command: "true" })
    await fake.next("spawn")
    const id = created.spawn.id

    const missing = await openRelay(broker.url, `/ws/broker/spawns/${id}/terminal?cols=90&rows=20`, peerToken)
    const open = await fake.next("term_open")
    expect(open).toMatchObject({ spawnId: id, cols: 90, rows: 20 })
    fake.send({ type: "stream_error", stream: open.stream, error: { _tag: "SpawnNotFound", message: "gone", spawn: id } })
    expect((await missing.closed).code).toBe(4404)
    expect(missing.frames).toEqual([{ type: "error", error: { _tag: "SpawnNotFound", message: "gone", spawn: id } }])

    const logs = await openRelay(broker.url, `/ws/broker/spawns/${id}/logs?n=3`, peerToken)
    const logsOpen = await fake.next("logs_open")
    expect(logsOpen).toMatchObject({ spawnId: id, n: 3 })
    fake.send({ type: "log", stream: logsOpen.stream, lines: ["one", "two"] })
    fake.send({ type: "log", stream: logsOpen.stream + 1000, lines: ["not mine"] })
    fake.send({ type: "stream_end", stream: logsOpen.stream, reason: "the agent exited", status: "exited", exitCode: 0 })
    expect((await logs.closed).code).toBe(1000)
    expect(logs.lines()).toEqual(["one", "two"])
    expect(logs.frames.at(-1)).toEqual({ type: "end", reason: "the agent exited", status: "exited", exitCode: 0 })

    // A client that leaves: the runner is told to stop the stream.
    const leaving = await openRelay(broker.url, `/ws/broker/spawns/${id}/terminal`, peerToken)
    const leavingOpen = await fake.next("term_open")
    leaving.send({ type: "input", data: "ls\r" })
    expect(await fake.next("term_input")).toEqual({ type: "term_input", stream: leavingOpen.stream, data: "ls\r" })
    leaving.ws.close()
    expect(await fake.next("stream_close")).toEqual({ type: "stream_close", stream: leavingOpen.stream })

    // The link drops: open streams fail with 4503.
    const dropped = await openRelay(broker.url, `/ws/broker/spawns/${id}/terminal`, peerToken)
    await fake.next("term_open")
    fake.ws.terminate()
    expect((await dropped.closed).code).toBe(4503)
    expect(dropped.frames.at(-1).error.message).toMatch(/disconnected/)
    await admin.close()
  })

  it("a spawn the runner does not run (it failed to start): the runner's SpawnNotFound, close 4404", async () => {
    const admin = client(broker, broker.adminToken)
    const created = await admin.spawn.create({ runner: "rt-relay", command: "no-such-agent-binary" })
    await eventually(async () => ((await admin.spawn.get(created.spawn.id)).spawn.status === "failed" ? true : undefined), "the spawn failed")
    const logs = await openRelay(broker.url, `/ws/broker/spawns/${created.spawn.id}/logs`, peerToken)
    expect((await logs.closed).code).toBe(4404)
    expect(logs.frames).toEqual([{ type: "error", error: { _tag: "SpawnNotFound", message: expect.any(String), spawn: created.spawn.id } }])
    await admin.close()
  })

  it("a client that does not read is cut off (4008) without backing up the runner link", async () => {
    const slow = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, peerToken)
    const watcher = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs?n=0`, peerToken)
    const socket = (slow.ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket
    // 16 MB of output, then a marker; the slow client stops reading from the start.
    slow.send({ type: "input", data: "head -c 16000000 /dev/zero | tr '\\0' x; echo; echo flood-$((2+3))\r" })
    socket.pause()
    // The runner link kept flowing: another client sees what came after the flood.
    await watcher.untilLine(/(^|\s)flood-5$/, 60_000)
    socket.resume()
    const closed = await slow.closed
    expect(closed.code).toBe(4008)
    const received = slow.output().length
    expect(received).toBeLessThan(16_000_000)
    watcher.ws.close()
    // The agent's terminal still answers a new client.
    const next = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, peerToken)
    next.send({ type: "input", data: "echo after-$((3+4))\r" })
    await next.untilOutput(shellLine("after-7"))
    next.ws.close()
    console.log(`slow client cut off after ${(received / 1e6).toFixed(1)} MB of 16 MB`)
  }, 90_000)

  it("revoking the static token closes its relay sockets with 4003", async () => {
    const created = await runCli(["token", "create", "--home", broker.home, "--tenant", "default", "--role", "peer", "--scope", "attach:any", "--name", "relay-revoke"])
    expect(created.code, created.stderr).toBe(0)
    const token = created.stdout.trim()
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, token)
    const logs = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs`, peerToken)
    const id = (JSON.parse((await runCli(["token", "list", "--json", "--home", broker.home])).stdout) as Array<{ id: string; name?: string }>).find((t) => t.name === "relay-revoke")!.id
    expect((await runCli(["token", "revoke", id, "--home", broker.home])).code).toBe(0)
    expect(await term.closed).toEqual({ code: 4003, reason: "credentials revoked" })
    // Another token's socket stays open.
    expect(logs.ws.readyState).toBe(WebSocket.OPEN)
    logs.ws.close()
  }, 20_000)

  it("stop ends the agent: the terminal gets exit and a normal close, the log its end", async () => {
    const logs = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs?n=0`, peerToken)
    const term = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/terminal`, peerToken)
    term.send({ type: "input", data: "echo ready\r" })
    await term.untilOutput(shellLine("ready"))
    expect((await http(broker, peerToken, "DELETE", `/api/spawn/${spawnId}`)).status).toBe(202)
    const exit = await term.next((f) => f.type === "exit", "exit")
    expect(exit).toMatchObject({ type: "exit", status: "stopped" })
    expect((await term.closed).code).toBe(1000)
    expect((await logs.closed).code).toBe(1000)
    expect(logs.frames.at(-1)).toMatchObject({ type: "end", status: "stopped" })
    // Once over, a new log socket gets the tail and the end at once; the history is capped at
    // 1 MiB of text (the flood above left 16 MB of lines), newest kept.
    const after = await openRelay(broker.url, `/ws/broker/spawns/${spawnId}/logs?n=10000`, peerToken)
    expect((await after.closed).code).toBe(1000)
    expect(after.lines().at(-1)).toMatch(/^\[a2a-runner\] exited with code 0$/)
    expect(after.lines().join("").length).toBeLessThanOrEqual(1024 * 1024)
    expect(after.frames.at(-1)).toMatchObject({ type: "end", status: "stopped", exitCode: 0 })
  })
})
