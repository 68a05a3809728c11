/**
 * Pipelined sends (`ChannelSessionHost.sendStaged`): the session handles a socket's next frame
 * once a send is queued for its commit, writes every answer in frame order whatever order the
 * commits resolve in, and holds at most `MAX_PIPELINED` sends waiting.
 */
import { Deferred, Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { frameQueue } from "../../../test-support/channelBehaviour.js"
import * as ChannelHub from "../src/ChannelHub.js"
import * as ChannelSession from "../src/ChannelSession.js"
import { ServiceUnavailable } from "../src/Errors.js"
import * as Ids from "../src/Ids.js"
import * as Inbox from "../src/Inbox.js"
import { Message } from "../src/Message.js"
import { PeerRegistration } from "../src/Peer.js"
import * as PeerRegistry from "../src/PeerRegistry.js"
import * as TeamDirectory from "../src/TeamDirectory.js"

const TENANT = "acme"

interface Staged {
  readonly body: string
  /** Decide the staged send's commit: its `sent` (with this seq) or an error. */
  readonly commit: (outcome: number | ServiceUnavailable) => void
}

/** A session whose host stages sends and lets the test decide when (and how) each commits. */
const pipelined = async () => {
  const runtime = ManagedRuntime.make(
    Layer.mergeAll(PeerRegistry.layerMemory, Inbox.layerMemory(), ChannelHub.layerMemory()).pipe(Layer.provideMerge(TeamDirectory.layerMemory))
  )
  const { peers, inbox, hub } = await runtime.runPromise(Effect.all({ peers: PeerRegistry.PeerRegistry, inbox: Inbox.Inbox, hub: ChannelHub.ChannelHub }))
  const me = (await runtime.runPromise(peers.register({ tenant: TENANT, owner: "test", registration: new PeerRegistration({ name: "me" as PeerRegistration["name"] & string }) }))).record.peer
  const staged: Array<Staged> = []
  const stagedWaiters: Array<() => void> = []
  /** Uncommitted sends each time one was staged (what the session held waiting for commits). */
  const waitingAtStage: Array<number> = []
  let committed = 0
  const queue = frameQueue()
  let closed = false
  const scope = await runtime.runPromise(Scope.make())
  const session = await runtime.runPromise(
    ChannelSession.make(
      {
        tenant: TENANT,
        peerId: me.id,
        hub,
        inbox,
        connect: peers.touch(TENANT, me.id),
        heartbeat: peers.touch(TENANT, me.id),
        send: () => Effect.die("the unstaged send is not used when the host stages"),
        sendStaged: (fields, accepted) =>
          Effect.gen(function* () {
            const done = yield* Deferred.make<number, ServiceUnavailable>()
            waitingAtStage.push(staged.length - committed)
            staged.push({
              body: fields.body,
              commit: (outcome) => {
                committed++
                Effect.runSync(typeof outcome === "number" ? Deferred.succeed(done, outcome) : Deferred.fail(done, outcome))
              }
            })
            for (const w of stagedWaiters.splice(0)) w()
            return Effect.map(Deferred.await(done), (seq) => {
              const id = Ids.make.message()
              const message = new Message({ id, from: me.id, fromName: me.name, to: me.id, body: fields.body, threadId: id as unknown as Ids.ThreadId, sentAt: Ids.nowIso(), seq })
              accepted({ message, recipients: [me.id] })
            })
          }),
        registered: Effect.succeed(true)
      },
      {
        write: (text) => queue.push(JSON.parse(text)),
        close: (code) => {
          closed = true
          queue.end(new Error(`closed (${code})`))
        },
        closed: () => closed
      }
    ).pipe(Scope.extend(scope))
  )
  void runtime.runPromise(session.start).catch((e) => queue.end(e))
  expect((await queue.next()).type).toBe("hello")
  return {
    staged,
    waitingAtStage,
    next: queue.next,
    send: (frame: unknown) => session.receive(JSON.stringify(frame)),
    sendText: (text: string) => session.receive(text),
    /** Resolves once `n` sends have been staged. */
    stagedCount: (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => (staged.length >= n ? resolve() : stagedWaiters.push(check))
        check()
      }),
    close: async () => {
      closed = true
      await runtime.runPromise(Scope.close(scope, Exit.void))
      await runtime.dispose()
    }
  }
}

describe("ChannelSession with a host that stages sends", () => {
  it("handles the next frames while sends wait for their commit, and answers in frame order", async () => {
    const s = await pipelined()
    try {
      s.send({ type: "send", to: "me", body: "one", ref: "r1" })
      s.sendText("{ not json")
      s.send({ type: "send", to: "me", body: "two", ref: "r2" })
      s.send({ type: "send", to: "me", body: "three", ref: "r3" })
      // All three are staged although none has committed: the sends are pipelined.
      await s.stagedCount(3)
      expect(s.staged.map((x) => x.body)).toEqual(["one", "two", "three"])
      expect(s.waitingAtStage).toEqual([0, 1, 2])
      // The commits resolve out of order; the answers still come in frame order, the bad
      // frame's error between `sent` r1 and r2 although it was known at once.
      s.staged[2]!.commit(3)
      s.staged[1]!.commit(2)
      s.staged[0]!.commit(1)
      const frames = [await s.next(), await s.next(), await s.next(), await s.next()]
      expect(frames.map((f) => `${f.type}:${(f as { ref?: string }).ref ?? ""}`)).toEqual(["sent:r1", "error:", "sent:r2", "sent:r3"])
      expect(frames.map((f) => (f as { seq?: number }).seq ?? (f as { message?: { seq: number } }).message?.seq)).toEqual([1, undefined, 2, 3])
    } finally {
      await s.close()
    }
  })

  it("answers a staged send whose commit fails with an error carrying its ref, in order", async () => {
    const s = await pipelined()
    try {
      s.send({ type: "send", to: "me", body: "one", ref: "r1" })
      s.send({ type: "send", to: "me", body: "two", ref: "r2" })
      await s.stagedCount(2)
      s.staged[1]!.commit(2)
      s.staged[0]!.commit(new ServiceUnavailable({ message: "store unavailable: test" }))
      const first = (await s.next()) as { type: string; ref?: string; error?: { _tag: string } }
      expect([first.type, first.ref, first.error?._tag]).toEqual(["error", "r1", "ServiceUnavailable"])
      const second = (await s.next()) as { type: string; ref?: string }
      expect([second.type, second.ref]).toEqual(["sent", "r2"])
    } finally {
      await s.close()
    }
  })

  it(`holds at most ${ChannelSession.MAX_PIPELINED} sends waiting for their commit`, async () => {
    const s = await pipelined()
    const total = ChannelSession.MAX_PIPELINED + 5
    try {
      for (let i = 0; i < total; i++) s.send({ type: "send", to: "me", body: `m${i}`, ref: `r${i}` })
      await s.stagedCount(ChannelSession.MAX_PIPELINED)
      // Commit one at a time: each commit lets exactly one more frame be handled.
      for (let i = 0; i < total; i++) {
        await s.stagedCount(Math.min(total, ChannelSession.MAX_PIPELINED + i))
        s.staged[i]!.commit(i + 1)
        const frame = (await s.next()) as { type: string; ref?: string }
        expect([frame.type, frame.ref]).toEqual(["sent", `r${i}`])
      }
      expect(s.staged).toHaveLength(total)
      expect(Math.max(...s.waitingAtStage)).toBe(ChannelSession.MAX_PIPELINED - 1)
    } finally {
      await s.close()
    }
  })
})
