/**
 * The proxy side of the CLI: virtual keys and usage through the proxy's control plane
 * (`core`'s `ProxyApi`), with the admin token (or an OIDC admin JWT) from `--admin-token`,
 * `A2A_PROXY_ADMIN_TOKEN` or the proxy's token file.
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { type Ids, ProxyApi, StackRecord } from "@mks/a2a"
import { KeyTables, ProxyConfig } from "@mks/a2a-proxy"
import { Effect } from "effect"
import { ago, CliError, json, type Output, paint, table } from "./Output.js"

export interface ProxyOptions {
  readonly url?: string | undefined
  readonly adminToken?: string | undefined
}

const proxyUrl = (options: ProxyOptions) =>
  // an empty variable counts as unset (as for every setting of the a2a spec, ./CliSpec.ts)
  options.url || process.env.A2A_PROXY_URL || StackRecord.readSync()?.proxy || `http://127.0.0.1:${process.env.A2A_PROXY_PORT || ProxyConfig.DEFAULT_PORT}`

const describe = (error: unknown, url: string): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: string; message?: string; reason?: string; cause?: { code?: string; cause?: { code?: string } } }
    if (e._tag === "RequestError" || (e._tag === "ResponseError" && e.reason !== "StatusCode")) {
      return `cannot reach the proxy at ${url} (${e.cause?.code ?? e.cause?.cause?.code ?? e.reason ?? "no answer"})`
    }
    if (typeof e.message === "string" && e.message.length > 0) return e._tag !== undefined ? `${e._tag}: ${e.message}` : e.message
    if (e._tag !== undefined) return e._tag
  }
  return String(error)
}

const client = (options: ProxyOptions) =>
  Effect.gen(function*() {
    const url = proxyUrl(options)
    let token = options.adminToken ?? process.env.A2A_PROXY_ADMIN_TOKEN
    if (token === undefined || token === "") {
      const found = yield* ProxyConfig.adminTokenFromFile(ProxyConfig.adminTokenFile(), false).pipe(Effect.orElseSucceed(() => undefined))
      token = found?.token
    }
    if (token === undefined) {
      return yield* new CliError({ message: `no proxy admin token: pass --admin-token, set A2A_PROXY_ADMIN_TOKEN, or start the proxy once to create ${ProxyConfig.adminTokenFile()}` })
    }
    const api = yield* HttpApiClient.make(ProxyApi.ProxyControlApi, {
      baseUrl: url,
      transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
    })
    const call = <A, E>(effect: Effect.Effect<A, E>) => effect.pipe(Effect.mapError((e) => new CliError({ message: describe(e, url) })))
    return { api, call }
  }).pipe(Effect.provide(FetchHttpClient.layer))

export interface CreateInput {
  readonly name: string
  readonly tenant?: string | undefined
  readonly tier?: string | undefined
  readonly models?: ReadonlyArray<string> | undefined
  readonly rpm?: number | undefined
  readonly requestsPer5h?: number | undefined
  readonly tokensPer5h?: number | undefined
  readonly expiresAt?: string | undefined
}

export const keysCreate = (o: Output, options: ProxyOptions, input: CreateInput) =>
  Effect.gen(function*() {
    const { api, call } = yield* client(options)
    const limits = {
      ...(input.rpm === undefined ? {} : { requestsPerMinute: input.rpm }),
      ...(input.requestsPer5h === undefined ? {} : { requestsPer5h: input.requestsPer5h }),
      ...(input.tokensPer5h === undefined ? {} : { tokensPer5h: input.tokensPer5h })
    }
    const created = yield* call(
      api.keys.create({
        payload: {
          name: input.name,
          tenant: input.tenant,
          tier: input.tier as never,
          models: input.models,
          limits: Object.keys(limits).length > 0 ? limits : undefined,
          expiresAt: input.expiresAt
        } as never
      })
    )
    if (o.json) return json(o, created)
    o.err(paint(o, "dim", `created ${created.record.id} (${created.record.name}, tenant ${created.record.tenant}); the key is shown only now:`))
    o.out(created.key)
  })

export const keysList = (o: Output, options: ProxyOptions) =>
  Effect.gen(function*() {
    const { api, call } = yield* client(options)
    const { keys } = yield* call(api.keys.list())
    if (o.json) return json(o, keys)
    if (keys.length === 0) return o.out("no keys")
    table(o, KeyTables.KEY_HEADER, keys.map((k) => KeyTables.keyRow(k, ago)))
  })

export const keysRevoke = (o: Output, options: ProxyOptions, id: string) =>
  Effect.gen(function*() {
    const { api, call } = yield* client(options)
    yield* call(api.keys.revoke({ path: { id: id as Ids.KeyId } }))
    if (o.json) return json(o, { revoked: id })
    o.out(`revoked ${id}`)
  })

export const usage = (o: Output, options: ProxyOptions, key: string | undefined) =>
  Effect.gen(function*() {
    const { api, call } = yield* client(options)
    const { usage } = yield* call(api.keys.usage({ urlParams: key === undefined ? {} : { key: key as Ids.KeyId } }))
    if (o.json) return json(o, usage)
    if (usage.length === 0) return o.out("no usage")
    table(o, KeyTables.USAGE_HEADER, usage.map(KeyTables.usageRow))
  })
