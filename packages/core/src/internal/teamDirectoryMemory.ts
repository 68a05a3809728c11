import { Clock, Effect, HashMap, Option, Ref } from "effect"
import { TeamExists, TeamNotFound } from "../Errors.js"
import type { PeerId, TeamName } from "../Ids.js"
import { nowIso } from "../Ids.js"
import { Team } from "../Team.js"
import type { TeamDirectoryService } from "../TeamDirectory.js"

interface TeamState {
  readonly name: TeamName
  readonly description: string
  readonly createdAt: number
  /** Join order. */
  readonly members: ReadonlyArray<PeerId>
}

type Teams = HashMap.HashMap<TeamName, TeamState>
/** tenant → teams; persistent maps so every change is one `Ref.modify`. */
type State = HashMap.HashMap<string, Teams>

const toTeam = (state: TeamState): Team =>
  new Team({
    name: state.name,
    description: state.description,
    createdAt: nowIso(state.createdAt),
    members: state.members
  })

const byName = (a: TeamState, b: TeamState) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

const notFound = (name: TeamName) => new TeamNotFound({ message: `no team named ${name}`, team: name })

const teamsOf = (state: State, tenant: string): Teams => Option.getOrElse(HashMap.get(state, tenant), () => HashMap.empty())

const lookup = (state: State, tenant: string, name: TeamName): Option.Option<TeamState> =>
  HashMap.get(teamsOf(state, tenant), name)

const put = (state: State, tenant: string, team: TeamState): State =>
  HashMap.set(state, tenant, HashMap.set(teamsOf(state, tenant), team.name, team))

/** The in-memory `TeamDirectory`: per-tenant teams, members kept in join order. */
export const make: Effect.Effect<TeamDirectoryService> = Effect.gen(function*() {
  const ref = yield* Ref.make<State>(HashMap.empty())

  const create: TeamDirectoryService["create"] = (tenant, input) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(ref, (state) => {
        if (Option.isSome(lookup(state, tenant, input.name))) {
          return [Option.none<TeamState>(), state] as const
        }
        const team: TeamState = { name: input.name, description: input.description ?? "", createdAt: now, members: [] }
        return [Option.some(team), put(state, tenant, team)] as const
      }).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new TeamExists({ message: `a team named ${input.name} already exists`, team: input.name })),
          onSome: (team) => Effect.succeed(toTeam(team))
        }))
      ))

  const get: TeamDirectoryService["get"] = (tenant, name) =>
    Effect.flatMap(Ref.get(ref), (state) =>
      Option.match(lookup(state, tenant, name), {
        onNone: () => Effect.fail(notFound(name)),
        onSome: (team) => Effect.succeed(toTeam(team))
      }))

  const list: TeamDirectoryService["list"] = (tenant) =>
    Effect.map(Ref.get(ref), (state) => Array.from(HashMap.values(teamsOf(state, tenant))).sort(byName).map(toTeam))

  const join: TeamDirectoryService["join"] = (tenant, name, peer) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(ref, (state) => {
        const current = Option.getOrElse(lookup(state, tenant, name), (): TeamState => ({
          name,
          description: "",
          createdAt: now,
          members: []
        }))
        // Already a member: nothing changes (idempotent join).
        if (current.members.includes(peer)) return [current, state] as const
        const team: TeamState = { ...current, members: [...current.members, peer] }
        return [team, put(state, tenant, team)] as const
      })).pipe(Effect.map(toTeam))

  const leave: TeamDirectoryService["leave"] = (tenant, name, peer) =>
    Ref.modify(ref, (state) =>
      Option.match(lookup(state, tenant, name), {
        onNone: () => [Option.none<TeamState>(), state] as const,
        onSome: (current) => {
          if (!current.members.includes(peer)) return [Option.some(current), state] as const
          const team: TeamState = { ...current, members: current.members.filter((id) => id !== peer) }
          return [Option.some(team), put(state, tenant, team)] as const
        }
      })).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(notFound(name)),
        onSome: (team) => Effect.succeed(toTeam(team))
      }))
    )

  const members: TeamDirectoryService["members"] = (tenant, name) =>
    Effect.map(get(tenant, name), (team) => team.members)

  const teamsOfPeer: TeamDirectoryService["teamsOf"] = (tenant, peer) =>
    Effect.map(Ref.get(ref), (state) =>
      Array.from(HashMap.values(teamsOf(state, tenant)))
        .filter((team) => team.members.includes(peer))
        .sort(byName)
        .map((team) => team.name))

  const removePeer: TeamDirectoryService["removePeer"] = (tenant, peer) =>
    Ref.modify(ref, (state) => {
      const left = Array.from(HashMap.values(teamsOf(state, tenant)))
        .filter((team) => team.members.includes(peer))
        .sort(byName)
      const next = left.reduce(
        (acc, team) => put(acc, tenant, { ...team, members: team.members.filter((id) => id !== peer) }),
        state
      )
      return [left.map((team) => team.name), next] as const
    })

  return { create, get, list, join, leave, members, teamsOf: teamsOfPeer, removePeer } satisfies TeamDirectoryService
})
