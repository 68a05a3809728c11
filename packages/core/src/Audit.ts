/**
 * The audit log of spawning: every spawn, stop and attach (log or terminal) request, allowed or
 * refused, with who asked, what, where, when and the result. Kept per tenant for the broker's
 * audit retention; read with `GET /api/audit` (permission `audit`), `a2a audit` and the
 * dashboard's Audit view.
 */
import { Schema } from "effect"
import { Tenant, Timestamp } from "./Ids.js"

export const AuditAction = Schema.Literal("spawn", "stop", "attach")
export type AuditAction = typeof AuditAction.Type

export const AuditResult = Schema.Literal("allowed", "refused", "failed")
export type AuditResult = typeof AuditResult.Type

export class AuditEntry extends Schema.Class<AuditEntry>("AuditEntry")({
  /** Increasing per broker store; `after` pages on it. */
  seq: Schema.Int,
  at: Timestamp,
  tenant: Tenant,
  /** The principal's subject (a static token's id, the JWT `sub`, `spawn:<id>` for a spawn's token). */
  actor: Schema.String,
  action: AuditAction,
  /** The spawn concerned (absent when a spawn request was refused before it got an id). */
  spawnId: Schema.optional(Schema.String),
  /** Where: the runner. */
  runnerId: Schema.optional(Schema.String),
  /** What: preset and command line of a spawn, `logs` or `terminal` for an attach. */
  detail: Schema.optional(Schema.String.pipe(Schema.maxLength(1_000))),
  result: AuditResult,
  /** The refusal or failure: its `_tag` and message. */
  error: Schema.optional(Schema.String.pipe(Schema.maxLength(1_000)))
}) {}

export const AuditQuery = Schema.Struct({
  after: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1_000)))
})

export const AuditList = Schema.Struct({ entries: Schema.Array(AuditEntry) })
