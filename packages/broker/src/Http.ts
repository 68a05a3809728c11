/**
 * The broker's HTTP API: handlers for every group of core's `BrokerApi`, over the `Bus`.
 */
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { Authenticator, BrokerApi, Errors, Permission, Principal, Runner, Task } from "@mks/a2a"
import { Effect, Layer, Redacted } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { Bus } from "./Bus.js"
import { Metrics } from "./Metrics.js"

const Api = BrokerApi.BrokerApi

/** Bearer token → Principal for every authenticated endpoint. */
export const AuthenticationLive = Layer.effect(
  BrokerApi.Authentication,
  Effect.gen(function* () {
    const auth = yield* Authenticator.Authenticator
    return {
      bearer: (token) =>
        Redacted.value(token).length === 0
          ? Effect.fail(new Errors.Unauthorized({ message: "missing bearer token" }))
          : auth.authenticate(Redacted.value(token))
    }
  })
)

/** The URL this broker is reachable at, for spawn orders. */
export const brokerUrl = Effect.gen(function* () {
  const config = yield* BrokerConfig
  if (config.publicUrl !== undefined) return config.publicUrl
  const server = yield* HttpServer.HttpServer
  const address = server.address
  return address._tag === "TcpAddress" ? `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}` : "http://127.0.0.1:4200"
})

const HealthLive = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const metrics = yield* Metrics
    // Built on the first request, not at start: deriving the document walks every schema of the
    // API (~15 ms and ~1 MiB kept), which a broker that is never asked for it need not pay.
    let doc: ReturnType<typeof BrokerApi.openApi> | undefined
    return handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const, version: config.version }))
      .handle("openapi", () => Effect.sync(() => (doc ??= BrokerApi.openApi())))
      .handle("metrics", () =>
        Effect.flatMap(Principal.CurrentPrincipal, (principal) =>
          // Process-wide figures count every tenant: an operator's to read, not any token's.
          Permission.canReadMetrics(principal)
            ? metrics.render
            : Effect.fail(
                new Errors.Forbidden({ message: `/metrics counts every tenant: it needs an admin token of tenant "${Permission.OPERATOR_TENANT}" or the "metrics" scope` })
              )
        )
      )
  })
)

const PeersLive = HttpApiBuilder.group(Api, "peers", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    return handlers
      .handle("register", ({ payload }) =>
        Effect.gen(function* () {
          const principal = yield* Principal.CurrentPrincipal
          const { record, resumed } = yield* bus.register(principal, payload)
          return resumed ? new BrokerApi.PeerResumed({ peer: record.peer }) : new BrokerApi.PeerCreated({ peer: record.peer })
        })
      )
      .handle("list", ({ urlParams }) =>
        Effect.gen(function* () {
          const principal = yield* Principal.CurrentPrincipal
          return { peers: yield* bus.peers.list(principal.tenant, urlParams) }
        })
      )
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* Principal.CurrentPrincipal
          return { peer: (yield* bus.peers.get(principal.tenant, path.id)).peer }
        })
      )
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          const principal = yield* Principal.CurrentPrincipal
          return { peer: yield* bus.update(principal, path.id, payload) }
        })
      )
      .handle("unregister", ({ path }) => Effect.flatMap(Principal.CurrentPrincipal, (principal) => bus.unregister(principal, path.id)))
      .handle("heartbeat", ({ path }) =>
        Effect.gen(function* () {
          const principal = yield* Principal.CurrentPrincipal
          return { peer: yield* bus.heartbeat(principal, path.id) }
        })
      )
  })
)

const MessagesLive = HttpApiBuilder.group(Api, "messages", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    return handlers.handle("send", ({ payload }) =>
      Effect.gen(function* () {
        const principal = yield* Principal.CurrentPrincipal
        const { from, ...fields } = payload
        return yield* bus.send(principal, from, fields)
      })
    )
  })
)

const InboxLive = HttpApiBuilder.group(Api, "inbox", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    return handlers
      .handle("read", ({ path, urlParams }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.readInbox(p, path.id, urlParams)))
      .handle("ack", ({ path, payload }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.ack(p, path.id, payload.upTo)))
  })
)

const TeamsLive = HttpApiBuilder.group(Api, "teams", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    return handlers
      .handle("create", ({ payload }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.createTeam(p, payload).pipe(Effect.map((team) => ({ team })))))
      .handle("list", () => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.teams.list(p.tenant).pipe(Effect.map((teams) => ({ teams })))))
      .handle("get", ({ path }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.teams.get(p.tenant, path.name).pipe(Effect.map((team) => ({ team })))))
      .handle("join", ({ path, payload }) =>
        Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.joinTeam(p, path.name, payload.peerId).pipe(Effect.map((team) => ({ team }))))
      )
      .handle("leave", ({ path }) =>
        Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.leaveTeam(p, path.name, path.peerId).pipe(Effect.map((team) => ({ team }))))
      )
  })
)

const RunnersLive = HttpApiBuilder.group(Api, "runners", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    return handlers.handle("list", () =>
      Effect.flatMap(Principal.CurrentPrincipal, (p) =>
        bus.spawns.runners(p.tenant).pipe(Effect.map((runners): typeof Runner.RunnerList.Type => ({ runners })))
      )
    )
  })
)

const SpawnLive = HttpApiBuilder.group(Api, "spawn", (handlers) =>
  Effect.gen(function* () {
    const bus = yield* Bus
    const url = yield* brokerUrl
    return handlers
      .handle("create", ({ payload }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.createSpawn(p, payload, url).pipe(Effect.map((spawn) => ({ spawn })))))
      .handle("list", () => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.spawns.list(p.tenant).pipe(Effect.map((spawns) => ({ spawns })))))
      .handle("get", ({ path }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.spawns.get(p.tenant, path.id).pipe(Effect.map((spawn) => ({ spawn })))))
      .handle("stop", ({ path }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.stopSpawn(p, path.id).pipe(Effect.map((spawn) => ({ spawn })))))
      .handle("stopPeer", ({ path }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => bus.stopPeer(p, path.id).pipe(Effect.map((spawn) => ({ spawn })))))
  })
)

const TasksLive = HttpApiBuilder.group(Api, "tasks", (handlers) =>
  Effect.gen(function* () {
    const { tasks } = yield* Bus
    const one = <E>(f: (p: Principal.Principal) => Effect.Effect<Task.Task, E>) => Effect.flatMap(Principal.CurrentPrincipal, (p) => Effect.map(f(p), (task) => ({ task })))
    return handlers
      .handle("create", ({ payload }) => one((p) => tasks.create(p, payload)))
      .handle("list", ({ urlParams }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => Effect.map(tasks.list(p, urlParams), (list) => ({ tasks: list }))))
      .handle("get", ({ path }) => one((p) => tasks.get(p, path.id)))
      .handle("claimNext", ({ payload }) => Effect.flatMap(Principal.CurrentPrincipal, (p) => Effect.map(tasks.claimNext(p, payload), (task) => ({ task: task ?? null }))))
      .handle("claim", ({ path, payload }) => one((p) => tasks.claim(p, path.id, payload)))
      .handle("heartbeat", ({ path, payload }) => one((p) => tasks.heartbeat(p, path.id, payload)))
      .handle("complete", ({ path, payload }) => one((p) => tasks.complete(p, path.id, payload)))
      .handle("fail", ({ path, payload }) => one((p) => tasks.fail(p, path.id, payload)))
      .handle("release", ({ path, payload }) => one((p) => tasks.release(p, path.id, payload)))
      .handle("cancel", ({ path, payload }) => one((p) => tasks.cancel(p, path.id, payload)))
      .handle("reassign", ({ path, payload }) => one((p) => tasks.reassign(p, path.id, payload)))
  })
)

/** Every group of the API, needing the Bus, config, metrics, an Authenticator and the HttpServer. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([HealthLive, PeersLive, MessagesLive, InboxLive, TeamsLive, RunnersLive, SpawnLive, TasksLive]),
  Layer.provide(AuthenticationLive)
)
