/**
 * MCP tools for the A2A side of the bus (docs/a2a.md): `list_a2a_agents` lists the remote A2A
 * agents bridged onto the bus (message them with `send_peer_message`; their answers arrive as
 * ordinary messages) and the local peers reachable by A2A clients, with their card URLs.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { A2a } from "@mks/a2a"
import { Effect, Redacted, Schema } from "effect"
import { describeError, Session } from "./Session.js"
import { spec } from "./ToolSpecs.js"
import { type Tool, ToolError } from "./Tools.js"

const RemoteAgents = Schema.Struct({ agents: Schema.Array(A2a.RemoteAgent) })

const cardName = (card: unknown): string => {
  const c = card as { name?: unknown; description?: unknown; skills?: Array<{ name?: unknown }> } | null
  const skills = Array.isArray(c?.skills) ? c.skills.map((s) => String(s?.name ?? "")).filter((s) => s !== "") : []
  return [typeof c?.description === "string" ? c.description : "", skills.length > 0 ? `skills: ${skills.join(", ")}` : ""].filter((s) => s !== "").join(" · ")
}

export const listA2aAgents: Tool = {
  ...spec("list_a2a_agents"),
  run: () =>
    Effect.gen(function* () {
      const session = yield* Session
      const base = String(session.config.broker.url).replace(/\/+$/, "")
      const token = session.config.broker.token
      const request = HttpClientRequest.get(`${base}/api/a2a/agents`).pipe(
        HttpClientRequest.bearerToken(typeof token === "string" ? token : Redacted.value(token))
      )
      const remote = yield* HttpClient.execute(request).pipe(
        Effect.flatMap(HttpClientResponse.filterStatusOk),
        Effect.flatMap(HttpClientResponse.schemaBodyJson(RemoteAgents)),
        Effect.scoped,
        Effect.provide(NodeHttpClient.layer),
        Effect.mapError((e) => new ToolError({ message: `list_a2a_agents: ${describeError(e)}` }))
      )
      const { peers } = yield* session.client.api.peers.list({ urlParams: {} }).pipe(Effect.mapError((e) => new ToolError({ message: `list_a2a_agents: ${describeError(e)}` })))
      const local = peers.filter((p) => A2a.optInOf(p) !== undefined)
      const lines: Array<string> = []
      lines.push(remote.agents.length === 0 ? "No remote A2A agents are bridged onto the bus." : `${remote.agents.length} remote A2A agent(s) on the bus (message them with send_peer_message):`)
      for (const a of remote.agents) lines.push(`- ${a.name} (${a.peerId}) · A2A ${a.version} · card ${a.cardUrl}${cardName(a.card) !== "" ? `\n  ${cardName(a.card)}` : ""}`)
      lines.push(local.length === 0 ? "No peer of this bus is published to A2A clients (a peer opts in with meta.a2a)." : `${local.length} peer(s) published to A2A clients:`)
      for (const p of local) lines.push(`- ${p.name} (${p.id}) · card ${base}${A2a.peerPath(p.name)}/${A2a.CARD_PATH}`)
      return {
        text: lines.join("\n"),
        structured: JSON.parse(
          JSON.stringify({
            remote: remote.agents,
            local: local.map((p) => ({ id: p.id, name: p.name, summary: p.summary, cardUrl: `${base}${A2a.peerPath(p.name)}/${A2a.CARD_PATH}` }))
          })
        ) as Record<string, unknown>
      }
    })
}

export const a2aTools: ReadonlyArray<Tool> = [listA2aAgents]
