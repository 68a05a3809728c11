/**
 * The control plane, implemented against core's `ProxyApi.ProxyControlApi`: keys (admin),
 * usage of any key (admin), usage of the calling key. Served by the same node:http server as
 * the data plane through `NodeHttpServer.makeHandler`.
 */
import { HttpApiBuilder } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Authenticator, Errors, Ids, KeyStore, Principal, ProxyApi, UsageMeter, VirtualKey } from "@mks/a2a"
import type { Usage } from "@mks/a2a"
import { Effect, Layer, Redacted } from "effect"

/** Subject of the principal the static admin token resolves to: an operator of every tenant. */
export const ADMIN_SUBJECT = "a2a-proxy-admin-token"

export interface Options {
  readonly adminToken: Redacted.Redacted<string> | undefined
  /**
   * More ways to be admin (the configured OIDC issuer, an embedder's verifier), tried in order
   * after the static token; their principals are scoped to their tenant.
   */
  readonly adminAuthenticators?: ReadonlyArray<Authenticator.AuthenticatorService>
}

/** What a principal may see: every tenant for the static admin token, its own tenant otherwise. */
const scopeOf = (principal: Principal.Principal): string | undefined => (principal.subject === ADMIN_SUBJECT ? undefined : principal.tenant)

export const usageReport = (meter: UsageMeter.UsageMeterService, record: VirtualKey.VirtualKey) =>
  Effect.map(meter.snapshot(record.id), (snapshot): Usage.UsageReport => {
    const limits = record.limits
    const w = snapshot.window
    const tokens = w.inputTokens + w.outputTokens + w.cacheCreationInputTokens + w.cacheReadInputTokens
    return {
      record,
      window: w,
      limits,
      remaining: {
        ...(limits.requestsPerMinute === undefined ? {} : { requestsPerMinute: Math.max(0, limits.requestsPerMinute - snapshot.requestsLastMinute) }),
        ...(limits.requestsPer5h === undefined ? {} : { requestsPer5h: Math.max(0, limits.requestsPer5h - w.requests) }),
        ...(limits.tokensPer5h === undefined ? {} : { tokensPer5h: Math.max(0, limits.tokensPer5h - tokens - snapshot.reservedTokens) })
      }
    }
  })

export const make = (options: Options) =>
  Effect.gen(function* () {
    const keys = yield* KeyStore.KeyStore
    const meter = yield* UsageMeter.UsageMeter
    const staticTokens = yield* Authenticator.makeStaticTokens(
      options.adminToken === undefined
        ? []
        : [{ token: Redacted.value(options.adminToken), principal: new Principal.Principal({ subject: ADMIN_SUBJECT, tenant: "default", roles: ["admin"] }) }]
    )
    const others = options.adminAuthenticators ?? []
    const admins = others.length === 0 ? staticTokens : Authenticator.firstOf(staticTokens, ...others)

    const AdminLive = Layer.succeed(
      ProxyApi.ProxyAdmin,
      ProxyApi.ProxyAdmin.of({
        bearer: (token) =>
          admins.authenticate(Redacted.value(token)).pipe(
            // A verified principal without the role is known, just not allowed: 403, not 401.
            Effect.filterOrFail(
              (p) => p.isAdmin,
              (p) => new Errors.Forbidden({ message: `${p.subject} lacks the admin role` })
            )
          )
      })
    )
    // Fail closed: an unusable key store is a 503, as on the data plane.
    const byKey = (token: Redacted.Redacted<string>) => keys.authenticate(Redacted.value(token))
    const KeyAuthLive = Layer.succeed(ProxyApi.KeyAuthentication, ProxyApi.KeyAuthentication.of({ apiKey: byKey, bearer: byKey }))

    /** The key, if the caller's scope may see it; 404 otherwise so existence does not leak. */
    const visible = (principal: Principal.Principal, id: Ids.KeyId) =>
      keys.get(id).pipe(
        Effect.filterOrFail(
          (record) => {
            const scope = scopeOf(principal)
            return scope === undefined || record.tenant === scope
          },
          () => new Errors.KeyNotFound({ message: `no key ${id}`, key: id })
        )
      )

    const KeysLive = HttpApiBuilder.group(ProxyApi.ProxyControlApi, "keys", (handlers) =>
      handlers
        .handle("create", ({ payload }) =>
          Effect.gen(function* () {
            const principal = yield* Principal.CurrentPrincipal
            const scope = scopeOf(principal)
            if (scope !== undefined && payload.tenant !== undefined && payload.tenant !== scope) {
              return yield* new Errors.Forbidden({ message: `cannot create keys in tenant ${payload.tenant}` })
            }
            return yield* keys.create({ ...payload, tenant: scope ?? payload.tenant ?? "default" })
          })
        )
        .handle("list", () =>
          Effect.flatMap(Principal.CurrentPrincipal, (principal) => Effect.map(keys.list(scopeOf(principal)), (list) => ({ keys: list })))
        )
        .handle("update", ({ path, payload }) =>
          Effect.gen(function* () {
            yield* visible(yield* Principal.CurrentPrincipal, path.id)
            return { record: yield* keys.update(path.id, payload) }
          })
        )
        .handle("revoke", ({ path }) =>
          Effect.gen(function* () {
            yield* visible(yield* Principal.CurrentPrincipal, path.id)
            yield* keys.revoke(path.id)
          })
        )
        .handle("usage", ({ urlParams }) =>
          Effect.gen(function* () {
            const principal = yield* Principal.CurrentPrincipal
            const records = urlParams.key === undefined ? yield* keys.list(scopeOf(principal)) : [yield* visible(principal, urlParams.key)]
            return { usage: yield* Effect.forEach(records, (record) => usageReport(meter, record)) }
          })
        )
    )
    const SelfLive = HttpApiBuilder.group(ProxyApi.ProxyControlApi, "self", (handlers) =>
      handlers.handle("usage", () => Effect.flatMap(ProxyApi.CurrentKey, (record) => usageReport(meter, record)))
    )

    const ApiLive = HttpApiBuilder.api(ProxyApi.ProxyControlApi).pipe(
      Layer.provide([KeysLive, SelfLive]),
      Layer.provide([AdminLive, KeyAuthLive])
    )
    const context = yield* Layer.build(Layer.mergeAll(ApiLive, HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer, NodeHttpServer.layerContext))
    const app = yield* Effect.provide(HttpApiBuilder.httpApp, context)
    return yield* Effect.provide(NodeHttpServer.makeHandler(app), context)
  })

/** Whether a path belongs to the control plane. */
export const isControlPath = (path: string): boolean =>
  path === "/v1/keys" || path.startsWith("/v1/keys/") || path === "/v1/usage" || path === "/v1/usage/me"

