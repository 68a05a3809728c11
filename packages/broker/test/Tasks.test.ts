/**
 * The task board through a real broker: HTTP for the operations, peer channels (the Promise
 * client's WebSocket) for the `task` events. Runs against SQLite here and PostgreSQL in
 * `pg/Tasks.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { opened, record } from "./support.js"

let broker: TestBroker
beforeAll(async () => {
  broker = await startBroker()
}, 120_000)
afterAll(() => broker.close())

const post = (token: string, path: string, body: unknown) => http(broker, token, "POST", path, body)

/** Peers on a team, each with an open channel recording what it gets. */
const crew = async (team: string, names: ReadonlyArray<string>, token = broker.adminToken) => {
  const api = client(broker, token)
  const peers = await Promise.all(names.map((name) => api.peers.register({ name, teams: [team] }).then((r) => r.peer)))
  const channels = peers.map((p) => api.connect(p.id, { autoAck: true, presence: "none" }))
  const seen = channels.map(record)
  await Promise.all(channels.map(opened))
  return { api, peers, seen, close: () => api.close() }
}

const taskEvent = (change: string, id: string) => (e: any) => e.type === "task" && e.change === change && e.task.id === id

describe("task board over HTTP and channels", () => {
  it("a created task wakes the team; one claimant wins it, the holder completes it and the creator sees the result", async () => {
    const c = await crew("tb-life", ["tb-boss", "tb-w1", "tb-w2"])
    const [boss, w1, w2] = c.peers
    const created = await post(broker.adminToken, "/api/tasks", { team: "tb-life", title: "fix the parser", body: "see issue 7", peer: boss!.id, labels: ["ts"] })
    expect(created.status).toBe(201)
    const task = created.json.task
    expect(task).toMatchObject({ team: "tb-life", title: "fix the parser", state: "open", attempts: 0, maxAttempts: 3, createdBy: boss!.id, labels: ["ts"] })
    // Every member is woken, including idle workers.
    for (const s of c.seen) await s.event(taskEvent("created", task.id), "created event")

    const [first, second] = await Promise.all([
      post(broker.adminToken, "/api/tasks/claim", { team: "tb-life", peer: w1!.id, leaseMs: 60_000 }),
      post(broker.adminToken, "/api/tasks/claim", { team: "tb-life", peer: w2!.id, leaseMs: 60_000 })
    ])
    expect([first.status, second.status]).toEqual([200, 200])
    const winners = [first.json.task, second.json.task].filter((t) => t !== null)
    expect(winners).toHaveLength(1)
    const holder = winners[0].assignee === w1!.id ? w1! : w2!
    const other = holder === w1 ? w2! : w1!
    expect(winners[0]).toMatchObject({ id: task.id, state: "claimed", attempts: 1 })
    await c.seen[0]!.event(taskEvent("claimed", task.id), "claimed event")

    const beat = await post(broker.adminToken, `/api/tasks/${task.id}/heartbeat`, { peer: holder.id, note: "half way", leaseMs: 120_000 })
    expect(beat.status).toBe(200)
    expect(beat.json.task.note).toBe("half way")
    expect(Date.parse(beat.json.task.leaseExpiresAt)).toBeGreaterThan(Date.parse(winners[0].leaseExpiresAt))

    const stolen = await post(broker.adminToken, `/api/tasks/${task.id}/complete`, { peer: other.id, result: "mine" })
    expect(stolen.status).toBe(409)
    expect(stolen.json).toMatchObject({ _tag: "TaskConflict", reason: "holder", state: "claimed" })

    const done = await post(broker.adminToken, `/api/tasks/${task.id}/complete`, { peer: holder.id, result: "merged in #12" })
    expect(done.status).toBe(200)
    expect(done.json.task).toMatchObject({ state: "done", result: "merged in #12", assignee: holder.id })
    const seenByBoss = await c.seen[0]!.event(taskEvent("done", task.id), "done event")
    expect((seenByBoss as any).task.result).toBe("merged in #12")
    expect((await http(broker, broker.adminToken, "GET", `/api/tasks/${task.id}`)).json.task.state).toBe("done")
    const again = await post(broker.adminToken, `/api/tasks/${task.id}/claim`, { peer: other.id })
    expect(again.json).toMatchObject({ _tag: "TaskConflict", reason: "state", state: "done" })
    await c.close()
  }, 120_000)

  it("claim-next takes the highest priority, then the oldest, honours labels and waits for dependencies", async () => {
    const c = await crew("tb-order", ["tb-o1"])
    const me = c.peers[0]!.id
    const mk = async (body: Record<string, unknown>) => (await post(broker.adminToken, "/api/tasks", { team: "tb-order", ...body })).json.task
    const low = await mk({ title: "low", priority: 0 })
    const old = await mk({ title: "old", priority: 5 })
    const gpu = await mk({ title: "gpu", priority: 9, labels: ["gpu"] })
    const young = await mk({ title: "young", priority: 5 })
    const after = await mk({ title: "after low", priority: 100, dependsOn: [low.id] })
    const next = async (labels?: Array<string>) => (await post(broker.adminToken, "/api/tasks/claim", { team: "tb-order", peer: me, labels })).json.task
    expect((await next(["gpu"])).id).toBe(gpu.id)
    expect(await next(["gpu"])).toBeNull()
    const order = [await next(), await next(), await next()].map((t) => t.id)
    expect(order).toEqual([old.id, young.id, low.id])
    // "after low" (priority 100) waited for "low"; a direct claim says why.
    expect(await next()).toBeNull()
    const blocked = await post(broker.adminToken, `/api/tasks/${after.id}/claim`, { peer: me })
    expect(blocked.json).toMatchObject({ _tag: "TaskConflict", reason: "dependencies" })
    await post(broker.adminToken, `/api/tasks/${low.id}/complete`, { peer: me })
    expect((await next()).id).toBe(after.id)
    const listed = await http(broker, broker.adminToken, "GET", `/api/tasks?team=tb-order&state=claimed&assignee=${me}`)
    expect(listed.json.tasks.map((t: any) => t.id).sort()).toEqual([gpu.id, old.id, young.id, after.id].sort())
    const byLabel = await http(broker, broker.adminToken, "GET", "/api/tasks?team=tb-order&labels=gpu")
    expect(byLabel.json.tasks.map((t: any) => t.id)).toEqual([gpu.id])
    await c.close()
  }, 120_000)

  it("a lapsed lease puts the task back (lease_expired event), and the late holder cannot complete it", async () => {
    const c = await crew("tb-lease", ["tb-l1", "tb-l2"])
    const [dead, alive] = c.peers
    const task = (await post(broker.adminToken, "/api/tasks", { team: "tb-lease", title: "flaky" })).json.task
    const claimed = await post(broker.adminToken, `/api/tasks/${task.id}/claim`, { peer: dead!.id, leaseMs: 1 })
    expect(claimed.json.task.state).toBe("claimed")
    // The sweep reports it to the team; it is claimable again at once.
    await c.seen[1]!.until(() => c.seen[1]!.events.find(taskEvent("lease_expired", task.id)), "lease_expired event", 30_000)
    const retaken = await post(broker.adminToken, "/api/tasks/claim", { team: "tb-lease", peer: alive!.id, leaseMs: 60_000 })
    expect(retaken.json.task).toMatchObject({ id: task.id, assignee: alive!.id, attempts: 2 })
    const late = await post(broker.adminToken, `/api/tasks/${task.id}/complete`, { peer: dead!.id, result: "too late" })
    expect(late.status).toBe(409)
    expect(late.json._tag).toBe("TaskConflict")
    // Without a sweep in between the refusal says the lease lapsed.
    const second = (await post(broker.adminToken, "/api/tasks", { team: "tb-lease", title: "second" })).json.task
    await post(broker.adminToken, `/api/tasks/${second.id}/claim`, { peer: dead!.id, leaseMs: 1 })
    const refused = await post(broker.adminToken, `/api/tasks/${second.id}/complete`, { peer: dead!.id })
    expect(refused.status).toBe(409)
    expect(["lease", "state"]).toContain(refused.json.reason)
    await c.close()
  }, 120_000)

  it("fail retries until maxAttempts, then the task is failed; release gives the attempt back", async () => {
    const c = await crew("tb-fail", ["tb-f1"])
    const me = c.peers[0]!.id
    const task = (await post(broker.adminToken, "/api/tasks", { team: "tb-fail", title: "hard", maxAttempts: 2 })).json.task
    await post(broker.adminToken, `/api/tasks/${task.id}/claim`, { peer: me })
    const released = await post(broker.adminToken, `/api/tasks/${task.id}/release`, { peer: me })
    expect(released.json.task).toMatchObject({ state: "open", attempts: 0 })
    await post(broker.adminToken, `/api/tasks/${task.id}/claim`, { peer: me })
    const once = await post(broker.adminToken, `/api/tasks/${task.id}/fail`, { peer: me, reason: "tests red" })
    expect(once.json.task).toMatchObject({ state: "open", attempts: 1, error: "tests red" })
    await c.seen[0]!.event((e: any) => e.type === "task" && e.change === "failed" && e.task.state === "open", "retry event")
    await post(broker.adminToken, `/api/tasks/${task.id}/claim`, { peer: me })
    const twice = await post(broker.adminToken, `/api/tasks/${task.id}/fail`, { peer: me, reason: "still red" })
    expect(twice.json.task).toMatchObject({ state: "failed", attempts: 2, error: "still red" })
    await c.close()
  }, 120_000)

  it("tenancy, ownership, membership and creator rules are those of messages", async () => {
    const mine = await broker.token("default", "peer")
    const theirs = await broker.token("default", "peer")
    const elsewhere = await broker.token("other-co", "peer")
    const a = client(broker, mine)
    const me = (await a.peers.register({ name: "tb-own", teams: ["tb-auth"] })).peer
    const outsider = (await a.peers.register({ name: "tb-outsider" })).peer
    const b = client(broker, theirs)
    const stranger = (await b.peers.register({ name: "tb-stranger", teams: ["tb-auth"] })).peer

    const task = (await post(mine, "/api/tasks", { team: "tb-auth", title: "mine", peer: me.id })).json.task
    expect(task.createdBy).toBe(me.id)
    // Another tenant sees nothing.
    expect((await http(broker, elsewhere, "GET", `/api/tasks/${task.id}`)).json._tag).toBe("TaskNotFound")
    expect((await http(broker, elsewhere, "GET", "/api/tasks")).json.tasks).toEqual([])
    expect((await post(elsewhere, "/api/tasks", { team: "tb-auth", title: "x" })).json._tag).toBe("TeamNotFound")
    // Acting as someone else's peer, or as a non-member, is forbidden.
    expect((await post(mine, "/api/tasks/claim", { team: "tb-auth", peer: stranger.id })).status).toBe(403)
    expect((await post(mine, "/api/tasks/claim", { team: "tb-auth", peer: outsider.id })).json).toMatchObject({ _tag: "Forbidden" })
    expect((await post(mine, "/api/tasks", { team: "tb-auth", title: "as them", peer: stranger.id })).status).toBe(403)
    // Only an admin or the creator cancels or reassigns.
    expect((await post(theirs, `/api/tasks/${task.id}/cancel`, {})).status).toBe(403)
    const given = await post(broker.adminToken, `/api/tasks/${task.id}/reassign`, { peer: stranger.id })
    expect(given.json.task).toMatchObject({ state: "claimed", assignee: stranger.id })
    expect((await post(mine, `/api/tasks/${task.id}/reassign`, { peer: outsider.id })).json._tag).toBe("Forbidden")
    const cancelled = await post(mine, `/api/tasks/${task.id}/cancel`, { reason: "not needed" })
    expect(cancelled.json.task).toMatchObject({ state: "cancelled", error: "not needed" })
    // Bad input names the field; unknown dependencies are 404.
    const bad = await post(mine, "/api/tasks/claim", { peer: me.id })
    expect(bad.json).toMatchObject({ _tag: "InvalidRequest", field: "team" })
    expect((await post(mine, "/api/tasks", { team: "tb-auth", title: "dep", dependsOn: ["t_nope"] })).json).toMatchObject({ _tag: "TaskNotFound", task: "t_nope" })
    await Promise.all([a.close(), b.close()])
  }, 120_000)

  it("the Promise client drives the board, and its failures are BrokerErrors with the wire fields", async () => {
    const c = await crew("tb-sdk", ["tb-s1", "tb-s2"])
    const [me, them] = c.peers
    const { task } = await c.api.tasks.create({ team: "tb-sdk", title: "sdk task", labels: ["x"], peer: me!.id })
    expect((await c.api.tasks.list({ team: "tb-sdk", labels: ["x"], limit: 5 })).tasks.map((t) => t.id)).toEqual([task.id])
    const claimed = await c.api.tasks.claimNext({ team: "tb-sdk", peer: me!.id, leaseMs: 30_000 })
    expect(claimed.task?.id).toBe(task.id)
    expect((await c.api.tasks.heartbeat(task.id, { peer: me!.id, note: "on it" })).task.note).toBe("on it")
    const refused = await c.api.tasks.complete(task.id, { peer: them!.id }).catch((e) => e)
    expect(refused).toMatchObject({ _tag: "TaskConflict", status: 409, details: { reason: "holder" } })
    expect((await c.api.tasks.release(task.id, { peer: me!.id })).task.state).toBe("open")
    await c.api.tasks.claim(task.id, { peer: them!.id })
    expect((await c.api.tasks.fail(task.id, { peer: them!.id, reason: "nope" })).task.state).toBe("open")
    expect((await c.api.tasks.reassign(task.id, { peer: me!.id })).task.assignee).toBe(me!.id)
    expect((await c.api.tasks.complete(task.id, { peer: me!.id, result: "ok" })).task.state).toBe("done")
    expect((await c.api.tasks.get(task.id)).task.result).toBe("ok")
    const other = (await c.api.tasks.create({ team: "tb-sdk", title: "to cancel" })).task
    expect((await c.api.tasks.cancel(other.id)).task.state).toBe("cancelled")
    expect(await c.api.tasks.get("bad id!").catch((e) => e._tag)).toBe("InvalidRequest")
    // The channel delivered the events to the SDK's listeners as plain JSON.
    await c.seen[1]!.event(taskEvent("done", task.id), "done event on the SDK channel")
    await c.close()
  }, 120_000)

  it("the OpenAPI document describes the tasks group", async () => {
    const doc = (await http(broker, undefined, "GET", "/openapi.json")).json
    for (const path of ["/api/tasks", "/api/tasks/claim", "/api/tasks/{id}", "/api/tasks/{id}/complete", "/api/tasks/{id}/reassign"]) expect(Object.keys(doc.paths)).toContain(path)
  })
})
