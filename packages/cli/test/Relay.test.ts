/**
 * `a2a tail --logs` and `a2a attach` against a real broker (in this process) and a real
 * `a2a-runner` process linked to it, running a shell agent. The CLI is the built one, as users
 * run it, with stdin piped (no TTY).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as net from "node:net"
import { join } from "node:path"
import * as pty from "node-pty"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { eventually, FIXTURES, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"

const CLI = join(import.meta.dirname, "..", "dist", "cli.js")
const SHELL = join(FIXTURES, "shell-agent.mjs")

let broker: TestBroker
let runner: RunnerProcess
let token: string
let spawnId: string
let peerId: string

const env = (url = broker.url) => ({ PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", A2A_BROKER_URL: url, A2A_TOKEN: token })

const a2a = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: env() }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr })
    )
    child.stdin!.end()
  })

/** A long-running CLI: its output so far, and a wait for text on stdout (never a sleep). */
const live = (args: ReadonlyArray<string>, url?: string) => {
  const child: ChildProcess = spawn(process.execPath, [CLI, ...args], { env: env(url), stdio: ["pipe", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  const waiters = new Set<() => void>()
  child.stdout!.on("data", (d) => {
    stdout += d
    waiters.forEach((w) => w())
  })
  child.stderr!.on("data", (d) => {
    stderr += d
    waiters.forEach((w) => w())
  })
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const until = (re: RegExp, where: () => string = () => stdout, timeoutMs = 45_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        // eslint-disable-next-line no-control-regex
        if (re.test(where().replace(/\u001b\[[0-?]*[ -/]*[@-~]|\r/g, ""))) {
          waiters.delete(check)
          clearTimeout(timer)
          resolve()
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${re}; stdout ${JSON.stringify(stdout.slice(-1_000))}, stderr ${JSON.stringify(stderr)}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return { child, exited, until, stdout: () => stdout, stderr: () => stderr }
}

/**
 * A TCP proxy to the broker that holds a `101 Switching Protocols` answer until the first bytes
 * after it (the relay's first frame) have come too, and writes both in one chunk: what a client
 * gets when the broker sends the log's history right behind the upgrade.
 */
const coalescingProxy = async (target: URL) => {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port), target.hostname)
    sockets.add(down).add(up)
    const drop = () => {
      down.destroy()
      up.destroy()
    }
    down.on("error", drop).on("close", drop)
    up.on("error", drop).on("close", drop)
    down.pipe(up)
    let held: Buffer | undefined = Buffer.alloc(0)
    up.on("data", (chunk: Buffer) => {
      if (held === undefined) return down.write(chunk)
      held = Buffer.concat([held, chunk])
      const end = held.indexOf("\r\n\r\n")
      const upgrade = held.subarray(0, 12).toString() === "HTTP/1.1 101"
      if (held.length >= 12 && (!upgrade || (end >= 0 && held.length > end + 4))) {
        down.write(held)
        held = undefined
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

beforeAll(async () => {
  broker = await startBroker()
  // The CLI's user spawns the agent it then attaches to (attaching to another principal's needs attach:any).
  token = await broker.scopedToken("default", ["peer"], ["spawn:command"])
  runner = await startRunner(["--broker", broker.url, "--token", await broker.token("default", "runner"), "--id", "rt-cli"])
  const admin = client(broker, broker.adminToken)
  await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === "rt-cli" && r.status === "online"), "the runner online")
  const own = client(broker, token)
  spawnId = (await own.spawn.create({ runner: "rt-cli", command: process.execPath, args: [SHELL], name: "shell-cli" })).spawn.id
  const registered = await eventually(async () => {
    const spawn = (await admin.spawn.get(spawnId)).spawn
    return spawn.status === "registered" ? spawn : undefined
  }, "the agent registered", 10_000)
  peerId = registered.peerId!
  await own.close()
  await admin.close()
}, 120_000)

afterAll(async () => {
  await runner?.stop()
  await broker?.close()
})

describe("a2a tail --logs and a2a attach, relayed by the broker", () => {
  it("attach by peer name: typed `echo hi` shows hi, Ctrl-] detaches with status 0", { timeout: 120_000 }, async () => {
    const session = live(["attach", "shell-cli"])
    await session.until(/attached to shell-cli/, session.stderr)
    session.child.stdin!.write("echo hi\n")
    await session.until(/(^|\$ )hi$/m)
    session.child.stdin!.write("\u001d")
    expect(await session.exited).toBe(0)
    expect(session.stderr()).toMatch(/detached from shell-cli/)
  })

  it("attach on a TTY: raw keys reach the agent, the window size follows SIGWINCH, Ctrl-] detaches", { timeout: 120_000 }, async () => {
    // The CLI under a pseudo-terminal of its own, as in a person's terminal window.
    const term = pty.spawn(process.execPath, [CLI, "attach", "shell-cli"], { cols: 91, rows: 27, env: env() })
    let screen = ""
    const waiters = new Set<() => void>()
    term.onData((d) => {
      screen += d
      waiters.forEach((w) => w())
    })
    const exited = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)))
    const until = (re: RegExp, timeoutMs = 45_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          // eslint-disable-next-line no-control-regex
          if (re.test(screen.replace(/\u001b\[[0-?]*[ -/]*[@-~]|\r/g, ""))) {
            waiters.delete(check)
            clearTimeout(timer)
            resolve()
          }
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`timed out waiting for ${re}; screen ${JSON.stringify(screen.slice(-1_000))}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    try {
      await until(/attached to shell-cli/)
      // The agent's terminal took this window's size on attach.
      term.write("stty size\r")
      await until(/(^|\$ )27 91$/m)
      // A resize of this window (SIGWINCH) reaches the agent's terminal.
      // SIGWINCH and the typed line race (a loaded machine may read the line first): ask again
      // until the new size shows, a few times.
      term.resize(101, 33)
      for (let attempt = 1; ; attempt++) {
        term.write("stty size\r")
        const shown = await until(/(^|\$ )33 101$/m, 5_000).then(() => true, (e) => (attempt < 6 ? false : Promise.reject(e)))
        if (shown) break
      }
      // Raw mode: Ctrl-C goes to the agent (the shell drops the line), it does not end `a2a`.
      // The ^C must reach a running foreground job: `sleeping-now` is printed by the job itself
      // (already in the foreground process group), which then becomes `sleep`.
      // Typed while the shell is still printing its prompt, the line is echoed first and the
      // job's output then follows the late prompt on the same row ("$ sleeping-now").
      term.write("sh -c 'echo sleeping-now; exec sleep 30'\r")
      await until(/(^|\$ )sleeping-now$/m)
      term.write("\u0003")
      await until(/\^C/)
      term.write("echo after-ctrl-c\r")
      await until(/(^|\$ )after-ctrl-c$/m)
      term.write("\u001d")
      expect(await exited).toBe(0)
      expect(screen).toMatch(/detached from shell-cli/)
    } finally {
      // a failed step must not leave this attach running into the next tests
      try {
        term.kill()
      } catch {
        // already gone
      }
    }
  })

  it("tail --logs by spawn id prints the last lines, then live ones; --json lines parse", async () => {
    // enough history to reach the agent's first line whatever the earlier tests printed
    const tail = live(["tail", "--logs", spawnId, "--n", "1000"])
    await tail.until(/^agent shell-cli says hello$/m)
    // A line the agent prints now (typed in through attach, by peer id) shows up live.
    const session = live(["attach", peerId])
    await session.until(/attached/, session.stderr)
    session.child.stdin!.write("echo tailed-$((6*7))\n")
    await tail.until(/tailed-42$/m)
    session.child.stdin!.write("\u001d")
    expect(await session.exited).toBe(0)
    tail.child.kill("SIGINT")
    await tail.exited

    const json = live(["tail", "--logs", "shell-cli", "--n", "1000", "--json"])
    await json.until(/"line":"agent shell-cli says hello"/)
    const first = JSON.parse(json.stdout().split("\n")[0]!)
    expect(typeof first.line).toBe("string")
    expect(Date.parse(first.at)).toBeGreaterThan(0)
    json.child.kill("SIGINT")
    await json.exited
  }, 120_000)

  it("tail --logs prints history that arrives in the same chunk as the upgrade", { timeout: 120_000 }, async () => {
    // The client emits such frames on the tick after `open`: a listener added later missed them.
    const proxy = await coalescingProxy(new URL(broker.url))
    try {
      const tail = live(["tail", "--logs", spawnId, "--n", "1000"], proxy.url)
      await tail.until(/^agent shell-cli says hello$/m)
      tail.child.kill("SIGINT")
      await tail.exited
    } finally {
      await proxy.close()
    }
  })

  it("attach exits with the agent's exit status when its process ends", { timeout: 120_000 }, async () => {
    const session = live(["attach", spawnId])
    await session.until(/attached/, session.stderr)
    session.child.stdin!.write("exit 3\n")
    expect(await session.exited).toBe(3)
    expect(session.stderr()).toMatch(/the agent crashed with code 3/)
  })

  it("clear one-line errors: unknown agent, a peer that was not spawned, another tenant's spawn, usage", { timeout: 120_000 }, async () => {
    const unknown = await a2a(["attach", "nobody-here"])
    expect(unknown).toMatchObject({ code: 1, stdout: "" })
    expect(unknown.stderr).toMatch(/^a2a: no agent "nobody-here"/)
    const plain = client(broker, token)
    await plain.peers.register({ name: "plain-peer" })
    expect((await a2a(["tail", "--logs", "plain-peer"])).stderr).toMatch(/^a2a: peer plain-peer was not started by a spawn order/)
    expect((await a2a(["attach", "s_missing"])).stderr).toMatch(/^a2a: SpawnNotFound: /)
    const other = await broker.token("acme", "peer")
    const foreign = await new Promise<string>((resolve) =>
      execFile(process.execPath, [CLI, "tail", "--logs", spawnId], { env: { ...env(), A2A_TOKEN: other } }, (_e, _out, err) => resolve(err))
    )
    expect(foreign).toMatch(/^a2a: SpawnNotFound: /)
    expect(await a2a(["attach"])).toMatchObject({ code: 2 })
    expect((await a2a(["tail", "--logs", spawnId, "--n=-3"])).stderr).toMatch(/--n must be a whole number/)
    await plain.close()
  })

  it("tail --logs ends by itself (exit 0) when the agent is stopped", { timeout: 120_000 }, async () => {
    const tail = live(["tail", "--logs", spawnId, "--n", "5"])
    // Lines arrive once the runner has the stream open.
    await tail.until(/\S/)
    expect((await a2a(["stop", spawnId])).code).toBe(0)
    expect(await tail.exited).toBe(0)
    expect(tail.stderr()).toMatch(/log ended: the agent stopped/)
  })
})
