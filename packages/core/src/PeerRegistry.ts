/**
 * PeerRegistry: who is on the bus. Names are unique per tenant; registering a name again
 * (by the same owner) resumes the peer with its id and inbox. Team membership is read from
 * (and registration `teams` written to) the `TeamDirectory`.
 */
import { Context, Effect, Layer } from "effect"
import * as internal from "./internal/peerRegistryMemory.js"
import { PeerNameTaken, PeerNotFound, ServiceUnavailable } from "./Errors.js"
import type { PeerId, RunnerId } from "./Ids.js"
import type { Peer, PeerFilter, PeerRecord, PeerRegistration, PeerStatus, PeerUpdate } from "./Peer.js"
import type { TeamDirectory } from "./TeamDirectory.js"

export interface RegisterInput {
  readonly tenant: string
  /** Subject of the registering principal; a name owned by another subject is `PeerNameTaken`. */
  readonly owner: string
  readonly registration: PeerRegistration
  /** Set when the peer was started by a runner for a spawn. */
  readonly runnerId?: RunnerId | undefined
}

export interface RegisterResult {
  readonly record: PeerRecord
  /** True when an existing peer of that name was resumed (same id, same inbox). */
  readonly resumed: boolean
}

export interface PeerRegistryService {
  /** Register (status `online`, `lastSeenAt` now) or resume by name. A peer without a name gets `peer-<id suffix>`. */
  readonly register: (input: RegisterInput) => Effect.Effect<RegisterResult, PeerNameTaken | ServiceUnavailable>
  readonly get: (tenant: string, id: PeerId) => Effect.Effect<PeerRecord, PeerNotFound | ServiceUnavailable>
  /** Find by id first, then by name. */
  readonly resolve: (tenant: string, idOrName: string) => Effect.Effect<PeerRecord, PeerNotFound | ServiceUnavailable>
  /**
   * Optional: the id a direct message to `idOrName` goes to, as `resolve` would answer it, for
   * a store whose inbox checks that recipient again as it commits the message (`Inbox.append`
   * then refuses a peer that is gone with `PeerNotFound`). Such a store may answer from what it
   * saw before instead of reading (the broker's PostgreSQL store: ids it resolved, saving a
   * round trip per send). Without it, senders use `resolve`.
   */
  readonly resolveId?: ((tenant: string, idOrName: string) => Effect.Effect<PeerId, PeerNotFound | ServiceUnavailable>) | undefined
  /** Peers of the tenant matching every given filter, oldest registration first. */
  readonly list: (tenant: string, filter?: PeerFilter) => Effect.Effect<ReadonlyArray<Peer>, ServiceUnavailable>
  readonly update: (tenant: string, id: PeerId, update: PeerUpdate) => Effect.Effect<Peer, PeerNotFound | ServiceUnavailable>
  /** Heartbeat: `lastSeenAt` = now and status `online`. */
  readonly touch: (tenant: string, id: PeerId) => Effect.Effect<Peer, PeerNotFound | ServiceUnavailable>
  readonly setStatus: (tenant: string, id: PeerId, status: PeerStatus) => Effect.Effect<Peer, PeerNotFound | ServiceUnavailable>
  /** Remove the peer (and its team memberships); returns it as it was, status `offline`. */
  readonly unregister: (tenant: string, id: PeerId) => Effect.Effect<Peer, PeerNotFound | ServiceUnavailable>
  /**
   * GC: mark `offline` every online peer (any tenant) whose `lastSeenAt` is before `cutoff`
   * (epoch millis). Returns the records that changed. Connected peers are kept fresh by `touch`.
   */
  readonly expire: (cutoff: number) => Effect.Effect<ReadonlyArray<PeerRecord>, ServiceUnavailable>
}

export class PeerRegistry extends Context.Tag("@mks/a2a/PeerRegistry")<PeerRegistry, PeerRegistryService>() {}

/** A fresh in-memory registry that keeps team membership in the given `TeamDirectory`. */
export const makeMemory: Effect.Effect<PeerRegistryService, never, TeamDirectory> = internal.make

/** In-memory `PeerRegistry`, for tests and the embedded broker; provide a `TeamDirectory`. */
export const layerMemory: Layer.Layer<PeerRegistry, never, TeamDirectory> = Layer.effect(PeerRegistry, makeMemory)
