/**
 * A spawn's own token is bound to its spawn: it registers exactly one peer, named as the spawn
 * (`spec.name`, else the spawn id, the name the runner gives the agent). Another name is 403, a
 * spawn that is over is 403, and registering again resumes the same peer (the name is unique in
 * the tenant, so there is never a second one). When the spawn ends, its peer is unregistered so
 * the name is free; its inbox stays until the message retention prunes it.
 */
import { Errors, Peer, PeerRegistry, Principal, Spawn } from "@mks/a2a"
import { Effect } from "effect"

const forbidden = (message: string) => new Errors.Forbidden({ message })

/** The peer name a spawn's agent registers with. */
export const nameOf = (spawn: Spawn.Spawn): string => spawn.spec.name ?? spawn.id

/** The registration a spawn token may make (its name filled in), or 403. */
export const bind = (
  principal: Principal.Principal,
  registration: Peer.PeerRegistration,
  spawn: Spawn.Spawn | undefined,
  peers: PeerRegistry.PeerRegistryService
): Effect.Effect<Peer.PeerRegistration, Errors.Forbidden> =>
  Effect.gen(function* () {
    if (spawn === undefined || Spawn.isFinal(spawn.status)) {
      return yield* Effect.fail(forbidden(`spawn ${principal.spawnId} is over (or unknown): its token registers nothing`))
    }
    const name = nameOf(spawn)
    if (registration.name !== undefined && registration.name !== name) {
      return yield* Effect.fail(forbidden(`this spawn's token registers only the peer "${name}", not "${registration.name}"`))
    }
    if (spawn.peerId !== undefined) {
      // Already registered: only that peer again (a resume after a reconnect or a broker restart).
      const current = yield* peers.get(principal.tenant, spawn.peerId).pipe(Effect.option)
      if (current._tag === "Some" && current.value.peer.name !== name) {
        return yield* Effect.fail(forbidden(`spawn ${spawn.id} already has its peer`))
      }
    }
    return new Peer.PeerRegistration({ ...registration, name: name as Peer.PeerRegistration["name"] & string, spawnId: spawn.id })
  })

/** Unregister the peer of a spawn that ended (if it still exists and is that spawn's); returns it. */
export const release = (tenant: string, spawn: Spawn.Spawn, peers: PeerRegistry.PeerRegistryService): Effect.Effect<Peer.Peer | undefined> =>
  Effect.gen(function* () {
    // By id when the spawn recorded it, else by its name (it may have registered while the spawn was already stopping).
    const record = yield* (spawn.peerId !== undefined ? peers.get(tenant, spawn.peerId) : peers.resolve(tenant, nameOf(spawn))).pipe(Effect.option)
    if (record._tag === "None" || record.value.peer.spawnId !== spawn.id) return undefined
    return yield* peers.unregister(tenant, record.value.peer.id).pipe(Effect.option, Effect.map((o) => (o._tag === "Some" ? o.value : undefined)))
  })
