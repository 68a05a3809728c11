/**
 * Presence: the tenant's presence changes (a peer joined, left, was updated) are coalesced and
 * published as one `peers_changed` event `presenceInterval` after the first change of a wave,
 * instead of one event per change. Each channel socket then writes it in the form it asked for
 * (`?presence=`): the coalesced frame, one legacy frame per peer, or nothing.
 *
 * Why: when N peers reconnect at once (a broker restart, a network blip), one event per change
 * to every socket is N² frames (and N² socket writes on the broker's one thread). Coalesced, a
 * wave costs one publish per interval, each peer listed once per watcher: O(N) per watcher.
 */
import { ChannelFrame, ChannelHub, Ids, type Peer } from "@mks/a2a"
import { Clock, Effect, type Scope } from "effect"

export type Change = "joined" | "left" | "updated"

export interface Presence {
  /** Record a change; it is published with the next flush. */
  readonly changed: (tenant: string, change: Change, peer: Peer.Peer) => Effect.Effect<void>
  /** Publish what is pending now (the flush fiber calls it every interval). */
  readonly flush: Effect.Effect<void>
}

/**
 * A peer's pending change: the latest wins, except that an update after a join stays a join
 * (with the newer record), so a watcher never misses that the peer came online.
 */
const merge = (previous: Change | undefined, next: Change): Change => (previous === "joined" && next === "updated" ? "joined" : next)

/** The coalescer, with its flush fiber running for the scope's lifetime (`intervalMs` ≥ 1). */
export const make = (hub: ChannelHub.ChannelHubService, intervalMs: number): Effect.Effect<Presence, never, Scope.Scope> =>
  Effect.gen(function* () {
    /** tenant → peer → its latest pending change (insertion order is the order of first change). */
    let pending = new Map<string, Map<Ids.PeerId, { change: Change; peer: Peer.Peer }>>()

    const scope = yield* Effect.scope
    /** Whether a flush is scheduled: the first change of a wave schedules one, `intervalMs` later. */
    let armed = false

    const changed = (tenant: string, change: Change, peer: Peer.Peer) =>
      Effect.suspend(() => {
        let peers = pending.get(tenant)
        if (peers === undefined) pending.set(tenant, (peers = new Map()))
        peers.set(peer.id, { change: merge(peers.get(peer.id)?.change, change), peer })
        if (armed) return Effect.void
        armed = true
        return Effect.asVoid(flushLater)
      })

    const flush = Effect.gen(function* () {
      if (pending.size === 0) return
      const batch = pending
      pending = new Map()
      const at = Ids.nowIso(yield* Clock.currentTimeMillis)
      for (const [tenant, peers] of batch) {
        const joined: Array<Peer.Peer> = []
        const left: Array<Peer.Peer> = []
        const updated: Array<Peer.Peer> = []
        for (const { change, peer } of peers.values()) (change === "joined" ? joined : change === "left" ? left : updated).push(peer)
        const event: typeof ChannelFrame.PeersChanged.Type = { type: "peers_changed", joined, left, updated, at }
        yield* hub.publishEvent(tenant, event)
      }
    })

    // A timer per wave of changes, not a clock ticking every interval: an idle broker (no
    // presence changes) does not wake up at all. The ticking flush fiber allocated ~0.6 MB/s
    // while idle (an allocation profile of an idle broker). (That allocation was also what set
    // V8's memory reducer going after start-up; without it the bin holds its young generation
    // small during start-up instead: StartupMemory in @mks/a2a/internal.)
    const flushLater = Effect.suspend(() => {
      armed = false
      return flush
    }).pipe(Effect.delay(Math.max(1, intervalMs)), Effect.forkIn(scope))
    // What is pending when the broker stops still goes out (sockets close after this).
    yield* Effect.addFinalizer(() => flush)
    return { changed, flush }
  })

// Each socket writes a `peers_changed` in the form it asked for with core's
// `ChannelSession.makeEventEncoder` (one encoding per event and mode, shared by every socket).
