/**
 * Teams: named groups of peers in a tenant; a team message fans out to every member but the sender.
 */
import { Schema } from "effect"
import { PeerId, TeamName, Timestamp } from "./Ids.js"

export class Team extends Schema.Class<Team>("Team")({
  name: TeamName,
  description: Schema.String,
  createdAt: Timestamp,
  members: Schema.Array(PeerId)
}) {}

/** Body of `POST /api/teams`. */
export const CreateTeam = Schema.Struct({
  name: TeamName,
  description: Schema.optional(Schema.String.pipe(Schema.maxLength(2_000)))
})
export type CreateTeam = typeof CreateTeam.Type

/** Body of `POST /api/teams/:name/members`. */
export const JoinTeam = Schema.Struct({ peerId: PeerId })

export const TeamResponse = Schema.Struct({ team: Team })
export const TeamList = Schema.Struct({ teams: Schema.Array(Team) })
