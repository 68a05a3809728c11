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
  Permission,
  Principal,
  Spawn,
  SpawnPlane,
  SpawnTokens,
  Task,
  TaskBoard,
  Team,
  TeamDirectory
} from "@mks/a2a"
import { Clock, Context, Effect, Layer, Option, Schedule, Stream } from "effect"
import * as AuditLog from "./AuditLog.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { Metrics } from "./Metrics.js"
import * as Presence from "./Presence.js"
import { StoreGauges } from "./StoreGauges.js"
import * as BusTasks from "./BusTasks.js"
import * as SpawnBinding from "./SpawnBinding.js"
import * as SpawnPolicy from "./SpawnPolicy.js"

type P = Principal.Principal

export type SendFields = Omit<Message.SendMessage, "from">

/** What a send answers: the message (with the first recipient's seq) and who it was appended for. */
export interface SendResult {
  readonly message: Message.Message
  readonly recipients: ReadonlyArray<Ids.PeerId>
}

const forbidden = (what: string) => new Errors.Forbidden({ message: what })

const isoNow = Clock.currentTimeMillis.pipe(Effect.map(Ids.nowIso))

/** A message id (time-ordered, see core's `Ids.messageId`, the one implementation). */
export const newMessageId: (now?: number) => Ids.MessageId = Ids.messageId

/** How often lapsed task leases are written down and reported (`lease_expired`). */
const TASK_SWEEP_INTERVAL = "1 second"

export const make = Effect.gen(function* () {
  const config = yield* BrokerConfig
  const peers = yield* PeerRegistry.PeerRegistry
  const inbox = yield* Inbox.Inbox
  const hub = yield* ChannelHub.ChannelHub
  const teams = yield* TeamDirectory.TeamDirectory
  const spawns = yield* SpawnPlane.SpawnPlane
  const spawnTokens = yield* SpawnTokens.SpawnTokens
  const metrics = yield* Metrics
  const gauges = yield* StoreGauges
  const audit = yield* AuditLog.fromContext
  const board = yield* TaskBoard.TaskBoard

  const event = (tenant: string, e: ChannelFrame.PeerEvent, to?: ReadonlyArray<Ids.PeerId>) => hub.publishEvent(tenant, e, to)
  /** Presence changes are coalesced and published once per interval (see Presence.ts). */
  const presence = yield* Presence.make(hub, config.presenceInterval)

  /** The peer record, if the principal may act for it. */
  const owned = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      const record = yield* peers.get(principal.tenant, id)
      if (principal.isAdmin || record.owner === principal.subject) return record
      return yield* Effect.fail(forbidden(`peer ${id} belongs to another principal`))
    })

  const register = (principal: P, input: Peer.PeerRegistration) =>
    Effect.gen(function* () {
      let registration = input
      if (!principal.hasRole("peer")) return yield* Effect.fail(forbidden("registering a peer needs the peer role"))
      // A spawn token registers exactly its spawn's peer, under the spawn's name (SpawnBinding.ts).
      const spawnId = principal.spawnId ?? registration.spawnId
      if (principal.spawnId !== undefined && registration.spawnId !== undefined && registration.spawnId !== principal.spawnId) {
        return yield* Effect.fail(forbidden("this token belongs to another spawn"))
      }
      const spawn = spawnId === undefined ? undefined : yield* spawns.get(principal.tenant, spawnId).pipe(Effect.option, Effect.map(Option.getOrUndefined))
      if (principal.spawnId !== undefined) registration = yield* SpawnBinding.bind(principal, registration, spawn, peers)
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
        // A spawn for a task: its peer, registered with the spawn's own token, starts holding the task.
        if (spawn.spec.task !== undefined && principal.spawnId === spawn.id && peer.spawnId === spawn.id) yield* tasks.claimForSpawn(principal.tenant, spawn.spec.task, peer.id)
      }
      const wasOnline = before !== undefined && Option.isSome(before) && before.value.peer.status === "online"
      if (!wasOnline) yield* presence.changed(principal.tenant, "joined", peer)
      for (const team of peer.teams) yield* event(principal.tenant, { type: "team_changed", team, change: "joined", peerId: peer.id, at: yield* isoNow })
      return result
    })

  const update = (principal: P, id: Ids.PeerId, patch: Peer.PeerUpdate) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      const peer = yield* peers.update(principal.tenant, id, patch)
      yield* presence.changed(principal.tenant, "updated", peer)
      return peer
    })

  const unregister = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      yield* owned(principal, id)
      const peer = yield* peers.unregister(principal.tenant, id)
      yield* inbox.drop(principal.tenant, id)
      yield* presence.changed(principal.tenant, "left", peer)
    })

  const heartbeat = (principal: P, id: Ids.PeerId) =>
    Effect.gen(function* () {
      const before = yield* owned(principal, id)
      const peer = yield* peers.touch(principal.tenant, id)
      if (before.peer.status === "offline") yield* presence.changed(principal.tenant, "joined", peer)
      return peer
    })

  /**
   * The peer's last channel socket closed: it is offline now, not when GC notices it (so a
   * restarted session can take its name again at once). With a shared (PostgreSQL) store a
   * socket on another instance may still hold the peer: GC decides there.
   */
  const disconnected = (tenant: string, id: Ids.PeerId) =>
    Effect.gen(function* () {
      if (shared) return
      const record = yield* peers.get(tenant, id)
      if (record.peer.status !== "online") return
      const peer = yield* peers.setStatus(tenant, id, "offline")
      yield* presence.changed(tenant, "left", peer)
    }).pipe(
      // An unregistered peer's sockets close after it is gone: nothing to mark.
      Effect.catchTag("PeerNotFound", () => Effect.void),
      Effect.catchAllCause((cause) => Effect.logWarning("could not mark a disconnected peer offline", cause))
    )
  const shared = /^postgres(ql)?:/i.test(config.db)

  /** The id a direct send goes to (`resolveId` where the store offers it: see PeerRegistry). */
  const resolveRecipient = (tenant: string, to: string): Effect.Effect<Ids.PeerId, Errors.PeerNotFound | Errors.ServiceUnavailable> =>
    peers.resolveId !== undefined ? peers.resolveId(tenant, to) : Effect.map(peers.resolve(tenant, to), (record) => record.peer.id)

  /** A send up to its append: the recipients (direct by id or name, or a team's) and the draft. */
  const prepareSend = (tenant: string, sender: Peer.Peer, fields: SendFields) =>
    Effect.gen(function* () {
      let recipients: ReadonlyArray<Ids.PeerId>
      let to: Ids.PeerId | undefined
      if (fields.team !== undefined) {
        const members = yield* teams.members(tenant, fields.team)
        recipients = members.filter((m) => m !== sender.id)
      } else {
        to = yield* resolveRecipient(tenant, fields.to!)
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
      return { recipients, draft }
    })

  /** A send after its append committed: `accepted`, then the push to live channels. */
  const finishSend = (tenant: string, draft: Message.MessageDraft, deliveries: ReadonlyArray<Message.Delivery>, accepted?: (result: SendResult) => void) =>
    Effect.suspend(() => {
      metrics.messagesIn(1)
      const message = deliveries[0]?.message ?? new Message.Message({ ...draft, seq: 0 })
      const result: SendResult = { message, recipients: deliveries.map((d) => d.recipient) }
      accepted?.(result)
      return Effect.as(hub.publish(tenant, deliveries), result)
    })

  /**
   * Send as `sender`, whose ownership the caller has checked (a channel checks it once, when
   * the socket opens): direct by id or name, or to a team. `accepted` runs once the message is
   * durable and before it is pushed to live channels (a channel writes its `sent` answer
   * there, ahead of every recipient's copy).
   */
  const sendAs = (tenant: string, sender: Peer.Peer, fields: SendFields, accepted?: (result: SendResult) => void) =>
    Effect.gen(function* () {
      const { recipients, draft } = yield* prepareSend(tenant, sender, fields)
      const deliveries = yield* inbox.append(tenant, recipients, draft)
      return yield* finishSend(tenant, draft, deliveries, accepted)
    })

  /**
   * `sendAs` in two stages, for a channel that pipelines its sends; only with a store that
   * stages appends (`Inbox.appendStaged`, PostgreSQL), else undefined. The outer effect returns
   * once the append is queued for its commit, the inner one awaits the commit, then runs
   * `accepted` and the push. Sends staged one after another commit in that order.
   */
  const appendStaged = inbox.appendStaged
  const sendStaged =
    appendStaged === undefined
      ? undefined
      : (tenant: string, sender: Peer.Peer, fields: SendFields, accepted?: (result: SendResult) => void) =>
          Effect.gen(function* () {
            const { recipients, draft } = yield* prepareSend(tenant, sender, fields)
            const outcome = yield* appendStaged(tenant, recipients, draft)
            return Effect.flatMap(outcome, (deliveries) => finishSend(tenant, draft, deliveries, accepted))
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

  /** The task board with the bus's rules and events (BusTasks.ts). */
  const tasks = BusTasks.make({ board, teams, peers, hub, owned, defaultLeaseMs: Task.DEFAULT_LEASE_MS })

  const publicUrl = config.publicUrl

  const createSpawn = (principal: P, spec: Spawn.SpawnSpec, brokerUrl: string) =>
    AuditLog.audited(audit, principal, "spawn", AuditLog.describe(spec), Effect.gen(function* () {
      yield* Permission.authorizeSpawn(principal, spec)
      if (spec.requestedBy !== undefined) yield* owned(principal, spec.requestedBy).pipe(Effect.catchTag("PeerNotFound", (e) => Effect.fail(forbidden(e.message))))
      // The broker stamps who created it: `stop`/`attach` of one's own spawns, the runner's per-principal limit.
      let stamped: Spawn.SpawnSpec = { ...spec, owner: principal.subject }
      if (spec.task !== undefined) {
        // For a task (docs/tasks.md): it must be claimable; the spawn joins its team, a claude session is told the task.
        const task = yield* tasks.forSpawn(principal, spec.task)
        stamped = {
          ...stamped,
          teams: [...new Set([...(spec.teams ?? []), task.team])],
          ...(Spawn.presetOf(spec) === "claude" ? { prompt: BusTasks.taskPrompt(task, spec.prompt) } : {})
        }
      }
      yield* SpawnPolicy.precheck(spawns, principal.tenant, stamped)
      return yield* spawns.create(principal.tenant, stamped, {
        requestedBy: spec.requestedBy,
        issue: (spawnId) =>
          spawnTokens.issue(principal.tenant, spawnId, spec.grants).pipe(Effect.map((token) => ({ brokerUrl: publicUrl ?? brokerUrl, token })))
      })
    }), spec.runner)

  const stopSpawn = (principal: P, id: Ids.SpawnId) =>
    AuditLog.audited(audit, principal, "stop", undefined, Effect.gen(function* () {
      yield* Permission.authorizeStop(principal, yield* spawns.get(principal.tenant, id))
      return yield* spawns.stop(principal.tenant, id)
    }), undefined, id)

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
          if (Spawn.isFinal(spawn.status)) {
            yield* spawnTokens.revoke(spawn.id).pipe(Effect.catchAll((e) => Effect.logWarning(`could not revoke the token of spawn ${spawn.id}: ${e.message}`)))
            // A spawn for a task that ends still holding it fails it (the attempt counts): open again while attempts remain.
            if (spawn.spec.task !== undefined && spawn.peerId !== undefined) {
              const how = spawn.status === "failed" ? `failed${spawn.error !== undefined ? `: ${spawn.error}` : ""}` : `exited${spawn.exitCode !== undefined ? ` with code ${spawn.exitCode}` : ""}`
              yield* tasks.spawnEnded(tenant, spawn.spec.task, spawn.peerId, `the agent's spawn ended (${how})`)
            }
            // Its peer goes with it (the name is free again); the inbox is kept until retention prunes it.
            const gone = yield* SpawnBinding.release(tenant, spawn, peers)
            if (gone !== undefined) yield* event(tenant, { type: "peer_left", peer: gone, at: yield* isoNow })
          }
          const to = spawn.requestedBy === undefined ? [] : [spawn.requestedBy]
          if (to.length > 0) yield* event(tenant, { type: "spawn_status", spawn, at: yield* isoNow }, to)
        })
      ),
      Effect.forkScoped
    )
    const gc = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const expired = yield* peers.expire(now - config.peerTimeout)
      for (const record of expired) yield* presence.changed(record.tenant, "left", record.peer)
      yield* spawns.expire(now)
      yield* inbox.prune(now - config.retention)
      yield* audit.prune(now - (config.auditRetention ?? AuditLog.DEFAULT_RETENTION))
    })
    yield* gc.pipe(Effect.catchAllCause(Effect.logWarning), Effect.repeat({ schedule: Schedule.spaced(config.gcInterval) }), Effect.forkScoped)
    // Lapsed task leases are claimable at once anyway; the sweep writes them down and wakes the teams.
    yield* tasks.sweep.pipe(Effect.catchAllCause(Effect.logWarning), Effect.repeat({ schedule: Schedule.spaced(TASK_SWEEP_INTERVAL) }), Effect.forkScoped)
  })

  return {
    owned,
    register,
    update,
    unregister,
    heartbeat,
    disconnected,
    send,
    sendAs,
    sendStaged,
    readInbox,
    ack,
    createTeam,
    joinTeam,
    leaveTeam,
    createSpawn,
    stopSpawn,
    stopPeer,
    tasks,
    background,
    presence,
    audit,
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
