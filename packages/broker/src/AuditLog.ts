/**
 * The broker's audit log (core's `Audit` records): spawn, stop and attach requests with who,
 * what, where, when and the result, per tenant. In the SQLite database (`a2a_audit`) when the
 * store is a SQLite file, else in memory (bounded); entries older than the audit retention are
 * pruned by the GC. Read with `GET /api/audit?after=&limit=` (permission `audit`).
 */
import { SqlClient } from "@effect/sql"
import { Audit, Codec, Ids } from "@mks/a2a"
import { Context, Effect, Layer, Option, Schema } from "effect"

export type Draft = Omit<Audit.AuditEntry, "seq" | "at">

export interface AuditLogService {
  readonly record: (draft: Draft) => Effect.Effect<void>
  /** The tenant's entries with `seq > after`, oldest first, at most `limit`. */
  readonly list: (tenant: string, after: number, limit: number) => Effect.Effect<ReadonlyArray<Audit.AuditEntry>>
  /** Drop entries recorded before `before` (epoch millis). */
  readonly prune: (before: number) => Effect.Effect<void>
}

export class AuditLog extends Context.Tag("@mks/a2a-broker/AuditLog")<AuditLog, AuditLogService>() {}

/** Most entries the memory log keeps (oldest dropped first). */
export const MEMORY_LIMIT = 100_000

const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.asVoid, Effect.catchAllCause((cause) => Effect.logWarning("audit log write failed", cause)))

export const makeMemory = Effect.sync((): AuditLogService => {
  const entries: Array<Audit.AuditEntry> = []
  let seq = 0
  return {
    record: (draft) =>
      Effect.sync(() => {
        entries.push(new Audit.AuditEntry({ ...draft, seq: ++seq, at: Ids.nowIso() }))
        if (entries.length > MEMORY_LIMIT) entries.splice(0, entries.length - MEMORY_LIMIT)
      }),
    list: (tenant, after, limit) => Effect.sync(() => entries.filter((e) => e.tenant === tenant && e.seq > after).slice(0, limit)),
    prune: (before) =>
      Effect.sync(() => {
        const keep = entries.findIndex((e) => Date.parse(e.at) >= before)
        entries.splice(0, keep === -1 ? entries.length : keep)
      })
  }
})

const encodeEntry = Schema.encodeSync(Schema.parseJson(Audit.AuditEntry))
const decodeEntry = Codec.decodeUnknown(Schema.parseJson(Audit.AuditEntry))

export const makeSql = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS a2a_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, at BIGINT NOT NULL, data TEXT NOT NULL)`)
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS a2a_audit_tenant ON a2a_audit (tenant, seq)`)
  yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS a2a_audit_at ON a2a_audit (at)`)
  const service: AuditLogService = {
    record: (draft) =>
      logged(
        Effect.suspend(() => {
          const now = Date.now()
          // The row's seq is the entry's; the stored JSON carries a placeholder that `list` replaces.
          const data = encodeEntry(new Audit.AuditEntry({ ...draft, seq: 0, at: Ids.nowIso(now) }))
          return sql`INSERT INTO a2a_audit (tenant, at, data) VALUES (${draft.tenant}, ${now}, ${data})`
        })
      ),
    list: (tenant, after, limit) =>
      sql<{ seq: number; data: string }>`SELECT seq, data FROM a2a_audit WHERE tenant = ${tenant} AND seq > ${after} ORDER BY seq LIMIT ${limit}`.pipe(
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) => Effect.map(Effect.option(decodeEntry(row.data)), (o) => (Option.isSome(o) ? [new Audit.AuditEntry({ ...o.value, seq: Number(row.seq) })] : [])))
        ),
        Effect.map((lists) => lists.flat()),
        Effect.orElseSucceed(() => [])
      ),
    prune: (before) => logged(sql`DELETE FROM a2a_audit WHERE at < ${before}`)
  }
  return service
})

export const layerSql: Layer.Layer<AuditLog, never, SqlClient.SqlClient> = Layer.effect(AuditLog, makeSql.pipe(Effect.orDie))

/** The store's audit log if it has one (SQLite), else one in memory. */
export const fromContext = Effect.flatMap(Effect.serviceOption(AuditLog), (o) => (Option.isSome(o) ? Effect.succeed(o.value) : makeMemory))


/** Default audit retention: 30 days. */
export const DEFAULT_RETENTION = 30 * 24 * 60 * 60 * 1000

/** What a spawn request asks for, in one line: preset, command line, cwd. */
export const describe = (spec: { readonly preset?: string | undefined; readonly command?: string | undefined; readonly args?: ReadonlyArray<string> | undefined; readonly cwd?: string | undefined; readonly name?: string | undefined }): string => {
  const preset = spec.preset ?? (spec.command !== undefined ? "command" : "claude")
  const line = preset === "command" ? ` ${[spec.command ?? "", ...(spec.args ?? [])].join(" ")}` : ""
  return `${preset}${line}${spec.cwd !== undefined ? ` in ${spec.cwd}` : ""}${spec.name !== undefined ? ` as ${spec.name}` : ""}`.slice(0, 1_000)
}

/** Run a spawn or stop request and record it: allowed with the spawn it touched, refused (403), or failed. */
export const audited = <A extends { readonly id: string; readonly runnerId: string }, E extends { readonly _tag: string; readonly message: string }, R>(
  log: AuditLogService,
  principal: { readonly subject: string; readonly tenant: string },
  action: Audit.AuditAction,
  detail: string | undefined,
  effect: Effect.Effect<A, E, R>,
  runnerId?: string | undefined,
  spawnId?: string | undefined
) =>
  effect.pipe(
    Effect.tap((spawn) => log.record({ tenant: principal.tenant, actor: principal.subject, action, spawnId: spawn.id, runnerId: spawn.runnerId, ...(detail !== undefined ? { detail } : {}), result: "allowed" })),
    Effect.tapError((e) =>
      log.record({
        tenant: principal.tenant,
        actor: principal.subject,
        action,
        ...(spawnId !== undefined ? { spawnId } : {}),
        ...(runnerId !== undefined ? { runnerId } : {}),
        ...(detail !== undefined ? { detail } : {}),
        result: e._tag === "Forbidden" || e._tag === "SpawnRefused" ? "refused" : "failed",
        error: `${e._tag}: ${e.message}`.slice(0, 1_000)
      })
    )
  )
