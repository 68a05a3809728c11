/**
 * A third-party host of the channel protocol: core's `ChannelSession` served in-process, with
 * core's memory services and no broker, passes the same behaviour suite as the broker over
 * WebSockets (test-support/channelBehaviour.ts).
 */
import { Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import { channelBehaviour, frameQueue } from "../../../test-support/channelBehaviour.js"
import * as ChannelHub from "../src/ChannelHub.js"
import * as ChannelSession from "../src/ChannelSession.js"
import * as Ids from "../src/Ids.js"
import * as Inbox from "../src/Inbox.js"
import { Message } from "../src/Message.js"
import { PeerRegistration } from "../src/Peer.js"
import * as PeerRegistry from "../src/PeerRegistry.js"
import * as TeamDirectory from "../src/TeamDirectory.js"

const TENANT = "acme"

channelBehaviour("an in-process host of core's ChannelSession (no broker)", async () => {
  const runtime = ManagedRuntime.make(
    Layer.mergeAll(PeerRegistry.layerMemory, Inbox.layerMemory(), ChannelHub.layerMemory()).pipe(Layer.provideMerge(TeamDirectory.layerMemory))
  )
  const { peers, inbox, hub } = await runtime.runPromise(
    Effect.all({ peers: PeerRegistry.PeerRegistry, inbox: Inbox.Inbox, hub: ChannelHub.ChannelHub })
  )
  /** The host's send: resolve the recipient, append, answer, publish (the order the protocol asks). */
  const sendAs = (from: Ids.PeerId, fields: ChannelSession.SendFields, accepted: (result: ChannelSession.SendResult) => void) =>
    Effect.gen(function* () {
      const sender = (yield* peers.get(TENANT, from)).peer
      const target = yield* peers.resolve(TENANT, fields.to ?? "")
      const id = Ids.make.message()
      const deliveries = yield* inbox.append(TENANT, [target.peer.id], {
        id,
        from,
        fromName: sender.name,
        to: target.peer.id,
        body: fields.body,
        threadId: fields.threadId ?? (id as unknown as Ids.ThreadId),
        replyTo: fields.replyTo,
        sentAt: Ids.nowIso(),
        meta: fields.meta
      })
      accepted({ message: deliveries[0]!.message as Message, recipients: deliveries.map((d) => d.recipient) })
      yield* hub.publish(TENANT, deliveries)
    })
  return {
    peer: (name) =>
      runtime.runPromise(peers.register({ tenant: TENANT, owner: "test", registration: new PeerRegistration({ name: name as PeerRegistration["name"] & string }) })).then((r) => r.record.peer.id),
    connect: async (peer, options = {}) => {
      const peerId = peer as Ids.PeerId
      const queue = frameQueue()
      const scope = await runtime.runPromise(Scope.make())
      let closed = false
      const session = await runtime.runPromise(
        ChannelSession.make(
          {
            tenant: TENANT,
            peerId,
            hub,
            inbox,
            connect: Effect.map(peers.touch(TENANT, peerId), (p) => p),
            heartbeat: peers.touch(TENANT, peerId),
            send: (fields, accepted) => sendAs(peerId, fields, accepted),
            registered: peers.get(TENANT, peerId).pipe(Effect.as(true), Effect.catchTag("PeerNotFound", () => Effect.succeed(false)))
          },
          {
            write: (text) => queue.push(JSON.parse(text)),
            close: (code) => {
              closed = true
              queue.end(new Error(`closed (${code})`))
            },
            closed: () => closed
          },
          options
        ).pipe(Scope.extend(scope))
      )
      void runtime.runPromise(session.start).catch((e) => queue.end(e))
      return {
        next: queue.next,
        send: (frame) => session.receive(JSON.stringify(frame)),
        sendText: (text) => session.receive(text),
        close: async () => {
          closed = true
          await runtime.runPromise(Scope.close(scope, Exit.void))
        }
      }
    },
    close: () => runtime.dispose()
  }
})
