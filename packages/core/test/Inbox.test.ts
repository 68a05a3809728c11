import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Fiber, Option, TestClock } from "effect"
import * as Ids from "../src/Ids.js"
import type { PeerId, ThreadId } from "../src/Ids.js"
import * as Inbox from "../src/Inbox.js"
import { Message } from "../src/Message.js"
import type { MessageDraft } from "../src/Message.js"

const peer = (name: string) => `p_${name.padEnd(20, "0")}` as PeerId
const [alice, bob, carol, sender] = [peer("alice"), peer("bob"), peer("carol"), peer("sender")]

const draft = (body: string, extra: Partial<MessageDraft> = {}): MessageDraft => {
  const id = Ids.make.message()
  return { id, from: sender, fromName: "sender", body, threadId: id as unknown as ThreadId, sentAt: Ids.nowIso(0), ...extra }
}

/** Each test gets a fresh inbox store. */
const run = <A, E>(f: (inbox: Inbox.InboxService) => Effect.Effect<A, E>, options?: Inbox.MemoryOptions) =>
  Effect.flatMap(Inbox.Inbox, f).pipe(Effect.provide(Inbox.layerMemory(options)))

const seqs = (page: { readonly messages: ReadonlyArray<Message> }) => page.messages.map((m) => m.seq)
const bodies = (page: { readonly messages: ReadonlyArray<Message> }) => page.messages.map((m) => m.body)

describe("Inbox.layerMemory", () => {
  it.effect("append gives each recipient its own next seq and a Message", () =>
    run((inbox) =>
      Effect.gen(function*() {
        yield* inbox.append("acme", [alice], draft("one"))
        const d = draft("two", { team: "web" as Ids.TeamName, meta: { k: "v" } })
        const deliveries = yield* inbox.append("acme", [alice, bob], d)
        expect(deliveries.map((x) => [x.recipient, x.message.seq])).toEqual([[alice, 2], [bob, 1]])
        for (const { message } of deliveries) {
          expect(message).toBeInstanceOf(Message)
          expect(message).toMatchObject({ id: d.id, from: sender, fromName: "sender", body: "two", team: "web", meta: { k: "v" } })
        }
        expect(bodies(yield* inbox.read("acme", alice))).toEqual(["one", "two"])
        expect(bodies(yield* inbox.read("acme", bob))).toEqual(["two"])
        // a recipient listed twice gets the message once
        const twice = yield* inbox.append("acme", [carol, carol], draft("dup"))
        expect(twice).toHaveLength(1)
        expect(yield* inbox.depth("acme", carol)).toBe(1)
        expect(yield* inbox.append("acme", [], draft("nobody"))).toEqual([])
      })
    ))

  it.effect("concurrent appends: every recipient sees 1..N in one order that all recipients agree on", () =>
    run((inbox) =>
      Effect.gen(function*() {
        const recipients = [alice, bob, carol]
        const fibers = 5
        const perFiber = 40
        // message `f-i` goes to a non-empty subset of the recipients chosen by (f, i)
        const targets = (f: number, i: number) => recipients.filter((_, r) => (((f * perFiber + i) % 7) + 1) & (1 << r))
        const sent = yield* Effect.all(
          Array.from({ length: fibers }, (_, f) =>
            Effect.forEach(Array.from({ length: perFiber }, (_, i) => i), (i) =>
              Effect.zipRight(Effect.yieldNow(), inbox.append("acme", targets(f, i), draft(`${f}-${i}`))))),
          { concurrency: "unbounded" }
        )
        const deliveries = sent.flat(2)
        const orders = new Map<PeerId, ReadonlyArray<string>>()
        for (const r of recipients) {
          const expected = deliveries.filter((d) => d.recipient === r)
          const page = yield* inbox.read("acme", r, { limit: 1_000 })
          // seqs are exactly 1..N, with no gap and no repeat
          expect(seqs(page)).toEqual(Array.from({ length: expected.length }, (_, i) => i + 1))
          // what append answered is what the inbox holds
          for (const d of expected) expect(page.messages[d.message.seq - 1]!.id).toBe(d.message.id)
          // each sender's messages arrive in the order it sent them
          for (let f = 0; f < fibers; f++) {
            const mine = bodies(page).filter((b) => b.startsWith(`${f}-`)).map((b) => Number(b.split("-")[1]))
            expect(mine).toEqual([...mine].sort((x, y) => x - y))
          }
          orders.set(r, bodies(page))
        }
        expect(deliveries).toHaveLength([...orders.values()].reduce((n, o) => n + o.length, 0))
        // appends are atomic across recipients: two inboxes never hold shared messages in different orders
        for (const x of recipients) {
          for (const y of recipients) {
            const inY = new Set(orders.get(y))
            const inX = new Set(orders.get(x))
            expect(orders.get(x)!.filter((b) => inY.has(b))).toEqual(orders.get(y)!.filter((b) => inX.has(b)))
          }
        }
      })
    ))

  it.effect("ack hides acked messages, clamps to the last seq, is idempotent and never moves back", () =>
    run((inbox) =>
      Effect.gen(function*() {
        for (const body of ["1", "2", "3", "4", "5"]) yield* inbox.append("acme", [alice], draft(body))
        expect(yield* inbox.cursor("acme", alice)).toBe(0)
        expect(yield* inbox.ack("acme", alice, 2)).toEqual({ cursor: 2 })
        const page = yield* inbox.read("acme", alice)
        expect(seqs(page)).toEqual([3, 4, 5])
        expect(page.cursor).toBe(2)
        // `after` before the cursor still never returns acked messages
        expect(seqs(yield* inbox.read("acme", alice, { after: 0 }))).toEqual([3, 4, 5])
        expect(seqs(yield* inbox.read("acme", alice, { after: 3 }))).toEqual([4, 5])
        expect(seqs(yield* inbox.read("acme", alice, { after: 3, limit: 1 }))).toEqual([4])
        expect(seqs(yield* inbox.read("acme", alice, { limit: 2 }))).toEqual([3, 4])
        // backwards and repeated acks change nothing
        expect(yield* inbox.ack("acme", alice, 1)).toEqual({ cursor: 2 })
        expect(yield* inbox.ack("acme", alice, 2)).toEqual({ cursor: 2 })
        expect(yield* inbox.depth("acme", alice)).toBe(3)
        // past the end clamps to the last seq, so a later message is not acked in advance
        expect(yield* inbox.ack("acme", alice, 99)).toEqual({ cursor: 5 })
        expect(yield* inbox.depth("acme", alice)).toBe(0)
        expect(seqs(yield* inbox.read("acme", alice))).toEqual([])
        yield* inbox.append("acme", [alice], draft("6"))
        expect(seqs(yield* inbox.read("acme", alice))).toEqual([6])
        expect(yield* inbox.depth("acme", alice)).toBe(1)
        // an inbox nobody wrote to
        expect(yield* inbox.ack("acme", bob, 10)).toEqual({ cursor: 0 })
        expect(yield* inbox.read("acme", bob)).toEqual({ messages: [], cursor: 0 })
      })
    ))

  it.effect("find returns held messages, acked or not, until they are pruned", () =>
    run((inbox) =>
      Effect.gen(function*() {
        const d = draft("x")
        yield* inbox.append("acme", [alice], d)
        yield* inbox.ack("acme", alice, 1)
        const found = yield* inbox.find("acme", alice, d.id)
        expect(Option.map(found, (m) => m.body)).toEqual(Option.some("x"))
        expect(yield* inbox.find("acme", bob, d.id)).toEqual(Option.none())
        yield* TestClock.adjust("1 hour")
        expect(yield* inbox.prune(Date.UTC(1970, 0, 1, 1))).toBe(1)
        expect(yield* inbox.find("acme", alice, d.id)).toEqual(Option.none())
      })
    ))

  it.effect("wait wakes on an append for its peer, not for another", () =>
    run((inbox) =>
      Effect.gen(function*() {
        const waiter = yield* Effect.fork(inbox.wait("acme", alice, { timeout: "30 seconds" }))
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
        // an append elsewhere (other peer, other tenant) does not answer it
        yield* inbox.append("acme", [bob], draft("for bob"))
        yield* inbox.append("globex", [alice], draft("other tenant"))
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
        // the append wakes it at once: no clock time passes before join returns
        yield* inbox.append("acme", [alice], draft("hello"))
        const page = yield* Fiber.join(waiter)
        expect(bodies(page)).toEqual(["hello"])
        expect(page.cursor).toBe(0)
      })
    ))

  it.effect("wait returns an empty page after the timeout", () =>
    run((inbox) =>
      Effect.gen(function*() {
        yield* inbox.append("acme", [alice], draft("old"))
        yield* inbox.ack("acme", alice, 1)
        const waiter = yield* Effect.fork(inbox.wait("acme", alice, { timeout: "5 seconds" }))
        yield* TestClock.adjust("4 seconds")
        expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(waiter)).toEqual({ messages: [], cursor: 1 })
      })
    ))

  it.effect("wait answers at once when messages are there, and wakes every waiter of the peer", () =>
    run((inbox) =>
      Effect.gen(function*() {
        yield* inbox.append("acme", [alice], draft("ready"))
        // under TestClock a real wait would hang; this returns because nothing waits
        expect(bodies(yield* inbox.wait("acme", alice, { timeout: "1 minute" }))).toEqual(["ready"])
        // `after` past what is there makes it wait for newer ones
        const later = yield* Effect.fork(inbox.wait("acme", alice, { after: 1, timeout: "1 minute" }))
        const other = yield* Effect.fork(inbox.wait("acme", alice, { after: 1, timeout: "1 minute" }))
        yield* TestClock.adjust("1 second")
        yield* inbox.append("acme", [alice], draft("next"))
        expect(bodies(yield* Fiber.join(later))).toEqual(["next"])
        expect(bodies(yield* Fiber.join(other))).toEqual(["next"])
      })
    ))

  it.effect("drop forgets the inbox and releases its waiters", () =>
    run((inbox) =>
      Effect.gen(function*() {
        yield* inbox.append("acme", [alice], draft("1"))
        yield* inbox.ack("acme", alice, 1)
        const waiter = yield* Effect.fork(inbox.wait("acme", alice, { timeout: "1 minute" }))
        yield* TestClock.adjust("1 second")
        yield* inbox.drop("acme", alice)
        expect(yield* Fiber.join(waiter)).toEqual({ messages: [], cursor: 0 })
        expect(yield* inbox.depth("acme", alice)).toBe(0)
        expect(yield* inbox.cursor("acme", alice)).toBe(0)
      })
    ))

  it.effect("a full inbox fails the whole append with InboxFull and appends nothing anywhere", () =>
    run((inbox) =>
      Effect.gen(function*() {
        for (const body of ["1", "2", "3"]) yield* inbox.append("acme", [bob], draft(body))
        const error = yield* Effect.flip(inbox.append("acme", [alice, bob, carol], draft("team")).pipe(Effect.catchTag("ServiceUnavailable", Effect.die)))
        expect(error._tag).toBe("InboxFull")
        expect(error.peer).toBe(bob)
        expect(error._tag === "InboxFull" && error.capacity).toBe(3)
        for (const r of [alice, carol]) {
          expect(yield* inbox.depth("acme", r)).toBe(0)
          expect((yield* inbox.read("acme", r)).messages).toEqual([])
        }
        expect(seqs(yield* inbox.read("acme", bob))).toEqual([1, 2, 3])
        // the failed append burned no seq: alice's first message is still seq 1
        expect((yield* inbox.append("acme", [alice], draft("a")))[0]!.message.seq).toBe(1)
        // capacity counts unacked messages only: one ack makes room for exactly one
        yield* inbox.ack("acme", bob, 1)
        const ok = yield* inbox.append("acme", [alice, bob], draft("after ack"))
        expect(ok.map((d) => d.message.seq)).toEqual([2, 4])
        expect((yield* Effect.flip(inbox.append("acme", [bob], draft("again"))))._tag).toBe("InboxFull")
        // other tenants have their own bound
        expect(yield* inbox.append("globex", [bob], draft("elsewhere"))).toHaveLength(1)
      }), { capacity: 3 }))

  it.effect("prune deletes old acked messages, keeps unacked ones, and seqs are never reused", () =>
    run((inbox) =>
      Effect.gen(function*() {
        for (const body of ["1", "2", "3"]) yield* inbox.append("acme", [alice], draft(body))
        yield* inbox.ack("acme", alice, 2)
        yield* TestClock.adjust("10 seconds")
        yield* inbox.append("acme", [alice], draft("4"))
        // 1 and 2 are acked and older than the cutoff; 3 and 4 are unacked
        expect(yield* inbox.prune(20_000)).toBe(2)
        expect(seqs(yield* inbox.read("acme", alice))).toEqual([3, 4])
        expect(yield* inbox.depth("acme", alice)).toBe(2)
        yield* inbox.ack("acme", alice, 4)
        // only 3 was appended before 5 s; 4 (appended at 10 s) stays for now
        expect(yield* inbox.prune(5_000)).toBe(1)
        expect(yield* inbox.prune(5_000)).toBe(0)
        expect(yield* inbox.prune(20_000)).toBe(1)
        const [next] = yield* inbox.append("acme", [alice], draft("5"))
        expect(next!.message.seq).toBe(5)
        expect(yield* inbox.cursor("acme", alice)).toBe(4)
        expect(seqs(yield* inbox.read("acme", alice))).toEqual([5])
      })
    ))

  it.effect("inboxes of the same peer id in two tenants are independent", () =>
    run((inbox) =>
      Effect.gen(function*() {
        yield* inbox.append("acme", [alice], draft("acme-1"))
        yield* inbox.append("acme", [alice], draft("acme-2"))
        const [g] = yield* inbox.append("globex", [alice], draft("globex-1"))
        expect(g!.message.seq).toBe(1)
        expect(bodies(yield* inbox.read("globex", alice))).toEqual(["globex-1"])
        yield* inbox.ack("globex", alice, 1)
        expect(yield* inbox.cursor("acme", alice)).toBe(0)
        expect(bodies(yield* inbox.read("acme", alice))).toEqual(["acme-1", "acme-2"])
        expect(yield* inbox.find("globex", alice, (yield* inbox.read("acme", alice)).messages[0]!.id)).toEqual(Option.none())
        yield* inbox.drop("globex", alice)
        expect(yield* inbox.depth("acme", alice)).toBe(2)
      })
    ))

  // A model of the contract: per peer a seq counter, a cursor and the held messages.
  const Op = fc.oneof(
    fc.record({ type: fc.constant("append" as const), to: fc.subarray([0, 1, 2]) }),
    fc.record({ type: fc.constant("ack" as const), peer: fc.nat(2), upTo: fc.integer({ min: -1, max: 10 }) }),
    fc.record({ type: fc.constant("read" as const), peer: fc.nat(2), after: fc.option(fc.nat(10), { nil: undefined }), limit: fc.integer({ min: 1, max: 5 }) }),
    fc.record({ type: fc.constant("prune" as const) })
  )

  it.effect.prop("any sequence of append, ack, read and prune matches the model", [fc.array(Op, { minLength: 20, maxLength: 60 })], ([ops]) =>
    run((inbox) =>
      Effect.gen(function*() {
        const capacity = 4
        const peers = [alice, bob, carol]
        const model = peers.map(() => ({ lastSeq: 0, cursor: 0, held: [] as Array<{ seq: number; body: string }> }))
        for (const [n, op] of ops.entries()) {
          switch (op.type) {
            case "append": {
              const result = yield* Effect.either(inbox.append("acme", op.to.map((i) => peers[i]!), draft(`m${n}`)).pipe(Effect.catchTag("ServiceUnavailable", Effect.die)))
              const full = op.to.find((i) => model[i]!.lastSeq - model[i]!.cursor >= capacity)
              if (full !== undefined) {
                expect(Either.isLeft(result) && result.left.peer).toBe(peers[full])
              } else {
                for (const i of op.to) model[i]!.held.push({ seq: ++model[i]!.lastSeq, body: `m${n}` })
                expect(Either.getOrThrow(result).map((d) => d.message.seq)).toEqual(op.to.map((i) => model[i]!.lastSeq))
              }
              break
            }
            case "ack": {
              const m = model[op.peer]!
              m.cursor = Math.max(m.cursor, Math.min(op.upTo, m.lastSeq))
              expect(yield* inbox.ack("acme", peers[op.peer]!, op.upTo)).toEqual({ cursor: m.cursor })
              break
            }
            case "read": {
              const m = model[op.peer]!
              const after = Math.max(op.after ?? m.cursor, m.cursor)
              const expected = m.held.filter((h) => h.seq > after).slice(0, op.limit)
              const page = yield* inbox.read("acme", peers[op.peer]!, { after: op.after, limit: op.limit })
              expect(page.messages.map((x) => ({ seq: x.seq, body: x.body }))).toEqual(expected)
              expect(page.cursor).toBe(m.cursor)
              break
            }
            case "prune": {
              // every append happened at TestClock time 0, so a cutoff of 1 prunes all acked messages
              const acked = model.reduce((k, m) => k + m.held.filter((h) => h.seq <= m.cursor).length, 0)
              for (const m of model) m.held = m.held.filter((h) => h.seq > m.cursor)
              expect(yield* inbox.prune(1)).toBe(acked)
              break
            }
          }
          for (const [i, m] of model.entries()) expect(yield* inbox.depth("acme", peers[i]!)).toBe(m.lastSeq - m.cursor)
        }
      }), { capacity: 4 }), { fastCheck: { numRuns: 100 } })
})
