import { Deferred, Effect, Option, Queue, Stream } from "effect"
import type { PeerEvent } from "../ChannelFrame.js"
import type { ChannelHubService, ChannelItem, ChannelSink } from "../ChannelHub.js"
import * as ScopedSync from "../ScopedSync.js"
import { SlowConsumer } from "./slowConsumer.js"
import type { PeerId } from "../Ids.js"

/** A subscription: a bounded queue read as a Stream, or a sink called at publish time. */
type Subscription =
  | {
    readonly kind: "queue"
    readonly peer: PeerId
    readonly queue: Queue.Queue<ChannelItem>
    /** Failed with `SlowConsumer` when the buffer overflows; ends the stream at once. */
    readonly cut: Deferred.Deferred<never, SlowConsumer>
  }
  | { readonly kind: "sink"; readonly peer: PeerId; readonly sink: ChannelSink; readonly presence: boolean }

/** tenant → peer → live subscriptions (by identity). Mutated only synchronously. */
type State = Map<string, Map<PeerId, Array<Subscription>>>

/** Whether a subscription gets the tenant's presence events (queues always do). */
const wantsPresence = (sub: Subscription) => sub.kind === "queue" || sub.presence

/** The peers a presence event names, or `undefined` for an event that is not about presence. */
const presenceOf = (event: PeerEvent): ReadonlyArray<{ readonly id: PeerId }> | undefined => {
  switch (event.type) {
    case "peers_changed":
      return [...event.joined, ...event.left, ...event.updated]
    case "peer_joined":
    case "peer_left":
    case "peer_updated":
      return [event.peer]
    default:
      return undefined
  }
}

/**
 * The in-memory `ChannelHub`. Publishing is synchronous (one `Effect.sync`): it can neither
 * interleave with another publish nor be interrupted halfway, so every subscriber sees items in
 * the same order. Queue subscriptions are offered to without waiting; sinks are called inline.
 */
export const make = (options: { readonly buffer: number }): Effect.Effect<ChannelHubService> =>
  Effect.sync(() => {
    const { buffer } = options
    const state: State = new Map()
    /**
     * tenant → the subscriptions that want its presence events, in subscription order. A
     * presence event goes to these and to the named peers' own subscriptions only, so a wave of
     * N reconnects costs O(watchers) per flush, not O(N).
     */
    const watchers = new Map<string, Set<Subscription>>()

    const add = (tenant: string, sub: Subscription) => {
      let peers = state.get(tenant)
      if (peers === undefined) state.set(tenant, (peers = new Map()))
      const subs = peers.get(sub.peer)
      if (subs === undefined) peers.set(sub.peer, [sub])
      else subs.push(sub)
      if (wantsPresence(sub)) {
        let set = watchers.get(tenant)
        if (set === undefined) watchers.set(tenant, (set = new Set()))
        set.add(sub)
      }
    }

    const remove = (tenant: string, sub: Subscription) => {
      const peers = state.get(tenant)
      const subs = peers?.get(sub.peer)
      if (peers === undefined || subs === undefined) return
      const i = subs.indexOf(sub)
      if (i >= 0) subs.splice(i, 1)
      if (subs.length === 0) peers.delete(sub.peer)
      if (peers.size === 0) state.delete(tenant)
      const set = watchers.get(tenant)
      if (set !== undefined && set.delete(sub) && set.size === 0) watchers.delete(tenant)
    }

    /** Offer without waiting: a full buffer cuts that subscription off instead of blocking the publisher. */
    const offer = (tenant: string, sub: Subscription, item: ChannelItem) => {
      if (sub.kind === "sink") {
        try {
          sub.sink(item)
        } catch {
          // A sink must not throw; if one does, the publisher and the other subscribers go on.
        }
        return
      }
      // unsafeSize is None once the scope closed the queue: nothing to cut then.
      if (sub.queue.unsafeOffer(item) || Option.isNone(sub.queue.unsafeSize())) return
      remove(tenant, sub)
      Deferred.unsafeDone(sub.cut, Effect.fail(new SlowConsumer({ peer: sub.peer, buffered: buffer })))
    }

    const live = (tenant: string, sub: Subscription) =>
      ScopedSync.resource(
        () => add(tenant, sub),
        () => remove(tenant, sub)
      )

    const subscribe: ChannelHubService["subscribe"] = (tenant, peer) =>
      Effect.gen(function*() {
        const queue = yield* Queue.dropping<ChannelItem>(buffer)
        const sub: Subscription = { kind: "queue", peer, queue, cut: yield* Deferred.make<never, SlowConsumer>() }
        yield* live(tenant, sub)
        yield* Effect.addFinalizer(() => Queue.shutdown(queue))
        return Stream.fromQueue(queue).pipe(Stream.interruptWhenDeferred(sub.cut))
      })

    const attach: ChannelHubService["attach"] = (tenant, peer, sink, options) =>
      live(tenant, { kind: "sink", peer, sink, presence: options?.presence ?? true })

    const publish: ChannelHubService["publish"] = (tenant, deliveries) =>
      Effect.sync(() => {
        const peers = state.get(tenant)
        if (peers === undefined) return
        for (const delivery of deliveries) {
          const subs = peers.get(delivery.recipient)
          if (subs === undefined) continue
          const item: ChannelItem = { type: "message", message: delivery.message }
          // A copy: a cut subscription removes itself from the array while we go through it.
          for (const sub of subs.length === 1 ? [subs[0]!] : subs.slice()) offer(tenant, sub, item)
        }
      })

    const publishEvent: ChannelHubService["publishEvent"] = (tenant, event, to) =>
      Effect.sync(() => {
        const peers = state.get(tenant)
        if (peers === undefined) return
        const item: ChannelItem = { type: "event", event }
        const named = to === undefined ? presenceOf(event) : undefined
        if (named !== undefined) {
          // The watchers, then the named peers' subscriptions that do not watch (each once).
          const subs = Array.from(watchers.get(tenant) ?? [])
          const seen = new Set<PeerId>()
          for (const { id } of named) {
            if (seen.has(id)) continue
            seen.add(id)
            for (const sub of peers.get(id) ?? []) if (!wantsPresence(sub)) subs.push(sub)
          }
          for (const sub of subs) offer(tenant, sub, item)
          return
        }
        const targets = to === undefined ? Array.from(peers.keys()) : Array.from(new Set(to))
        const subs = targets.flatMap((peer) => peers.get(peer) ?? [])
        for (const sub of subs) offer(tenant, sub, item)
      })

    const isConnected: ChannelHubService["isConnected"] = (tenant, peer) =>
      Effect.sync(() => (state.get(tenant)?.get(peer)?.length ?? 0) > 0)

    const connections: ChannelHubService["connections"] = Effect.sync(() => {
      let count = 0
      for (const peers of state.values()) {
        for (const subs of peers.values()) count += subs.length
      }
      return count
    })

    return { subscribe, attach, publish, publishEvent, isConnected, connections } satisfies ChannelHubService
  })
