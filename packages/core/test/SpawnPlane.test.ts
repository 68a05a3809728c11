import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Queue, Scope, Stream, TestClock } from "effect"
import { Ids, RunnerFrame, SpawnPlane } from "../src/index.js"
import type { PeerId, SpawnId } from "../src/Ids.js"
import type { RunnerInfo } from "../src/Runner.js"
import type { RunnerAgent } from "../src/RunnerFrame.js"
import type { SpawnSpec } from "../src/Spawn.js"

const tenant = "acme"
const peerId = "p_requester" as PeerId
const agentPeer = "p_agent" as PeerId

const issue = (id: SpawnId) => Effect.succeed({ brokerUrl: "http://127.0.0.1:4200", token: `tok-${id}` })
const options = { issue }

const info = (id: string, over: Partial<RunnerInfo> = {}): RunnerInfo => ({
  id: Ids.RunnerId.make(id),
  host: `${id}.local`,
  labels: {},
  capacity: 4,
  presets: ["command", "claude"],
  version: "0.1.0",
  ...over
})

const command: SpawnSpec = { command: "node", args: ["agent.js"] }
const pinned = (runner: string): SpawnSpec => ({ ...command, runner: Ids.RunnerId.make(runner) })

type Plane = SpawnPlane.SpawnPlaneService

/** Run a test body against a fresh in-memory plane. */
const withPlane = <A, E>(f: (plane: Plane) => Effect.Effect<A, E, Scope.Scope>, opts?: SpawnPlane.SpawnPlaneOptions) =>
  Effect.flatMap(SpawnPlane.SpawnPlane, f).pipe(Effect.provide(SpawnPlane.layerMemory(opts)))

/** Drain a stream into a queue from a fiber of the test's scope, so frames can be taken one by one. */
const collect = <A>(stream: Stream.Stream<A>) =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<A>()
    yield* Effect.forkScoped(Stream.runForEach(stream, (a) => Queue.offer(queue, a)))
    return queue
  })

/** A runner connection with its own scope: `close` is the socket going away. */
const connect = (plane: Plane, runner: RunnerInfo, agents: ReadonlyArray<RunnerAgent> = [], inTenant = tenant) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const link = yield* plane.attach(inTenant, runner, agents).pipe(Scope.extend(scope))
    const frames = yield* collect(link.orders)
    return { link, frames, close: Scope.close(scope, Exit.void) }
  })

const statusOf = (plane: Plane, id: SpawnId, inTenant = tenant) => Effect.map(plane.get(inTenant, id), (s) => s.status)
const runnerOf = (plane: Plane, id: string, inTenant = tenant) =>
  Effect.map(plane.runners(inTenant), (rs) => rs.find((r) => r.id === id))

describe("SpawnPlane.layerMemory: a spawn's round trip", () => {
  it.scoped("create → order on the runner's link → running → registered → stop frame → exited, with every change published", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const changes = yield* collect(yield* plane.changes)
        const r1 = yield* connect(plane, info("r1"))

        const created = yield* plane.create(tenant, command, { requestedBy: peerId, issue })
        expect(created).toMatchObject({ status: "dispatched", runnerId: "r1", requestedBy: peerId, spec: command })
        expect(created.id).toMatch(/^s_/)
        expect(yield* Queue.take(r1.frames)).toEqual({
          type: "spawn",
          spawn: { id: created.id, spec: command, brokerUrl: "http://127.0.0.1:4200", token: `tok-${created.id}` }
        })
        expect((yield* runnerOf(plane, "r1"))?.active).toBe(1)

        const running = yield* plane.transition(tenant, created.id, "running", { pid: 4242 })
        expect(running).toMatchObject({ status: "running", pid: 4242 })
        const registered = yield* plane.transition(tenant, created.id, "registered", { peerId: agentPeer })
        expect(registered).toMatchObject({ status: "registered", pid: 4242, peerId: agentPeer })

        // Same status: nothing changes and no error; backwards: IllegalTransition.
        expect(yield* plane.transition(tenant, created.id, "registered", { pid: 1 })).toBe(registered)
        expect(yield* Effect.flip(plane.transition(tenant, created.id, "running"))).toMatchObject({
          _tag: "IllegalTransition",
          spawn: created.id,
          from: "registered",
          to: "running"
        })

        const stopping = yield* plane.stop(tenant, created.id, 5_000)
        expect(stopping.status).toBe("stopping")
        expect(yield* Queue.take(r1.frames)).toEqual({ type: "stop", spawnId: created.id, graceMs: 5_000 })

        const exited = yield* plane.transition(tenant, created.id, "exited", { exitCode: 0 })
        expect(exited).toMatchObject({ status: "exited", exitCode: 0, peerId: agentPeer, pid: 4242 })
        expect(yield* Effect.flip(plane.stop(tenant, created.id))).toMatchObject({ _tag: "IllegalTransition", from: "exited" })
        expect((yield* runnerOf(plane, "r1"))?.active).toBe(0)
        expect(yield* plane.get(tenant, created.id)).toBe(exited)

        const seen = []
        for (let i = 0; i < 6; i++) seen.push(yield* Queue.take(changes))
        expect(seen.map((c) => [c.tenant, c.previous, c.spawn.status])).toEqual([
          [tenant, undefined, "pending"],
          [tenant, "pending", "dispatched"],
          [tenant, "dispatched", "running"],
          [tenant, "running", "registered"],
          [tenant, "registered", "stopping"],
          [tenant, "stopping", "exited"]
        ])
        expect(yield* Queue.size(changes)).toBe(0)
      })
    ))

  it.scoped("list is newest first; get of an unknown id is SpawnNotFound", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        yield* connect(plane, info("r1"))
        const a = yield* plane.create(tenant, command, options)
        const b = yield* plane.create(tenant, command, options)
        expect((yield* plane.list(tenant)).map((s) => s.id)).toEqual([b.id, a.id])
        expect(yield* Effect.flip(plane.get(tenant, "s_nope" as SpawnId))).toMatchObject({ _tag: "SpawnNotFound", spawn: "s_nope" })
        expect(yield* Effect.flip(plane.transition(tenant, "s_nope" as SpawnId, "running"))).toMatchObject({ _tag: "SpawnNotFound" })
      })
    ))

  it.scoped("closing the link ends its order stream and marks the runner offline; its spawns are left alone", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const link = yield* plane.attach(tenant, info("r1"), []).pipe(Scope.extend(scope))
        const frames = yield* Queue.unbounded<RunnerFrame.RunnerDownFrame>()
        const reader = yield* Effect.fork(Stream.runForEach(link.orders, (f) => Queue.offer(frames, f)))
        const spawn = yield* plane.create(tenant, command, options)
        expect((yield* Queue.take(frames)).type).toBe("spawn")
        yield* plane.transition(tenant, spawn.id, "running")
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("online")
        yield* Scope.close(scope, Exit.void)
        // The reader finishes: the stream ended rather than hanging.
        yield* Fiber.join(reader)
        expect(yield* runnerOf(plane, "r1")).toMatchObject({ status: "offline", active: 1 })
        expect(yield* statusOf(plane, spawn.id)).toBe("running")
      })
    ))

  it.scoped("an order whose token cannot be issued fails instead of waiting forever", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        yield* connect(plane, info("r1"))
        const exit = yield* Effect.exit(plane.create(tenant, command, { issue: () => Effect.die("token store down") }))
        expect(Exit.isFailure(exit)).toBe(true)
        const [spawn] = yield* plane.list(tenant)
        expect(spawn).toMatchObject({ status: "failed" })
        expect(spawn?.error).toContain("token")
        expect((yield* runnerOf(plane, "r1"))?.active).toBe(0)
      })
    ))
})

describe("SpawnPlane.layerMemory: choosing a runner", () => {
  it.scoped("no runner, or none online: NoRunnerAvailable; an unknown pinned runner: RunnerNotFound", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        expect(yield* Effect.flip(plane.create(tenant, command, options))).toMatchObject({ _tag: "NoRunnerAvailable" })
        expect(yield* Effect.flip(plane.create(tenant, pinned("ghost"), options))).toMatchObject({
          _tag: "RunnerNotFound",
          runner: "ghost"
        })
        const r1 = yield* connect(plane, info("r1"))
        yield* r1.close
        expect(yield* Effect.flip(plane.create(tenant, command, options))).toMatchObject({ _tag: "NoRunnerAvailable" })
        // A refused order leaves nothing behind.
        expect(yield* plane.list(tenant)).toEqual([])
      })
    ))

  it.scoped("capacity is respected and freed by final and lost spawns; the most free runner wins", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        yield* connect(plane, info("r1", { capacity: 2 }))
        yield* connect(plane, info("r2", { capacity: 3 }))
        const first = yield* plane.create(tenant, command, options)
        expect(first.runnerId).toBe("r2")
        const rest = yield* Effect.all(Array.from({ length: 4 }, () => plane.create(tenant, command, options)))
        const placed = [first, ...rest].map((s) => s.runnerId)
        expect(placed.filter((r) => r === "r1")).toHaveLength(2)
        expect(placed.filter((r) => r === "r2")).toHaveLength(3)
        expect(yield* Effect.flip(plane.create(tenant, command, options))).toMatchObject({ _tag: "NoRunnerAvailable" })
        expect((yield* plane.runners(tenant)).map((r) => [r.id, r.active])).toEqual([
          ["r1", 2],
          ["r2", 3]
        ])

        yield* plane.transition(tenant, first.id, "failed", { error: "crashed" })
        expect((yield* plane.create(tenant, command, options)).runnerId).toBe("r2")
        const onR1 = rest.find((s) => s.runnerId === "r1")!
        yield* plane.transition(tenant, onR1.id, "lost")
        expect((yield* plane.create(tenant, command, options)).runnerId).toBe("r1")
        expect(yield* Effect.flip(plane.create(tenant, command, options))).toMatchObject({ _tag: "NoRunnerAvailable" })
      })
    ))

  it.scoped("a pinned runner must have a free slot, counting orders waiting for it", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const r1 = yield* connect(plane, info("r1", { capacity: 1 }))
        yield* r1.close
        const waiting = yield* plane.create(tenant, pinned("r1"), options)
        expect(waiting.status).toBe("pending")
        expect(yield* Effect.flip(plane.create(tenant, pinned("r1"), options))).toMatchObject({ _tag: "NoRunnerAvailable" })
      })
    ))

  it.scoped("labels must all match and the runner must support the preset; pinning ignores labels", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        yield* connect(plane, info("gpu", { labels: { gpu: "yes", os: "linux" }, capacity: 1 }))
        yield* connect(plane, info("cpu", { labels: { os: "linux" }, presets: ["command"], capacity: 8 }))

        expect(yield* Effect.flip(plane.create(tenant, { ...command, labels: { gpu: "no" } }, options))).toMatchObject({
          _tag: "NoRunnerAvailable"
        })
        expect(yield* Effect.flip(plane.create(tenant, { ...command, labels: { region: "eu" } }, options))).toMatchObject({
          _tag: "NoRunnerAvailable"
        })
        // Only "gpu" runs claude sessions (no command: preset claude), though "cpu" has more room.
        const claude = yield* plane.create(tenant, { labels: { os: "linux" }, prompt: "hi" }, options)
        expect(claude.runnerId).toBe("gpu")
        // "gpu" is now full: a labelled command order has nowhere to go.
        expect(yield* Effect.flip(plane.create(tenant, { ...command, labels: { gpu: "yes" } }, options))).toMatchObject({
          _tag: "NoRunnerAvailable"
        })
        expect((yield* plane.create(tenant, { ...command, labels: { os: "linux" } }, options)).runnerId).toBe("cpu")
        expect((yield* plane.create(tenant, { ...pinned("cpu"), labels: { gpu: "yes" } }, options)).runnerId).toBe("cpu")
        expect(yield* Effect.flip(plane.create(tenant, { runner: Ids.RunnerId.make("cpu") }, options))).toMatchObject({
          _tag: "NoRunnerAvailable"
        })
      })
    ))

  it.scoped("tenants see neither each other's runners nor spawns", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const r1 = yield* connect(plane, info("r1"))
        const spawn = yield* plane.create(tenant, command, options)
        yield* Queue.take(r1.frames)

        expect(yield* plane.runners("other")).toEqual([])
        expect(yield* plane.list("other")).toEqual([])
        expect(yield* Effect.flip(plane.create("other", command, options))).toMatchObject({ _tag: "NoRunnerAvailable" })
        expect(yield* Effect.flip(plane.create("other", pinned("r1"), options))).toMatchObject({ _tag: "RunnerNotFound" })
        expect(yield* Effect.flip(plane.get("other", spawn.id))).toMatchObject({ _tag: "SpawnNotFound" })
        expect(yield* Effect.flip(plane.transition("other", spawn.id, "running"))).toMatchObject({ _tag: "SpawnNotFound" })
        expect(yield* Effect.flip(plane.stop("other", spawn.id))).toMatchObject({ _tag: "SpawnNotFound" })
        expect(yield* Effect.flip(plane.heartbeat("other", Ids.RunnerId.make("r1")))).toMatchObject({ _tag: "RunnerNotFound" })

        // Another tenant's runner with the same id is a different runner with its own link.
        const theirs = yield* connect(plane, info("r1"), [{ spawnId: spawn.id, status: "exited" }], "other")
        expect(theirs.link.reconciled).toEqual([])
        const other = yield* plane.create("other", command, options)
        expect((yield* Queue.take(theirs.frames)).type).toBe("spawn")
        expect(yield* statusOf(plane, spawn.id)).toBe("dispatched")
        expect((yield* plane.list("other")).map((s) => s.id)).toEqual([other.id])
        expect(yield* Queue.size(r1.frames)).toBe(0)
      })
    ))
})

describe("SpawnPlane.layerMemory: runners away and back", () => {
  it.scoped("an order pinned to a runner that is away waits pending and is delivered when it attaches", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const first = yield* connect(plane, info("r1"))
        yield* first.close
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("offline")

        const spawn = yield* plane.create(tenant, pinned("r1"), options)
        expect(spawn.status).toBe("pending")
        expect((yield* runnerOf(plane, "r1"))?.active).toBe(1)

        const again = yield* connect(plane, info("r1"))
        expect(again.link.reconciled).toEqual([])
        expect(yield* Queue.take(again.frames)).toMatchObject({ type: "spawn", spawn: { id: spawn.id, token: `tok-${spawn.id}` } })
        expect(yield* statusOf(plane, spawn.id)).toBe("dispatched")
      })
    ))

  it.scoped("stopping a pending order withdraws it: exited, cancelled, never delivered", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const first = yield* connect(plane, info("r1"))
        yield* first.close
        const spawn = yield* plane.create(tenant, pinned("r1"), options)
        const stopped = yield* plane.stop(tenant, spawn.id)
        expect(stopped).toMatchObject({ status: "exited", error: "cancelled" })

        const again = yield* connect(plane, info("r1"))
        const next = yield* plane.create(tenant, command, options)
        // The first frame on the new link is the new order: the withdrawn one was not sent.
        expect(yield* Queue.take(again.frames)).toMatchObject({ type: "spawn", spawn: { id: next.id } })
      })
    ))

  it.scoped("a stop asked while the runner is away is sent when it comes back still running the agent", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const first = yield* connect(plane, info("r1"))
        const spawn = yield* plane.create(tenant, command, options)
        const other = yield* plane.create(tenant, command, options)
        yield* plane.transition(tenant, spawn.id, "running", { pid: 7 })
        yield* plane.transition(tenant, other.id, "running", { pid: 8 })
        yield* first.close
        expect((yield* plane.stop(tenant, spawn.id, 1_000)).status).toBe("stopping")
        // Stopped, then lost when the runner went stale: the stop still stands.
        yield* plane.stop(tenant, other.id)
        yield* plane.transition(tenant, other.id, "lost")

        const again = yield* connect(plane, info("r1"), [
          { spawnId: spawn.id, pid: 7, status: "running" },
          { spawnId: other.id, pid: 8, status: "running" }
        ])
        expect(again.link.reconciled.map((s) => [s.id, s.status])).toEqual([[other.id, "stopping"]])
        expect(yield* Queue.take(again.frames)).toEqual({ type: "stop", spawnId: spawn.id, graceMs: 1_000 })
        expect(yield* Queue.take(again.frames)).toEqual({ type: "stop", spawnId: other.id })
        expect(yield* statusOf(plane, spawn.id)).toBe("stopping")
      })
    ))

  it.scoped("re-attach reconciles: reported spawns come back, missing ones are lost or exited", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const first = yield* connect(plane, info("r1", { capacity: 10 }))
        const make = Effect.map(plane.create(tenant, command, options), (s) => s.id)
        const starting = yield* make
        const running = yield* make
        const registered = yield* make
        const stopping = yield* make
        const vanished = yield* make
        const ended = yield* make
        yield* plane.transition(tenant, starting, "starting")
        yield* plane.transition(tenant, running, "running", { pid: 2 })
        yield* plane.transition(tenant, registered, "registered", { pid: 3, peerId: agentPeer })
        yield* plane.transition(tenant, stopping, "running", { pid: 4 })
        yield* plane.stop(tenant, stopping)
        yield* plane.transition(tenant, vanished, "running", { pid: 5 })
        yield* plane.transition(tenant, ended, "exited", { exitCode: 0 })
        yield* plane.transition(tenant, running, "lost", { error: "runner silent" })

        // The runner reconnects (superseding the old socket) and reports what it runs.
        const again = yield* connect(plane, info("r1", { capacity: 10 }), [
          { spawnId: starting, pid: 1, status: "running" },
          { spawnId: running, pid: 2, status: "running" },
          { spawnId: registered, pid: 3, status: "running" },
          { spawnId: ended, pid: 6, status: "running" }
        ])
        const byId = new Map(again.link.reconciled.map((s) => [s.id, s]))
        expect([...byId.keys()].sort()).toEqual([starting, running, stopping, vanished].sort())
        expect(byId.get(starting)).toMatchObject({ status: "running", pid: 1 })
        // lost → running, and the loss's error is cleared.
        expect(byId.get(running)).toMatchObject({ status: "running", pid: 2 })
        expect(byId.get(running)?.error).toBeUndefined()
        expect(byId.get(stopping)).toMatchObject({ status: "exited" })
        expect(byId.get(vanished)).toMatchObject({ status: "lost", error: "runner restarted without it" })
        // Known to have registered, reported running: kept as it was.
        expect(yield* statusOf(plane, registered)).toBe("registered")
        // An agent that is over for us but still running there is told to stop.
        expect(yield* Queue.take(again.frames)).toEqual({ type: "stop", spawnId: ended })
        // Closing the superseded socket later does not take the new link offline.
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("online")
        yield* first.close
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("online")
      })
    ))
})

describe("SpawnPlane.layerMemory: expiry", () => {
  it.scoped("a silent runner goes stale and its spawns lost; a heartbeat brings it back; re-attach reconciles", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const changes = yield* collect(yield* plane.changes)
        yield* connect(plane, info("r1"))
        const spawn = yield* plane.create(tenant, command, options)
        yield* plane.transition(tenant, spawn.id, "running", { pid: 9 })
        yield* connect(plane, info("r2"))
        const parked = yield* plane.create(tenant, pinned("r2"), options)
        yield* plane.transition(tenant, parked.id, "registered", { peerId: agentPeer })

        yield* TestClock.adjust("100 seconds")
        yield* plane.heartbeat(tenant, Ids.RunnerId.make("r2"))
        yield* TestClock.adjust("20 seconds")
        // Exactly 120 s of silence is not yet stale.
        expect(yield* plane.expire(yield* Clock.currentTimeMillis)).toEqual([])
        yield* TestClock.adjust("1 second")
        const lost = yield* plane.expire(yield* Clock.currentTimeMillis)
        expect(lost.map((s) => [s.id, s.status])).toEqual([[spawn.id, "lost"]])
        expect(lost[0]?.error).toContain("r1")
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("stale")
        expect((yield* runnerOf(plane, "r2"))?.status).toBe("online")
        expect(yield* statusOf(plane, parked.id)).toBe("registered")
        // A lost spawn holds no slot.
        expect((yield* runnerOf(plane, "r1"))?.active).toBe(0)
        // Expiring again changes nothing.
        expect(yield* plane.expire(yield* Clock.currentTimeMillis)).toEqual([])
        // A stale runner gets no new orders, though it has more free slots than r2.
        expect((yield* plane.create(tenant, command, options)).runnerId).toBe("r2")

        yield* plane.heartbeat(tenant, Ids.RunnerId.make("r1"))
        expect((yield* runnerOf(plane, "r1"))?.status).toBe("online")
        expect(yield* statusOf(plane, spawn.id)).toBe("lost")

        const back = yield* connect(plane, info("r1"), [{ spawnId: spawn.id, pid: 9, status: "running" }])
        expect(back.link.reconciled.map((s) => [s.id, s.status])).toEqual([[spawn.id, "running"]])
        expect(yield* statusOf(plane, spawn.id)).toBe("running")

        // 3 changes of spawn, 3 of parked, lost, 2 of the order to r2, then the reconciliation.
        const seen = []
        for (let i = 0; i < 10; i++) seen.push(yield* Queue.take(changes))
        expect(yield* Queue.size(changes)).toBe(0)
        expect(seen.filter((c) => c.spawn.id === spawn.id).map((c) => c.spawn.status)).toEqual([
          "pending",
          "dispatched",
          "running",
          "lost",
          "running"
        ])
      })
    ))

  it.scoped("a runner that disconnected stays offline and its spawns are lost once it is past staleAfter", () =>
    withPlane(
      (plane) =>
        Effect.gen(function* () {
          const r1 = yield* connect(plane, info("r1"))
          const spawn = yield* plane.create(tenant, command, options)
          yield* r1.close
          yield* TestClock.adjust("9 seconds")
          expect(yield* plane.expire(yield* Clock.currentTimeMillis)).toEqual([])
          expect(yield* statusOf(plane, spawn.id)).toBe("dispatched")
          yield* TestClock.adjust("2 seconds")
          expect((yield* plane.expire(yield* Clock.currentTimeMillis)).map((s) => s.status)).toEqual(["lost"])
          expect((yield* runnerOf(plane, "r1"))?.status).toBe("offline")
        }),
      { staleAfter: 10_000 }
    ))

  it.scoped("an order pending longer than pendingTimeout fails with a clear error and is never delivered", () =>
    withPlane((plane) =>
      Effect.gen(function* () {
        const r1 = yield* connect(plane, info("r1"))
        yield* r1.close
        const spawn = yield* plane.create(tenant, pinned("r1"), options)
        yield* TestClock.adjust("60 seconds")
        expect(yield* plane.expire(yield* Clock.currentTimeMillis)).toEqual([])
        yield* TestClock.adjust("1 second")
        const [failed] = yield* plane.expire(yield* Clock.currentTimeMillis)
        expect(failed).toMatchObject({ id: spawn.id, status: "failed" })
        expect(failed?.error).toMatch(/no runner took the order within 60 s.*r1/)

        const again = yield* connect(plane, info("r1"))
        const next = yield* plane.create(tenant, command, options)
        expect(yield* Queue.take(again.frames)).toMatchObject({ type: "spawn", spawn: { id: next.id } })
      })
    ))
})
