import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Option, Scope, Stream, TestClock } from "effect"
import type { PeerEvent } from "../src/ChannelFrame.js"
import * as ChannelHub from "../src/ChannelHub.js"
import * as Ids from "../src/Ids.js"
import type { PeerId, TeamName, ThreadId } from "../src/Ids.js"
import type { Delivery } from "../src/Message.js"
import { Message } from "../src/Message.js"
import { Peer } from "../src/Peer.js"

const peer = (name: string) => `p_${name.padEnd(20, "0")}` as PeerId
const [alice, bob, carol, sender] = [peer("alice"), peer("bob"), peer("carol"), peer("sender")]

const delivery = (recipient: PeerId, body: string, seq = 1): Delivery => {
  const id = Ids.make.message()
  return {
    recipient,
    message: new Message({ id, seq, from: sender, fromName: "sender", body, threadId: id as unknown as ThreadId, sentAt: Ids.nowIso(0) })
  }
}

const teamEvent = (team: string): PeerEvent => ({ type: "team_changed", team: team as TeamName, change: "created", at: Ids.nowIso(0) })

/** The first `n` items of a subscription (they must already be there or arrive later). */
const take = (stream: Stream.Stream<ChannelHub.ChannelItem, ChannelHub.SlowConsumer>, n: number) =>
  Effect.map(Stream.runCollect(Stream.take(stream, n)), Chunk.toReadonlyArray)

const describeItem = (item: ChannelHub.ChannelItem) => item.type === "message" ? `message:${item.message.body}` : `event:${item.event.type}`

/** Each test gets a fresh hub. */
const run = <A, E, R>(f: (hub: ChannelHub.ChannelHubService) => Effect.Effect<A, E, R>, options?: ChannelHub.MemoryOptions) =>
  Effect.flatMap(ChannelHub.ChannelHub, f).pipe(Effect.provide(ChannelHub.layerMemory(options)))

describe("ChannelHub.layerMemory", () => {
  it.scoped("publish sends each delivery only to its recipient's subscriptions", () =>
    run((hub) =>
      Effect.gen(function*() {
        const streams = yield* Effect.forEach([alice, bob, carol], (p) => hub.subscribe("acme", p))
        // the same message fanned out to a team: one delivery per member
        yield* hub.publish("acme", [delivery(alice, "for alice"), delivery(bob, "for bob"), delivery(carol, "for carol")])
        yield* hub.publishEvent("acme", teamEvent("web"))
        const seen = yield* Effect.forEach(streams, (s) => Effect.map(take(s, 2), (items) => items.map(describeItem)))
        // the event right after each peer's own message proves nobody got another peer's message
        expect(seen).toEqual([
          ["message:for alice", "event:team_changed"],
          ["message:for bob", "event:team_changed"],
          ["message:for carol", "event:team_changed"]
        ])
        // publishing to a peer nobody subscribed for is a no-op
        yield* hub.publish("acme", [delivery(peer("ghost"), "lost")])
      })
    ))

  it.scoped("every subscription of a peer gets its messages, in publish order", () =>
    run((hub) =>
      Effect.gen(function*() {
        const first = yield* hub.subscribe("acme", alice)
        const second = yield* hub.subscribe("acme", alice)
        yield* hub.publish("acme", [delivery(alice, "1", 1)])
        yield* hub.publish("acme", [delivery(alice, "2", 2), delivery(bob, "b", 1), delivery(alice, "3", 3)])
        for (const s of [first, second]) {
          expect((yield* take(s, 3)).map(describeItem)).toEqual(["message:1", "message:2", "message:3"])
        }
      })
    ))

  it.scoped("a live consumer receives items published after it started waiting", () =>
    run((hub) =>
      Effect.gen(function*() {
        const stream = yield* hub.subscribe("acme", alice)
        const reader = yield* Effect.fork(take(stream, 1))
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.poll(reader)).toEqual(Option.none())
        yield* hub.publish("acme", [delivery(alice, "late")])
        expect((yield* Fiber.join(reader)).map(describeItem)).toEqual(["message:late"])
      })
    ))

  it.scoped("events go to the listed peers, or to every subscriber of the tenant, never to other tenants", () =>
    run((hub) =>
      Effect.gen(function*() {
        const a = yield* hub.subscribe("acme", alice)
        const b = yield* hub.subscribe("acme", bob)
        // same peer id in another tenant
        const x = yield* hub.subscribe("globex", alice)

        yield* hub.publishEvent("acme", teamEvent("everyone"))
        yield* hub.publishEvent("acme", teamEvent("only-bob"), [bob, carol])
        yield* hub.publish("acme", [delivery(alice, "acme message")])
        yield* hub.publishEvent("globex", teamEvent("globex"))

        const names = (items: ReadonlyArray<ChannelHub.ChannelItem>) =>
          items.map((i) => (i.type === "event" && i.event.type === "team_changed" ? i.event.team : describeItem(i)))
        expect(names(yield* take(a, 2))).toEqual(["everyone", "message:acme message"])
        expect(names(yield* take(b, 2))).toEqual(["everyone", "only-bob"])
        // globex's first item is its own event: nothing from acme leaked in before it
        expect(names(yield* take(x, 1))).toEqual(["globex"])
      })
    ))

  it.scoped("a subscriber whose buffer overflows fails with SlowConsumer and is removed; others go on", () =>
    run((hub) =>
      Effect.gen(function*() {
        const slow = yield* hub.subscribe("acme", alice)
        const fast = yield* hub.subscribe("acme", bob)
        expect(yield* hub.connections).toBe(2)

        yield* hub.publish("acme", [delivery(alice, "1"), delivery(alice, "2"), delivery(bob, "b1")])
        expect(yield* hub.isConnected("acme", alice)).toBe(true)
        // the third item would overflow a buffer of 2
        yield* hub.publish("acme", [delivery(alice, "3")])
        expect(yield* hub.isConnected("acme", alice)).toBe(false)
        expect(yield* hub.connections).toBe(1)

        const error = yield* Effect.flip(Stream.runDrain(slow))
        expect(error).toBeInstanceOf(ChannelHub.SlowConsumer)
        expect(error).toMatchObject({ _tag: "SlowConsumer", peer: alice, buffered: 2 })

        // bob is unaffected and keeps receiving
        expect((yield* take(fast, 1)).map(describeItem)).toEqual(["message:b1"])
        yield* hub.publish("acme", [delivery(bob, "b2"), delivery(alice, "4")])
        yield* hub.publishEvent("acme", teamEvent("after"))
        expect((yield* take(fast, 2)).map(describeItem)).toEqual(["message:b2", "event:team_changed"])
        expect(yield* hub.isConnected("acme", bob)).toBe(true)

        // alice may subscribe again (the client reconnects and replays from its inbox)
        const again = yield* hub.subscribe("acme", alice)
        yield* hub.publish("acme", [delivery(alice, "5")])
        expect((yield* take(again, 1)).map(describeItem)).toEqual(["message:5"])
      }), { buffer: 2 }))

  it.effect("connections and isConnected follow the subscription scopes", () =>
    run((hub) =>
      Effect.gen(function*() {
        const first = yield* Scope.make()
        const second = yield* Scope.make()
        yield* Scope.extend(hub.subscribe("acme", alice), first)
        yield* Scope.extend(hub.subscribe("acme", alice), second)
        yield* Scope.extend(hub.subscribe("globex", bob), second)
        expect(yield* hub.connections).toBe(3)
        expect(yield* hub.isConnected("acme", alice)).toBe(true)
        expect(yield* hub.isConnected("globex", bob)).toBe(true)
        // connected is per tenant
        expect(yield* hub.isConnected("globex", alice)).toBe(false)
        expect(yield* hub.isConnected("acme", bob)).toBe(false)

        yield* Scope.close(first, Exit.void)
        expect(yield* hub.connections).toBe(2)
        expect(yield* hub.isConnected("acme", alice)).toBe(true)

        yield* Scope.close(second, Exit.void)
        expect(yield* hub.connections).toBe(0)
        expect(yield* hub.isConnected("acme", alice)).toBe(false)
        expect(yield* hub.isConnected("globex", bob)).toBe(false)
        // publishing to closed subscriptions is harmless
        yield* hub.publish("acme", [delivery(alice, "gone")])
        yield* hub.publishEvent("acme", teamEvent("gone"))
      })
    ))

  it.effect("a stream ends when its scope closes", () =>
    run((hub) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const stream = yield* Scope.extend(hub.subscribe("acme", alice), scope)
        const reader = yield* Effect.fork(Stream.runCollect(stream))
        yield* hub.publish("acme", [delivery(alice, "last")])
        yield* TestClock.adjust("1 second")
        yield* Scope.close(scope, Exit.void)
        // the stream completes normally with what it got, so a reader is never left hanging
        const items = yield* Fiber.join(reader)
        expect(Chunk.toReadonlyArray(items).map(describeItem)).toEqual(["message:last"])
        expect(yield* hub.connections).toBe(0)
      })
    ))
  it.effect("attach: a sink gets its peer's items synchronously, in publish order, next to stream subscribers, until its scope closes", () =>
    run((hub) =>
      Effect.gen(function*() {
        const got: Array<string> = []
        const scope = yield* Scope.make()
        yield* Scope.extend(hub.attach("acme", alice, (item) => got.push(describeItem(item))), scope)
        const stream = yield* Scope.extend(hub.subscribe("acme", alice), scope)
        // another tenant's alice and a sink that throws must not disturb anyone
        yield* Scope.extend(hub.attach("globex", alice, (item) => got.push(`globex ${describeItem(item)}`)), scope)
        yield* Scope.extend(hub.attach("acme", bob, () => {
          throw new Error("broken sink")
        }), scope)
        expect(yield* hub.connections).toBe(4)
        expect(yield* hub.isConnected("acme", alice)).toBe(true)

        yield* hub.publish("acme", [delivery(alice, "1", 1), delivery(bob, "b", 1), delivery(alice, "2", 2)])
        // no fiber in between: the sink already has them when publish returns
        expect(got).toEqual(["message:1", "message:2"])
        yield* hub.publishEvent("acme", teamEvent("web"))
        yield* hub.publish("acme", [delivery(alice, "3", 3)])
        expect(got).toEqual(["message:1", "message:2", "event:team_changed", "message:3"])
        expect((yield* take(stream, 4)).map(describeItem)).toEqual(got)

        yield* Scope.close(scope, Exit.void)
        expect(yield* hub.connections).toBe(0)
        yield* hub.publish("acme", [delivery(alice, "gone", 4)])
        expect(got).toHaveLength(4)
      })
    ))
  it.effect("attach with presence false: the tenant's presence reaches only sinks that want it, and a quiet sink still hears about its own peer, its messages and other events", () =>
    run((hub) =>
      Effect.gen(function*() {
        const record = (id: PeerId) =>
          new Peer({ id, name: id as never, summary: "", agent: "test", cwd: "/", gitRoot: null, host: "h", pid: null, teams: [], status: "online", registeredAt: Ids.nowIso(0), lastSeenAt: Ids.nowIso(0), meta: {} })
        const changed = (joined: Array<PeerId>, left: Array<PeerId>): PeerEvent => ({ type: "peers_changed", joined: joined.map(record), left: left.map(record), updated: [], at: Ids.nowIso(0) })
        const watching: Array<string> = []
        const quiet: Array<string> = []
        const scope = yield* Scope.make()
        yield* Scope.extend(hub.attach("acme", alice, (item) => watching.push(describeItem(item))), scope)
        yield* Scope.extend(hub.attach("acme", bob, (item) => quiet.push(describeItem(item)), { presence: false }), scope)
        const stream = yield* Scope.extend(hub.subscribe("acme", carol), scope)

        yield* hub.publishEvent("acme", changed([carol, sender], []))
        yield* hub.publishEvent("acme", { type: "peer_joined", peer: record(sender), at: Ids.nowIso(0) })
        expect(watching).toEqual(["event:peers_changed", "event:peer_joined"])
        expect(quiet).toEqual([])
        // Its own peer named (joined, or left: unregistered), it is told, once per event.
        yield* hub.publishEvent("acme", changed([bob], [bob]))
        yield* hub.publishEvent("acme", { type: "peer_left", peer: record(bob), at: Ids.nowIso(0) })
        yield* hub.publishEvent("acme", teamEvent("web"))
        yield* hub.publish("acme", [delivery(bob, "for bob")])
        expect(quiet).toEqual(["event:peers_changed", "event:peer_left", "event:team_changed", "message:for bob"])
        expect(watching).toEqual(["event:peers_changed", "event:peer_joined", "event:peers_changed", "event:peer_left", "event:team_changed"])
        // A stream subscriber always gets presence.
        expect((yield* take(stream, 5)).map(describeItem)).toEqual(watching)

        yield* Scope.close(scope, Exit.void)
        yield* hub.publishEvent("acme", changed([bob], []))
        expect(quiet).toHaveLength(4)
        expect(watching).toHaveLength(5)
      })
    ))
})
