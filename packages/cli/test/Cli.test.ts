import { execFile, spawn } from "node:child_process"
import { createServer } from "node:net"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { client, startBroker, type TestBroker } from "../../broker/test/harness.js"

const CLI = join(import.meta.dirname, "..", "dist", "cli.js")

let broker: TestBroker
let token: string

const a2a = (args: ReadonlyArray<string>, options: { input?: string; env?: Record<string, string> } = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", A2A_BROKER_URL: broker.url, A2A_TOKEN: token, ...options.env } },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr })
    )
    if (options.input !== undefined) child.stdin!.end(options.input)
    else child.stdin!.end()
  })

/** Polls `check` until it returns a value, for broker-side state that has no event to await. */
const eventually = async <A>(check: () => Promise<A | undefined>, what: string, timeoutMs = 10_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

beforeAll(async () => {
  broker = await startBroker()
  // `a2a spawn` runs `command` agents: the peer token needs that permission (docs/security.md).
  token = await broker.scopedToken("acme", ["peer"], ["spawn:command"])
})
afterAll(() => broker.close())

describe("a2a against a running broker", () => {
  it("peers: a readable table, --json that parses, filters", async () => {
    const c = client(broker, token)
    const { peer } = await c.peers.register({ name: "alice", summary: "writes tests", teams: ["dev"], agent: "claude-code", host: "box1" })
    await c.peers.register({ name: "bob", teams: ["ops"], host: "box2" })
    const table = await a2a(["peers"])
    expect(table.code).toBe(0)
    const lines = table.stdout.trim().split("\n")
    expect(lines[0]).toMatch(/^NAME\s+ID\s+STATUS\s+AGENT\s+TEAMS\s+HOST\s+SEEN\s+SUMMARY$/)
    expect(table.stdout).toContain(peer.id)
    expect(table.stdout).toContain("writes tests")
    expect(table.stdout).not.toContain("\u001b[") // no colours when not a TTY
    const json = JSON.parse((await a2a(["peers", "--json", "--team", "dev"])).stdout)
    expect(json.map((p: any) => p.name)).toEqual(["alice"])
    expect(JSON.parse((await a2a(["peers", "--json", "--host", "box2"])).stdout).map((p: any) => p.name)).toEqual(["bob"])
    await c.close()
  })

  it("send to a peer (text or stdin) and to a team; tail shows them live and acks", async () => {
    const c = client(broker, token)
    const { peer: carol } = await c.peers.register({ name: "carol", teams: ["crew"] })
    const channel = c.connect(carol.id, { autoAck: true })
    const got: Array<any> = []
    const three = new Promise<void>((resolve) => channel.on("message", (m) => (got.push(m), got.length === 3 && resolve())))
    expect((await a2a(["send", "carol", "hello", "carol"])).stdout).toMatch(/^sent m_\S+ \(thread \S+\) to carol: 1 recipient/)
    expect((await a2a(["send", carol.id, "-"], { input: "from\nstdin\n" })).code).toBe(0)
    const team = JSON.parse((await a2a(["send", "--team", "crew", "all hands", "--json"])).stdout)
    expect(team.recipients).toEqual([carol.id])
    await three
    expect(got.map((m) => m.body)).toEqual(["hello carol", "from\nstdin", "all hands"])
    expect(got[0].fromName).toMatch(/^cli-/)

    // tail: the CLI peer gets a reply while following
    const tail = spawn(process.execPath, [CLI, "tail", "--json", "--count", "1", "--quiet", "--as", "ops-desk"], {
      env: { PATH: process.env.PATH ?? "", A2A_BROKER_URL: broker.url, A2A_TOKEN: token }
    })
    let stderr = ""
    tail.stderr.on("data", (d) => (stderr += d))
    const lines = createInterface({ input: tail.stdout })
    const first = new Promise<string>((resolve) => lines.once("line", resolve))
    const exited = new Promise<number | null>((resolve) => tail.once("exit", resolve))
    // the tail peer exists once registered; send to it by name until it is there
    const { peers } = await eventually(async () => {
      const list = await c.peers.list({})
      return list.peers.some((p) => p.name === "ops-desk" && p.status === "online") ? list : undefined
    }, "the tail's peer to be online")
    const desk = peers.find((p) => p.name === "ops-desk")!
    await channel.send({ to: desk.id, body: "reply to the desk" })
    const line = JSON.parse(await first)
    expect(line.message.body).toBe("reply to the desk")
    expect(await exited).toBe(0)
    expect(stderr).toBe("")
    // acked: nothing left in the desk's inbox
    expect((await c.inbox.read(desk.id)).messages).toEqual([])
    await channel.close()
    await c.close()
  })

  it("spawn waits for the runner to report running; spawns and stop work by id and by name", async () => {
    const runnerToken = await broker.token("acme", "runner")
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/r-cli`, { headers: { authorization: `Bearer ${runnerToken}` } })
    await new Promise((resolve) => ws.once("open", resolve))
    const orders: Array<any> = []
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      orders.push(frame)
      if (frame.type === "spawn") ws.send(JSON.stringify({ type: "spawn_status", spawnId: frame.spawn.id, status: "running", pid: 777 }))
      if (frame.type === "stop") ws.send(JSON.stringify({ type: "spawn_status", spawnId: frame.spawnId, status: "exited", exitCode: 0 }))
    })
    ws.send(JSON.stringify({ type: "hello", runner: { id: "r-cli", host: "h", labels: { gpu: "no" }, capacity: 4, presets: ["command"], version: "t" }, agents: [] }))
    const runners = await eventually(async () => {
      const list = JSON.parse((await a2a(["runners", "--json"])).stdout)
      return list.length > 0 ? list : undefined
    }, "the runner to be listed")
    expect(runners[0]).toMatchObject({ id: "r-cli", capacity: 4 })

    const out = await a2a(["spawn", "--name", "worker", "--label", "gpu=no", "--json", "--", "node", "agent.js", "--flag"])
    expect(out.code, out.stderr).toBe(0)
    const spawned = JSON.parse(out.stdout)
    expect(spawned).toMatchObject({ status: "running", pid: 777, runnerId: "r-cli" })
    expect(orders.find((f) => f.type === "spawn").spawn.spec).toMatchObject({ name: "worker", command: "node", args: ["agent.js", "--flag"] })
    const list = await a2a(["spawns"])
    expect(list.stdout).toMatch(new RegExp(`${spawned.id}\\s+worker\\s+running\\s+r-cli`))
    const stop = await a2a(["stop", spawned.id])
    expect(stop.code).toBe(0)
    expect(stop.stdout).toContain(`stopping spawn ${spawned.id}`)
    expect(orders.some((f) => f.type === "stop" && f.spawnId === spawned.id)).toBe(true)
    ws.close()
  })

  it("spawn --task: the order names the task and joins its team; the spawn's peer holds it and completes it with the spawn token; unknown and done tasks are refused", async () => {
    const runnerToken = await broker.token("acme", "runner")
    const ws = new WebSocket(`${broker.url.replace("http", "ws")}/ws/runner/r-task`, { headers: { authorization: `Bearer ${runnerToken}` } })
    await new Promise((resolve) => ws.once("open", resolve))
    const orders: Array<any> = []
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      orders.push(frame)
      if (frame.type === "spawn") ws.send(JSON.stringify({ type: "spawn_status", spawnId: frame.spawn.id, status: "running", pid: 778 }))
    })
    ws.send(JSON.stringify({ type: "hello", runner: { id: "r-task", host: "h", labels: {}, capacity: 4, presets: ["command"], version: "t" }, agents: [] }))
    const c = client(broker, token)
    try {
      await eventually(async () => (await c.runners.list()).runners.find((r) => r.id === "r-task" && r.status === "online"), "the runner online")
      const { peer: lead } = await c.peers.register({ name: "task-lead", teams: ["cli-queue"] })
      const { task } = await c.tasks.create({ team: "cli-queue", title: "write the changelog", peer: lead.id })

      const out = await a2a(["spawn", "--runner", "r-task", "--task", task.id, "--name", "scribe", "--", "node", "agent.js"])
      expect(out.code, out.stderr).toBe(0)
      expect(out.stdout).toMatch(new RegExp(`^spawn s_\\S+ \\S+ on runner r-task for task ${task.id}`))
      const order = orders.find((f) => f.type === "spawn" && f.spawn.spec.task === task.id).spawn
      expect(order.spec).toMatchObject({ name: "scribe", task: task.id, teams: ["cli-queue"] })

      // The agent's side, with the order's spawn token: it registers, already holds the task, completes it.
      const agent = client(broker, order.token)
      try {
        const { peer } = await agent.peers.register({ name: "scribe", spawnId: order.id, teams: order.spec.teams })
        expect((await agent.tasks.get(task.id)).task).toMatchObject({ state: "claimed", assignee: peer.id, attempts: 1 })
        const { task: done } = await agent.tasks.complete(task.id, { peer: peer.id, result: "changelog written" })
        expect(done).toMatchObject({ state: "done", assignee: peer.id, result: "changelog written" })
      } finally {
        await agent.close()
      }

      const unknown = await a2a(["spawn", "--runner", "r-task", "--task", "t_missing", "--", "node", "agent.js"])
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toMatch(/^a2a: TaskNotFound: /)
      const again = await a2a(["spawn", "--runner", "r-task", "--task", task.id, "--", "node", "agent.js"])
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/^a2a: TaskConflict: /)
      expect(orders.filter((f) => f.type === "spawn")).toHaveLength(1)
    } finally {
      await c.close()
      ws.close()
    }
  }, 120_000)
})

describe("--help", () => {
  it("is generated from the spec (src/CliSpec.ts): grouped commands, every flag and variable with its default", async () => {
    const [help, bare] = await Promise.all([a2a(["--help"]), a2a([])])
    expect(help.code).toBe(0)
    expect(help.stderr).toBe("")
    expect(bare.stdout).toBe(help.stdout)
    expect(help.stdout).toMatch(/^a2a \d+\.\d+\.\d+\S*: the a2a command line\n\nBroker \(--broker URL or A2A_BROKER_URL, [^)]*\n[^)]*\):\n  a2a peers \[--team T\]/)
    for (const part of ["\nProxy (--proxy URL or A2A_PROXY_URL", "\nLocal stack (what npm start runs):\n  a2a up [--home DIR]", "a2a up --check-config", "--token T    (env A2A_TOKEN;", "--as NAME    (env A2A_PEER_NAME; default cli-<user>)"]) {
      expect(help.stdout).toContain(part)
    }
    for (const variable of ["A2A_PROXY_ADMIN_TOKEN", "A2A_HOME", "A2A_BROKER_PORT", "A2A_RUNNER_PORT", "A2A_PROXY_PORT", "A2A_PROXY_CONFIG", "A2A_RUNNER_ID", "A2A_CLAUDE_BIN", "A2A_LOG_LEVEL"]) {
      expect(help.stdout).toContain(variable)
    }
    expect(help.stdout).toContain("<agent> is a spawn id (s_...)")
  })
})

describe("errors are one clear line with a non-zero exit", () => {
  it.each([
    [["bogus"], 2, /^a2a: unknown command "bogus"/],
    [["peers", "--nope"], 2, /^a2a: Unknown option '--nope'/],
    [["peers", "--home", "/tmp"], 2, /^a2a: Unknown option '--home'/], // up's flags are up's only
    [["up", "--json"], 2, /^a2a: up: Unknown option '--json'/],
    [["send", "nobody-at-all", "hi"], 1, /^a2a: PeerNotFound: /],
    [["send", "alice"], 2, /^a2a: send needs a text/],
    [["send", "--team", "no-such-team", "hi"], 1, /^a2a: TeamNotFound: /],
    [["spawn", "--env", "NOEQUALS"], 2, /^a2a: --env takes KEY=VALUE/],
    [["spawn", "--wait", "forever"], 2, /^a2a: --wait takes/],
    [["stop"], 2, /^a2a: stop needs one/],
    [["stop", "s_doesnotexist0000000000"], 1, /^a2a: SpawnNotFound: /],
    [["tail", "--count", "0"], 2, /^a2a: --count must be a positive whole number/]
  ] as const)("a2a %j", async (args, code, pattern) => {
    const r = await a2a(args)
    expect(r.code).toBe(code)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(pattern)
  })

  it("tasks: create (title from stdin too), list with filters, claim as the CLI's peer, complete, fail, cancel; clear refusals", async () => {
    const c = client(broker, token)
    const { peer: lead } = await c.peers.register({ name: "board-lead", teams: ["board"] })
    const channel = c.connect(lead.id, { autoAck: true, presence: "none" })
    const created: Array<any> = []
    const saw = (n: number) => new Promise<void>((resolve) => channel.on("event", (e) => e.type === "task" && e.change === "created" && created.push(e) === n && resolve()))
    const three = saw(3)
    const first = await a2a(["tasks", "create", "--team", "board", "write", "the", "docs", "--priority", "5", "--label", "docs", "--body", "all of them"])
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/^created t_\S+ "write the docs" @board: open\n$/)
    const second = JSON.parse((await a2a(["tasks", "create", "--team", "board", "-", "--json"], { input: "from stdin\n" })).stdout)
    expect(second).toMatchObject({ title: "from stdin", state: "open", priority: 0 })
    const third = JSON.parse((await a2a(["tasks", "create", "--team", "board", "after", "--depends-on", second.id, "--max-attempts", "1", "--json"])).stdout)
    expect(third.dependsOn).toEqual([second.id])
    await three // the team was told of each one

    const table = await a2a(["tasks", "--team", "board"])
    expect(table.stdout.trim().split("\n")[0]).toMatch(/^TASK\s+STATE\s+PRI\s+TEAM\s+TITLE\s+ASSIGNEE\s+TRIES\s+LABELS\s+UPDATED$/)
    expect(table.stdout.trim().split("\n")).toHaveLength(4)
    expect(JSON.parse((await a2a(["tasks", "list", "--label", "docs", "--json"])).stdout).map((t: any) => t.title)).toEqual(["write the docs"])

    // claim takes the highest priority first, as the CLI's peer (which joins the team)
    const claimed = await a2a(["tasks", "claim", "--team", "board", "--as", "board-cli", "--lease", "120"])
    expect(claimed.stdout).toMatch(/^claimed t_\S+ "write the docs" @board: claimed \(p_\S+\)\nall of them\n$/)
    const docsId = /claimed (t_\S+)/.exec(claimed.stdout)![1]!
    const done = JSON.parse((await a2a(["tasks", "complete", docsId, "--result", "-", "--as", "board-cli", "--json"], { input: "pushed to main\n" })).stdout)
    expect(done).toMatchObject({ state: "done", result: "pushed to main" })
    // another peer of the CLI cannot complete what it does not hold
    const next = JSON.parse((await a2a(["tasks", "claim", "--team", "board", "--as", "board-cli", "--json"])).stdout)
    expect(next.id).toBe(second.id)
    const notMine = await a2a(["tasks", "complete", second.id, "--as", "someone-else"])
    expect(notMine.code).toBe(1)
    expect(notMine.stderr).toMatch(/^a2a: TaskConflict: /)
    expect(JSON.parse((await a2a(["tasks", "fail", second.id, "--reason", "flaky", "--as", "board-cli", "--json"])).stdout)).toMatchObject({ state: "open", error: "flaky" })
    const cancelled = await a2a(["tasks", "cancel", third.id, "--reason", "not needed"])
    expect(cancelled.stdout).toContain("cancelled")
    expect(JSON.parse((await a2a(["tasks", "--state", "cancelled", "--json"])).stdout).map((t: any) => t.id)).toEqual([third.id])

    // nothing claimable is exit 1 with a clear line; bad input is a usage error (2)
    const again = await a2a(["tasks", "claim", "--team", "nobody-here", "--as", "board-cli"])
    expect(again.code).toBe(1)
    expect(again.stderr).toBe("a2a: no claimable task on team nobody-here\n")
    expect((await a2a(["tasks", "complete", "not an id"])).code).toBe(2)
    expect((await a2a(["tasks", "create", "title"])).stderr).toContain("needs --team")
    expect((await a2a(["tasks", "--state", "weird"])).code).toBe(2)
    await channel.close()
    await c.close()
  }, 120_000)

  it("names the broker it cannot reach, and a bad token", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number }
        server.close(() => resolve(port))
      })
    })
    const down = await a2a(["peers"], { env: { A2A_BROKER_URL: `http://127.0.0.1:${port}` } })
    expect(down.code).toBe(1)
    // One line: where it looked, why, and how to get a broker there.
    expect(down.stderr.trim().split("\n")).toHaveLength(1)
    expect(down.stderr).toMatch(new RegExp(`^a2a: cannot reach the broker at http://127\\.0\\.0\\.1:${port}/ \\(ECONNREFUSED\\); no stack is running there: .*npm start.*--broker URL`))
    const bad = await a2a(["peers"], { env: { A2A_TOKEN: "not-a-token" } })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^a2a: Unauthorized: /)
  })
})
