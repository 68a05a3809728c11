/**
 * `GET /api/audit?after=&limit=` (permission `audit`): the caller's tenant's audit log
 * (`AuditLog.ts`), oldest first, as `{entries: AuditEntry[]}`; `after` is the last `seq` seen.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Audit, Authenticator, Codec, Errors, Permission } from "@mks/a2a"
import { Effect, Schema } from "effect"
import { Bus } from "./Bus.js"


export const layer = HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const auth = yield* Authenticator.Authenticator
      const bus = yield* Bus
      const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })
      const fail = (e: Errors.WireError) => json(Errors.statusOf(e), Schema.encodeSync(Errors.WireError)(e))
      yield* router.get(
        "/api/audit",
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const header = request.headers.authorization ?? ""
          const token = header.startsWith("Bearer ") ? header.slice(7) : ""
          if (token.length === 0) return fail(new Errors.Unauthorized({ message: "missing bearer token" }))
          const principal = yield* Effect.either(auth.authenticate(token))
          if (principal._tag === "Left") return fail(principal.left)
          if (!Permission.has(principal.right, "audit")) return fail(new Errors.Forbidden({ message: `reading the audit log needs the "audit" permission` }))
          const url = new URL(request.url, "http://x")
          const query = yield* Effect.either(
            Codec.decodeUnknown(Audit.AuditQuery)({
              ...(url.searchParams.has("after") ? { after: url.searchParams.get("after") } : {}),
              ...(url.searchParams.has("limit") ? { limit: url.searchParams.get("limit") } : {})
            })
          )
          if (query._tag === "Left") return fail(query.left)
          const entries = yield* bus.audit.list(principal.right.tenant, query.right.after ?? 0, query.right.limit ?? 200)
          return json(200, Schema.encodeSync(Audit.AuditList)({ entries }))
        })
      )
    })
  )
