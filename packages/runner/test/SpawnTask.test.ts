/**
 * Spawning for a task (docs/tasks.md, "Spawning for a task") through a real broker and a real
 * `a2a-runner` process: the `command` agent fixture reads `A2A_TASK_ID`, finds it already holds
 * the task (the broker claimed it for the spawn's peer at registration) and completes it over
 * HTTP with its spawn token; refusals are typed; a spawn that ends holding its task leaves it
 * open again (failed, the attempt counted); a pool of spawns drains a queue.
 */
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { opened, record } from "../../broker/test/support.js"
import { eventually, FIXTURES, type RunnerProcess, startRunner } from "./helpers.js"

const AGENT = join(FIXTURES, "task-agent.mjs")
const RUNNER = "rt-tasks"
const WAIT = 60_000

let broker: TestBroker
let runner: RunnerProcess
/** A non-admin creator: the peer role and the `spawn:command` permission. */
let creator: string
beforeAll(async () => {
  broker = await startBroker({ gcInterval: 50 })
  creator = await broker.scopedToken("default", ["peer"], ["spawn:command"])
  runner = await startRunner(["--broker", broker.url, "--token", await broker.token("default", "runner"), "--id", RUNNER, "--capacity", "8"])
  const admin = client(broker, broker.adminToken)
  try {
    await eventually(async () => (await admin.runners.list()).runners.find((r) => r.id === RUNNER && r.status === "online"), "the runner online", WAIT)
  } finally {
    await admin.close()
  }
}, 120_000)
afterAll(async () => {
  await runner?.stop()
  await broker?.close()
})

const post = (token: string, path: string, body: unknown) => http(broker, token, "POST", path, body)

/** A boss peer of the creator on `team` (so the team exists), with its channel recording events. */
const boss = async (team: string, name: string) => {
  const api = client(broker, creator)
  const peer = (await api.peers.register({ name, teams: [team] })).peer
  const channel = api.connect(peer.id, { autoAck: true, presence: "none" })
  const seen = record(channel)
  await opened(channel)
  return { api, peer, seen, close: () => api.close() }
}

const spawnFor = (task: string, name: string, requestedBy: string, env: Record<string, string> = {}) =>
  post(creator, "/api/spawn", { runner: RUNNER, command: process.execPath, args: [AGENT], name, task, requestedBy, env })

const taskWhen = (api: ReturnType<typeof client>, id: string, ok: (t: any) => boolean, what: string) =>
  eventually(async () => {
    const { task } = await api.tasks.get(id)
    return ok(task) ? task : undefined
  }, what, WAIT)

describe("spawn for a task", () => {
  it("the spawned command agent holds the task from registration and completes it over HTTP with its spawn token", async () => {
    const b = await boss("st-one", "st-boss-1")
    try {
      const { task } = await b.api.tasks.create({ team: "st-one", title: "port the parser", body: "see issue 7", labels: ["ts"], peer: b.peer.id })
      const created = await spawnFor(task.id, "st-agent-1", b.peer.id)
      expect(created.status).toBe(202)
      const spawnId: string = created.json.spawn.id
      // The spawn joins the task's team and records the task.
      expect(created.json.spawn.spec).toMatchObject({ task: task.id, teams: ["st-one"] })

      const claimed = await b.seen.event((e: any) => e.type === "task" && e.change === "claimed" && e.task.id === task.id, "claimed event")
      const registered = await b.seen.event((e: any) => e.type === "spawn_status" && e.spawn.id === spawnId && e.spawn.peerId !== undefined, "the spawn's peer")
      const peerId = registered.type === "spawn_status" ? registered.spawn.peerId! : ""
      expect(claimed.type === "task" && claimed.task.assignee).toBe(peerId)

      const done = await taskWhen(b.api, task.id, (t) => t.state === "done", "the task done")
      expect(done).toMatchObject({ state: "done", assignee: peerId, attempts: 1, result: "done by st-agent-1: port the parser", note: "working" })
      await b.seen.event((e: any) => e.type === "task" && e.change === "done" && e.task.id === task.id, "done event")
      // The agent finished and exited cleanly: the task stays done (the spawn's end does not touch it).
      await eventually(async () => (await b.api.spawn.get(spawnId)).spawn.status === "exited", "the spawn exited", WAIT)
      expect((await b.api.tasks.get(task.id)).task).toMatchObject({ state: "done", result: "done by st-agent-1: port the parser" })
    } finally {
      await b.close()
    }
  }, 120_000)

  it("a spawn for an unknown task, a done task, a claimed task, a task waiting on another or another tenant's task is refused with a typed error", async () => {
    const b = await boss("st-refuse", "st-boss-2")
    try {
      const unknown = await spawnFor("t_nosuchtask", "st-agent-x", b.peer.id)
      expect(unknown.status).toBe(404)
      expect(unknown.json).toMatchObject({ _tag: "TaskNotFound", task: "t_nosuchtask" })

      const { task: done } = await b.api.tasks.create({ team: "st-refuse", title: "already done", peer: b.peer.id })
      await b.api.tasks.claim(done.id, { peer: b.peer.id })
      await b.api.tasks.complete(done.id, { peer: b.peer.id, result: "ok" })
      const finished = await spawnFor(done.id, "st-agent-y", b.peer.id)
      expect(finished.status).toBe(409)
      expect(finished.json).toMatchObject({ _tag: "TaskConflict", task: done.id, reason: "state", state: "done" })

      const { task: held } = await b.api.tasks.create({ team: "st-refuse", title: "held", peer: b.peer.id })
      await b.api.tasks.claim(held.id, { peer: b.peer.id, leaseMs: 600_000 })
      const taken = await spawnFor(held.id, "st-agent-z", b.peer.id)
      expect(taken.status).toBe(409)
      expect(taken.json).toMatchObject({ _tag: "TaskConflict", task: held.id, reason: "holder", state: "claimed" })

      const { task: later } = await b.api.tasks.create({ team: "st-refuse", title: "after the held one", dependsOn: [held.id], peer: b.peer.id })
      const waiting = await spawnFor(later.id, "st-agent-w", b.peer.id)
      expect(waiting.status).toBe(409)
      expect(waiting.json).toMatchObject({ _tag: "TaskConflict", task: later.id, reason: "dependencies", state: "open" })

      const { task: open } = await b.api.tasks.create({ team: "st-refuse", title: "open but not yours", peer: b.peer.id })
      const stranger = await broker.scopedToken("other", ["peer"], ["spawn:command"])
      const foreign = await post(stranger, "/api/spawn", { command: process.execPath, args: [AGENT], task: open.id })
      expect(foreign.status).toBe(404)
      expect(foreign.json).toMatchObject({ _tag: "TaskNotFound", task: open.id })

      // None of them started anything, and the open task is untouched.
      expect((await b.api.spawn.list()).spawns.filter((s) => s.spec.name?.startsWith("st-agent-") && ["st-agent-x", "st-agent-y", "st-agent-z", "st-agent-w"].includes(s.spec.name))).toEqual([])
      expect((await b.api.tasks.get(open.id)).task).toMatchObject({ state: "open", attempts: 0 })
    } finally {
      await b.close()
    }
  }, 120_000)

  it("a spawn that exits without finishing, or is stopped, leaves its task open again (failed with the reason, the attempt counted)", async () => {
    const b = await boss("st-end", "st-boss-3")
    try {
      const { task: quitter } = await b.api.tasks.create({ team: "st-end", title: "walk away", peer: b.peer.id })
      const exits = await spawnFor(quitter.id, "st-quitter", b.peer.id, { TASK_AGENT_MODE: "exit" })
      expect(exits.status).toBe(202)
      const reopened = await taskWhen(b.api, quitter.id, (t) => t.state === "open" && t.attempts === 1, "the task open again")
      expect(reopened.error).toBe("the agent's spawn ended (exited with code 0)")
      expect(reopened.assignee).toBeUndefined()
      await b.seen.event((e: any) => e.type === "task" && e.change === "failed" && e.task.id === quitter.id, "failed event")

      const { task: held } = await b.api.tasks.create({ team: "st-end", title: "stopped midway", peer: b.peer.id })
      const holds = await spawnFor(held.id, "st-holder", b.peer.id, { TASK_AGENT_MODE: "hold" })
      expect(holds.status).toBe(202)
      const spawnId: string = holds.json.spawn.id
      const claimed = await taskWhen(b.api, held.id, (t) => t.state === "claimed", "the task held")
      expect((await b.api.spawn.get(spawnId)).spawn.peerId).toBe(claimed.assignee)
      expect((await http(broker, creator, "DELETE", `/api/spawn/${spawnId}`)).status).toBe(202)
      const released = await taskWhen(b.api, held.id, (t) => t.state === "open", "the stopped spawn's task open again")
      expect(released).toMatchObject({ attempts: 1, error: "the agent's spawn ended (exited with code 0)" })

      // And it can be taken again: a second spawn for it finishes it.
      const again = await spawnFor(held.id, "st-second", b.peer.id)
      expect(again.status).toBe(202)
      const done = await taskWhen(b.api, held.id, (t) => t.state === "done", "done by the second spawn")
      expect(done).toMatchObject({ attempts: 2, result: "done by st-second: stopped midway" })
    } finally {
      await b.close()
    }
  }, 180_000)

  it("a pool drains a queue: one spawn per open task, every task done by its own spawned peer", async () => {
    const b = await boss("st-pool", "st-boss-4")
    try {
      const tasks = []
      for (const n of [1, 2, 3]) tasks.push((await b.api.tasks.create({ team: "st-pool", title: `job ${n}`, priority: n, peer: b.peer.id })).task)
      // Through the Promise client, which passes `task` through.
      const spawns = await Promise.all(
        tasks.map((t, i) => b.api.spawn.create({ runner: RUNNER, command: process.execPath, args: [AGENT], name: `st-pool-${i + 1}`, task: t.id, requestedBy: b.peer.id }))
      )
      expect(spawns.map((s) => s.spawn.spec.task)).toEqual(tasks.map((t) => t.id))
      const done = await Promise.all(tasks.map((t) => taskWhen(b.api, t.id, (x) => x.state === "done", `${t.title} done`)))
      const peers = await Promise.all(spawns.map((s) => eventually(async () => (await b.api.spawn.get(s.spawn.id)).spawn.peerId, "spawn peer", WAIT)))
      done.forEach((t, i) => expect(t).toMatchObject({ assignee: peers[i], attempts: 1, result: `done by st-pool-${i + 1}: job ${i + 1}` }))
      expect(new Set(peers).size).toBe(3)
      expect((await b.api.tasks.list({ team: "st-pool", state: "open" })).tasks).toEqual([])
    } finally {
      await b.close()
    }
  }, 180_000)
})
