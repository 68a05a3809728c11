/**
 * The relay of agent logs and terminals across broker instances on one PostgreSQL database: a
 * real `a2a-runner` process (real shell agent) linked to instance A, viewers on instance B.
 * B checks everything as it does for a local runner, then pipes the socket to A (which checks
 * the credential again): the log, `echo hi` in the terminal, a resize, the runner's errors and
 * the end of the agent all come through B, also for the built `a2a tail --logs` / `a2a attach`;
 * closing either side closes the other; B cuts off a client that stops reading (4008) and
 * closes a revoked token's socket (4003); refusals are the same on both instances; a holder
 * that cannot be reached is `4503`, and a forwarded socket is never forwarded again.
 */
import { spawn as spawnProcess } from "node:child_process"
import { rmSync } from "node:fs"
import { join } from "node:path"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { eventually, FIXTURES, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"
import { openRelay, refusedRelay } from "../../runner/test/relay.js"
import { HOP_HEADER } from "../src/RelayForward.js"
import { client, http, startBroker, startBrokerProcess, tempHome, type TestBroker } from "./harness.js"
import { runCli } from "./probe.js"
import { fakeRunner } from "./support.js"

const SHELL = join(FIXTURES, "shell-agent.mjs")

/** A line of shell output (the prompt may land before it: the shell and the pty's echo race). */
const shellLine = (text: string) => new RegExp(`(^|\\$ )${text}$`, "m")

/** Generous deadlines: the machine has 2 cores and other suites may run at once. */
const LONG = 30_000

const A2A_CLI = join(import.meta.dirname, "..", "..", "cli", "dist", "cli.js")

/** The built `a2a` CLI against `broker`, stdin piped: its stdout/stderr so far, a wait for text (never a sleep), its exit. */
const a2a = (broker: { url: string }, token: string, args: ReadonlyArray<string>) => {
  const child = spawnProcess(process.execPath, [A2A_CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", A2A_BROKER_URL: broker.url, A2A_TOKEN: token },
    stdio: ["pipe", "pipe", "pipe"]
  })
  const out = { stdout: "", stderr: "" }
  const waiters = new Set<() => void>()
  child.stdout.on("data", (d) => ((out.stdout += d), waiters.forEach((w) => w())))
  child.stderr.on("data", (d) => ((out.stderr += d), waiters.forEach((w) => w())))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const until = (re: RegExp, where: "stdout" | "stderr" = "stdout") =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        // eslint-disable-next-line no-control-regex
        if (!re.test(out[where].replace(/\u001b\[[0-?]*[ -/]*[@-~]|\r/g, ""))) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${re}; stdout ${JSON.stringify(out.stdout.slice(-1_000))}, stderr ${JSON.stringify(out.stderr.slice(-1_000))}`))
      }, 45_000)
      waiters.add(check)
      check()
    })
  return { child, until, exited }
}

/** A relay socket with extra headers: its frames and its close. */
const rawRelay = (url: string, path: string, headers: Record<string, string>) =>
  new Promise<{ frames: Array<any>; closed: { code: number; reason: string } }>((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}${path}`, { headers })
    const frames: Array<any> = []
    ws.on("message", (data) => frames.push(JSON.parse(String(data))))
    ws.on("unexpected-response", (_req, res) => reject(new Error(`refused: ${res.statusCode}`)))
    ws.on("error", reject)
    ws.on("close", (code, reason) => resolve({ frames, closed: { code, reason: String(reason) } }))
  })

const enabled = await pgEnabled("relay across broker instances on PostgreSQL")

if (!enabled) {
  it("relay across broker instances on PostgreSQL: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("relay through a broker instance other than the runner's", () => {
    let db: TestDatabase
    let home: string
    let a: TestBroker
    let b: TestBroker
    let runner: RunnerProcess
    let runnerToken: string
    let viewerToken: string
    let spawnId: string

    beforeAll(async () => {
      db = await createDatabase("a2a_relay")
      // One home (the static tokens file) and one database: the instances are one broker.
      home = tempHome()
      a = await startBroker({ home, db: db.url })
      b = await startBroker({ home, db: db.url })
      runnerToken = await a.token("default", "runner")
      // An operator's token: it reaches spawns others created (docs/security.md).
      viewerToken = await a.scopedToken("default", ["peer"], ["attach:any", "stop:any"])
      runner = await startRunner(["--broker", a.url, "--token", runnerToken, "--id", "rt-cross", "--capacity", "4"])
      const admin = client(b, b.adminToken)
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-cross" && r.status === "online"), "the runner online (seen from B)", LONG)
      // Ordered through B; the runner's link is on A.
      const created = await admin.spawn.create({ runner: "rt-cross", command: process.execPath, args: [SHELL], name: "shelly" })
      spawnId = created.spawn.id
      await eventually(async () => ((await admin.spawn.get(spawnId)).spawn.status === "registered" ? true : undefined), "the shell agent registered", LONG)
      await admin.close()
    }, 90_000)

    afterAll(async () => {
      await runner?.stop()
      await b?.close()
      await a?.close()
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    it("the log through B: the last lines first, then live ones typed in a terminal opened through B", async () => {
      const logs = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/logs?n=50`, viewerToken)
      expect(await logs.untilLine(/^agent shelly says hello$/, LONG)).toBe("agent shelly says hello")
      expect(logs.frames[0]).toMatchObject({ type: "log" })
      const term = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal?cols=100&rows=30`, viewerToken)
      term.send({ type: "input", data: "echo live-$((40+2))\r" })
      expect(await logs.untilLine(/(^|\s)live-42$/, LONG)).toMatch(/live-42$/)
      logs.ws.close()
      term.ws.close()
      await Promise.all([logs.closed, term.closed])
    }, 60_000)

    it("the terminal through B: `echo hi` shows hi, resize reaches the pty, ?token= works for browsers", async () => {
      const term = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal`, viewerToken, { query: true })
      term.send({ type: "input", data: "echo hi\r" })
      expect(await term.untilOutput(shellLine("hi"), LONG)).toMatch(/hi$/)
      term.send({ type: "resize", cols: 77, rows: 19 })
      term.send({ type: "input", data: "stty size\r" })
      expect(await term.untilOutput(shellLine("19 77"), LONG)).toMatch(/19 77$/)
      // Bad frames are refused by B itself, and the socket stays usable.
      term.send({ type: "launch" })
      expect((await term.next((f) => f.type === "error", "the refusal", LONG)).error._tag).toBe("InvalidRequest")
      term.send({ type: "input", data: "echo still-$((1+1))\r" })
      await term.untilOutput(shellLine("still-2"), LONG)
      term.ws.close()
      expect((await term.closed).code).toBe(1005)
    }, 60_000)

    // Before the flood below, which pushes the agent's first line out of the log's 1 MiB history.
    it("the CLI through B: `a2a tail --logs` shows a line typed through `a2a attach`; Ctrl-] detaches", async () => {
      const tail = a2a(b, viewerToken, ["tail", "--logs", spawnId, "--n", "1000"])
      await tail.until(/^agent shelly says hello$/m)
      const session = a2a(b, viewerToken, ["attach", spawnId])
      await session.until(/attached/, "stderr")
      session.child.stdin.write("echo cli-$((6*7))\n")
      await tail.until(/(^|\s)cli-42$/m)
      session.child.stdin.write("\u001d")
      expect(await session.exited).toBe(0)
      tail.child.kill("SIGINT")
      await tail.exited
    }, 120_000)

    it("unauthorized viewers are refused on both instances, with the same status and error", async () => {
      const peerOnly = await a.token("default", "peer") // `attach` for its own spawns only
      const acme = await a.token("acme", "peer", "admin")
      const cases: Array<[string, string | undefined, number, string]> = [
        ["logs", undefined, 401, "Unauthorized"],
        ["terminal", runnerToken, 403, "Forbidden"],
        ["terminal", peerOnly, 403, "Forbidden"],
        ["logs", peerOnly, 403, "Forbidden"],
        ["logs", acme, 404, "SpawnNotFound"],
        ["terminal", acme, 404, "SpawnNotFound"]
      ]
      for (const broker of [a, b]) {
        for (const [kind, token, status, tag] of cases) {
          expect(await refusedRelay(broker.url, `/ws/broker/spawns/${spawnId}/${kind}`, token), `${kind} on ${broker === a ? "A" : "B"}`).toMatchObject({
            status,
            body: { _tag: tag }
          })
        }
      }
    }, 60_000)

    it("the runner's errors come through B as they are: a spawn that failed to start is 4404", async () => {
      const admin = client(b, b.adminToken)
      const created = await admin.spawn.create({ runner: "rt-cross", command: "no-such-agent-binary" })
      await eventually(async () => ((await admin.spawn.get(created.spawn.id)).spawn.status === "failed" ? true : undefined), "the spawn failed", LONG)
      const logs = await openRelay(b.url, `/ws/broker/spawns/${created.spawn.id}/logs`, viewerToken)
      expect((await logs.closed).code).toBe(4404)
      expect(logs.frames).toEqual([{ type: "error", error: { _tag: "SpawnNotFound", message: expect.any(String), spawn: created.spawn.id } }])
      await admin.close()
    }, 60_000)

    it("a holder that cannot be reached is 4503; a forwarded socket is never forwarded again", async () => {
      // A third instance (the CLI, with its flag) advertising a URL where nothing listens.
      const c = await startBrokerProcess(home, ["--db", db.url, "--advertise-url", "http://127.0.0.1:1"])
      try {
        const fake = await fakeRunner(c.url, runnerToken, "rt-far", ["relay"])
        const admin = client(b, b.adminToken)
        await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-far" && r.status === "online"), "rt-far online", LONG)
        const created = await admin.spawn.create({ runner: "rt-far", command: "true" })
        await fake.next("spawn")
        const away = await openRelay(b.url, `/ws/broker/spawns/${created.spawn.id}/terminal`, viewerToken)
        expect((await away.closed).code).toBe(4503)
        expect(away.frames).toEqual([
          { type: "error", error: expect.objectContaining({ _tag: "ServiceUnavailable", message: expect.stringMatching(/linked to broker instance .* cannot be reached/) }) }
        ])
        // Marked as forwarded already: A answers as for a runner that is not linked to it.
        const hop = await rawRelay(a.url, `/ws/broker/spawns/${created.spawn.id}/logs`, { authorization: `Bearer ${viewerToken}`, [HOP_HEADER]: "0123456789ab" })
        expect(hop.closed.code).toBe(4503)
        expect(hop.frames[0].error.message).toMatch(/not linked to this broker/)
        fake.ws.close()
        await admin.close()
      } finally {
        c.child.kill("SIGTERM")
        await c.exited
      }
    }, 60_000)

    it("both sides close together: frames reach the runner's link on A, a client leaving B stops the stream there, a link dropping on A fails the socket on B", async () => {
      const admin = client(b, b.adminToken)
      const fake = await fakeRunner(a.url, runnerToken, "rt-fake", ["relay"])
      await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-fake" && r.status === "online"), "rt-fake online", LONG)
      const created = await admin.spawn.create({ runner: "rt-fake", command: "true" })
      await fake.next("spawn")
      const id = created.spawn.id

      const leaving = await openRelay(b.url, `/ws/broker/spawns/${id}/terminal?cols=90&rows=20`, viewerToken)
      // Typed at once: kept while B finds the holder, then sent in order.
      leaving.send({ type: "input", data: "ls\r" })
      leaving.send({ type: "resize", cols: 91, rows: 21 })
      const open = await fake.next("term_open")
      expect(open).toMatchObject({ spawnId: id, cols: 90, rows: 20 })
      expect(await fake.next("term_input")).toEqual({ type: "term_input", stream: open.stream, data: "ls\r" })
      expect(await fake.next("term_resize")).toEqual({ type: "term_resize", stream: open.stream, cols: 91, rows: 21 })
      fake.send({ type: "term_output", stream: open.stream, data: "file-a\r\n" })
      await leaving.untilOutput(/file-a/, LONG)
      leaving.ws.close()
      expect(await fake.next("stream_close")).toEqual({ type: "stream_close", stream: open.stream })

      const logs = await openRelay(b.url, `/ws/broker/spawns/${id}/logs?n=3`, viewerToken)
      const logsOpen = await fake.next("logs_open")
      expect(logsOpen).toMatchObject({ spawnId: id, n: 3 })
      fake.send({ type: "log", stream: logsOpen.stream, lines: ["one", "two"] })
      fake.send({ type: "stream_end", stream: logsOpen.stream, reason: "the agent exited", status: "exited", exitCode: 0 })
      expect((await logs.closed).code).toBe(1000)
      expect(logs.lines()).toEqual(["one", "two"])
      expect(logs.frames.at(-1)).toEqual({ type: "end", reason: "the agent exited", status: "exited", exitCode: 0 })

      const dropped = await openRelay(b.url, `/ws/broker/spawns/${id}/terminal`, viewerToken)
      await fake.next("term_open")
      fake.ws.terminate()
      expect((await dropped.closed).code).toBe(4503)
      expect(dropped.frames.at(-1).error.message).toMatch(/disconnected/)
      await admin.close()
    }, 60_000)

    it("a client of B that does not read is cut off (4008) by B without backing up the runner link", async () => {
      const slow = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal`, viewerToken)
      const watcher = await openRelay(a.url, `/ws/broker/spawns/${spawnId}/logs?n=0`, viewerToken)
      const socket = (slow.ws as unknown as { _socket: { pause: () => void; resume: () => void } })._socket
      slow.send({ type: "input", data: "head -c 16000000 /dev/zero | tr '\\0' y; echo; echo flood-$((2+3))\r" })
      socket.pause()
      await watcher.untilLine(/(^|\s)flood-5$/, 90_000)
      socket.resume()
      expect((await slow.closed).code).toBe(4008)
      const received = slow.output().length
      expect(received).toBeLessThan(16_000_000)
      console.log(`slow client of B cut off after ${(received / 1e6).toFixed(1)} MB of 16 MB`)
      watcher.ws.close()
      const next = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal`, viewerToken)
      next.send({ type: "input", data: "echo after-$((3+4))\r" })
      await next.untilOutput(shellLine("after-7"), LONG)
      next.ws.close()
    }, 150_000)

    it("revoking the static token closes its sockets on B with 4003", async () => {
      const created = await runCli(["token", "create", "--home", home, "--tenant", "default", "--role", "peer", "--scope", "attach:any", "--name", "relay-revoke"])
      expect(created.code, created.stderr).toBe(0)
      const token = created.stdout.trim()
      const term = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal`, token)
      term.send({ type: "input", data: "echo revocable\r" })
      await term.untilOutput(shellLine("revocable"), LONG)
      const id = (JSON.parse((await runCli(["token", "list", "--json", "--home", home])).stdout) as Array<{ id: string; name?: string }>).find((t) => t.name === "relay-revoke")!.id
      expect((await runCli(["token", "revoke", id, "--home", home])).code).toBe(0)
      expect(await term.closed).toEqual({ code: 4003, reason: "credentials revoked" })
    }, 60_000)

    it("stop through B: the terminal through B gets exit and a normal close, the log its end", async () => {
      const logs = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/logs?n=0`, viewerToken)
      const term = await openRelay(b.url, `/ws/broker/spawns/${spawnId}/terminal`, viewerToken)
      term.send({ type: "input", data: "echo ready\r" })
      await term.untilOutput(shellLine("ready"), LONG)
      expect((await http(b, viewerToken, "DELETE", `/api/spawn/${spawnId}`)).status).toBe(202)
      expect(await term.next((f) => f.type === "exit", "exit", LONG)).toMatchObject({ type: "exit", status: "stopped" })
      expect((await term.closed).code).toBe(1000)
      expect((await logs.closed).code).toBe(1000)
      expect(logs.frames.at(-1)).toMatchObject({ type: "end", status: "stopped" })
    }, 60_000)
  })
}
