/**
 * Peers: agent sessions (or any process) registered on the bus.
 */
import { Schema } from "effect"
import { Meta, PeerId, PeerName, RunnerId, SpawnId, TeamName, Tenant, Timestamp } from "./Ids.js"

export const PeerStatus = Schema.Literal("online", "offline")
export type PeerStatus = typeof PeerStatus.Type

/** Longest `summary` accepted, in characters. */
export const MAX_SUMMARY = 2_000

const Summary = Schema.String.pipe(Schema.maxLength(MAX_SUMMARY))
const Path = Schema.String.pipe(Schema.maxLength(4_096))
const Pid = Schema.Int.pipe(Schema.positive())

/** A peer as every API and channel shows it. */
export class Peer extends Schema.Class<Peer>("Peer")({
  id: PeerId,
  name: PeerName,
  summary: Schema.String,
  /** What kind of agent this is, e.g. `claude-code`, `codex`, `script`. */
  agent: Schema.String,
  cwd: Schema.String,
  gitRoot: Schema.NullOr(Schema.String),
  host: Schema.String,
  pid: Schema.NullOr(Schema.Int),
  teams: Schema.Array(TeamName),
  status: PeerStatus,
  registeredAt: Timestamp,
  lastSeenAt: Timestamp,
  spawnId: Schema.optional(SpawnId),
  runnerId: Schema.optional(RunnerId),
  meta: Meta
}) {}

/** What a broker keeps about a peer beyond what it shows: its tenant and owning principal. */
export interface PeerRecord {
  readonly tenant: string
  /** Subject of the principal that registered the peer; only it (or an admin) may act for it. */
  readonly owner: string
  readonly peer: Peer
}

/** Body of `POST /api/peers`. */
export class PeerRegistration extends Schema.Class<PeerRegistration>("PeerRegistration")({
  name: Schema.optional(PeerName),
  summary: Schema.optional(Summary),
  agent: Schema.optional(Schema.String.pipe(Schema.maxLength(64))),
  cwd: Schema.optional(Path),
  gitRoot: Schema.optional(Schema.NullOr(Path)),
  host: Schema.optional(Schema.String.pipe(Schema.maxLength(255))),
  pid: Schema.optional(Schema.NullOr(Pid)),
  teams: Schema.optional(Schema.Array(TeamName).pipe(Schema.maxItems(64))),
  spawnId: Schema.optional(SpawnId),
  meta: Schema.optional(Meta)
}) {}

/** Body of `PATCH /api/peers/:id`. */
export class PeerUpdate extends Schema.Class<PeerUpdate>("PeerUpdate")({
  summary: Schema.optional(Summary),
  meta: Schema.optional(Meta)
}) {}

/** Query of `GET /api/peers`; all filters combine with AND. */
export const PeerFilter = Schema.Struct({
  team: Schema.optional(TeamName),
  host: Schema.optional(Schema.String),
  gitRoot: Schema.optional(Schema.String),
  cwd: Schema.optional(Schema.String),
  status: Schema.optional(PeerStatus)
})
export type PeerFilter = typeof PeerFilter.Type

/** `POST /api/peers` answer: `201` for a new peer, `200` when the name resumed an existing one. */
export const PeerResponse = Schema.Struct({ peer: Peer })
export const PeerList = Schema.Struct({ peers: Schema.Array(Peer) })

/** The fields of a peer that a registration sets (everything but identity, teams and presence). */
export interface PeerFields {
  readonly summary: string
  readonly agent: string
  readonly cwd: string
  readonly gitRoot: string | null
  readonly host: string
  readonly pid: number | null
  readonly spawnId?: SpawnId | undefined
  readonly runnerId?: RunnerId | undefined
  readonly meta: Meta
}

/**
 * The fields after a registration: on a resume (`previous` given) what the registration
 * carries replaces, what it omits is kept; a new peer gets the defaults.
 */
export const registeredFields = (reg: PeerRegistration, runnerId: RunnerId | undefined, previous?: PeerFields): PeerFields => ({
  summary: reg.summary ?? previous?.summary ?? "",
  agent: reg.agent ?? previous?.agent ?? "unknown",
  cwd: reg.cwd ?? previous?.cwd ?? "",
  gitRoot: reg.gitRoot === undefined ? (previous?.gitRoot ?? null) : reg.gitRoot,
  host: reg.host ?? previous?.host ?? "",
  pid: reg.pid === undefined ? (previous?.pid ?? null) : reg.pid,
  spawnId: reg.spawnId ?? previous?.spawnId,
  runnerId: runnerId ?? previous?.runnerId,
  meta: reg.meta ?? previous?.meta ?? {}
})

/** True when `peer` passes every filter present in `filter`. */
export const matches = (peer: Peer, filter: PeerFilter): boolean =>
  (filter.team === undefined || peer.teams.includes(filter.team)) &&
  (filter.host === undefined || peer.host === filter.host) &&
  (filter.gitRoot === undefined || peer.gitRoot === filter.gitRoot) &&
  (filter.cwd === undefined || peer.cwd === filter.cwd) &&
  (filter.status === undefined || peer.status === filter.status)

export { Tenant }
