/**
 * The broker's HTTP API as one `HttpApi` definition. The broker implements its groups, the
 * typed client is derived from it (`HttpApiClient`), and `/openapi.json` is generated from it,
 * so server, client and documentation cannot drift apart.
 */
import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import { Schema } from "effect"
import {
  Forbidden,
  IllegalTransition,
  InboxFull,
  InvalidRequest,
  NoRunnerAvailable,
  PayloadTooLarge,
  PeerNameTaken,
  PeerNotFound,
  RateLimited,
  RunnerNotFound,
  ServiceUnavailable,
  SpawnNotFound,
  SpawnRefused,
  TaskConflict,
  TaskNotFound,
  TeamExists,
  TeamNotFound,
  Unauthorized
} from "./Errors.js"
import { PeerId, SpawnId, TeamName } from "./Ids.js"
import { InboxAck, InboxCursor, InboxPage, InboxQuery, SendMessage, SendResult } from "./Message.js"
import { Peer, PeerFilter, PeerList, PeerRegistration, PeerUpdate } from "./Peer.js"
import { CurrentPrincipal } from "./Principal.js"
import { RunnerList } from "./Runner.js"
import { SpawnList, SpawnResponse, SpawnSpec } from "./Spawn.js"
import {
  CancelTask,
  ClaimNext,
  ClaimNextResult,
  ClaimTask,
  CompleteTask,
  CreateTask,
  FailTask,
  HeartbeatTask,
  ReassignTask,
  ReleaseTask,
  TaskFilter,
  TaskId,
  TaskList,
  TaskResponse
} from "./Task.js"
import { CreateTeam, JoinTeam, TeamList, TeamResponse } from "./Team.js"

/** Bearer-token authentication; the broker provides the implementation. */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("@mks/a2a/BrokerApi/Authentication", {
  failure: Unauthorized,
  provides: CurrentPrincipal,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** `POST /api/peers` answer for a new peer (201); `resumed` tells the two answers apart on the wire. */
export class PeerCreated extends Schema.Class<PeerCreated>("PeerCreated")({
  peer: Peer,
  resumed: Schema.optionalWith(Schema.Literal(false), { default: () => false as const })
}) {}
/** `POST /api/peers` answer when the name resumed an existing peer (200): same id, same inbox. */
export class PeerResumed extends Schema.Class<PeerResumed>("PeerResumed")({
  peer: Peer,
  resumed: Schema.optionalWith(Schema.Literal(true), { default: () => true as const })
}) {}

export const Health = Schema.Struct({ status: Schema.Literal("ok"), version: Schema.String })

const PeerPath = Schema.Struct({ id: PeerId })
const PeerResponse = Schema.Struct({ peer: Peer })

export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true })
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Health))
  .add(HttpApiEndpoint.get("openapi", "/openapi.json").addSuccess(Schema.Unknown))
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4" }))
      .addError(Forbidden)
      .middleware(Authentication)
  ) {}

export class PeersGroup extends HttpApiGroup.make("peers")
  .add(
    HttpApiEndpoint.post("register", "/api/peers")
      .setPayload(PeerRegistration)
      .addSuccess(PeerCreated, { status: 201 })
      .addSuccess(PeerResumed, { status: 200 })
      .addError(PeerNameTaken)
      .addError(Forbidden)
  )
  .add(HttpApiEndpoint.get("list", "/api/peers").setUrlParams(PeerFilter).addSuccess(PeerList))
  .add(HttpApiEndpoint.get("get", "/api/peers/:id").setPath(PeerPath).addSuccess(PeerResponse).addError(PeerNotFound))
  .add(
    HttpApiEndpoint.patch("update", "/api/peers/:id")
      .setPath(PeerPath)
      .setPayload(PeerUpdate)
      .addSuccess(PeerResponse)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(
    HttpApiEndpoint.del("unregister", "/api/peers/:id")
      .setPath(PeerPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(
    HttpApiEndpoint.post("heartbeat", "/api/peers/:id/heartbeat")
      .setPath(PeerPath)
      .addSuccess(PeerResponse)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .middleware(Authentication) {}

export class MessagesGroup extends HttpApiGroup.make("messages")
  .add(
    HttpApiEndpoint.post("send", "/api/messages")
      .setPayload(SendMessage)
      .addSuccess(SendResult, { status: 201 })
      .addError(PeerNotFound)
      .addError(TeamNotFound)
      .addError(Forbidden)
      .addError(InboxFull)
  )
  .middleware(Authentication) {}

export class InboxGroup extends HttpApiGroup.make("inbox")
  .add(
    HttpApiEndpoint.get("read", "/api/peers/:id/inbox")
      .setPath(PeerPath)
      .setUrlParams(InboxQuery)
      .addSuccess(InboxPage)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(
    HttpApiEndpoint.post("ack", "/api/peers/:id/inbox/ack")
      .setPath(PeerPath)
      .setPayload(InboxAck)
      .addSuccess(InboxCursor)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .middleware(Authentication) {}

const TeamPath = Schema.Struct({ name: TeamName })

export class TeamsGroup extends HttpApiGroup.make("teams")
  .add(HttpApiEndpoint.post("create", "/api/teams").setPayload(CreateTeam).addSuccess(TeamResponse, { status: 201 }).addError(TeamExists))
  .add(HttpApiEndpoint.get("list", "/api/teams").addSuccess(TeamList))
  .add(HttpApiEndpoint.get("get", "/api/teams/:name").setPath(TeamPath).addSuccess(TeamResponse).addError(TeamNotFound))
  .add(
    HttpApiEndpoint.post("join", "/api/teams/:name/members")
      .setPath(TeamPath)
      .setPayload(JoinTeam)
      .addSuccess(TeamResponse)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(
    HttpApiEndpoint.del("leave", "/api/teams/:name/members/:peerId")
      .setPath(Schema.Struct({ name: TeamName, peerId: PeerId }))
      .addSuccess(TeamResponse)
      .addError(TeamNotFound)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .middleware(Authentication) {}

export class RunnersGroup extends HttpApiGroup.make("runners")
  .add(HttpApiEndpoint.get("list", "/api/runners").addSuccess(RunnerList))
  .middleware(Authentication) {}

const SpawnPath = Schema.Struct({ id: SpawnId })

export class SpawnGroup extends HttpApiGroup.make("spawn")
  .add(
    HttpApiEndpoint.post("create", "/api/spawn")
      .setPayload(SpawnSpec)
      .addSuccess(SpawnResponse, { status: 202 })
      .addError(RunnerNotFound)
      .addError(NoRunnerAvailable)
      .addError(Forbidden)
      .addError(SpawnRefused)
      .addError(TaskNotFound)
      .addError(TaskConflict)
  )
  .add(HttpApiEndpoint.get("list", "/api/spawn").addSuccess(SpawnList))
  .add(HttpApiEndpoint.get("get", "/api/spawn/:id").setPath(SpawnPath).addSuccess(SpawnResponse).addError(SpawnNotFound))
  .add(
    HttpApiEndpoint.del("stop", "/api/spawn/:id")
      .setPath(SpawnPath)
      .addSuccess(SpawnResponse, { status: 202 })
      .addError(SpawnNotFound)
      .addError(IllegalTransition)
      .addError(Forbidden)
  )
  .add(
    HttpApiEndpoint.post("stopPeer", "/api/peers/:id/stop")
      .setPath(PeerPath)
      .addSuccess(SpawnResponse, { status: 202 })
      .addError(PeerNotFound)
      .addError(SpawnNotFound)
      .addError(IllegalTransition)
      .addError(Forbidden)
  )
  .middleware(Authentication) {}

const TaskPath = Schema.Struct({ id: TaskId })

/** A change of a task by its holder or an operator: `POST /api/tasks/:id/<action>`. */
const taskAction = <const Name extends string, P extends Schema.Schema.Any>(name: Name, payload: P) =>
  HttpApiEndpoint.post(name, `/api/tasks/:id/${name}`)
    .setPath(TaskPath)
    .setPayload(payload)
    .addSuccess(TaskResponse)
    .addError(TaskNotFound)
    .addError(TaskConflict)
    .addError(PeerNotFound)
    .addError(TeamNotFound)
    .addError(Forbidden)

/** The shared task board of teams (docs/tasks.md). */
export class TasksGroup extends HttpApiGroup.make("tasks")
  .add(
    HttpApiEndpoint.post("create", "/api/tasks")
      .setPayload(CreateTask)
      .addSuccess(TaskResponse, { status: 201 })
      .addError(TeamNotFound)
      .addError(TaskNotFound)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(HttpApiEndpoint.get("list", "/api/tasks").setUrlParams(TaskFilter).addSuccess(TaskList))
  .add(
    HttpApiEndpoint.post("claimNext", "/api/tasks/claim")
      .setPayload(ClaimNext)
      .addSuccess(ClaimNextResult)
      .addError(TeamNotFound)
      .addError(PeerNotFound)
      .addError(Forbidden)
  )
  .add(HttpApiEndpoint.get("get", "/api/tasks/:id").setPath(TaskPath).addSuccess(TaskResponse).addError(TaskNotFound))
  .add(taskAction("claim", ClaimTask))
  .add(taskAction("heartbeat", HeartbeatTask))
  .add(taskAction("complete", CompleteTask))
  .add(taskAction("fail", FailTask))
  .add(taskAction("release", ReleaseTask))
  .add(taskAction("cancel", CancelTask))
  .add(taskAction("reassign", ReassignTask))
  .middleware(Authentication) {}

const webSocketUpgrade = (summary: string, description: string, query: ReadonlyArray<Record<string, unknown>>) => ({
  get: {
    tags: ["channels"],
    summary,
    description,
    security: [{ bearer: [] }],
    parameters: [
      { name: "id", in: "path", required: true, schema: { type: "string" } },
      { name: "token", in: "query", required: false, description: "Bearer token for clients that cannot set headers (browsers)", schema: { type: "string" } },
      ...query
    ],
    responses: {
      "101": { description: "Switching Protocols: JSON text frames follow, see docs/protocol.md" },
      "400": { description: "A bad id or query parameter" },
      "401": { description: "Unauthorized" },
      "403": { description: "The token lacks the role (or ownership) this socket needs" },
      "404": { description: "Unknown peer, runner or spawn in the caller's tenant" }
    }
  }
})

/** WebSocket endpoints cannot be HttpApi endpoints; they are documented in the OpenAPI document by hand. */
const webSocketPaths = {
  "/ws/broker/peer/{id}": webSocketUpgrade(
    "A peer's live channel",
    "Server frames: hello, message, event (peer, team, spawn and task events), sent, acked, error. Client frames: ack, send, heartbeat.",
    [{ name: "after", in: "query", required: false, description: "Replay unacked messages with seq > after", schema: { type: "integer", minimum: 0 } }]
  ),
  "/ws/runner/{id}": webSocketUpgrade(
    "A runner's control link (role runner)",
    "Runner frames: hello, spawn_status, heartbeat, and for the relay log, term_output, stream_end, stream_error. Broker frames: spawn, stop, error, and for the relay logs_open, term_open, term_input, term_resize, stream_close.",
    []
  ),
  "/ws/broker/spawns/{id}/logs": webSocketUpgrade(
    "Follow a spawned agent's log, relayed from its runner (role peer)",
    "Server frames: log {lines, at} (the last n lines first, then each new line), end {reason, status?, exitCode?}, error {error}. Close codes: 1000 ended, 4008 slow reader, 4404 the runner does not know the spawn, 4503 the runner is not linked.",
    [{ name: "n", in: "query", required: false, description: "Lines of history first (default 200, at most 10000)", schema: { type: "integer", minimum: 0, maximum: 10_000 } }]
  ),
  "/ws/broker/spawns/{id}/terminal": webSocketUpgrade(
    "Attach to a spawned agent's terminal, relayed from its runner (role peer)",
    "Client frames: input {data}, resize {cols, rows}. Server frames: output {data} (recent backlog first), exit {status, exitCode?}, end {reason}, error {error}. Close codes as for the log.",
    [
      { name: "cols", in: "query", required: false, description: "Terminal width (default 120)", schema: { type: "integer", minimum: 1, maximum: 1_000 } },
      { name: "rows", in: "query", required: false, description: "Terminal height (default 40)", schema: { type: "integer", minimum: 1, maximum: 1_000 } }
    ]
  )
}

/** The whole broker API. Errors every endpoint may answer are declared once here. */
export class BrokerApi extends HttpApi.make("broker")
  .add(HealthGroup)
  .add(PeersGroup)
  .add(MessagesGroup)
  .add(InboxGroup)
  .add(TeamsGroup)
  .add(RunnersGroup)
  .add(SpawnGroup)
  .add(TasksGroup)
  .addError(InvalidRequest)
  .addError(Unauthorized)
  .addError(PayloadTooLarge)
  .addError(RateLimited)
  .addError(ServiceUnavailable)
  .annotate(OpenApi.Title, "@mks/a2a broker")
  .annotate(OpenApi.Transform, (spec) => ({ ...spec, paths: { ...spec.paths, ...webSocketPaths } }))
  .annotate(OpenApi.Description, "Peers, messages, inboxes, teams, task boards, runners and spawn orders of the a2a agent bus. Live channels are WebSockets: GET /ws/broker/peer/{id}?after=<seq>, GET /ws/runner/{id}, and the relay of agent logs and terminals GET /ws/broker/spawns/{id}/logs and /terminal; see docs/protocol.md.") {}

/** The OpenAPI 3 document served at `/openapi.json`. */
export const openApi = () => OpenApi.fromApi(BrokerApi)
