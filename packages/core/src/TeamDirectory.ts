/**
 * TeamDirectory: teams of a tenant and their members. It is the source of truth for
 * membership; `Peer.teams` is a view of it.
 */
import { Context, Effect, Layer } from "effect"
import * as internal from "./internal/teamDirectoryMemory.js"
import { TeamExists, TeamNotFound, ServiceUnavailable } from "./Errors.js"
import type { PeerId, TeamName } from "./Ids.js"
import type { Team } from "./Team.js"

export interface TeamDirectoryService {
  /** Create an empty team; `TeamExists` if the name is taken in the tenant. */
  readonly create: (tenant: string, input: { readonly name: TeamName; readonly description?: string | undefined }) => Effect.Effect<Team, TeamExists | ServiceUnavailable>
  readonly get: (tenant: string, name: TeamName) => Effect.Effect<Team, TeamNotFound | ServiceUnavailable>
  /** All teams of the tenant, by name. */
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<Team>, ServiceUnavailable>
  /** Add a member, creating the team if it does not exist yet; idempotent. */
  readonly join: (tenant: string, name: TeamName, peer: PeerId) => Effect.Effect<Team, ServiceUnavailable>
  /** Remove a member (no-op if not a member); `TeamNotFound` if there is no such team. */
  readonly leave: (tenant: string, name: TeamName, peer: PeerId) => Effect.Effect<Team, TeamNotFound | ServiceUnavailable>
  /** Member ids in join order. */
  readonly members: (tenant: string, name: TeamName) => Effect.Effect<ReadonlyArray<PeerId>, TeamNotFound | ServiceUnavailable>
  /** Teams a peer belongs to, by name. */
  readonly teamsOf: (tenant: string, peer: PeerId) => Effect.Effect<ReadonlyArray<TeamName>, ServiceUnavailable>
  /** Remove a peer from every team (on unregister); returns the teams it left. */
  readonly removePeer: (tenant: string, peer: PeerId) => Effect.Effect<ReadonlyArray<TeamName>, ServiceUnavailable>
}

export class TeamDirectory extends Context.Tag("@mks/a2a/TeamDirectory")<TeamDirectory, TeamDirectoryService>() {}

/** A fresh in-memory directory (state lives as long as the service). */
export const makeMemory: Effect.Effect<TeamDirectoryService> = internal.make

/** In-memory `TeamDirectory`, for tests and the embedded broker. */
export const layerMemory: Layer.Layer<TeamDirectory> = Layer.effect(TeamDirectory, makeMemory)
