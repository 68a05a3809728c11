/**
 * Two real Claude Code sessions (the pinned devDependency, interactive under pseudo-terminals,
 * with the a2a development channel, each against its own scripted fake Messages API) on one
 * team share the task board: the planner puts a task on it with `create_task`; the worker is
 * woken by the channel notification of the new task, claims it with `get_next_task` and
 * finishes it with `complete_task`; the planner is woken by the `done` notification carrying the
 * result and sees the task done with `list_tasks`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { type FakeMessages, lastTurn, type Reply, startScriptedMessages } from "./fakeMessages.js"
import { CLI, eventually } from "./harness.js"

const claude = join(import.meta.dirname, "../../../node_modules/.bin/claude")
const tool = (name: string) => `mcp__a2a__${name}`
const TITLE = "Write the release notes"
const RESULT = "Release notes written to NOTES.md"

const offers = (body: any, name: string) => (body.tools ?? []).some((t: any) => t.name === tool(name))

/** The planner: asked by the lead, it creates the task; told the task is done, it lists the done tasks. */
const planner = (body: any): Reply => {
  const turn = lastTurn(body)
  if (turn.toolResults.has("toolu_create")) return { text: "Put it on the crew board." }
  if (turn.toolResults.has("toolu_list")) return { text: `The board says:\n${turn.toolResults.get("toolu_list")}` }
  if (!offers(body, "create_task")) return { text: "ok" }
  if (turn.text.includes("Please put the release notes on the board")) {
    return { tool: tool("create_task"), id: "toolu_create", input: { team: "crew", title: TITLE, body: "Summarise what changed since the last release.", priority: 5 } }
  }
  if (turn.text.includes(`"${TITLE}" on team crew is done`)) return { tool: tool("list_tasks"), id: "toolu_list", input: { team: "crew", state: "done" } }
  return { text: "ok" }
}

/** The worker: woken by the new task, it claims the next task and completes the one it got. */
const worker = (body: any): Reply => {
  const turn = lastTurn(body)
  const claimed = turn.toolResults.get("toolu_claim")
  if (claimed !== undefined) {
    // (Claude Code hands the model a tool's structured content, the task as JSON.)
    const id = /"id":"(t_[A-Za-z0-9_.:-]+)"/.exec(claimed)?.[1]
    return id === undefined ? { text: `nothing claimed: ${claimed}` } : { tool: tool("complete_task"), id: "toolu_complete", input: { task_id: id, result: RESULT } }
  }
  if (turn.toolResults.has("toolu_complete")) return { text: "Finished the task." }
  if (!offers(body, "get_next_task")) return { text: "ok" }
  if (turn.text.includes(`"${TITLE}" on team crew is open`)) return { tool: tool("get_next_task"), id: "toolu_claim", input: { team: "crew" } }
  return { text: "ok" }
}

let broker: TestBroker
let plannerApi: FakeMessages
let workerApi: FakeMessages
const homes: Array<string> = []
/** Kill every session and wait for it to exit (so its config directory is no longer written). */
const sessions: Array<{ kill: () => void; exited: Promise<void> }> = []
const stopSessions = () => Promise.all(sessions.map((s) => (s.kill(), Promise.race([s.exited, new Promise((r) => setTimeout(r, 10_000))]))))

beforeAll(async () => {
  broker = await startBroker()
  plannerApi = await startScriptedMessages(planner)
  workerApi = await startScriptedMessages(worker)
})
afterAll(async () => {
  await stopSessions()
  await plannerApi?.close()
  await workerApi?.close()
  await broker?.close()
  for (const home of homes) rmSync(home, { recursive: true, force: true, maxRetries: 10 })
})

/** A Claude Code session under a pty with our MCP server (channels on) as `name` on team crew. */
const session = async (name: string, token: string, api: FakeMessages, allowed: ReadonlyArray<string>) => {
  const pty = await import("node-pty")
  const home = mkdtempSync(join(tmpdir(), `a2a-mcp-tasks-${name}-`))
  homes.push(home)
  const configDir = join(home, ".claude")
  const cwd = join(home, "work")
  mkdirSync(configDir, { recursive: true })
  mkdirSync(cwd)
  const apiKey = `sk-ant-fake-key-for-the-task-board-${name}`
  writeFileSync(
    join(configDir, ".claude.json"),
    JSON.stringify({
      hasCompletedOnboarding: true,
      theme: "dark",
      cachedGrowthBookFeatures: { tengu_harbor: true },
      customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] },
      projects: { [cwd]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true } },
      mcpServers: {
        a2a: {
          type: "stdio",
          command: process.execPath,
          args: [CLI],
          env: { A2A_BROKER_URL: broker.url, A2A_TOKEN: token, A2A_PEER_NAME: name, A2A_TEAMS: "crew", A2A_CHANNELS: "1" }
        }
      }
    })
  )
  const term = pty.spawn(claude, ["--dangerously-load-development-channels", "server:a2a", "--allowedTools", allowed.map(tool).join(",")], {
    cols: 120,
    rows: 40,
    cwd,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: home,
      TERM: "xterm-256color",
      CLAUDE_CONFIG_DIR: configDir,
      ANTHROPIC_BASE_URL: api.url,
      ANTHROPIC_API_KEY: apiKey,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      CLAUDE_CODE_GB_DISK_CACHE_WHEN_TELEMETRY_OFF: "1",
      DISABLE_AUTOUPDATER: "1",
      DISABLE_TELEMETRY: "1",
      DISABLE_ERROR_REPORTING: "1",
      // MCP tools offered up front (not behind tool search), so the fake model can call them.
      ENABLE_TOOL_SEARCH: "false",
      IS_SANDBOX: "1"
    }
  })
  sessions.push({
    kill: () => {
      try {
        term.kill()
      } catch {
        // already gone
      }
    },
    exited: new Promise((resolve) => term.onExit(() => resolve())) })
  let screen = ""
  let tail = ""
  let pinned = false
  term.onData((data) => {
    tail = (tail + data).slice(-3_000)
    // eslint-disable-next-line no-control-regex
    screen = (screen + data.replace(/\u001b\[[0-9;?<>]*[A-Za-z]/g, "").replace(/\s+/g, "")).slice(-4_000)
    if (screen.includes("ClaudeCodev2.1.330")) pinned = true
  })
  // Accept the development-channels confirmation when it shows.
  await eventually(async () => (/Entertoconfirm/.test(screen) ? true : undefined), 60_000, `${name}'s channel confirmation`)
  term.write("\r")
  const peer = await eventually(async () => {
    const res = await http(broker, token, "GET", "/api/peers?status=online")
    return res.json.peers.find((p: any) => p.name === name && p.teams.includes("crew"))
  }, 60_000, `${name}'s peer on team crew`)
  // The pinned version (the root devDependency) is the one running.
  await eventually(async () => (pinned ? true : undefined), 30_000, `${name}'s banner with version 2.1.330`)
  return {
    peer,
    term,
    // eslint-disable-next-line no-control-regex
    screen: () => tail.replace(/\u001b\[[0-9;?<>]*[A-Za-z]/g, "")
  }
}

const debug = (what: string, api: FakeMessages, screen: string) => {
  console.log(
    what,
    JSON.stringify(
      api.requests.map((r) => ({ tools: (r.tools ?? []).map((t: any) => t.name).filter((n: string) => n.includes("a2a")).length, last: JSON.stringify([...(r.messages ?? [])].reverse().find((m: any) => m.role === "user")).slice(0, 600) })),
      null,
      1
    )
  )
  console.log("SCREEN", screen)
}

it("the planner's create_task wakes the worker, which claims and completes it; the planner sees the result", async () => {
  const token = await broker.token("acme", "peer")
  expect((await http(broker, token, "POST", "/api/teams", { name: "crew" })).status).toBe(201)
  const [a, b] = await Promise.all([
    session("planner", token, plannerApi, ["create_task", "list_tasks"]),
    session("worker", token, workerApi, ["get_next_task", "complete_task"])
  ])
  try {
    // The lead asks the planner (a message pushed into its session as a channel turn).
    const lead = await http(broker, token, "POST", "/api/peers", { name: "lead" })
    await http(broker, token, "POST", "/api/messages", { from: lead.json.peer.id, to: a.peer.id, body: "Please put the release notes on the board of crew." })

    // The planner created the task through MCP, as its peer.
    const created = await eventually(async () => {
      const res = await http(broker, token, "GET", "/api/tasks?team=crew")
      return res.json.tasks.find((t: any) => t.title === TITLE)
    }, 90_000, "the planner's task on the board").catch((e) => {
      debug("PLANNER", plannerApi, a.screen())
      throw e
    })
    expect(created).toMatchObject({ team: "crew", priority: 5, createdBy: a.peer.id })

    // The worker was woken by the `created` notification, claimed the task and completed it.
    const done = await eventually(async () => {
      const res = await http(broker, token, "GET", `/api/tasks/${created.id}`)
      return res.json.task.state === "done" ? res.json.task : undefined
    }, 90_000, "the task done").catch((e) => {
      debug("WORKER", workerApi, b.screen())
      throw e
    })
    expect(done).toMatchObject({ assignee: b.peer.id, result: RESULT, attempts: 1 })
    const woken = workerApi.requests.find((r) => lastTurn(r).text.includes(`"${TITLE}" on team crew is open`))
    expect(lastTurn(woken).text).toContain('<channel source="a2a"')
    expect(lastTurn(woken).text).toContain(`task_id="${created.id}"`)
    const claimResult = workerApi.requests.map((r) => lastTurn(r).toolResults.get("toolu_claim")).find((x) => x !== undefined)
    expect(JSON.parse(claimResult!).task).toMatchObject({ id: created.id, state: "claimed", assignee: b.peer.id })

    // The planner was told (channel turn with the result) and saw it done with list_tasks.
    const listed = await eventually(async () => plannerApi.requests.map((r) => lastTurn(r).toolResults.get("toolu_list")).find((x) => x !== undefined), 90_000, "the planner's list_tasks result").catch(
      (e) => {
        debug("PLANNER", plannerApi, a.screen())
        throw e
      }
    )
    const told = plannerApi.requests.find((r) => lastTurn(r).text.includes(`"${TITLE}" on team crew is done`))
    expect(lastTurn(told).text).toContain(`is done: ${RESULT}`)
    expect(lastTurn(told).text).toContain('change="done"')
    expect(JSON.parse(listed).tasks).toEqual([expect.objectContaining({ id: created.id, state: "done", assignee: b.peer.id, result: RESULT })])
    // The worker never got its own claim or the planner's done as a turn; the planner never got the creation.
    expect(workerApi.requests.some((r) => lastTurn(r).text.includes("is done"))).toBe(false)
    expect(plannerApi.requests.some((r) => lastTurn(r).text.includes(`"${TITLE}" on team crew is open`))).toBe(false)
  } finally {
    await stopSessions()
  }
}, 180_000)
