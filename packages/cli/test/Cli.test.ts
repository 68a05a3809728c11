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
  token = await broker.token("acme", "peer")
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
})

describe("errors are one clear line with a non-zero exit", () => {
  it.each([
    [["bogus"], 2, /^a2a: unknown command "bogus"/],
    [["peers", "--nope"], 2, /^a2a: Unknown option '--nope'/],
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

  it("names the broker it cannot reach, and a bad token", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number }
        server.close(() => resolve(port))
      })
    })
    const down = await a2a(["peers"], { env: { A2A_BROKER_URL: `http://127.0.0.1:${port}` } })
    expect(down.code).toBe(1)
    expect(down.stderr).toBe(`a2a: cannot reach the broker at http://127.0.0.1:${port}/ (ECONNREFUSED)\n`)
    const bad = await a2a(["peers"], { env: { A2A_TOKEN: "not-a-token" } })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^a2a: Unauthorized: /)
  })
})
