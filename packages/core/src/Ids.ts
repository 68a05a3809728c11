/**
 * Branded identifiers and scalar types of the a2a wire contract.
 *
 * Ids minted by the broker are a short prefix plus 20 random base32 characters
 * (`p_…` peers, `s_…` spawns, `k_…` keys), or for messages `m_` plus the time and 16 random
 * characters (see {@link messageId}); runner ids are chosen by the runner. Every id on the wire is decoded through these schemas, so a malformed id fails
 * with a parse error that names the field.
 */
import { Schema } from "effect"
import { randomBytes, randomFillSync } from "node:crypto"

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/

const id = <B extends string>(brand: B, description: string) =>
  Schema.String.pipe(
    Schema.pattern(ID_PATTERN, { message: () => `${brand} must be 1-128 characters of [A-Za-z0-9_.:-]` }),
    Schema.brand(brand),
    Schema.annotations({ identifier: brand, description })
  )

/** A peer's stable id; kept when the same name registers again in the same tenant. */
export const PeerId = id("PeerId", "Stable id of a registered peer")
export type PeerId = typeof PeerId.Type

/** A message's id, shared by every recipient of a team message. */
export const MessageId = id("MessageId", "Id of a message (same for every recipient of a team message)")
export type MessageId = typeof MessageId.Type

/** A runner's id, chosen by the runner (defaults to its host name). */
export const RunnerId = id("RunnerId", "Id of a runner, chosen by the runner")
export type RunnerId = typeof RunnerId.Type

/** A spawn order's id. */
export const SpawnId = id("SpawnId", "Id of a spawn order")
export type SpawnId = typeof SpawnId.Type

/** A virtual key's record id (never the key itself). */
export const KeyId = id("KeyId", "Id of a virtual key record (not the secret)")
export type KeyId = typeof KeyId.Type

/** A thread id: the id of the message that opened the thread. */
export const ThreadId = id("ThreadId", "Thread id: the id of the first message of the thread")
export type ThreadId = typeof ThreadId.Type

/** A team's name, unique per tenant. */
export const TeamName = Schema.String.pipe(
  Schema.pattern(NAME_PATTERN, { message: () => "TeamName must be 1-64 characters of [A-Za-z0-9_.@-], starting with a letter or digit" }),
  Schema.brand("TeamName"),
  Schema.annotations({ identifier: "TeamName", description: "Name of a team, unique per tenant" })
)
export type TeamName = typeof TeamName.Type

/** A peer's name, unique per tenant (registering the same name resumes the peer). */
export const PeerName = Schema.String.pipe(
  Schema.pattern(NAME_PATTERN, { message: () => "PeerName must be 1-64 characters of [A-Za-z0-9_.@-], starting with a letter or digit" }),
  Schema.annotations({ identifier: "PeerName", description: "Name of a peer, unique per tenant" })
)

/** A tenant name. */
export const Tenant = Schema.String.pipe(
  Schema.pattern(NAME_PATTERN, { message: () => "tenant must be 1-64 characters of [A-Za-z0-9_.@-]" }),
  Schema.annotations({ identifier: "Tenant" })
)

/** A position in one recipient's inbox; strictly increasing per recipient, starting at 1. */
export const Seq = Schema.Int.pipe(Schema.nonNegative(), Schema.annotations({ identifier: "Seq" }))

/** An RFC 3339 / ISO 8601 UTC timestamp as produced by `Date.prototype.toISOString`. */
export const Timestamp = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, { message: () => "expected an ISO 8601 UTC timestamp" }),
  Schema.annotations({ identifier: "Timestamp" })
)

/** Any JSON value (finite numbers only), as metadata may carry. */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
export const Json: Schema.Schema<Json> = Schema.Union(
  Schema.Null,
  Schema.Boolean,
  Schema.Number.pipe(Schema.finite()),
  Schema.String,
  Schema.Array(Schema.suspend(() => Json)),
  Schema.Record({ key: Schema.String, value: Schema.suspend(() => Json) })
).pipe(Schema.annotations({ identifier: "Json" }))

/** Free-form JSON metadata attached to peers and messages. */
export const Meta = Schema.Record({ key: Schema.String, value: Json }).pipe(
  Schema.annotations({ identifier: "Meta" })
)
export type Meta = typeof Meta.Type

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

/** 20 characters of Crockford base32 from 100 random bits. */
export const randomToken = (length = 20): string => {
  const bytes = randomBytes(length)
  let out = ""
  for (let i = 0; i < length; i++) out += ALPHABET[bytes[i]! & 31]
  return out
}

const randomPool = Buffer.alloc(4096)
let randomAt = randomPool.length

/**
 * A message id: `m_`, the time in milliseconds (10 characters of the same base32 alphabet, so
 * ids sort by creation time) and 16 random characters (80 bits, from a pool of random bytes: one
 * `getrandom` per ~250 messages). Time-ordered ids keep an inbox's message-id index growing at
 * its end instead of at random places, which halves the cost of writing a message to SQLite.
 */
export const messageId = (now: number = Date.now()): MessageId => {
  if (randomAt + 16 > randomPool.length) {
    randomFillSync(randomPool)
    randomAt = 0
  }
  let time = ""
  for (let i = 0, t = now; i < 10; i++, t = Math.floor(t / 32)) time = ALPHABET[t % 32] + time
  let id = "m_" + time
  for (let i = 0; i < 16; i++) id += ALPHABET[randomPool[randomAt++]! & 31]
  return id as MessageId
}

/** Fresh ids with the conventional prefixes. */
export const make = {
  peer: (): PeerId => `p_${randomToken()}` as PeerId,
  message: (): MessageId => messageId(),
  spawn: (): SpawnId => `s_${randomToken()}` as SpawnId,
  key: (): KeyId => `k_${randomToken()}` as KeyId
}

let isoMillis = Number.NaN
let isoText = ""
/**
 * Now, in the wire's timestamp format. The last millisecond's text is kept: under load many
 * messages share one, and formatting a `Date` was ~1 % of the broker's CPU per HTTP send.
 * (An invalid time never matches, so it still throws as `toISOString` does.)
 */
export const nowIso = (millis: number = Date.now()): string => {
  if (millis !== isoMillis) {
    isoText = new Date(millis).toISOString()
    isoMillis = millis
  }
  return isoText
}
