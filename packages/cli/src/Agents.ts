/**
 * `a2a agents add|list|remove`: remote A2A agents bridged onto the bus (docs/a2a.md), through the
 * broker's `/api/a2a/agents`. A credential is read from an environment variable (`--credential-env`)
 * or stdin (`--credential -`), never from the command line, and is never printed.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { A2a, BrokerClient } from "@mks/a2a"
import { Effect, Redacted, Schema } from "effect"
import { ago, CliError, json, type Output, table } from "./Output.js"

const WireError = Schema.Struct({ _tag: Schema.String, message: Schema.String })

const call = (method: "GET" | "POST" | "DELETE", path: string, body?: unknown) =>
  Effect.gen(function*() {
    const options = yield* BrokerClient.readConfig.pipe(Effect.mapError((e) => new CliError({ message: String(e) })))
    const url = String(options.url).replace(/\/+$/, "")
    const token = Redacted.isRedacted(options.token) ? Redacted.value(options.token) : options.token
    let request = HttpClientRequest.make(method)(`${url}${path}`).pipe(HttpClientRequest.bearerToken(token))
    if (body !== undefined) request = yield* HttpClientRequest.bodyJson(request, body).pipe(Effect.orDie)
    const response = yield* HttpClient.execute(request).pipe(
      Effect.mapError((e) => new CliError({ message: `cannot reach the broker at ${url} (${e.message})` }))
    )
    if (response.status === 204) return undefined
    const payload = yield* response.json.pipe(Effect.orElseSucceed(() => undefined))
    if (response.status >= 400) {
      const error = Schema.decodeUnknownOption(WireError)(payload)
      return yield* new CliError({ message: error._tag === "Some" ? `${error.value._tag}: ${error.value.message}` : `broker answered ${response.status}` })
    }
    return payload
  }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))

const decode = <A, I>(schema: Schema.Schema<A, I>) => (value: unknown) =>
  Schema.decodeUnknown(schema)(value).pipe(Effect.mapError(() => new CliError({ message: "the broker's answer is not what this CLI expects (versions differ?)" })))

const cardLine = (card: unknown): string => {
  const c = card as { description?: unknown } | null
  return typeof c?.description === "string" ? c.description : ""
}

export const add = (o: Output, input: { name: string; cardUrl: string; credential?: string | undefined }) =>
  Effect.gen(function*() {
    const answer = yield* call("POST", "/api/a2a/agents", { name: input.name, cardUrl: input.cardUrl, ...(input.credential === undefined ? {} : { token: input.credential }) })
    const { agent } = yield* decode(A2a.RemoteAgentResponse)(answer)
    if (o.json) return json(o, { agent })
    o.out(`Bridged ${agent.name} (peer ${agent.peerId}, A2A ${agent.version})${agent.hasCredential ? " with a stored credential" : ""}: message it like any peer.`)
  })

export const list = (o: Output) =>
  Effect.gen(function*() {
    const { agents } = yield* decode(A2a.RemoteAgentList)(yield* call("GET", "/api/a2a/agents"))
    if (o.json) return json(o, { agents })
    if (agents.length === 0) return o.out("No remote A2A agents (add one with: a2a agents add <name> <card-url>).")
    table(o, ["NAME", "PEER", "A2A", "CARD", "CREDENTIAL", "ADDED", "DESCRIPTION"], agents.map((a) => [a.name, a.peerId, a.version, a.cardUrl, a.hasCredential ? "stored" : "-", ago(a.createdAt), cardLine(a.card)]))
  })

export const remove = (o: Output, name: string) =>
  Effect.gen(function*() {
    yield* call("DELETE", `/api/a2a/agents/${encodeURIComponent(name)}`)
    if (o.json) return json(o, { removed: name })
    o.out(`Removed ${name}.`)
  })
