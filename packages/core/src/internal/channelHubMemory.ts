import { Deferred, Effect, HashMap, Option, Queue, Ref, Stream } from "effect"
import type { ChannelHubService, ChannelItem } from "../ChannelHub.js"
import { SlowConsumer } from "../ChannelHub.js"
import type { PeerId } from "../Ids.js"

interface Subscription {
  readonly peer: PeerId
  readonly queue: Queue.Queue<ChannelItem>
  /** Failed with `SlowConsumer` when the buffer overflows; ends the stream at once. */
  readonly cut: Deferred.Deferred<never, SlowConsumer>
}

type Peers = HashMap.HashMap<PeerId, ReadonlyArray<Subscription>>
/** tenant → peer → live subscriptions (by identity). */
type State = HashMap.HashMap<string, Peers>

const peersOf = (state: State, tenant: string): Peers => Option.getOrElse(HashMap.get(state, tenant), () => HashMap.empty())

const subscriptionsOf = (state: State, tenant: string, peer: PeerId): ReadonlyArray<Subscription> =>
  Option.getOrElse(HashMap.get(peersOf(state, tenant), peer), () => [])

const add = (tenant: string, sub: Subscription) => (state: State): State =>
  HashMap.set(state, tenant, HashMap.set(peersOf(state, tenant), sub.peer, [...subscriptionsOf(state, tenant, sub.peer), sub]))

const remove = (tenant: string, sub: Subscription) => (state: State): State => {
  const rest = subscriptionsOf(state, tenant, sub.peer).filter((s) => s !== sub)
  const peers = rest.length === 0 ? HashMap.remove(peersOf(state, tenant), sub.peer) : HashMap.set(peersOf(state, tenant), sub.peer, rest)
  return HashMap.isEmpty(peers) ? HashMap.remove(state, tenant) : HashMap.set(state, tenant, peers)
}

/** The in-memory `ChannelHub`: one bounded queue per subscription. */
export const make = (options: { readonly buffer: number }): Effect.Effect<ChannelHubService> =>
  Effect.gen(function*() {
    const { buffer } = options
    const ref = yield* Ref.make<State>(HashMap.empty())
    // Publishes run one at a time, so every subscriber sees items in the same order.
    const publishing = yield* Effect.makeSemaphore(1)

    /**
     * Offer without waiting: a full buffer cuts that subscription off instead of blocking the
     * publisher. Done synchronously so a subscription closing meanwhile cannot interrupt us.
     */
    const offer = (tenant: string, sub: Subscription, item: ChannelItem) =>
      Effect.suspend(() =>
        // unsafeSize is None once the scope closed the queue: nothing to cut then.
        sub.queue.unsafeOffer(item) || Option.isNone(sub.queue.unsafeSize())
          ? Effect.void
          : Effect.zipRight(
            Ref.update(ref, remove(tenant, sub)),
            Deferred.fail(sub.cut, new SlowConsumer({ peer: sub.peer, buffered: buffer }))
          )
      )

    const subscribe: ChannelHubService["subscribe"] = (tenant, peer) =>
      Effect.gen(function*() {
        const sub: Subscription = {
          peer,
          queue: yield* Queue.dropping<ChannelItem>(buffer),
          cut: yield* Deferred.make<never, SlowConsumer>()
        }
        yield* Effect.acquireRelease(
          Ref.update(ref, add(tenant, sub)),
          () => Effect.zipRight(Ref.update(ref, remove(tenant, sub)), Queue.shutdown(sub.queue))
        )
        return Stream.fromQueue(sub.queue).pipe(Stream.interruptWhenDeferred(sub.cut))
      })

    const publish: ChannelHubService["publish"] = (tenant, deliveries) =>
      Effect.flatMap(Ref.get(ref), (state) =>
        Effect.forEach(deliveries, (delivery) =>
          Effect.forEach(
            subscriptionsOf(state, tenant, delivery.recipient),
            (sub) => offer(tenant, sub, { type: "message", message: delivery.message }),
            { discard: true }
          ), { discard: true })).pipe(publishing.withPermits(1))

    const publishEvent: ChannelHubService["publishEvent"] = (tenant, event, to) =>
      Effect.flatMap(Ref.get(ref), (state) => {
        const peers = to === undefined ? Array.from(HashMap.keys(peersOf(state, tenant))) : Array.from(new Set(to))
        const item: ChannelItem = { type: "event", event }
        return Effect.forEach(
          peers.flatMap((peer) => subscriptionsOf(state, tenant, peer)),
          (sub) => offer(tenant, sub, item),
          { discard: true }
        )
      }).pipe(publishing.withPermits(1))

    const isConnected: ChannelHubService["isConnected"] = (tenant, peer) =>
      Effect.map(Ref.get(ref), (state) => subscriptionsOf(state, tenant, peer).length > 0)

    const connections: ChannelHubService["connections"] = Effect.map(Ref.get(ref), (state) => {
      let count = 0
      for (const peers of HashMap.values(state)) {
        for (const subs of HashMap.values(peers)) count += subs.length
      }
      return count
    })

    return { subscribe, publish, publishEvent, isConnected, connections } satisfies ChannelHubService
  })
