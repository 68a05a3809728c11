/**
 * The MCP server as an Effect resource: an `McpServer` from the official SDK with the 21
 * tools, the experimental `claude/channel` capability, and a {@link Session} on the bus.
 * `serve(transport)` connects it to any MCP transport (stdio in the CLI, in-memory in
 * embedding programs) for the lifetime of the scope. The SDK server and what clients see of it
 * (name, capabilities, instructions, tools) come from Front.ts; {@link attach} adds what the
 * tools do. The bin builds the front first and attaches the Effect part once it has loaded.
 */
import type { McpServer as SdkServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { BrokerClient } from "@mks/a2a"
import { Cause, Deferred, Effect, Exit, Layer, Runtime, type Scope } from "effect"
import * as Front from "./Front.js"
import type { McpConfig } from "./McpConfig.js"
import * as Session from "./Session.js"
import { type ClientInfo, describeError, type SessionService } from "./Session.js"
import { allTools } from "./Tools.js"

export { CHANNEL_CAPABILITY, CHANNEL_METHOD, instructions, SERVER_NAME } from "./Front.js"

/**
 * Start the session on an SDK server built by {@link Front.make}: it registers once `initialized`
 * resolves (the client has initialized), pushes through `server`, and `call` runs the tools
 * against it. The session lives as long as the scope.
 */
export const attach = (
  config: McpConfig,
  server: SdkServer,
  initialized: Promise<ClientInfo>
): Effect.Effect<{ readonly session: SessionService; readonly call: Front.CallTool }, never, Scope.Scope | BrokerClient.BrokerClient> =>
  Effect.gen(function*() {
    const client = yield* BrokerClient.BrokerClient
    const init = yield* Deferred.make<ClientInfo>()
    yield* Effect.promise(() => initialized).pipe(Effect.flatMap((info) => Deferred.succeed(init, info)), Effect.forkScoped)
    const notify = (content: string, meta: Record<string, string>) =>
      Effect.tryPromise(() => server.server.notification({ method: Front.CHANNEL_METHOD, params: { content, meta } }))
    const session = yield* Session.make(config, client, init, notify)
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromiseExit(Runtime.provideService(runtime, Session.Session, session))
    const tools = new Map(allTools().map((tool) => [tool.name, tool]))
    const call: Front.CallTool = async (name, args) => {
      const tool = tools.get(name)
      if (tool === undefined) return { content: [{ type: "text", text: `unknown tool ${name}` }], isError: true }
      const exit = await run(tool.run(args))
      if (Exit.isSuccess(exit)) {
        return { content: [{ type: "text" as const, text: exit.value.text }], structuredContent: exit.value.structured }
      }
      const failure = Cause.failureOption(exit.cause)
      const text = failure._tag === "Some" ? failure.value.message : `internal error in ${tool.name}: ${describeError(Cause.squash(exit.cause))}`
      return { content: [{ type: "text" as const, text }], isError: true } satisfies CallToolResult
    }
    return { session, call }
  })

/** Build the SDK server, its tools and the session; the session registers once the client has initialized. */
export const make = (config: McpConfig): Effect.Effect<{ readonly server: SdkServer; readonly session: SessionService }, never, Scope.Scope | BrokerClient.BrokerClient> =>
  Effect.gen(function*() {
    let call: Front.CallTool | undefined
    const front = Front.make((name, args) => call!(name, args))
    const attached = yield* attach(config, front.server, front.initialized)
    call = attached.call
    return { server: front.server, session: attached.session }
  })

/** Serve on `transport` until the scope closes; the server closes (and the channel with it) on scope close. */
export const serve = (config: McpConfig, transport: Transport) =>
  Effect.gen(function*() {
    const built = yield* make(config)
    yield* Effect.acquireRelease(
      Effect.promise(() => built.server.connect(transport)),
      () => Effect.promise(() => built.server.close()).pipe(Effect.ignore)
    )
    return built
  })

/** {@link serve} as a layer over the configured broker client. */
export const layer = (config: McpConfig, transport: Transport): Layer.Layer<Session.Session> =>
  Layer.scoped(Session.Session, Effect.map(serve(config, transport), (b) => b.session)).pipe(
    Layer.provide(BrokerClient.layer(config.broker))
  )
