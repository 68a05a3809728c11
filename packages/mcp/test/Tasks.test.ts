/**
 * The task board tools through the official MCP SDK client, against MCP server processes and a
 * real broker: a created task wakes a teammate (channel push), `get_next_task` claims it and the
 * server keeps its lease alive while the session lives, the creator is told the result; fail,
 * release and update; and a session that dies lets its task go back to the board.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { channelOpen, eventually, type McpSession, startSession } from "./harness.js"

const LEASE_MS = 900

let broker: TestBroker
let token: string
let boss: McpSession
let worker: McpSession
const sessions: Array<McpSession> = []

const start = async (options: Parameters<typeof startSession>[0]) => {
  const s = await startSession(options)
  sessions.push(s)
  return s
}

beforeAll(async () => {
  broker = await startBroker()
  token = await broker.token("acme", "peer")
  boss = await start({ url: broker.url, token, name: "boss", teams: "ops", channels: true })
  worker = await start({ url: broker.url, token, name: "worker", teams: "ops", channels: true, env: { A2A_TASK_LEASE_MS: String(LEASE_MS) } })
  // Task events reach open channels only: both sessions listen before the first task is created.
  await Promise.all([channelOpen(boss), channelOpen(worker)])
}, 120_000)

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await broker.close()
})

const getTask = async (id: string) => (await http(broker, token, "GET", `/api/tasks/${id}`)).json.task

/** The next push at or after index `from` that matches. */
const pushedWhere = async (s: McpSession, from: number, match: (meta: Record<string, string>) => boolean) => {
  for (let i = from; ; i++) {
    const p = await s.push(i)
    if (match(p.meta)) return p
  }
}

describe("task board tools", () => {
  it("create_task wakes a teammate, get_next_task claims it and the server keeps the lease alive, complete_task tells the creator", async () => {
    const workerBefore = worker.pushed.length
    const bossBefore = boss.pushed.length
    const created = await boss.ok("create_task", { team: "ops", title: "rotate the keys", body: "all of them", priority: 2, labels: ["ops"] })
    const task = created.data.task
    expect(task).toMatchObject({ state: "open", team: "ops", priority: 2, labels: ["ops"] })
    const woken = await pushedWhere(worker, workerBefore, (m) => m.kind === "task" && m.task_id === task.id)
    expect(woken.meta).toMatchObject({ kind: "task", change: "created", team: "ops", state: "open" })
    expect(woken.content).toContain("get_next_task")

    const claimed = await worker.ok("get_next_task", { labels: ["ops"] })
    expect(claimed.data.task).toMatchObject({ id: task.id, state: "claimed" })
    expect(claimed.text).toContain("all of them")
    const firstExpiry = Date.parse(claimed.data.task.leaseExpiresAt)
    // Well past the first lease, the task is still held: the server renewed it.
    const renewed = await eventually(async () => {
      const t = await getTask(task.id)
      return Date.now() > firstExpiry + LEASE_MS && Date.parse(t.leaseExpiresAt) > firstExpiry + LEASE_MS ? t : undefined
    }, 20_000, "renewed lease")
    expect(renewed).toMatchObject({ state: "claimed", assignee: claimed.data.task.assignee })

    const updated = await worker.ok("update_task", { task_id: task.id, note: "half the keys rotated" })
    expect(updated.data.task.note).toBe("half the keys rotated")
    const done = await worker.ok("complete_task", { task_id: task.id, result: "all keys rotated" })
    expect(done.data.task.state).toBe("done")
    const told = await pushedWhere(boss, bossBefore, (m) => m.kind === "task" && m.task_id === task.id && m.change === "done")
    expect(told.content).toContain("all keys rotated")
    const listed = await boss.ok("list_tasks", { state: "done" })
    expect(listed.data.tasks.map((t: any) => t.id)).toContain(task.id)
  }, 120_000)

  it("fail_task retries the task and release_task puts it back; errors are readable", async () => {
    const task = (await boss.ok("create_task", { team: "ops", title: "flaky job", max_attempts: 2 })).data.task
    expect((await worker.ok("get_next_task", { team: "ops" })).data.task.id).toBe(task.id)
    expect((await worker.ok("release_task", { task_id: task.id })).data.task).toMatchObject({ state: "open", attempts: 0 })
    await worker.ok("get_next_task", { team: "ops" })
    expect((await worker.ok("fail_task", { task_id: task.id, reason: "timeout" })).data.task).toMatchObject({ state: "open", attempts: 1, error: "timeout" })
    await worker.ok("get_next_task", { team: "ops" })
    expect((await worker.ok("fail_task", { task_id: task.id, reason: "timeout again" })).data.task).toMatchObject({ state: "failed", attempts: 2 })
    // Nothing left to take; bad ids and someone else's task are errors with the reason.
    expect((await worker.ok("get_next_task", { team: "ops" })).text).toContain("No claimable task")
    const bad = await worker.call("complete_task", { task_id: "not an id!" })
    expect(bad.isError).toBe(true)
    expect(bad.text).toContain("task_id")
    const notMine = await boss.call("complete_task", { task_id: task.id })
    expect(notMine.isError).toBe(true)
    expect(notMine.text).toContain("TaskConflict")
  }, 120_000)

  it("when a session ends, its task goes back to the board once the lease lapses", async () => {
    const mortal = await start({ url: broker.url, token, name: "mortal", teams: "ops", env: { A2A_TASK_LEASE_MS: String(LEASE_MS) } })
    const task = (await boss.ok("create_task", { team: "ops", title: "orphan", priority: 9 })).data.task
    const claimed = await mortal.ok("get_next_task", { team: "ops" })
    expect(claimed.data.task.id).toBe(task.id)
    await mortal.close()
    const back = await eventually(async () => {
      const t = await getTask(task.id)
      return t.state === "open" ? t : undefined
    }, 20_000, "the task back on the board")
    expect(back).toMatchObject({ attempts: 1 })
    expect((await worker.ok("get_next_task", { team: "ops" })).data.task.id).toBe(task.id)
    await worker.ok("complete_task", { task_id: task.id, result: "adopted" })
  }, 120_000)
})
