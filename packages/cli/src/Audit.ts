/**
 * `a2a audit [--after SEQ] [--limit N] [--json]`: the tenant's audit log of spawn, stop and
 * attach (who, what, where, when, result), oldest first, from `GET /api/audit` (permission
 * `audit`: admins, or a token with that scope).
 */
import { Audit, BrokerClient, Codec, Errors } from "@mks/a2a"
import { Effect, Redacted, Schema } from "effect"
import { CliError, json, type Output, table } from "./Output.js"

const decodeList = Codec.decodeUnknown(Audit.AuditList)
const decodeError = Schema.decodeUnknownEither(Errors.WireError)

export const audit = (o: Output, query: { readonly after?: number | undefined; readonly limit?: number | undefined }) =>
  Effect.gen(function* () {
    const config = yield* BrokerClient.readConfig.pipe(Effect.mapError((e) => new CliError({ message: String(e) })))
    const base = String(config.url).replace(/\/+$/, "")
    const token = Redacted.isRedacted(config.token) ? Redacted.value(config.token) : config.token
    const params = new URLSearchParams()
    if (query.after !== undefined) params.set("after", String(query.after))
    if (query.limit !== undefined) params.set("limit", String(query.limit))
    const body = yield* Effect.tryPromise({
      try: async () => {
        const res = await fetch(`${base}/api/audit${params.size > 0 ? `?${params}` : ""}`, { headers: { authorization: `Bearer ${token}` } })
        return { status: res.status, body: (await res.json()) as unknown }
      },
      catch: (e) => new CliError({ message: `cannot reach the broker at ${base}: ${(e as Error).message}` })
    })
    if (body.status !== 200) {
      const error = decodeError(body.body)
      return yield* new CliError({ message: error._tag === "Right" ? `${error.right._tag}: ${error.right.message}` : `the broker answered HTTP ${body.status}` })
    }
    const { entries } = yield* decodeList(body.body).pipe(Effect.mapError((e) => new CliError({ message: `unexpected answer from the broker: ${e.message}` })))
    if (o.json) return json(o, entries)
    if (entries.length === 0) return o.out("no audit entries")
    table(
      o,
      ["SEQ", "AT", "ACTOR", "ACTION", "SPAWN", "RUNNER", "RESULT", "WHAT", "ERROR"],
      entries.map((e) => [String(e.seq), e.at, e.actor, e.action, e.spawnId ?? "-", e.runnerId ?? "-", e.result, e.detail ?? "", e.error ?? ""])
    )
  })
