/**
 * Errors that cross the wire. Each encodes as `{ "_tag": "<Name>", "message": "...", ... }`
 * and carries its HTTP status, so the same class serves server, client and OpenAPI.
 */
import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** 400: the request or frame did not decode; `field` is the path of the first bad field. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { message: Schema.String, field: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** 401: no credentials, or credentials that do not verify. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** 403: authenticated, but not allowed to do this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

/**
 * 403: a runner's policy refuses the spawn order (its owner decides what it runs): `reason` is
 * the rule (`preset`, `command`, `cwd`, `env`, `concurrency`, `preflight`; see `RunnerPolicy.ts`).
 */
export class SpawnRefused extends Schema.TaggedError<SpawnRefused>()(
  "SpawnRefused",
  { message: Schema.String, runner: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

/** 404: no such peer in the caller's tenant (also used across tenants, so existence does not leak). */
export class PeerNotFound extends Schema.TaggedError<PeerNotFound>()(
  "PeerNotFound",
  { message: Schema.String, peer: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class TeamNotFound extends Schema.TaggedError<TeamNotFound>()(
  "TeamNotFound",
  { message: Schema.String, team: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class RunnerNotFound extends Schema.TaggedError<RunnerNotFound>()(
  "RunnerNotFound",
  { message: Schema.String, runner: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class SpawnNotFound extends Schema.TaggedError<SpawnNotFound>()(
  "SpawnNotFound",
  { message: Schema.String, spawn: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()(
  "KeyNotFound",
  { message: Schema.String, key: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** 404: no such task in the caller's tenant. */
export class TaskNotFound extends Schema.TaggedError<TaskNotFound>()(
  "TaskNotFound",
  { message: Schema.String, task: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/**
 * 409: the task is not in a state that allows this, for this peer: `reason` is `state` (e.g.
 * completing an open or done task), `holder` (another peer holds it), `lease` (the caller's
 * lease lapsed: the task went back to the board) or `dependencies` (a task it depends on is
 * not done). `state` is the task's state now.
 */
export class TaskConflict extends Schema.TaggedError<TaskConflict>()(
  "TaskConflict",
  { message: Schema.String, task: Schema.String, reason: Schema.Literal("state", "holder", "lease", "dependencies"), state: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** 409: the name is registered by another principal of the tenant. */
export class PeerNameTaken extends Schema.TaggedError<PeerNameTaken>()(
  "PeerNameTaken",
  { message: Schema.String, name: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class TeamExists extends Schema.TaggedError<TeamExists>()(
  "TeamExists",
  { message: Schema.String, team: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** 409: a spawn status change the state machine does not allow. */
export class IllegalTransition extends Schema.TaggedError<IllegalTransition>()(
  "IllegalTransition",
  { message: Schema.String, spawn: Schema.String, from: Schema.String, to: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** 413: the request body is larger than the server accepts. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String, limit: Schema.NonNegativeInt },
  HttpApiSchema.annotations({ status: 413 })
) {}

/** 429: the recipient's inbox holds its maximum of unacked messages; nothing was appended. */
export class InboxFull extends Schema.TaggedError<InboxFull>()(
  "InboxFull",
  { message: Schema.String, peer: Schema.String, capacity: Schema.NonNegativeInt },
  HttpApiSchema.annotations({ status: 429 })
) {}

/** 429: a rate or quota limit; `retryAfter` in seconds. */
export class RateLimited extends Schema.TaggedError<RateLimited>()(
  "RateLimited",
  { message: Schema.String, retryAfter: Schema.NonNegative.pipe(Schema.finite()), limit: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 429 })
) {}

/** 503: no connected runner can take this spawn order. */
export class NoRunnerAvailable extends Schema.TaggedError<NoRunnerAvailable>()(
  "NoRunnerAvailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** 503: a dependency (store, upstream) is unavailable; the request had no effect. */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** 415: the request has a body that is not JSON (`content-type` other than `application/json` or `*+json`). */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 415 })
) {}

/** Every wire error, for decoding an arbitrary error body. */
export const WireError = Schema.Union(
  InvalidRequest,
  Unauthorized,
  Forbidden,
  SpawnRefused,
  PeerNotFound,
  TeamNotFound,
  RunnerNotFound,
  SpawnNotFound,
  KeyNotFound,
  TaskNotFound,
  PeerNameTaken,
  TeamExists,
  IllegalTransition,
  TaskConflict,
  PayloadTooLarge,
  InboxFull,
  RateLimited,
  NoRunnerAvailable,
  ServiceUnavailable,
  UnsupportedMediaType
)
export type WireError = typeof WireError.Type

/** HTTP status of a wire error. */
export const statusOf = (error: WireError): number => {
  switch (error._tag) {
    case "InvalidRequest":
      return 400
    case "Unauthorized":
      return 401
    case "Forbidden":
    case "SpawnRefused":
      return 403
    case "PeerNotFound":
    case "TeamNotFound":
    case "RunnerNotFound":
    case "SpawnNotFound":
    case "KeyNotFound":
    case "TaskNotFound":
      return 404
    case "PeerNameTaken":
    case "TeamExists":
    case "IllegalTransition":
    case "TaskConflict":
      return 409
    case "PayloadTooLarge":
      return 413
    case "UnsupportedMediaType":
      return 415
    case "InboxFull":
    case "RateLimited":
      return 429
    case "NoRunnerAvailable":
    case "ServiceUnavailable":
      return 503
  }
}
