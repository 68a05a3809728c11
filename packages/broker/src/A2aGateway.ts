/**
 * A2aGateway: bus peers reachable as Agent2Agent (A2A) agents (docs/a2a.md).
 *
 * - `GET /a2a/.well-known/agent-card.json` — the tenant's directory card (one skill per opted-in peer);
 * - `GET /a2a/peers/:peer/.well-known/agent-card.json` — the card of a peer that set `meta.a2a`;
 * - `POST /a2a/peers/:peer` — the JSON-RPC endpoint (1.0 `SendMessage`… and 0.3 `message/send`…,
 *   picked by the `A2A-Version` header; streaming answers are SSE).
 *
 * The protocol mechanics (task lifecycle, SSE, resubscription, push notifications, both wire
 * generations) are the official SDK's (`@a2a-js/sdk` `DefaultRequestHandler` and its JSON-RPC
 * transport handlers), so the wire is exactly what its clients expect. This module supplies the
 * agent behind it: an `AgentExecutor` that turns a message into a bus message from the tenant's
 * `a2a-gateway` peer to the target peer and turns the peer's answers (`replyTo` it) into the A2A
 * answer — a Message when the first answer is final and arrives within `messageWindow`, else a Task.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { AgentCard, Message as A2aMessage, Part as A2aPart, Task } from "@a2a-js/sdk"
import type { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server"
import type { AgentExecutor, DefaultRequestHandler, ExecutionEventBus, JsonRpcTransportHandler, RequestContext, ServerCallContext, TaskStore } from "@a2a-js/sdk/server"
import { A2a, Authenticator, Errors, Ids, type Message, type Peer, type Principal } from "@mks/a2a"
import { Cause, Context, Duration, Effect, Either, Exit, Layer, Option, Queue, Runtime, Schedule, Schema, Scope, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import * as Channels from "./Channels.js"

/**
 * The SDK's runtime modules, loaded by the gateway's first request instead of at broker start:
 * evaluating them kept ~0.7 MiB of an idle broker's old space (V8's heap spaces logged in an
 * idle broker built with and without), and most brokers never see an A2A client. Everything
 * below that uses them runs after a request awaited `sdkReady`.
 */
const loadSdk = () =>
  Promise.all([
    import("@a2a-js/sdk"),
    import("@a2a-js/sdk/compat/v0_3"),
    import("@a2a-js/sdk/compat/v0_3/server"),
    import("@a2a-js/sdk/errors"),
    import("@a2a-js/sdk/server")
  ]).then(([core, compat, compatServer, errors, server]) => ({
    AgentCard: core.AgentCard,
    duplicateInterfacesForLegacy: compat.duplicateInterfacesForLegacy,
    createLegacyAwarePushNotificationSender: compatServer.createLegacyAwarePushNotificationSender,
    LegacyJsonRpcTransportHandler: compatServer.LegacyJsonRpcTransportHandler,
    RequestMalformedError: errors.RequestMalformedError,
    AgentEvent: server.AgentEvent,
    DefaultRequestHandler: server.DefaultRequestHandler,
    InMemoryPushNotificationStore: server.InMemoryPushNotificationStore,
    JsonRpcTransportHandler: server.JsonRpcTransportHandler,
    ServerCallContext: server.ServerCallContext,
    validateVersion: server.validateVersion
  }))
type Sdk = Awaited<ReturnType<typeof loadSdk>>
let loaded: Sdk | undefined
/** The SDK, loaded once (module imports are cached, so two first requests racing load it once too). */
const sdkReady: Effect.Effect<Sdk> = Effect.suspend(() =>
  loaded !== undefined ? Effect.succeed(loaded) : Effect.map(Effect.promise(loadSdk), (sdk) => (loaded = sdk))
)
/** The loaded SDK, for code that only runs after `sdkReady` (a defect otherwise). */
const sdk = (): Sdk => {
  if (loaded === undefined) throw new Error("the A2A SDK was used before the gateway loaded it")
  return loaded
}

export interface Options {
  /** A first answer that is final and arrives within this window answers as a Message; later, a Task opens. */
  readonly messageWindow?: Duration.DurationInput
  /** A task whose peer does not answer for this long fails. */
  readonly taskTimeout?: Duration.DurationInput
  /** Tasks kept per peer card (the oldest are forgotten beyond). */
  readonly maxTasks?: number
  /** Longest message body the gateway forwards, in characters (the bus limit). */
  readonly maxBody?: number
}

/** The name of the peer each tenant's A2A clients speak through on the bus. */
export const GATEWAY_NAME = "a2a-gateway"
const GATEWAY_OWNER = "system:a2a-gateway"
const MAX_BODY = 262_144
const MAX_HANDLERS = 1_000
const SEND_METHODS = new Set(["SendMessage", "SendStreamingMessage", "message/send", "message/stream"])

type Reply = { readonly _tag: "reply"; readonly message: Message.Message } | { readonly _tag: "cancel" }

interface Run {
  readonly contextId: string
  readonly queue: Queue.Queue<Reply>
  /** Bus message ids sent for this task (answers to them belong to it). */
  readonly sent: Set<string>
}

interface GatewayPeer {
  readonly peer: Peer.Peer
}

/** A task store bounded per handler, scoped by the caller (another principal's tasks are not found). */
class BoundedTaskStore implements TaskStore {
  private readonly tasks = new Map<string, Task>()
  constructor(private readonly cap: number) {}
  private key(taskId: string, context: ServerCallContext) {
    return `${context.tenant ?? ""}\u0000${context.user?.userName ?? ""}\u0000${taskId}`
  }
  async load(taskId: string, context: ServerCallContext) {
    const task = this.tasks.get(this.key(taskId, context))
    return task === undefined ? undefined : structuredClone(task)
  }
  async save(task: Task, context: ServerCallContext) {
    const key = this.key(task.id, context)
    this.tasks.delete(key)
    this.tasks.set(key, structuredClone(task))
    while (this.tasks.size > this.cap) this.tasks.delete(this.tasks.keys().next().value!)
  }
  async list(params: { contextId?: string; pageSize?: number }, context: ServerCallContext) {
    const prefix = this.key("", context)
    const tasks = [...this.tasks.entries()]
      .filter(([k, t]) => k.startsWith(prefix) && (params.contextId === undefined || params.contextId === "" || t.contextId === params.contextId))
      .map(([, t]) => structuredClone(t))
      .reverse()
      .slice(0, params.pageSize || 50)
    return { tasks, nextPageToken: "", pageSize: tasks.length, totalSize: tasks.length }
  }
}

const textPart = (value: string): A2aPart => ({ content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "text/plain" })

/** A bus body from A2A parts: text as is, data as JSON, files as a line naming them. */
export const bodyOf = (parts: ReadonlyArray<A2aPart>): string =>
  parts
    .map((p) => {
      const c = p.content
      if (c === undefined) return ""
      if (c.$case === "text") return c.value
      if (c.$case === "data") return JSON.stringify(c.value)
      if (c.$case === "url") return `[file ${p.filename || ""} ${p.mediaType || ""} ${c.value}]`.replace(/ +/g, " ")
      return `[file ${p.filename || "(bytes)"} ${p.mediaType || ""}, ${c.value.length} bytes]`.replace(/ +/g, " ")
    })
    .filter((s) => s.length > 0)
    .join("\n")

const agentMessage = (text: string, contextId: string, taskId: string): A2aMessage => ({
  messageId: randomUUID(),
  contextId,
  taskId,
  role: 2 /* ROLE_AGENT */,
  parts: [textPart(text)],
  metadata: undefined,
  extensions: [],
  referenceTaskIds: []
})

const STATE = { submitted: 1, working: 2, completed: 3, failed: 4, canceled: 5, "input-required": 6 } as const

const statusUpdate = (taskId: string, contextId: string, state: keyof typeof STATE, message?: A2aMessage) =>
  sdk().AgentEvent.statusUpdate({ taskId, contextId, status: { state: STATE[state], message, timestamp: new Date().toISOString() }, metadata: undefined })

/** The card of an opted-in peer, for the broker at `base` (the SDK's in-memory form; `AgentCard.toJSON` gives the wire JSON). */
export const cardOf = (peer: Peer.Peer, base: string, oidcIssuer?: string): AgentCard => {
  const optIn = A2a.optInOf(peer) ?? {}
  const url = base + A2a.peerPath(peer.name)
  return {
    name: peer.name,
    description: optIn.description ?? (peer.summary || `${peer.agent} session ${peer.name} on the a2a bus`),
    supportedInterfaces: sdk().duplicateInterfacesForLegacy([{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }], ["JSONRPC"]),
    provider: { organization: "a2a bus", url: base },
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: false },
    securitySchemes: {
      bearer: { scheme: { $case: "httpAuthSecurityScheme", value: { description: "a2a broker token or OIDC JWT", scheme: "Bearer", bearerFormat: "" } } },
      ...(oidcIssuer === undefined
        ? {}
        : { oidc: { scheme: { $case: "openIdConnectSecurityScheme", value: { description: "OIDC access token, sent as a Bearer token", openIdConnectUrl: `${oidcIssuer.replace(/\/+$/, "")}/.well-known/openid-configuration` } } } })
    },
    // Either scheme: a static broker token or an OIDC JWT, both as `Authorization: Bearer`.
    securityRequirements: [{ schemes: { bearer: { list: [] } } }, ...(oidcIssuer === undefined ? [] : [{ schemes: { oidc: { list: [] } } }])],
    defaultInputModes: ["text/plain", "application/json"],
    defaultOutputModes: ["text/plain"],
    skills: A2a.skillsOf(peer).map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description ?? "",
      tags: [...(s.tags ?? [])],
      examples: [...(s.examples ?? [])],
      inputModes: [],
      outputModes: [],
      securityRequirements: []
    })),
    documentationUrl: "",
    signatures: []
  } as unknown as AgentCard
}

/** The 0.3 shape of a card (what a 0.3 client reads without an `A2A-Version` header), with the 1.0 interfaces embedded. */
export const legacyCardOf = (card: AgentCard, peer: Peer.Peer, base: string, oidcIssuer?: string): Record<string, unknown> => ({
  protocolVersion: "0.3.0",
  name: card.name,
  description: card.description,
  url: base + A2a.peerPath(peer.name),
  preferredTransport: "JSONRPC",
  additionalInterfaces: [{ url: base + A2a.peerPath(peer.name), transport: "JSONRPC" }],
  version: card.version,
  provider: { organization: "a2a bus", url: base },
  capabilities: { streaming: true, pushNotifications: true, stateTransitionHistory: false },
  securitySchemes: {
    bearer: { type: "http", scheme: "bearer", description: "a2a broker token or OIDC JWT" },
    ...(oidcIssuer === undefined ? {} : { oidc: { type: "openIdConnect", openIdConnectUrl: `${oidcIssuer.replace(/\/+$/, "")}/.well-known/openid-configuration` } })
  },
  security: [{ bearer: [] }, ...(oidcIssuer === undefined ? [] : [{ oidc: [] }])],
  defaultInputModes: card.defaultInputModes,
  defaultOutputModes: card.defaultOutputModes,
  skills: card.skills.map((s) => ({ id: s.id, name: s.name, description: s.description, tags: s.tags, examples: s.examples })),
  supportedInterfaces: (sdk().AgentCard.toJSON(card) as { supportedInterfaces?: unknown }).supportedInterfaces
})

class A2aUser {
  constructor(readonly userName: string) {}
  get isAuthenticated() {
    return true
  }
}

export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    const auth = yield* Authenticator.Authenticator
    const config = yield* BrokerConfig
    const runtime = yield* Effect.runtime<never>()
    const scope = yield* Effect.scope
    // The SDK sees the typed failure itself (an `A2AError` maps to its JSON-RPC code), not a fiber failure.
    const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
      Runtime.runPromiseExit(runtime)(effect).then((exit) => (Exit.isSuccess(exit) ? exit.value : Promise.reject(Cause.squash(exit.cause))))
    const fork = Runtime.runFork(runtime)
    const messageWindow = Duration.decode(options.messageWindow ?? "10 seconds")
    const taskTimeout = Duration.decode(options.taskTimeout ?? "30 minutes")
    const maxTasks = options.maxTasks ?? 10_000
    const maxBody = options.maxBody ?? MAX_BODY

    /** Running tasks by `tenant/taskId`, and which task each bus message we sent belongs to. */
    const runs = new Map<string, Run>()
    const sentFor = new Map<string, string>()
    /** The last peer answer of a task that waits for input (the next user message replies to it). */
    const awaiting = new Map<string, { readonly answer: Ids.MessageId; readonly contextId: string }>()
    const runKey = (tenant: string, taskId: string) => `${tenant}\u0000${taskId}`

    const onAnswer = (tenant: string, gateway: Ids.PeerId, message: Message.Message) =>
      Effect.gen(function* () {
        const meta = A2a.busMetaOf(message.meta)
        const taskId = (message.replyTo !== undefined ? sentFor.get(runKey(tenant, message.replyTo)) : undefined) ?? meta?.taskId
        const target = taskId === undefined ? undefined : runs.get(runKey(tenant, taskId))
        if (target !== undefined) yield* Queue.offer(target.queue, { _tag: "reply", message })
        yield* bus.inbox.ack(tenant, gateway, message.seq)
      })

    /** The tenant's gateway peer, registered on first use and listening for answers for the broker's lifetime. */
    const gatewayFor = yield* Effect.cachedFunction((tenant: string) =>
      Effect.gen(function* () {
        const registerAs = (name: string) =>
          bus.peers.register({
            tenant,
            owner: GATEWAY_OWNER,
            registration: { name, summary: "Agent2Agent gateway: messages from A2A clients; reply to them to answer", agent: "a2a-gateway", meta: { a2aGateway: true } } as Peer.PeerRegistration
          })
        // A peer of the tenant may hold the name already: then the gateway takes a suffixed one.
        const { record } = yield* registerAs(GATEWAY_NAME).pipe(Effect.catchTag("PeerNameTaken", () => registerAs(`${GATEWAY_NAME}-${randomUUID().slice(0, 8)}`)))
        const id = record.peer.id
        // The gateway is online while the broker runs.
        yield* bus.peers.touch(tenant, id).pipe(
          Effect.ignore,
          Effect.repeat(Schedule.spaced(Duration.millis(Math.max(1_000, config.peerTimeout / 3)))),
          Effect.forkIn(scope)
        )
        yield* bus.hub
          .attach(tenant, id, (item) => {
            if (item.type === "message") fork(onAnswer(tenant, id, item.message))
          }, { presence: false })
          .pipe(Scope.extend(scope))
        // Answers that arrived while the broker was down belong to tasks this process no longer runs: drop them.
        const backlog = yield* bus.inbox.read(tenant, id, { limit: 1000 })
        const last = backlog.messages.at(-1)
        if (last !== undefined) yield* bus.inbox.ack(tenant, id, last.seq)
        return { peer: record.peer } satisfies GatewayPeer
      }).pipe(Effect.orDie)
    )

    const fail = (message: string) => new (sdk().RequestMalformedError)(message)

    /** The executor behind one peer's card. */
    const executorFor = (tenant: string, target: Ids.PeerId): AgentExecutor => ({
      execute: (rc: RequestContext, eventBus: ExecutionEventBus) =>
        run(
          Effect.gen(function* () {
            const { taskId, contextId } = rc
            const body = bodyOf(rc.userMessage.parts)
            if (body.length === 0) return yield* Effect.fail(fail("the message has no text, data or file part"))
            if (body.length > maxBody) return yield* Effect.fail(fail(`the message is longer than ${maxBody} characters`))
            const threadId = Schema.decodeUnknownOption(Ids.ThreadId)(contextId)
            if (Option.isNone(threadId)) return yield* Effect.fail(fail("contextId must be 1-128 characters of [A-Za-z0-9_.:-]"))
            const gateway = yield* gatewayFor(tenant)
            const key = runKey(tenant, taskId)
            const state: Run = { contextId, queue: yield* Queue.unbounded<Reply>(), sent: new Set() }
            runs.set(key, state)
            const forget = Effect.sync(() => {
              runs.delete(key)
              for (const id of state.sent) sentFor.delete(runKey(tenant, id))
            })
            return yield* Effect.gen(function* () {
              const replyTo = awaiting.get(key)?.answer
              awaiting.delete(key)
              yield* bus.sendAs(
                tenant,
                gateway.peer,
                {
                  to: target,
                  body,
                  threadId: threadId.value,
                  replyTo,
                  meta: { a2a: { taskId, contextId, messageId: rc.userMessage.messageId, kind: "message" } }
                },
                // Before the message is pushed: an answer can never arrive ahead of this.
                (sent) => {
                  state.sent.add(sent.message.id)
                  sentFor.set(runKey(tenant, sent.message.id), taskId)
                }
              )

              // Whether the answer is a Message: a new task whose peer's first answer is final and quick.
              let opened = rc.task !== undefined
              const open = Effect.sync(() => {
                if (opened) return
                opened = true
                eventBus.publish(
                  sdk().AgentEvent.task({
                    id: taskId,
                    contextId,
                    status: { state: STATE.submitted, message: undefined, timestamp: new Date().toISOString() },
                    artifacts: [],
                    history: [rc.userMessage],
                    metadata: undefined
                  })
                )
                eventBus.publish(statusUpdate(taskId, contextId, "working"))
              })
              if (rc.task !== undefined) {
                eventBus.publish(sdk().AgentEvent.task({ ...rc.task, status: { state: STATE.working, message: undefined, timestamp: new Date().toISOString() } }))
              }
              const immediate = rc.request.configuration?.returnImmediately === true
              let first = true
              while (true) {
                const window = first && !opened && !immediate ? messageWindow : taskTimeout
                if (first && immediate) yield* open
                const next = yield* Queue.take(state.queue).pipe(Effect.timeoutOption(window))
                const wasFirst = first
                first = false
                if (Option.isNone(next)) {
                  if (wasFirst && !opened) {
                    yield* open
                    const later = yield* Queue.take(state.queue).pipe(Effect.timeoutOption(taskTimeout))
                    if (Option.isSome(later)) {
                      yield* Queue.offer(state.queue, later.value)
                      continue
                    }
                  }
                  yield* open
                  eventBus.publish(statusUpdate(taskId, contextId, "failed", agentMessage(`${GATEWAY_NAME}: the peer did not answer in time`, contextId, taskId)))
                  return
                }
                const reply = next.value
                if (reply._tag === "cancel") return // cancelTask published the canceled status
                const answer = reply.message
                const answerState = A2a.busMetaOf(answer.meta)?.state ?? "completed"
                if (answerState === "completed" && !opened) {
                  // Quick and final: the answer is a Message (no task is kept).
                  eventBus.publish(sdk().AgentEvent.message({ ...agentMessage(answer.body, contextId, ""), taskId: "" }))
                  return
                }
                yield* open
                const text = agentMessage(answer.body, contextId, taskId)
                if (answerState === "working") {
                  eventBus.publish(statusUpdate(taskId, contextId, "working", text))
                  continue
                }
                if (answerState === "input-required") {
                  awaiting.set(key, { answer: answer.id, contextId })
                  // Bounded: the oldest waiting tasks are forgotten (their next message starts a new bus thread turn).
                  while (awaiting.size > maxTasks) awaiting.delete(awaiting.keys().next().value!)
                  eventBus.publish(statusUpdate(taskId, contextId, "input-required", text))
                  return
                }
                if (answerState === "completed") {
                  eventBus.publish(
                    sdk().AgentEvent.artifactUpdate({
                      taskId,
                      contextId,
                      artifact: { artifactId: `answer-${answer.id}`, name: "answer", description: "", parts: [textPart(answer.body)], metadata: undefined, extensions: [] },
                      append: false,
                      lastChunk: true,
                      metadata: undefined
                    })
                  )
                }
                eventBus.publish(statusUpdate(taskId, contextId, answerState, text))
                return
              }
            }).pipe(Effect.ensuring(forget))
          })
        ),
      cancelTask: (taskId: string, eventBus: ExecutionEventBus) =>
        run(
          Effect.gen(function* () {
            const key = runKey(tenant, taskId)
            const task = runs.get(key)
            const contextId = task?.contextId ?? awaiting.get(key)?.contextId ?? ""
            awaiting.delete(key)
            // Tell the peer, so it can stop working on it.
            const gateway = yield* gatewayFor(tenant)
            yield* bus
              .sendAs(tenant, gateway.peer, { to: target, body: `The A2A client canceled task ${taskId}.`, meta: { a2a: { taskId, kind: "cancel" } } })
              .pipe(Effect.ignore)
            eventBus.publish(statusUpdate(taskId, contextId, "canceled", agentMessage("canceled by the A2A client", contextId, taskId)))
            if (task !== undefined) yield* Queue.offer(task.queue, { _tag: "cancel" })
          })
        )
    })

    /** SDK handlers per peer card (bounded; the oldest is dropped beyond MAX_HANDLERS). */
    const handlers = new Map<string, { readonly handler: DefaultRequestHandler; readonly v1: JsonRpcTransportHandler; readonly v03: LegacyJsonRpcTransportHandler }>()
    const handlerFor = (tenant: string, peer: Peer.Peer) => {
      const key = `${tenant}\u0000${peer.id}`
      const found = handlers.get(key)
      if (found !== undefined) return found
      const { createLegacyAwarePushNotificationSender, DefaultRequestHandler, InMemoryPushNotificationStore, JsonRpcTransportHandler, LegacyJsonRpcTransportHandler } = sdk()
      const pushStore = new InMemoryPushNotificationStore()
      const handler = new DefaultRequestHandler(
        cardOf(peer, "http://a2a-gateway"),
        new BoundedTaskStore(maxTasks),
        executorFor(tenant, peer.id),
        undefined,
        pushStore,
        createLegacyAwarePushNotificationSender(pushStore, { timeout: 5_000 })
      )
      const made = { handler, v1: new JsonRpcTransportHandler(handler), v03: new LegacyJsonRpcTransportHandler(handler) }
      handlers.set(key, made)
      while (handlers.size > MAX_HANDLERS) handlers.delete(handlers.keys().next().value!)
      return made
    }

    const principalOf = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function* () {
        const header = request.headers["authorization"]
        const token = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : ""
        if (token.length === 0) return yield* Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
        const principal = yield* auth.authenticate(token)
        if (!principal.hasRole("peer") && !principal.isAdmin) return yield* Effect.fail(new Errors.Forbidden({ message: "A2A needs the peer role" }))
        return principal
      })

    /** An opted-in peer of the principal's tenant, by id or name (others, and peers that did not opt in, are 404). */
    const agentOf = (principal: Principal.Principal, ref: string) =>
      Effect.gen(function* () {
        const record = yield* bus.peers.resolve(principal.tenant, ref)
        if (A2a.optInOf(record.peer) === undefined) {
          return yield* Effect.fail(new Errors.PeerNotFound({ message: `peer ${ref} is not an A2A agent (it did not set meta.a2a)`, peer: ref }))
        }
        return record.peer
      })

    const baseOf = (request: HttpServerRequest.HttpServerRequest) => config.publicUrl?.replace(/\/+$/, "") ?? `http://${request.headers["host"] ?? "127.0.0.1"}`

    const card = (ref: string) =>
      Effect.gen(function* () {
        const { AgentCard } = yield* sdkReady
        const request = yield* HttpServerRequest.HttpServerRequest
        const principal = yield* principalOf(request)
        const peer = yield* agentOf(principal, ref)
        const base = baseOf(request)
        const v1 = cardOf(peer, base, config.oidc?.issuer)
        const version = A2a.requestedVersion(request.headers[A2a.VERSION_HEADER.toLowerCase()])
        const body = version === "0.3" ? legacyCardOf(v1, peer, base, config.oidc?.issuer) : AgentCard.toJSON(v1)
        return HttpServerResponse.unsafeJson(body, { headers: { vary: A2a.VERSION_HEADER, "cache-control": "no-cache" } })
      })

    const directory = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const principal = yield* principalOf(request)
      const base = baseOf(request)
      const peers = (yield* bus.peers.list(principal.tenant)).filter((p) => A2a.optInOf(p) !== undefined)
      return HttpServerResponse.unsafeJson({
        name: `a2a bus (${principal.tenant})`,
        description: "Directory of the bus peers reachable as A2A agents; each skill names a peer, whose card is at its url.",
        supportedInterfaces: [],
        version: "1.0.0",
        capabilities: { streaming: true, pushNotifications: true },
        securitySchemes: { bearer: { httpAuthSecurityScheme: { scheme: "Bearer" } } },
        securityRequirements: [{ schemes: { bearer: { list: [] } } }],
        defaultInputModes: ["text/plain"],
        defaultOutputModes: ["text/plain"],
        skills: peers.map((p) => ({
          id: p.name,
          name: p.name,
          description: p.summary || `${p.agent} session`,
          tags: ["peer", p.status],
          examples: [`${base}${A2a.peerPath(p.name)}/${A2a.CARD_PATH}`]
        }))
      })
    })

    const SSE_HEADERS = { "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" }
    const encoder = new TextEncoder()

    const rpc = (ref: string) =>
      Effect.gen(function* () {
        const { JsonRpcTransportHandler, LegacyJsonRpcTransportHandler, ServerCallContext, validateVersion } = yield* sdkReady
        const request = yield* HttpServerRequest.HttpServerRequest
        const principal = yield* principalOf(request)
        const peer = yield* agentOf(principal, ref)
        const header = request.headers[A2a.VERSION_HEADER.toLowerCase()]
        const version = A2a.requestedVersion(header)
        const legacy = version === "0.3"
        const text = yield* request.text.pipe(Effect.orElseSucceed(() => ""))
        let parsed: unknown
        try {
          parsed = JSON.parse(text)
        } catch {
          return HttpServerResponse.unsafeJson(A2a.jsonRpcError(null, A2a.ErrorCode.ParseError, "the request body is not valid JSON"))
        }
        const id = (parsed as { id?: string | number } | null)?.id ?? null
        if (Either.isLeft(Schema.decodeUnknownEither(A2a.JsonRpcRequest)(parsed))) {
          return HttpServerResponse.unsafeJson(A2a.jsonRpcError(typeof id === "string" || typeof id === "number" ? id : null, A2a.ErrorCode.InvalidRequest, "not a JSON-RPC 2.0 request"))
        }
        const params = (parsed as { params?: unknown } | null)?.params
        const method = (parsed as { method?: unknown }).method
        const problem = SEND_METHODS.has(String(method)) ? A2a.sendParamsProblem(params, maxBody) : undefined
        if (problem !== undefined) return HttpServerResponse.unsafeJson(A2a.jsonRpcError(id, A2a.ErrorCode.InvalidParams, problem))
        const { handler, v1, v03 } = handlerFor(principal.tenant, peer)
        const context = new ServerCallContext({ user: new A2aUser(principal.subject), tenant: principal.tenant, requestedVersion: version })
        const mapError = legacy ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError : JsonRpcTransportHandler.mapToJSONRPCError
        const answer = yield* Effect.tryPromise({
          try: async () => {
            validateVersion(context.requestedVersion, await handler.getAgentCard(), "JSONRPC")
            return await (legacy ? v03 : v1).handle(parsed as Record<string, unknown>, context)
          },
          catch: (error) => ({ jsonrpc: "2.0" as const, id, error: mapError(error) })
        }).pipe(Effect.merge)
        if (typeof (answer as AsyncGenerator)?.[Symbol.asyncIterator] !== "function") return HttpServerResponse.unsafeJson(answer)
        const events = Stream.fromAsyncIterable(answer as AsyncGenerator<unknown>, (error) => error).pipe(
          Stream.map((event) => encoder.encode(`data: ${JSON.stringify(event)}\n\n`)),
          Stream.catchAll((error) => Stream.make(encoder.encode(`event: error\ndata: ${JSON.stringify({ jsonrpc: "2.0", id, error: mapError(error) })}\n\n`)))
        )
        return HttpServerResponse.stream(events, { contentType: "text/event-stream", headers: SSE_HEADERS })
      })

    const refuse = <A, R>(effect: Effect.Effect<A, Errors.WireError, R>) =>
      effect.pipe(Effect.catchAll((e) => Effect.succeed(Channels.errorResponse(e))))

    return {
      card: (ref: string) => refuse(card(ref)),
      directory: refuse(directory),
      rpc: (ref: string) => refuse(rpc(ref)),
      gatewayFor,
      /** Peers of a tenant that opted in. */
      agents: (tenant: string) => Effect.map(bus.peers.list(tenant), (peers) => peers.filter((p) => A2a.optInOf(p) !== undefined))
    } as const
  })

export class A2aGateway extends Context.Tag("@mks/a2a-broker/A2aGateway")<A2aGateway, Effect.Effect.Success<ReturnType<typeof make>>>() {}

export const layerService = (options: Options = {}) => Layer.scoped(A2aGateway, make(options))

const paramOf = (name: string) => Effect.map(HttpServerRequest.HttpServerRequest, (r) => decodeURIComponent(new URL(r.url, "http://x").pathname.split("/")[3] ?? name))

/** Mount the gateway's routes on the API's router. */
export const routes = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const gateway = yield* A2aGateway
    yield* router.get(`/a2a/${A2a.CARD_PATH}`, gateway.directory)
    yield* router.get(`/a2a/peers/:peer/${A2a.CARD_PATH}`, Effect.flatMap(paramOf("peer"), gateway.card))
    yield* router.post("/a2a/peers/:peer", Effect.flatMap(paramOf("peer"), gateway.rpc))
  })
)
