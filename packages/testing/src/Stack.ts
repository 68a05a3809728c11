/**
 * A whole a2a stack for tests, in this process on 127.0.0.1 ephemeral ports: a broker (SQLite
 * `:memory:` or a file in a temporary home), a runner linked to it, and the proxy in front of
 * fake Messages APIs (one per provider). Everything is torn down when the scope closes: the
 * runner stops its agents first, then the proxy, the broker, the fakes, and the temp dirs go.
 *
 * ```ts
 * const stack = yield* Stack.Stack                   // with Stack.layer({ proxy: { providers: [{ name: "a" }] } })
 * const client = stack.brokerClient()                // a BrokerClient layer with the admin token
 * ```
 */
import { BrokerClient, KeyStore, type VirtualKey } from "@mks/a2a"
import { BrokerConfig, BrokerServer, TokenStore } from "@mks/a2a-broker"
import { ProxyConfig, ProxyServer } from "@mks/a2a-proxy"
import { BrokerLink, RunnerConfig, RunnerServer } from "@mks/a2a-runner"
import { Context, Data, Duration, Effect, Layer, Redacted, Schedule, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FakeMessages from "./FakeMessages.js"

export class StackError extends Data.TaggedError("StackError")<{ readonly message: string }> {}

export type Role = "admin" | "peer" | "runner"

/** A provider of the test proxy: a fake Messages API is started for it unless `baseUrl` is given. */
export interface ProviderOptions {
  readonly name: string
  /** The fake's replies (see `FakeMessages.Options.script`). */
  readonly script?: FakeMessages.Options["script"]
  /** Model patterns this provider serves (implicit routes). */
  readonly models?: ReadonlyArray<string>
  /** A real upstream instead of a fake (still only 127.0.0.1 in tests). */
  readonly baseUrl?: string
}

export interface StackOptions {
  readonly broker?: {
    /** `":memory:"` (default) or `"file"` (SQLite in the temporary home). */
    readonly db?: ":memory:" | "file"
    /** Any broker setting (timeouts, capacities); host and port stay 127.0.0.1:0. */
    readonly config?: Partial<BrokerConfig.BrokerConfigShape>
  }
  /** The runner linked to the broker; `false`: none. */
  readonly runner?:
    | false
    | {
        readonly id?: string
        readonly labels?: Readonly<Record<string, string>>
        readonly capacity?: number
        /** Claude Code for the `claude` preset (default: `claude` on the PATH, the installed a2a MCP server). */
        readonly claude?: Partial<RunnerConfig.RunnerConfigShape["claude"]>
        readonly graceMs?: number
      }
  /**
   * The proxy; `false`: none. Default: one provider `fake`. The first provider is the default
   * route; `routes`/`aliases` as in the proxy's config file.
   */
  readonly proxy?:
    | false
    | {
        readonly providers?: ReadonlyArray<ProviderOptions>
        readonly routes?: ProxyConfig.ProxyConfigInput["routes"]
        readonly aliases?: ProxyConfig.ProxyConfigInput["aliases"]
        readonly default?: string
      }
}

export interface StackBroker {
  readonly url: string
  readonly home: string
  /** The first-start admin token of tenant `default` (also in `<home>/broker.token`). */
  readonly adminToken: string
  /** A fresh static token. */
  readonly createToken: (tenant?: string, roles?: ReadonlyArray<Role>) => Effect.Effect<string, StackError>
}

export interface StackRunner {
  readonly id: string
  /** The runner's local API. */
  readonly url: string
  readonly apiKey: string
  readonly dataDir: string
}

export interface StackProxy {
  /** `ANTHROPIC_BASE_URL` for clients. */
  readonly url: string
  readonly adminToken: string
  /** The virtual key the runner's `claude` preset uses. */
  readonly runnerKey: string
  readonly createKey: (input: VirtualKey.CreateKey) => Effect.Effect<VirtualKey.CreatedKey, StackError>
}

export interface StackService {
  readonly broker: StackBroker
  readonly runner: StackRunner | undefined
  readonly proxy: StackProxy | undefined
  /** The fake upstream of each provider, by provider name. */
  readonly fakes: Readonly<Record<string, FakeMessages.FakeMessagesService>>
  /** A typed broker client (admin token unless one is given). */
  readonly brokerClient: (token?: string) => Layer.Layer<BrokerClient.BrokerClient>
}

export class Stack extends Context.Tag("@mks/a2a-testing/Stack")<Stack, StackService>() {}

const failWith = (what: string) => (e: unknown) =>
  new StackError({ message: `${what}: ${typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)}` })

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Build a layer into the current scope and read one service of it. */
const start = <ROut, E, I, S>(layer: Layer.Layer<ROut, E, never>, tag: Context.Tag<I, S>, what: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.Scope
    const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.mapError(failWith(what)))
    return { context, service: Context.unsafeGet(context as unknown as Context.Context<I>, tag) }
  })

/** The stack as a scoped Effect: everything stops when the scope closes. */
export const make = (options: StackOptions = {}): Effect.Effect<StackService, StackError, Scope.Scope> =>
  Effect.gen(function* () {
    const home = yield* tempDir("a2a-testing-")

    // Fakes first, so their servers outlive everything that calls them.
    const proxyOptions = options.proxy === false ? undefined : (options.proxy ?? {})
    const providers = proxyOptions?.providers ?? (proxyOptions === undefined ? [] : [{ name: "fake" }])
    const fakes: Record<string, FakeMessages.FakeMessagesService> = {}
    for (const p of providers) {
      if (p.baseUrl === undefined) fakes[p.name] = yield* FakeMessages.make({ script: p.script }).pipe(Effect.mapError(failWith(`fake for ${p.name}`)))
    }

    // Broker.
    const config = BrokerConfig.make({
      ...options.broker?.config,
      host: "127.0.0.1",
      port: 0,
      home,
      db: options.broker?.db === "file" ? join(home, "broker.db") : ":memory:"
    })
    const broker = yield* start(BrokerServer.layer(config), BrokerServer.BrokerAddress, "the broker did not start")
    const tokens = Context.unsafeGet(broker.context as unknown as Context.Context<TokenStore.TokenStore>, TokenStore.TokenStore)
    const createToken = (tenant = "default", roles: ReadonlyArray<Role> = ["peer"]) =>
      tokens.create({ tenant, roles: [...roles], name: "a2a-testing" }).pipe(
        Effect.map((r) => r.token),
        Effect.mapError(failWith("cannot create a token"))
      )
    const adminToken = yield* Effect.try({
      try: () => readFileSync(TokenStore.adminTokenPath(home), "utf8").trim(),
      catch: failWith("no admin token")
    })

    // Proxy.
    let proxy: StackProxy | undefined
    if (proxyOptions !== undefined) {
      const proxyAdmin = "a2a_admin_" + randomBytes(24).toString("base64url")
      const input = {
        port: 0,
        host: "127.0.0.1",
        keyFile: ":memory:",
        usageFile: ":memory:",
        providers: providers.map((p) => ({
          name: p.name,
          baseUrl: p.baseUrl ?? fakes[p.name]!.url,
          apiKey: `fake-upstream-key-${p.name}`,
          ...(p.models === undefined ? {} : { models: [...p.models] })
        })),
        ...(proxyOptions.routes === undefined ? {} : { routes: proxyOptions.routes }),
        ...(proxyOptions.aliases === undefined ? {} : { aliases: proxyOptions.aliases }),
        default: proxyOptions.default ?? providers[0]?.name
      }
      const proxyConfig = yield* ProxyConfig.make(input, { env: {}, source: "a2a-testing", adminToken: proxyAdmin }).pipe(Effect.mapError(failWith("invalid proxy settings")))
      const layer = ProxyServer.layerWith(proxyConfig).pipe(Layer.provideMerge(ProxyServer.layerStores(proxyConfig)))
      const started = yield* start(layer, ProxyServer.ProxyServer, "the proxy did not start")
      const keys = Context.unsafeGet(started.context as unknown as Context.Context<KeyStore.KeyStore>, KeyStore.KeyStore)
      const createKey = (input: VirtualKey.CreateKey) =>
        keys.create({ ...input, tenant: input.tenant ?? "default" }).pipe(Effect.mapError(failWith("cannot create a virtual key")))
      const runnerKey = (yield* createKey({ name: "a2a-testing runner" })).key
      proxy = { url: started.service.url, adminToken: proxyAdmin, runnerKey, createKey }
    }

    // Runner, linked to the broker (and to the proxy for the claude preset).
    let runner: StackRunner | undefined
    if (options.runner !== false) {
      const r = options.runner ?? {}
      const dataDir = yield* tempDir("a2a-testing-runner-")
      const apiKey = "rk_" + randomBytes(18).toString("base64url")
      const id = r.id ?? "test-runner"
      const defaults = RunnerConfig.make({ apiKey })
      const runnerConfig = RunnerConfig.make({
        id,
        port: 0,
        host: "127.0.0.1",
        apiKey,
        dataDir,
        labels: r.labels ?? {},
        capacity: r.capacity ?? 8,
        graceMs: r.graceMs ?? 2_000,
        broker: { url: broker.service.url, token: yield* createToken("default", ["runner"]) },
        proxy: proxy === undefined ? undefined : { url: proxy.url, key: proxy.runnerKey },
        // Never share the developer's own ~/.claude with test sessions.
        claude: { bin: defaults.claude.bin, mcpCommand: defaults.claude.mcpCommand, shareFrom: undefined, ...r.claude }
      })
      const started = yield* start(RunnerServer.layer(runnerConfig), RunnerServer.RunnerAddress, "the runner did not start")
      const link = Context.unsafeGet(started.context as unknown as Context.Context<BrokerLink.BrokerLink>, BrokerLink.BrokerLink)
      yield* Effect.tryPromise({ try: () => link.whenOpen(), catch: failWith("the runner did not link to the broker") }).pipe(
        Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new StackError({ message: "the runner did not link to the broker within 10 s" }) })
      )
      runner = { id, url: started.service.url, apiKey, dataDir }
    }

    const brokerClient = (token?: string) => BrokerClient.layer({ url: broker.service.url, token: Redacted.make(token ?? adminToken) })

    // The broker sees the runner once it read its hello: wait for that, so a test can spawn at once.
    if (runner !== undefined) {
      const id = runner.id
      yield* Effect.gen(function* () {
        const client = yield* BrokerClient.BrokerClient
        const { runners } = yield* client.api.runners.list()
        if (!runners.some((r) => r.id === id && r.status === "online")) return yield* new StackError({ message: `runner ${id} not online yet` })
      }).pipe(
        // The broker has no event for "a runner linked" that a client can await: poll, with a deadline.
        Effect.retry(Schedule.spaced(Duration.millis(20)).pipe(Schedule.upTo(Duration.seconds(10)))),
        Effect.mapError(failWith(`the broker did not see runner ${id} online within 10 s`)),
        Effect.provide(brokerClient())
      )
    }

    return {
      broker: { url: broker.service.url, home, adminToken, createToken },
      runner,
      proxy,
      fakes,
      brokerClient
    } satisfies StackService
  })

/** The stack as a layer (e.g. `layer(Stack.layer())("…", (it) => …)` with `@effect/vitest`). */
export const layer = (options: StackOptions = {}): Layer.Layer<Stack, StackError> => Layer.scoped(Stack, make(options))
