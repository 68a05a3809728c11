/**
 * Bus: the broker's rules on top of the core protocol services, shared by the HTTP API and the
 * WebSocket channels. Every operation takes the caller's Principal: lookups are scoped to its
 * tenant (other tenants' resources are 404), acting for a peer requires owning it (403), and
 * the sender of a message is always the authenticated peer.
 */
import {
  ChannelFrame,
  ChannelHub,
  Errors,
  Ids,
  Inbox,
  Message,
  Peer,
  PeerRegistry,
  Principal,
  Spawn,
  SpawnPlane,
  Team,
  TeamDirectory
} from "@mks/a2a"
import { Clock, Context, Effect, Layer, Option, Schedule, Stream } from "effect"
import { randomFillSync } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import { Metrics } from "./Metrics.js"
import { StoreGauges } from "./Store.js"
import { TokenStore } from "./TokenStore.js"

type P = Principal.Principal

export type SendFields = Omit<Message.SendMessage, "from">

/** What a send answers: the message (with the first recipient's seq) and who it was appended for. */
export interface SendResult {
  readonly message: Message.Message
  readonly recipients: ReadonlyArray<Ids.PeerId>
}

const forbidden = (what: string) => new Errors.Forbidden({ message: what })

const isoNow = Clock.currentTimeMillis.pipe(Effect.map(Ids.nowIso))

const ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
const randomPool = Buffer.alloc(4096)
let randomAt = randomPool.length

/**
 * A message id: `m_`, the time in milliseconds (10 characters of a 32-letter alphabet, so ids
 * sort by creation time) and 16 random characters (80 bits, from a pool of random bytes: one
 * `getrandom` per ~250 messages). Time-ordered ids keep the inbox's message-id index growing at
 * its end instead of at random places, which halves the cost of writing a message to SQLite.
 */
export const newMessageId = (now: number = Date.now()): Ids.MessageId => {
  if (randomAt + 16 > randomPool.length) {
    randomFillSync(randomPool)
    randomAt = 0
  }
  let time = ""
  for (let i = 0, t = now; i < 10; i++, t = Math.floor(t / 32)) time = ID_ALPHABET[t % 32] + time
  let id = "m_" + time
  for (let i = 0; i < 16; i++) id += ID_ALPHABET[randomPool[randomAt++]! & 31]
  return id as Ids.MessageId
}

export const make = Effect.gen(function* () {
  const config = yield* BrokerConfig
  const peers = yield* PeerRegistry.PeerRegistry
  const inbox = yield* Inbox.Inbox
  const hub = yield* ChannelHub.ChannelHub
  const teams = yield* TeamDirectory.TeamDirectory
  const spawns = yield* SpawnPlane.SpawnPlane
  const tokens = yield* TokenStore
  const metrics = yield* Metrics
  const gauges = yield* StoreGauges

  const event = (tenant: string, e: ChannelFrame.PeerEvent, to?: ReadonlyArray<Ids.PeerId>) => hub.publishEvent(tenant, e, to)

  /** The peer record, if the principal may act for it. */
  const owned = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      const record = yield* peers.get(principal.tenant, id)
      if (principal.isAdmin || record.owner === principal.subject) return record
      return yield* Effect.fail(forbidden(`peer ${id} belongs to another principal`))
    })

  const register = (principal: P, registration: Peer.PeerRegistration) =>
    Effect.gen(function* () {
      if (!principal.hasRole("peer")) return yield* Effect.fail(forbidden("registering a peer needs the peer role"))
      // A spawn token registers exactly its spawn's peer.
      const spawnId = principal.spawnId ?? registration.spawnId
      if (principal.spawnId !== undefined && registration.spawnId !== undefined && registration.spawnId !== principal.spawnId) {
        return yield* Effect.fail(forbidden("this token belongs to another spawn"))
      }
      const spawn = spawnId === undefined ? undefined : yield* spawns.get(principal.tenant, spawnId).pipe(Effect.option, Effect.map(Option.getOrUndefined))
      const before = registration.name === undefined ? undefined : yield* peers.resolve(principal.tenant, registration.name).pipe(Effect.option)
      const result = yield* peers.register({
        tenant: principal.tenant,
        owner: principal.subject,
        registration: new Peer.PeerRegistration({ ...registration, spawnId }),
        runnerId: spawn?.runnerId
      })
      const peer = result.record.peer
      if (spawn !== undefined && peer.spawnId !== undefined) {
        yield* spawns.transition(principal.tenant, peer.spawnId, "registered", { peerId: peer.id }).pipe(Effect.ignore)
      }
      const wasOnline = before !== undefined && Option.isSome(before) && before.value.peer.status === "online"
      if (!wasOnline) yield* event(principal.tenant, { type: "peer_joined", peer, at: yield* isoNow })
      for (const team of peer.teams) yield* event(principal.tenant, { type: "team_changed", team, change: "joined", peerId: peer.id, at: yield* isoNow })
      return result
    })

  const update = (principal: P, id: Ids.PeerId, patch: Peer.PeerUpdate) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      const peer = yield* peers.update(principal.tenant, id, patch)
      yield* event(principal.tenant, { type: "peer_updated", peer, at: yield* isoNow })
      return peer
    })

  const unregister = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      const peer = yield* peers.unregister(principal.tenant, id)
      yield* inbox.drop(principal.tenant, id)
      yield* event(principal.tenant, { type: "peer_left", peer, at: yield* isoNow })
    })

  const heartbeat = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      const before = yield* owned(principal, id)
      const peer = yield* peers.touch(principal.tenant, id)
      if (before.peer.status === "offline") yield* event(principal.tenant, { type: "peer_joined", peer, at: yield* isoNow })
      return peer
    })

  /**
   * Send as `sender`, whose ownership the caller has checked (a channel checks it once, when
   * the socket opens): direct by id or name, or to a team. `accepted` runs once the message is
   * durable and before it is pushed to live channels (a channel writes its `sent` answer
   * there, ahead of every recipient's copy).
   */
  const sendAs = (tenant: string, sender: Peer.Peer, fields: SendFields, accepted?: (result: SendResult) => void) =>
    Effect.gen(function* () {
      let recipients: ReadonlyArray<Ids.PeerId>
      let to: Ids.PeerId | undefined
      if (fields.team !== undefined) {
        const members = yield* teams.members(tenant, fields.team)
        recipients = members.filter((m) => m !== sender.id)
      } else {
        const target = yield* peers.resolve(tenant, fields.to!)
        to = target.peer.id
        recipients = [to]
      }
      const id = newMessageId()
      // A reply without a thread joins the thread of the message it answers, if the sender still holds it.
      const replied = fields.replyTo === undefined || fields.threadId !== undefined ? Option.none() : yield* inbox.find(tenant, sender.id, fields.replyTo)
      const threadId = fields.threadId ?? (Option.isSome(replied) ? replied.value.threadId : (id as unknown as Ids.ThreadId))
      const draft: Message.MessageDraft = {
        id,
        from: sender.id,
        fromName: sender.name,
        to,
        team: fields.team,
        body: fields.body,
        threadId,
        replyTo: fields.replyTo,
        sentAt: yield* isoNow,
        meta: fields.meta
      }
      const deliveries = yield* inbox.append(tenant, recipients, draft)
      metrics.messagesIn(1)
      const message = deliveries[0]?.message ?? new Message.Message({ ...draft, seq: 0 })
      const result: SendResult = { message, recipients: deliveries.map((d) => d.recipient) }
      accepted?.(result)
      yield* hub.publish(tenant, deliveries)
      return result
    })

  /** Send as `from` (which the principal must own): direct by id or name, or to a team. */
  const send = (principal: P, from: Ids.PeerId, fields: SendFields) =>
    Effect.flatMap(owned(principal, from), (sender) => sendAs(principal.tenant, sender.peer, fields))

  const readInbox = (principal: P, id: Ids.PeerId, query: Message.InboxQuery) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      const options = { after: query.after, limit: query.limit }
      return query.wait !== undefined && query.wait > 0
        ? yield* inbox.wait(principal.tenant, id, { ...options, timeout: `${query.wait} seconds` })
        : yield* inbox.read(principal.tenant, id, options)
    })

  const ack = (principal: P, id: Ids.PeerId, upTo: number) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      return yield* inbox.ack(principal.tenant, id, upTo)
    })

  const createTeam = (principal: P, input: Team.CreateTeam) =>
    Effect.gen(function* () {
      const team = yield* teams.create(principal.tenant, input)
      yield* event(principal.tenant, { type: "team_changed", team: team.name, change: "created", at: yield* isoNow })
      return team
    })

  const joinTeam = (principal: P, name: Ids.TeamName, peerId: Ids.PeerId) =>
    Effect.gen(function* () {
      yield* owned(principal, peerId)
      const team = yield* teams.join(principal.tenant, name, peerId)
      yield* event(principal.tenant, { type: "team_changed", team: name, change: "joined", peerId, at: yield* isoNow })
      return team
    })

  const leaveTeam = (principal: P, name: Ids.TeamName, peerId: Ids.PeerId) =>
    Effect.gen(function* () {
      yield* owned(principal, peerId)
      const team = yield* teams.leave(principal.tenant, name, peerId)
      yield* event(principal.tenant, { type: "team_changed", team: name, change: "left", peerId, at: yield* isoNow })
      return team
    })

  const publicUrl = config.publicUrl

  const createSpawn = (principal: P, spec: Spawn.SpawnSpec, brokerUrl: string) =>
    Effect.gen(function* () {
      if (!principal.hasRole("peer")) return yield* Effect.fail(forbidden("spawning needs the peer role"))
      if (spec.requestedBy !== undefined) yield* owned(principal, spec.requestedBy).pipe(Effect.catchTag("PeerNotFound", (e) => Effect.fail(forbidden(e.message))))
      return yield* spawns.create(principal.tenant, spec, {
        requestedBy: spec.requestedBy,
        issue: (spawnId) =>
          tokens.issueSpawnToken(principal.tenant, spawnId).pipe(Effect.map((token) => ({ brokerUrl: publicUrl ?? brokerUrl, token })))
      })
    })

  const stopSpawn = (principal: P, id: Ids.SpawnId) =>
    Effect.gen(function* () {
      if (!principal.hasRole("peer")) return yield* Effect.fail(forbidden("stopping needs the peer role"))
      return yield* spawns.stop(principal.tenant, id)
    })

  const stopPeer = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      const record = yield* peers.get(principal.tenant, id)
      if (record.peer.spawnId === undefined) {
        return yield* Effect.fail(new Errors.SpawnNotFound({ message: `peer ${id} was not started by a spawn order`, spawn: "" }))
      }
      return yield* stopSpawn(principal, record.peer.spawnId)
    })

  /** Background work: GC of peers, runners, spawns and acked messages; spawn events to requesters. */
  const background = Effect.gen(function* () {
    yield* metrics.gauge("a2a_ws_connections", "Open peer channel sockets.", hub.connections)
    yield* metrics.gauge("a2a_peers_online", "Peers online (socket or recent heartbeat).", gauges.peersOnline)
    yield* metrics.gauge("a2a_inbox_depth", "Unacked messages across all inboxes.", gauges.inboxDepth)
    const changes = yield* spawns.changes
    yield* changes.pipe(
      Stream.runForEach(({ tenant, spawn }) =>
        Effect.gen(function* () {
          if (Spawn.isFinal(spawn.status)) yield* tokens.revokeSpawnToken(spawn.id)
          const to = spawn.requestedBy === undefined ? [] : [spawn.requestedBy]
          if (to.length > 0) yield* event(tenant, { type: "spawn_status", spawn, at: yield* isoNow }, to)
        })
      ),
      Effect.forkScoped
    )
    const gc = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const expired = yield* peers.expire(now - config.peerTimeout)
      for (const record of expired) yield* event(record.tenant, { type: "peer_left", peer: record.peer, at: Ids.nowIso(now) })
      yield* spawns.expire(now)
      yield* inbox.prune(now - config.retention)
    })
    yield* gc.pipe(Effect.catchAllCause(Effect.logWarning), Effect.repeat({ schedule: Schedule.spaced(config.gcInterval) }), Effect.forkScoped)
  })

  return {
    owned,
    register,
    update,
    unregister,
    heartbeat,
    send,
    sendAs,
    readInbox,
    ack,
    createTeam,
    joinTeam,
    leaveTeam,
    createSpawn,
    stopSpawn,
    stopPeer,
    background,
    peers,
    inbox,
    hub,
    teams,
    spawns
  } as const
})


export class Bus extends Context.Tag("@mks/a2a-broker/Bus")<Bus, Effect.Effect.Success<typeof make>>() {}

/** The Bus, with its background GC and event fibers running for the layer's lifetime. */
export const layer = Layer.scoped(
  Bus,
  Effect.gen(function* () {
    const bus = yield* make
    yield* bus.background
    return bus
  })
)
