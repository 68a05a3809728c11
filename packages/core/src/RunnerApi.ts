/**
 * The runner's local HTTP API (docs/runner.md) as one `HttpApi` definition: the runner serves
 * it (`RunnerServer.layerApp` in `@mks/a2a-runner`), the typed client is derived from it
 * (`client`), and its `/openapi.json` is generated from it. The schemas of agents (the spec, the
 * public view, status and log events) and the runner's own wire errors live here too.
 *
 * The streams stay plain routes beside the API (an `HttpApi` endpoint answers once): the SSE
 * streams `GET /sse/status`, `GET /sse/agents/:id/logs` and the terminal WebSocket
 * `GET /ws/agents/:id/terminal`; the OpenAPI document describes them by hand.
 *
 * Error bodies are the broker's `{_tag, message, …}` plus an `error: {type, message}` envelope
 * (clients of either shape read them): every error schema of this API is `enveloped`.
 */
import {
  type HttpApiClient as HttpApiClientNs,
  HttpApi,
  HttpApiClient,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  HttpClient,
  HttpClientRequest,
  OpenApi
} from "@effect/platform"
import { Effect, Schema } from "effect"
import { InvalidRequest, PayloadTooLarge, Unauthorized, UnsupportedMediaType } from "./Errors.js"
import { PeerName, TeamName, Timestamp } from "./Ids.js"
import { Preset } from "./Spawn.js"

// ---- agents -------------------------------------------------------------------------------

/** When a process that ended is started again. */
export const RestartPolicy = Schema.Literal("always", "on-failure", "never")
export type RestartPolicy = typeof RestartPolicy.Type

/**
 * `starting` → `running` → `stopping` → `stopped` (asked to stop), or `exited` (ended on its own
 * with code 0) / `crashed` (non-zero code or a signal). A restart goes back to `starting`.
 */
export const AgentStatus = Schema.Literal("starting", "running", "stopping", "stopped", "exited", "crashed")
export type AgentStatus = typeof AgentStatus.Type

const Env = Schema.Record({ key: Schema.String, value: Schema.String })

/** The body of `POST /agents` and the content of a definition file. */
export const AgentSpec = Schema.Struct({
  name: PeerName,
  preset: Schema.optional(Preset),
  command: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  args: Schema.optional(Schema.Array(Schema.String)),
  cwd: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  env: Schema.optional(Env),
  restart: Schema.optional(RestartPolicy),
  prompt: Schema.optional(Schema.String.pipe(Schema.maxLength(262_144))),
  provider: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  teams: Schema.optional(Schema.Array(TeamName))
}).pipe(
  Schema.filter((spec) =>
    (spec.preset ?? (spec.command !== undefined ? "command" : "claude")) === "command" && spec.command === undefined
      ? { path: ["command"], message: "preset `command` needs a `command`" }
      : true
  ),
  Schema.annotations({ identifier: "AgentSpec" })
)
export type AgentSpec = typeof AgentSpec.Type

/**
 * An agent's spec as the runner answers it (`config` of `GET /agents/:id`): the fields of
 * `AgentSpec` without its checks, since a spawn order's spec was checked by the broker's rules.
 */
export const AgentConfig = Schema.Struct({
  name: Schema.String,
  preset: Schema.optional(Preset),
  command: Schema.optional(Schema.String),
  args: Schema.optional(Schema.Array(Schema.String)),
  cwd: Schema.optional(Schema.String),
  env: Schema.optional(Env),
  restart: Schema.optional(RestartPolicy),
  prompt: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  teams: Schema.optional(Schema.Array(Schema.String))
}).pipe(Schema.annotations({ identifier: "AgentConfig" }))
export type AgentConfig = typeof AgentConfig.Type

/** The public view of an agent (`GET /agents`). */
export const Agent = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  status: AgentStatus,
  pid: Schema.optional(Schema.Int),
  startedAt: Schema.optional(Timestamp),
  restarts: Schema.Int,
  exitCode: Schema.optional(Schema.Int),
  spawnId: Schema.optional(Schema.String),
  peerId: Schema.optional(Schema.String),
  preset: Preset,
  command: Schema.String,
  args: Schema.Array(Schema.String),
  cwd: Schema.String,
  restart: RestartPolicy
}).pipe(Schema.annotations({ identifier: "Agent" }))
export type Agent = typeof Agent.Type

/** `GET /agents/:id`: the agent, its spec and the last 200 log lines. */
export const AgentDetail = Schema.Struct({ agent: Agent, config: AgentConfig, logs: Schema.Array(Schema.String) })
export type AgentDetail = typeof AgentDetail.Type

/** `GET /agents`. */
export const AgentList = Schema.Struct({ agents: Schema.Array(Agent) })
/** `POST /agents` (201), `/start`, `/stop`, `/restart`, `DELETE /agents/:id`. */
export const AgentResponse = Schema.Struct({ agent: Agent })
/** `GET /agents/:id/logs`: the last `n` lines. */
export const AgentLogs = Schema.Struct({ agent_id: Schema.String, lines: Schema.Array(Schema.String) })

/** One event of `GET /sse/status`. */
export const StatusChange = Schema.Struct({
  agent_id: Schema.String,
  old_status: Schema.NullOr(AgentStatus),
  new_status: AgentStatus,
  at: Timestamp
})
export type StatusChange = typeof StatusChange.Type

/** One event of `GET /sse/agents/:id/logs`. */
export const LogLine = Schema.Struct({ agent_id: Schema.String, line: Schema.String, at: Timestamp })
export type LogLine = typeof LogLine.Type

/** `GET /health` (open). */
export const Health = Schema.Struct({ status: Schema.Literal("ok"), version: Schema.String, runner: Schema.String })
export type Health = typeof Health.Type

// ---- errors -------------------------------------------------------------------------------

/** 404: no agent with this id on this runner. */
export class AgentNotFound extends Schema.TaggedError<AgentNotFound>()(
  "AgentNotFound",
  { message: Schema.String, agent: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** 409: another agent of this runner has this name. */
export class AgentExists extends Schema.TaggedError<AgentExists>()(
  "AgentExists",
  { message: Schema.String, name: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** 404: no such route (or not with this method). */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** Every error the runner's API answers. */
export type ApiError = InvalidRequest | Unauthorized | PayloadTooLarge | UnsupportedMediaType | AgentNotFound | AgentExists | RouteNotFound

/** The `error: {type, message}` envelope every runner error body also carries. */
export const ErrorEnvelope = Schema.Struct({ type: Schema.String, message: Schema.String })

/**
 * An error class as the runner's wire has it: its own fields plus `error: {type, message}`.
 * Decoding drops the envelope; encoding adds it.
 */
export const enveloped = <Self extends Schema.Schema.AnyNoContext & { readonly fields: Schema.Struct.Fields }>(self: Self, status: number) =>
  Schema.transform(Schema.Struct({ ...self.fields, error: ErrorEnvelope }), self, {
    strict: false,
    decode: ({ error: _, ...rest }: Record<string, unknown>) => rest,
    encode: (fields: Record<string, unknown>) => ({ ...fields, error: { type: fields._tag, message: fields.message } })
  }).annotations(HttpApiSchema.annotations({ status }))

export const InvalidRequestBody = enveloped(InvalidRequest, 400)
export const UnauthorizedBody = enveloped(Unauthorized, 401)
export const AgentNotFoundBody = enveloped(AgentNotFound, 404)
export const RouteNotFoundBody = enveloped(RouteNotFound, 404)
export const AgentExistsBody = enveloped(AgentExists, 409)
export const PayloadTooLargeBody = enveloped(PayloadTooLarge, 413)
export const UnsupportedMediaTypeBody = enveloped(UnsupportedMediaType, 415)

const statuses: Record<ApiError["_tag"], number> = {
  InvalidRequest: 400,
  Unauthorized: 401,
  AgentNotFound: 404,
  RouteNotFound: 404,
  AgentExists: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415
}

/** HTTP status of a runner API error. */
export const statusOf = (error: ApiError): number => statuses[error._tag]

/** The JSON body of an error: `{_tag, …fields, message, error: {type, message}}`. */
export const errorBody = (error: ApiError): Record<string, unknown> => {
  const { _tag, ...fields } = error as unknown as Record<string, unknown> & { _tag: string }
  const plain = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && typeof v !== "function"))
  return { _tag, ...plain, message: error.message, error: { type: _tag, message: error.message } }
}

// ---- the API ------------------------------------------------------------------------------

/**
 * The runner's API key, as `Authorization: Bearer <key>` (or `?token=<key>`); the runner
 * provides the implementation (a constant-time compare).
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("@mks/a2a/RunnerApi/Authorization", {
  failure: UnauthorizedBody,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const AgentPath = Schema.Struct({ id: Schema.String })

/** `?n=`: lines of history, 0–100000 (default 200). */
export const LogsQuery = Schema.Struct({
  n: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, 100_000)))
})

export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true })
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health))
  .add(HttpApiEndpoint.get("openapi", "/openapi.json").addSuccess(Schema.Unknown)) {}

export class AgentsGroup extends HttpApiGroup.make("agents")
  .add(HttpApiEndpoint.get("list", "/agents").addSuccess(AgentList))
  .add(
    HttpApiEndpoint.post("create", "/agents")
      .setPayload(AgentSpec)
      .addSuccess(AgentResponse, { status: 201 })
      .addError(AgentExistsBody)
      .addError(PayloadTooLargeBody)
      .addError(UnsupportedMediaTypeBody)
  )
  .add(HttpApiEndpoint.get("get", "/agents/:id").setPath(AgentPath).addSuccess(AgentDetail).addError(AgentNotFoundBody))
  .add(HttpApiEndpoint.del("remove", "/agents/:id").setPath(AgentPath).addSuccess(AgentResponse).addError(AgentNotFoundBody))
  .add(HttpApiEndpoint.post("start", "/agents/:id/start").setPath(AgentPath).addSuccess(AgentResponse).addError(AgentNotFoundBody))
  .add(HttpApiEndpoint.post("stop", "/agents/:id/stop").setPath(AgentPath).addSuccess(AgentResponse).addError(AgentNotFoundBody))
  .add(HttpApiEndpoint.post("restart", "/agents/:id/restart").setPath(AgentPath).addSuccess(AgentResponse).addError(AgentNotFoundBody))
  .add(
    HttpApiEndpoint.get("logs", "/agents/:id/logs")
      .setPath(AgentPath)
      .setUrlParams(LogsQuery)
      .addSuccess(AgentLogs)
      .addError(AgentNotFoundBody)
  )
  .middleware(Authorization) {}

const authParameters = [
  { name: "token", in: "query", required: false, description: "The API key, for clients that cannot set headers (browsers, EventSource)", schema: { type: "string" } }
]
const idParameter = { name: "id", in: "path", required: true, schema: { type: "string" } }
const streamResponses = (ok: Record<string, unknown>) => ({
  ...ok,
  "401": { description: "Unauthorized" },
  "404": { description: "AgentNotFound" }
})

/** The streams are plain routes beside the API; the OpenAPI document describes them by hand. */
const streamPaths = {
  "/sse/status": {
    get: {
      tags: ["streams"],
      summary: "Status changes of every agent (Server-Sent Events)",
      description: "`event: status`, `data: {agent_id, old_status, new_status, at}` on every change; a `: ping` comment every 15 s.",
      security: [{ bearer: [] }],
      parameters: authParameters,
      responses: { "200": { description: "text/event-stream" }, "401": { description: "Unauthorized" } }
    }
  },
  "/sse/agents/{id}/logs": {
    get: {
      tags: ["streams"],
      summary: "New log lines of an agent (Server-Sent Events)",
      description: "`event: log`, `data: {agent_id, line, at}` for each new line; a `: ping` comment every 15 s.",
      security: [{ bearer: [] }],
      parameters: [idParameter, ...authParameters],
      responses: streamResponses({ "200": { description: "text/event-stream" } })
    }
  },
  "/ws/agents/{id}/terminal": {
    get: {
      tags: ["streams"],
      summary: "Attach to an agent's terminal (WebSocket)",
      description:
        'Server frames: {"type":"output","data"} (the last 64 KiB first), {"type":"exit","status"}. Client frames: {"type":"input","data"}, {"type":"resize","cols","rows"}; any other frame is keystrokes.',
      security: [{ bearer: [] }],
      parameters: [idParameter, ...authParameters],
      responses: streamResponses({ "101": { description: "Switching Protocols: JSON text frames follow" } })
    }
  }
}

/** The runner's whole local API. Errors any endpoint may answer are declared once here. */
export class RunnerApi extends HttpApi.make("runner")
  .add(HealthGroup)
  .add(AgentsGroup)
  .addError(InvalidRequestBody)
  .addError(UnauthorizedBody)
  .addError(RouteNotFoundBody)
  .annotate(OpenApi.Title, "@mks/a2a runner")
  .annotate(OpenApi.Transform, (spec) => ({ ...spec, paths: { ...spec.paths, ...streamPaths } }))
  .annotate(
    OpenApi.Description,
    "The local API of a2a-runner: agents it keeps running, their logs, and streams (SSE status and log lines, the terminal WebSocket); see docs/runner.md. Every route but /health and /openapi.json needs the runner's API key."
  ) {}

/** The OpenAPI 3 document served at `/openapi.json`. */
export const openApi = () => OpenApi.fromApi(RunnerApi)

/** The typed client of every `RunnerApi` group (`agents.create(...)`, `health()`, …). */
export type Client = typeof RunnerApi extends HttpApi.HttpApi<infer _Id, infer Groups, infer E, infer _R> ? HttpApiClientNs.Client<Groups, E, never> : never

/**
 * The typed client of a runner's local API, derived from `RunnerApi`: `url` is the runner's
 * base URL (a path prefix, e.g. a host app's mount point, is kept), `apiKey` its key.
 *
 * ```ts
 * const runner = yield* RunnerApi.client({ url: "http://127.0.0.1:8487", apiKey })
 * const { agent } = yield* runner.agents.create({ payload: { name: "web", command: "npm", args: ["run", "dev"] } })
 * ```
 */
export const client = (options: { readonly url: string | URL; readonly apiKey: string }): Effect.Effect<Client, never, HttpClient.HttpClient> =>
  HttpApiClient.make(RunnerApi, {
    baseUrl: String(options.url).replace(/\/+$/, ""),
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(options.apiKey))
  }) as Effect.Effect<Client, never, HttpClient.HttpClient>
