/**
 * A2aBridge: remote A2A agents as bridge peers on the bus (outbound; docs/a2a.md).
 *
 * `POST /api/a2a/agents {name, cardUrl, token?}` fetches the remote agent's card (either protocol
 * generation, with the official `@a2a-js/sdk` client and its v0.3 compatibility layer) and
 * registers a bus peer `name` (agent `a2a-remote`, `meta.a2aBridge = {cardUrl, version}`). Every
 * bus message to that peer is sent to the remote agent (`contextId` = the bus thread); what the
 * agent answers — a message, artifacts, task status updates — comes back to the sender as
 * ordinary bus messages replying to theirs, so MCP sessions see them pushed as channel messages.
 *
 * The records live in `<home>/a2a-agents.json` (0600, atomic writes). A credential is encrypted
 * at rest (AES-256-GCM, key in `<home>/a2a-bridge.key`, 0600, made on first use), sent only to
 * the remote agent, never logged and never returned by the API.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { AgentCard, Message as A2aMessage, Part as A2aPart, Task } from "@a2a-js/sdk"
import type { Client } from "@a2a-js/sdk/client"
import { A2a, Authenticator, Codec, Errors, type Ids, type Message, type Peer, type Principal } from "@mks/a2a"
import { Context, Duration, Effect, ExecutionStrategy, Layer, Runtime, Schedule, Schema, Scope } from "effect"
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import * as Channels from "./Channels.js"
import { writeFileAtomic } from "./TokenStore.js"
import { keyOf } from "./TenantKey.js"

const BRIDGE_OWNER = "system:a2a-bridge"
/** Most remote agents a broker keeps (all tenants). */
const MAX_AGENTS = 1_000
/** Calls in flight to one remote agent. */
const PER_AGENT = 8

interface Sealed {
  readonly iv: string
  readonly tag: string
  readonly data: string
}

interface Stored {
  readonly tenant: string
  readonly name: string
  readonly peerId: string
  readonly cardUrl: string
  readonly card: unknown
  readonly version: string
  readonly addedBy: string
  readonly createdAt: string
  readonly credential?: Sealed
}

const toRecord = (s: Stored) =>
  new A2a.RemoteAgent({ peerId: s.peerId, name: s.name, cardUrl: s.cardUrl, card: s.card, version: s.version, hasCredential: s.credential !== undefined, createdAt: s.createdAt })

/** The text of A2A parts (data as JSON, files named). */
const textOf = (parts: ReadonlyArray<A2aPart> | undefined): string =>
  (parts ?? [])
    .map((p) => {
      const c = p.content
      if (c === undefined) return ""
      if (c.$case === "text") return c.value
      if (c.$case === "data") return JSON.stringify(c.value)
      if (c.$case === "url") return `[file ${p.filename} ${c.value}]`
      return `[file ${p.filename || "(bytes)"}, ${c.value.length} bytes]`
    })
    .filter((s) => s.length > 0)
    .join("\n")

const STATE_NAMES: Record<number, string> = { 1: "submitted", 2: "working", 3: "completed", 4: "failed", 5: "canceled", 6: "input-required", 7: "rejected", 8: "auth-required" }

/** Where a card URL's agent is: the origin and the card's path (default `/.well-known/agent-card.json`). */
const splitCardUrl = (cardUrl: string) => {
  const url = new URL(cardUrl)
  const path = url.pathname.endsWith(".json") ? url.pathname + url.search : `${url.pathname.replace(/\/+$/, "")}/${A2a.CARD_PATH}`
  return { base: url.origin, path }
}

export const make = Effect.gen(function* () {
  const bus = yield* Bus
  const auth = yield* Authenticator.Authenticator
  const config = yield* BrokerConfig
  const runtime = yield* Effect.runtime<never>()
  const scope = yield* Effect.scope
  const fork = Runtime.runFork(runtime)
  const file = join(config.home, "a2a-agents.json")
  const keyFile = join(config.home, "a2a-bridge.key")

  let key: Buffer | undefined
  const sealingKey = () => {
    if (key !== undefined) return key
    if (existsSync(keyFile)) key = Buffer.from(readFileSync(keyFile, "utf8").trim(), "base64")
    else {
      key = randomBytes(32)
      writeFileAtomic(keyFile, key.toString("base64") + "\n")
    }
    return key
  }
  const seal = (secret: string): Sealed => {
    const iv = randomBytes(12)
    const cipher = createCipheriv("aes-256-gcm", sealingKey(), iv)
    const data = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()])
    return { iv: iv.toString("base64"), tag: cipher.getAuthTag().toString("base64"), data: data.toString("base64") }
  }
  const unseal = (sealed: Sealed): string => {
    const decipher = createDecipheriv("aes-256-gcm", sealingKey(), Buffer.from(sealed.iv, "base64"))
    decipher.setAuthTag(Buffer.from(sealed.tag, "base64"))
    return Buffer.concat([decipher.update(Buffer.from(sealed.data, "base64")), decipher.final()]).toString("utf8")
  }

  const agents = new Map<string, Stored>()
  const persist = Effect.try({
    try: () => writeFileAtomic(file, JSON.stringify({ version: 1, agents: [...agents.values()] }, null, 2) + "\n"),
    catch: (e) => new Errors.ServiceUnavailable({ message: `cannot write ${file}: ${(e as Error).message}` })
  })

  /** An SDK client for a stored agent, its credential (if any) added to every request. */
  const clients = new Map<string, Client>()
  const fetchWith = (token: string | undefined): typeof fetch =>
    token === undefined
      ? fetch
      : (input, init) => {
          const headers = new Headers(init?.headers)
          headers.set("authorization", `Bearer ${token}`)
          return fetch(input, { ...init, headers })
        }
  // The SDK's client is loaded by the first bridge that needs it, not at broker start (see A2aGateway's `loadSdk`).
  const factoryFor = async (token: string | undefined) => {
    const { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } = await import("@a2a-js/sdk/client")
    const fetchImpl = fetchWith(token)
    return new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        cardResolver: new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }),
        transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat: { enabled: true } })]
      })
    )
  }
  const clientOf = (stored: Stored) =>
    Effect.tryPromise({
      try: async () => {
        const k = keyOf(stored.tenant, stored.name)
        const found = clients.get(k)
        if (found !== undefined) return found
        const token = stored.credential === undefined ? undefined : unseal(stored.credential)
        const made = await (await factoryFor(token)).createFromAgentCard(stored.card as AgentCard)
        clients.set(k, made)
        return made
      },
      catch: (e) => new Errors.ServiceUnavailable({ message: `remote agent ${stored.name}: ${(e as Error).message}` })
    })

  /** Remote task ids by bus thread, so a follow-up in the thread continues an input-required task. */
  const openTasks = new Map<string, string>()

  /** Forward one bus message to the remote agent; its answers go back to the sender as replies. */
  const forward = (stored: Stored, bridge: Peer.Peer, message: Message.Message) =>
    Effect.gen(function* () {
      const tenant = stored.tenant
      const reply = (body: string, meta: A2a.BusMeta) =>
        bus
          .sendAs(tenant, bridge, { to: message.from, body: body.length > 0 ? body.slice(0, 262_144) : "(empty answer)", replyTo: message.id, threadId: message.threadId, meta: { a2a: meta } })
          .pipe(Effect.ignore)
      const client = yield* clientOf(stored)
      const threadKey = `${tenant}\u0000${stored.name}\u0000${message.threadId}`
      const request = {
        tenant: "",
        message: {
          messageId: randomUUID(),
          role: 1 /* ROLE_USER */,
          parts: [{ content: { $case: "text", value: message.body }, metadata: undefined, filename: "", mediaType: "text/plain" }],
          contextId: message.threadId,
          taskId: openTasks.get(threadKey) ?? "",
          metadata: { busMessageId: message.id, from: message.fromName },
          extensions: [],
          referenceTaskIds: []
        } satisfies A2aMessage,
        configuration: undefined,
        metadata: undefined
      }
      const answered = yield* Effect.tryPromise({
        try: async (signal) => {
          let said = false
          const say = (body: string, meta: A2a.BusMeta) => {
            said = true
            return Effect.runPromise(reply(body, meta))
          }
          for await (const event of client.sendMessageStream(request as never, { signal })) {
            const payload = event.payload
            if (payload === undefined) continue
            if (payload.$case === "message") {
              await say(textOf(payload.value.parts), { contextId: payload.value.contextId, messageId: payload.value.messageId })
            } else if (payload.$case === "task") {
              const task: Task = payload.value
              const state = STATE_NAMES[task.status?.state ?? 0] ?? "unknown"
              const text = textOf(task.status?.message?.parts)
              if (text.length > 0) await say(text, { taskId: task.id, contextId: task.contextId, taskState: state, kind: "task-update" })
            } else if (payload.$case === "statusUpdate") {
              const update = payload.value
              const state = STATE_NAMES[update.status?.state ?? 0] ?? "unknown"
              const text = textOf(update.status?.message?.parts)
              if (state === "input-required" || state === "auth-required") {
                openTasks.set(threadKey, update.taskId)
                while (openTasks.size > 10_000) openTasks.delete(openTasks.keys().next().value!)
              }
              else if (["completed", "failed", "canceled", "rejected"].includes(state)) openTasks.delete(threadKey)
              if (text.length > 0 || ["completed", "failed", "canceled", "rejected", "input-required"].includes(state)) {
                await say(text.length > 0 ? text : `task ${update.taskId} ${state}`, { taskId: update.taskId, contextId: update.contextId, taskState: state, kind: "task-update" })
              }
            } else if (payload.$case === "artifactUpdate") {
              const text = textOf(payload.value.artifact?.parts)
              if (text.length > 0) await say(text, { taskId: payload.value.taskId, contextId: payload.value.contextId, taskState: "artifact", kind: "task-update" })
            }
          }
          return said
        },
        catch: (e) => new Errors.ServiceUnavailable({ message: `remote agent ${stored.name}: ${(e as Error).message}` })
      })
      if (!answered) yield* reply(`${stored.name} (A2A) gave no answer`, { taskState: "completed" })
    }).pipe(
      Effect.catchAll((e) => bus.sendAs(stored.tenant, bridge, { to: message.from, body: `a2a bridge: ${e.message}`, replyTo: message.id, threadId: message.threadId, meta: { a2a: { taskState: "failed" } } }).pipe(Effect.ignore))
    )

  /** Scopes of the attached bridge peers (closed on remove). */
  const attached = new Map<string, Scope.CloseableScope>()

  const attach = (stored: Stored) =>
    Effect.gen(function* () {
      const { record } = yield* bus.peers.register({
        tenant: stored.tenant,
        owner: BRIDGE_OWNER,
        registration: {
          name: stored.name,
          summary: (((stored.card as { description?: string }).description ?? "") || `remote A2A agent at ${stored.cardUrl}`).slice(0, 2000),
          agent: "a2a-remote",
          meta: { a2aBridge: { cardUrl: stored.cardUrl, version: stored.version } }
        } as Peer.PeerRegistration
      })
      const peer = record.peer
      const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      attached.set(keyOf(stored.tenant, stored.name), child)
      // The bridge peer is online while the broker runs.
      yield* bus.peers.touch(stored.tenant, peer.id).pipe(
        Effect.ignore,
        Effect.repeat(Schedule.spaced(Duration.millis(Math.max(1_000, config.peerTimeout / 3)))),
        Effect.forkIn(child)
      )
      // At most PER_AGENT calls to one remote agent at a time; the rest wait their turn (unacked until sent).
      const turns = yield* Effect.makeSemaphore(PER_AGENT)
      yield* bus.hub
        .attach(stored.tenant, peer.id, (item) => {
          if (item.type !== "message") return
          fork(
            turns.withPermits(1)(forward(stored, peer, item.message)).pipe(
              Effect.zipRight(bus.inbox.ack(stored.tenant, peer.id, item.message.seq)),
              Effect.catchAllCause(Effect.logWarning)
            )
          )
        }, { presence: false })
        .pipe(Scope.extend(child))
      // Messages that waited while the broker was down are forwarded now.
      const backlog = yield* bus.inbox.read(stored.tenant, peer.id, { limit: 1000 })
      for (const m of backlog.messages) fork(turns.withPermits(1)(forward(stored, peer, m)).pipe(Effect.zipRight(bus.inbox.ack(stored.tenant, peer.id, m.seq))))
      return peer
    })

  // Agents registered before a restart come back on the bus.
  if (existsSync(file)) {
    const saved = yield* Effect.try(() => JSON.parse(readFileSync(file, "utf8")) as { agents?: Array<Stored> }).pipe(Effect.orElseSucceed(() => ({ agents: [] })))
    for (const s of saved.agents ?? []) {
      agents.set(keyOf(s.tenant, s.name), s)
      yield* attach(s).pipe(Effect.catchAllCause(Effect.logWarning))
    }
  }

  const add = (principal: Principal.Principal, input: A2a.AddRemoteAgent) =>
    Effect.gen(function* () {
      if (!principal.hasRole("peer") && !principal.isAdmin) return yield* Effect.fail(new Errors.Forbidden({ message: "registering an A2A agent needs the peer role" }))
      if (agents.has(keyOf(principal.tenant, input.name))) return yield* Effect.fail(new Errors.PeerNameTaken({ message: `an A2A agent named ${input.name} exists`, name: input.name }))
      if (agents.size >= MAX_AGENTS) return yield* Effect.fail(new Errors.ServiceUnavailable({ message: `at most ${MAX_AGENTS} A2A agents` }))
      const taken = yield* bus.peers.resolve(principal.tenant, input.name).pipe(Effect.option)
      if (taken._tag === "Some") return yield* Effect.fail(new Errors.PeerNameTaken({ message: `a peer named ${input.name} exists`, name: input.name }))
      const { base, path } = splitCardUrl(input.cardUrl)
      const client = yield* Effect.tryPromise({
        try: async () => (await factoryFor(input.token)).createFromUrl(base, path),
        catch: (e) => new Errors.InvalidRequest({ message: `cannot read the agent card at ${input.cardUrl}: ${(e as Error).message}`, field: "cardUrl" })
      })
      const card = yield* Effect.promise(() => client.getAgentCard())
      const stored: Stored = {
        tenant: principal.tenant,
        name: input.name,
        peerId: "",
        cardUrl: input.cardUrl,
        card,
        version: client.protocolVersion,
        addedBy: principal.subject,
        createdAt: new Date().toISOString(),
        ...(input.token === undefined ? {} : { credential: seal(input.token) })
      }
      const peer = yield* attach(stored)
      const withPeer = { ...stored, peerId: peer.id }
      agents.set(keyOf(principal.tenant, input.name), withPeer)
      clients.set(keyOf(principal.tenant, input.name), client)
      yield* persist
      return toRecord(withPeer)
    })

  const list = (principal: Principal.Principal) =>
    Effect.succeed([...agents.values()].filter((s) => s.tenant === principal.tenant).map(toRecord))

  const remove = (principal: Principal.Principal, name: string) =>
    Effect.gen(function* () {
      const k = keyOf(principal.tenant, name)
      const stored = agents.get(k)
      if (stored === undefined) return yield* Effect.fail(new Errors.PeerNotFound({ message: `no A2A agent named ${name}`, peer: name }))
      if (!principal.isAdmin && stored.addedBy !== principal.subject) return yield* Effect.fail(new Errors.Forbidden({ message: "only who added an A2A agent (or an admin) removes it" }))
      agents.delete(k)
      clients.delete(k)
      const child = attached.get(k)
      attached.delete(k)
      if (child !== undefined) yield* Scope.close(child, { _tag: "Success", value: undefined } as never)
      yield* bus.peers.unregister(stored.tenant, stored.peerId as Ids.PeerId).pipe(Effect.ignore)
      yield* bus.inbox.drop(stored.tenant, stored.peerId as Ids.PeerId)
      yield* persist
    })

  const principalOf = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const header = request.headers["authorization"]
    const token = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : ""
    if (token.length === 0) return yield* Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
    return yield* auth.authenticate(token)
  })

  const refuse = <A, R>(effect: Effect.Effect<A, Errors.WireError, R>) => effect.pipe(Effect.catchAll((e) => Effect.succeed(Channels.errorResponse(e))))
  const encodeAgent = Schema.encodeSync(A2a.RemoteAgent)

  const httpAdd = refuse(
    Effect.gen(function* () {
      const principal = yield* principalOf
      const request = yield* HttpServerRequest.HttpServerRequest
      const text = yield* request.text.pipe(Effect.orElseSucceed(() => ""))
      const input = yield* Codec.decodeJson(A2a.AddRemoteAgent)(text)
      const agent = yield* add(principal, input)
      return HttpServerResponse.unsafeJson({ agent: encodeAgent(agent) }, { status: 201 })
    })
  )
  const httpList = refuse(
    Effect.gen(function* () {
      const principal = yield* principalOf
      const found = yield* list(principal)
      return HttpServerResponse.unsafeJson({ agents: found.map((a) => encodeAgent(a)) })
    })
  )
  const httpRemove = (name: string) =>
    refuse(
      Effect.gen(function* () {
        const principal = yield* principalOf
        yield* remove(principal, name)
        return HttpServerResponse.empty({ status: 204 })
      })
    )

  return { add, list, remove, httpAdd, httpList, httpRemove } as const
})

export class A2aBridge extends Context.Tag("@mks/a2a-broker/A2aBridge")<A2aBridge, Effect.Effect.Success<typeof make>>() {}

export const layerService = Layer.scoped(A2aBridge, make)

/** `POST|GET /api/a2a/agents`, `DELETE /api/a2a/agents/:name`. */
export const routes = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const bridge = yield* A2aBridge
    yield* router.post("/api/a2a/agents", bridge.httpAdd)
    yield* router.get("/api/a2a/agents", bridge.httpList)
    yield* router.del(
      "/api/a2a/agents/:name",
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (r) => bridge.httpRemove(decodeURIComponent(new URL(r.url, "http://x").pathname.split("/")[4] ?? "")))
    )
  })
)
