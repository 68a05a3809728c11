/**
 * Spawns across restarts, with the built `a2a-broker` (SQLite file) and `a2a-runner` as child
 * processes: {broker, runner, both} × {SIGTERM, SIGKILL}, each with three agents running (two
 * echo agents on the bus, one `claude` session given a prompt, through a stand-in binary that
 * logs what is typed into it) and one order pending for a runner that is away. After the
 * restart: no orphan process, no duplicate, the prompt not typed again, the broker's spawns
 * and the runner's agents agree, the echo agents keep their peers and answer. Also: a broker
 * that does not know the runner's agents has them stopped (never relaunched), and a broker
 * moved to another port is followed by a runner restarted with the new URL.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"
import { afterAll, describe, expect, it } from "vitest"
import { api, eventually, FIXTURES, isAlive, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"
import { type BrokerProcess, http, startBrokerProcess } from "./harness.js"
import { runCli } from "./probe.js"

const ECHO = join(FIXTURES, "echo-agent.mjs")
const FAKE_CLAUDE = join(import.meta.dirname, "fixtures", "fake-claude.mjs")
const PROMPT = "please fix the flaky test"
const A2A = join(import.meta.dirname, "..", "..", "cli", "dist", "cli.js")

const started = Date.now()
/** Phase timings on stderr, to see where a slow machine spends the time. */
const phase = (what: string) => process.stderr.write(`[restarts +${((Date.now() - started) / 1000).toFixed(1)}s] ${what}\n`)

const dirs: Array<string> = []
const temp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

interface World {
  home: string
  db: string
  dataDir: string
  promptLog: string
  broker: BrokerProcess
  runner: RunnerProcess
  admin: string
  runnerToken: string
}

const kill = async (proc: { child: import("node:child_process").ChildProcess; exited: Promise<unknown> }, signal: NodeJS.Signals) => {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal)
  await proc.exited
}

/** The built broker on `port` (0: a new one); the later `--port` wins over the harness's `--port 0`. */
const startBroker = (w: Pick<World, "home" | "db">, port = 0) => startBrokerProcess(w.home, ["--db", w.db, ...(port === 0 ? [] : ["--port", String(port)])])
const startBox = (w: Pick<World, "dataDir" | "runnerToken">, brokerUrl: string) =>
  startRunner(["--broker", brokerUrl, "--token", w.runnerToken, "--id", "box", "--capacity", "8", "--claude-bin", FAKE_CLAUDE], { dataDir: w.dataDir })

const setUp = async (): Promise<World> => {
  const home = temp("a2a-restart-broker-")
  const db = join(home, "broker.db")
  const broker = await startBroker({ home, db })
  const admin = readFileSync(join(home, "broker.token"), "utf8").trim()
  const created = await runCli(["token", "create", "--home", home, "--tenant", "default", "--role", "runner"])
  const runnerToken = created.stdout.trim()
  const dataDir = temp("a2a-restart-runner-")
  const runner = await startBox({ dataDir, runnerToken }, broker.url)
  return { home, db, dataDir, promptLog: join(temp("a2a-restart-prompt-"), "typed.log"), broker, runner, admin, runnerToken }
}

const tearDown = async (w: World) => {
  await kill(w.runner, "SIGTERM")
  await kill(w.broker, "SIGTERM")
}

/** A runner `away` the broker knows (it said hello once), so an order pinned to it waits pending. */
const announceAway = (w: World) =>
  new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`${w.broker.url.replace("http", "ws")}/ws/runner/away`, { headers: { authorization: `Bearer ${w.runnerToken}` } })
    ws.on("unexpected-response", (_q, res) => reject(new Error(`link refused ${res.statusCode}`)))
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "hello", runner: { id: "away", host: "h", labels: {}, capacity: 1, presets: ["command"], version: "t" }, agents: [] }))
      ws.close()
    })
    ws.on("close", () => resolve())
  })

const spawnsOf = async (w: World) => (await http(w.broker, w.admin, "GET", "/api/spawn")).json.spawns as Array<{ id: string; status: string; spec: { name?: string }; peerId?: string; pid?: number }>
const agentsOf = async (w: World) => (await api(w.runner, "GET", "/agents")).json.agents as Array<{ spawnId?: string; status: string; pid?: number }>
const typedPrompts = (w: World) => {
  try {
    return readFileSync(w.promptLog, "utf8").split(PROMPT).length - 1
  } catch {
    return 0
  }
}

/** Three running (echo-1, echo-2 registered; claude-1 given its prompt) and one pending. */
const populate = async (w: World) => {
  await eventually(async () => ((await http(w.broker, w.admin, "GET", "/api/runners")).json.runners.some((r: any) => r.id === "box" && r.status === "online") ? true : undefined), "box online", 60_000)
  await announceAway(w)
  const create = async (body: Record<string, unknown>) => {
    const res = await http(w.broker, w.admin, "POST", "/api/spawn", body)
    expect(res.status, res.text).toBe(202)
    return res.json.spawn.id as string
  }
  const ids = {
    echo1: await create({ runner: "box", command: process.execPath, args: [ECHO], name: "echo-1" }),
    echo2: await create({ runner: "box", command: process.execPath, args: [ECHO], name: "echo-2" }),
    claude: await create({ runner: "box", preset: "claude", name: "claude-1", prompt: PROMPT, env: { PROMPT_LOG: w.promptLog } }),
    pending: await create({ runner: "away", command: process.execPath, args: [ECHO], name: "later" })
  }
  await eventually(async () => {
    const s = await spawnsOf(w)
    const st = (id: string) => s.find((x) => x.id === id)?.status
    return st(ids.echo1) === "registered" && st(ids.echo2) === "registered" && st(ids.claude) === "running" && st(ids.pending) === "pending" ? true : undefined
  }, "3 running, 1 pending", 60_000)
  await eventually(() => (typedPrompts(w) === 1 ? true : undefined), "the prompt typed once", 60_000)
  phase("populated: 3 running, 1 pending, prompt typed")
  const peers = Object.fromEntries((await spawnsOf(w)).filter((s) => s.peerId !== undefined).map((s) => [s.spec.name!, s.peerId!]))
  const pids = Object.fromEntries((await agentsOf(w)).map((a) => [a.spawnId!, a.pid!]))
  return { ids, peers, pids }
}

/** The echo agent `name` answers `watcher`'s message (it is on the bus as its old peer). */
const answers = async (w: World, name: string) => {
  const watcher = (await http(w.broker, w.admin, "POST", "/api/peers", { name: "watcher" })).json.peer
  const body = `ping ${Math.random()}`
  return eventually(
    async () => {
      await http(w.broker, w.admin, "POST", "/api/messages", { from: watcher.id, to: name, body })
      const inbox = await http(w.broker, w.admin, "GET", `/api/peers/${watcher.id}/inbox?wait=2`)
      const reply = (inbox.json?.messages ?? []).find((m: any) => m.body === `echo: ${body}`)
      return reply?.fromName === name ? reply : undefined
    },
    `${name} to answer`,
    30_000
  )
}

/** What must hold after any restart: the two sides agree, once each, nothing typed twice. */
const agreed = async (w: World, before: Awaited<ReturnType<typeof populate>>, runnerRestarted: boolean) => {
  const { ids } = before
  const running = [ids.echo1, ids.echo2, ids.claude]
  await eventually(
    async () => {
      const s = await spawnsOf(w)
      const ok = running.every((id) => ["running", "registered"].includes(s.find((x) => x.id === id)?.status ?? "")) && s.find((x) => x.id === ids.pending)?.status === "pending"
      const agents = await agentsOf(w)
      const live = agents.filter((a) => a.status === "running")
      return ok && live.length === 3 && running.every((id) => live.filter((a) => a.spawnId === id).length === 1) ? true : undefined
    },
    "the broker's spawns and the runner's agents agree",
    40_000
  )
  phase("agreed: spawns and agents")
  const agents = await agentsOf(w)
  // One agent per spawn, none for the pending order; their pids are what the broker says.
  expect(agents.map((a) => a.spawnId).sort()).toEqual([...running].sort())
  const spawns = await spawnsOf(w)
  expect(spawns).toHaveLength(4)
  for (const a of agents) {
    expect(isAlive(a.pid!)).toBe(true)
    await eventually(async () => ((await spawnsOf(w)).find((s) => s.id === a.spawnId)?.pid === a.pid ? true : undefined), `the broker's pid of ${a.spawnId}`, 60_000)
  }
  for (const id of running) {
    if (runnerRestarted) {
      // The old processes are gone (no orphan), new ones run.
      await eventually(() => (!isAlive(before.pids[id]!) ? true : undefined), `the old process of ${id} gone`, 60_000)
      expect(agents.find((a) => a.spawnId === id)!.pid).not.toBe(before.pids[id])
    } else {
      expect(agents.find((a) => a.spawnId === id)!.pid).toBe(before.pids[id])
    }
  }
  phase("pids checked")
  // The echo agents keep their peers and answer.
  for (const name of ["echo-1", "echo-2"]) expect((await answers(w, name)).from).toBe(before.peers[name])
  const peers = (await http(w.broker, w.admin, "GET", "/api/peers")).json.peers as Array<{ name: string }>
  expect(peers.filter((p) => p.name.startsWith("echo-"))).toHaveLength(2)
  phase("echo agents answered")
  // The session was not given its prompt again.
  expect(typedPrompts(w)).toBe(1)
}

/** `a2a spawns` (the CLI) lists each spawn once with the broker's status. */
const a2aSpawns = async (w: World) => {
  const { execFile } = await import("node:child_process")
  const { promisify } = await import("node:util")
  const { stdout } = await promisify(execFile)(process.execPath, [A2A, "spawns", "--json"], { env: { PATH: process.env.PATH ?? "", HOME: w.home, A2A_BROKER_URL: w.broker.url, A2A_TOKEN: w.admin } })
  return JSON.parse(stdout) as Array<{ id: string; status: string }>
}

describe("spawns across restarts (SQLite broker, real runner)", () => {
  for (const target of ["broker", "runner", "both"] as const) {
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      it(`${target} restarted with ${signal}: no orphan, no duplicate, no re-sent prompt; spawns and agents agree`, async () => {
        const w = await setUp()
        try {
          const before = await populate(w)
          if (target === "broker" || target === "both") {
            const port = w.broker.port
            if (target === "both") await kill(w.runner, signal)
            await kill(w.broker, signal)
            w.broker = await startBroker(w, port)
            if (target === "both") w.runner = await startBox(w, w.broker.url)
          } else {
            await kill(w.runner, signal)
            w.runner = await startBox(w, w.broker.url)
          }
          await agreed(w, before, target !== "broker")
          const listed = await a2aSpawns(w)
          expect(listed.map((s) => s.id).sort()).toEqual(Object.values(before.ids).sort())
          expect(listed.find((s) => s.id === before.ids.pending)?.status).toBe("pending")
        } finally {
          await tearDown(w)
        }
      }, 400_000)
    }
  }

  it("a broker that does not know the runner's agents (a new database) has them stopped, and the runner relaunches nothing", async () => {
    const w = await setUp()
    try {
      const before = await populate(w)
      const port = w.broker.port
      await kill(w.broker, "SIGKILL")
      w.db = join(w.home, "fresh.db")
      w.broker = await startBroker(w, port)
      await eventually(async () => ((await agentsOf(w)).every((a) => a.status !== "running") ? true : undefined), "the unknown agents stopped", 60_000)
      for (const pid of Object.values(before.pids)) await eventually(() => (!isAlive(pid) ? true : undefined), `process ${pid} gone`, 60_000)
      expect(await spawnsOf(w)).toEqual([])
      // Nothing comes back after a runner restart either: the records are gone.
      await kill(w.runner, "SIGTERM")
      w.runner = await startBox(w, w.broker.url)
      await eventually(async () => ((await http(w.broker, w.admin, "GET", "/api/runners")).json.runners.some((r: any) => r.id === "box" && r.status === "online") ? true : undefined), "box online", 60_000)
      expect((await agentsOf(w)).filter((a) => a.status === "running")).toEqual([])
      expect(typedPrompts(w)).toBe(1)
    } finally {
      await tearDown(w)
    }
  }, 400_000)

  it("the broker moved to another port: the runner restarted with the new URL brings the agents back on it", async () => {
    const w = await setUp()
    try {
      const before = await populate(w)
      await kill(w.broker, "SIGTERM")
      await kill(w.runner, "SIGTERM")
      phase("both stopped")
      w.broker = await startBroker(w) // a new port
      w.runner = await startBox(w, w.broker.url)
      await agreed(w, before, true)
    } finally {
      await tearDown(w)
    }
  }, 400_000)
})
