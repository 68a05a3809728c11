import { Clock, Effect, Either, HashMap, Option, Ref } from "effect"
import { PeerNameTaken, PeerNotFound, type ServiceUnavailable } from "../Errors.js"
import type { PeerId, RunnerId, SpawnId } from "../Ids.js"
import { make as makeId, nowIso } from "../Ids.js"
import type { Meta } from "../Ids.js"
import type { PeerRecord, PeerStatus } from "../Peer.js"
import { matches, Peer, registeredFields } from "../Peer.js"
import type { PeerRegistryService, RegisterResult } from "../PeerRegistry.js"
import { TeamDirectory } from "../TeamDirectory.js"

/** A peer as stored: everything but `teams`, which is always read from the `TeamDirectory`. */
interface Entry {
  readonly owner: string
  /** Registration order, to keep `list` stable when clocks tie. */
  readonly order: number
  readonly id: PeerId
  readonly name: string
  readonly summary: string
  readonly agent: string
  readonly cwd: string
  readonly gitRoot: string | null
  readonly host: string
  readonly pid: number | null
  readonly status: PeerStatus
  readonly registeredAt: number
  readonly lastSeenAt: number
  readonly spawnId?: SpawnId | undefined
  readonly runnerId?: RunnerId | undefined
  readonly meta: Meta
}

interface TenantPeers {
  readonly byId: HashMap.HashMap<PeerId, Entry>
  /** Names are unique per tenant; this is the index that enforces it. */
  readonly byName: HashMap.HashMap<string, PeerId>
}

interface State {
  readonly tenants: HashMap.HashMap<string, TenantPeers>
  readonly nextOrder: number
}

const emptyTenant: TenantPeers = { byId: HashMap.empty(), byName: HashMap.empty() }

const tenantOf = (state: State, tenant: string): TenantPeers =>
  Option.getOrElse(HashMap.get(state.tenants, tenant), () => emptyTenant)

const putEntry = (state: State, tenant: string, entry: Entry): State => {
  const peers = tenantOf(state, tenant)
  return {
    ...state,
    tenants: HashMap.set(state.tenants, tenant, {
      byId: HashMap.set(peers.byId, entry.id, entry),
      byName: HashMap.set(peers.byName, entry.name, entry.id)
    })
  }
}

const removeEntry = (state: State, tenant: string, entry: Entry): State => {
  const peers = tenantOf(state, tenant)
  return {
    ...state,
    tenants: HashMap.set(state.tenants, tenant, {
      byId: HashMap.remove(peers.byId, entry.id),
      byName: HashMap.remove(peers.byName, entry.name)
    })
  }
}

/** Entries were validated on the way in; rebuilding a Peer on every read skips re-validation (hot path). */
const toPeer = (entry: Entry, teams: Peer["teams"]): Peer =>
  new Peer(
    {
    id: entry.id,
    name: entry.name,
    summary: entry.summary,
    agent: entry.agent,
    cwd: entry.cwd,
    gitRoot: entry.gitRoot,
    host: entry.host,
    pid: entry.pid,
    teams,
    status: entry.status,
    registeredAt: nowIso(entry.registeredAt),
    lastSeenAt: nowIso(entry.lastSeenAt),
    ...(entry.spawnId === undefined ? {} : { spawnId: entry.spawnId }),
    ...(entry.runnerId === undefined ? {} : { runnerId: entry.runnerId }),
    meta: entry.meta
    },
    true
  )

const notFound = (peer: string) => new PeerNotFound({ message: `no peer ${peer}`, peer })

const oldestFirst = (a: Entry, b: Entry) => a.registeredAt - b.registeredAt || a.order - b.order

/** The in-memory `PeerRegistry`; team membership lives in (and is read from) the `TeamDirectory`. */
export const make: Effect.Effect<PeerRegistryService, never, TeamDirectory> = Effect.gen(function*() {
  const teams = yield* TeamDirectory
  const ref = yield* Ref.make<State>({ tenants: HashMap.empty(), nextOrder: 0 })
  // register and unregister span the registry and the directory; serialise them so a peer
  // is never left in a team after it was removed.
  const lifecycle = yield* Effect.makeSemaphore(1)

  const withTeams = (tenant: string, entry: Entry): Effect.Effect<Peer, ServiceUnavailable> =>
    Effect.map(teams.teamsOf(tenant, entry.id), (names) => toPeer(entry, names))

  const toRecord = (tenant: string, entry: Entry): Effect.Effect<PeerRecord, ServiceUnavailable> =>
    Effect.map(withTeams(tenant, entry), (peer) => ({ tenant, owner: entry.owner, peer }))

  const find = (tenant: string, id: PeerId): Effect.Effect<Entry, PeerNotFound> =>
    Effect.flatMap(Ref.get(ref), (state) =>
      Option.match(HashMap.get(tenantOf(state, tenant).byId, id), {
        onNone: () => Effect.fail(notFound(id)),
        onSome: Effect.succeed
      }))

  /** Apply `f` to one stored peer atomically. */
  const modifyEntry = (tenant: string, id: PeerId, f: (entry: Entry, now: number) => Entry) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(ref, (state) =>
        Option.match(HashMap.get(tenantOf(state, tenant).byId, id), {
          onNone: () => [Option.none<Entry>(), state] as const,
          onSome: (entry) => {
            const next = f(entry, now)
            return [Option.some(next), putEntry(state, tenant, next)] as const
          }
        }))).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(notFound(id)),
        onSome: (entry): Effect.Effect<Peer, PeerNotFound | ServiceUnavailable> => withTeams(tenant, entry)
      }))
    )

  const register: PeerRegistryService["register"] = ({ owner, registration: reg, runnerId, tenant }) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const freshId = makeId.peer()
      const name = reg.name ?? `peer-${freshId.slice(-8)}`
      const outcome = yield* Ref.modify(ref, (state): readonly [Either.Either<{ entry: Entry; resumed: boolean }, PeerNameTaken>, State] => {
        const existing = HashMap.get(tenantOf(state, tenant).byName, name).pipe(
          Option.flatMap((id) => HashMap.get(tenantOf(state, tenant).byId, id))
        )
        if (Option.isSome(existing)) {
          const previous = existing.value
          if (previous.owner !== owner) {
            return [Either.left(new PeerNameTaken({ message: `the name ${name} is registered by another principal`, name })), state]
          }
          // Resume: same id and registeredAt; fields the registration gives replace the old ones.
          const entry: Entry = { ...previous, ...registeredFields(reg, runnerId, previous), status: "online", lastSeenAt: now }
          return [Either.right({ entry, resumed: true }), putEntry(state, tenant, entry)]
        }
        const entry: Entry = {
          owner,
          order: state.nextOrder,
          id: freshId,
          name,
          ...registeredFields(reg, runnerId),
          status: "online",
          registeredAt: now,
          lastSeenAt: now
        }
        return [Either.right({ entry, resumed: false }), putEntry({ ...state, nextOrder: state.nextOrder + 1 }, tenant, entry)]
      })
      const { entry, resumed } = yield* outcome
      yield* Effect.forEach(reg.teams ?? [], (team) => teams.join(tenant, team, entry.id), { discard: true })
      const record = yield* toRecord(tenant, entry)
      return { record, resumed } satisfies RegisterResult
    }).pipe(lifecycle.withPermits(1))

  const get: PeerRegistryService["get"] = (tenant, id) => Effect.flatMap(find(tenant, id), (entry) => toRecord(tenant, entry))

  const resolve: PeerRegistryService["resolve"] = (tenant, idOrName) =>
    Effect.flatMap(Ref.get(ref), (state) => {
      const peers = tenantOf(state, tenant)
      return HashMap.get(peers.byId, idOrName as PeerId).pipe(
        Option.orElse(() => Option.flatMap(HashMap.get(peers.byName, idOrName), (id) => HashMap.get(peers.byId, id))),
        Option.match({
          onNone: () => Effect.fail(notFound(idOrName)),
          onSome: (entry): Effect.Effect<PeerRecord, PeerNotFound | ServiceUnavailable> => toRecord(tenant, entry)
        })
      )
    })

  const list: PeerRegistryService["list"] = (tenant, filter) =>
    Effect.gen(function*() {
      const state = yield* Ref.get(ref)
      const entries = Array.from(HashMap.values(tenantOf(state, tenant).byId)).sort(oldestFirst)
      const peers = yield* Effect.forEach(entries, (entry) => withTeams(tenant, entry))
      return filter === undefined ? peers : peers.filter((peer) => matches(peer, filter))
    })

  const update: PeerRegistryService["update"] = (tenant, id, patch) =>
    modifyEntry(tenant, id, (entry) => ({
      ...entry,
      summary: patch.summary ?? entry.summary,
      meta: patch.meta ?? entry.meta
    }))

  const touch: PeerRegistryService["touch"] = (tenant, id) =>
    modifyEntry(tenant, id, (entry, now) => ({ ...entry, status: "online", lastSeenAt: now }))

  const setStatus: PeerRegistryService["setStatus"] = (tenant, id, status) =>
    modifyEntry(tenant, id, (entry) => ({ ...entry, status }))

  const unregister: PeerRegistryService["unregister"] = (tenant, id) =>
    Effect.gen(function*() {
      const removed = yield* Ref.modify(ref, (state) =>
        Option.match(HashMap.get(tenantOf(state, tenant).byId, id), {
          onNone: () => [Option.none<Entry>(), state] as const,
          onSome: (entry) => [Option.some(entry), removeEntry(state, tenant, entry)] as const
        }))
      if (Option.isNone(removed)) return yield* Effect.fail(notFound(id))
      const left = yield* teams.removePeer(tenant, id)
      return toPeer({ ...removed.value, status: "offline" }, left)
    }).pipe(lifecycle.withPermits(1))

  const expire: PeerRegistryService["expire"] = (cutoff) =>
    Effect.gen(function*() {
      const changed = yield* Ref.modify(ref, (state) => {
        const stale: Array<readonly [string, Entry]> = []
        for (const [tenant, peers] of state.tenants) {
          for (const entry of HashMap.values(peers.byId)) {
            if (entry.status === "online" && entry.lastSeenAt < cutoff) stale.push([tenant, { ...entry, status: "offline" }])
          }
        }
        const next = stale.reduce((acc, [tenant, entry]) => putEntry(acc, tenant, entry), state)
        return [stale, next] as const
      })
      return yield* Effect.forEach(changed, ([tenant, entry]) => toRecord(tenant, entry))
    })

  return { register, get, resolve, list, update, touch, setStatus, unregister, expire } satisfies PeerRegistryService
})
