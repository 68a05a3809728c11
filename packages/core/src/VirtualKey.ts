/**
 * Virtual keys of the proxy: `sk-mks-…` secrets handed to people and agents, stored only as
 * SHA-256 hashes, each with its tenant, tier, allowed models and limits.
 */
import { Schema } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { KeyId, make, Tenant, Timestamp } from "./Ids.js"

export const KEY_PREFIX = "sk-mks-"

/** tier1: a key of an authenticated user; tier2: a public/shared key with strict limits. */
export const KeyTier = Schema.Literal("tier1", "tier2")
export type KeyTier = typeof KeyTier.Type

const Count = Schema.Int.pipe(Schema.positive())

export const KeyLimits = Schema.Struct({
  requestsPerMinute: Schema.optional(Count),
  requestsPer5h: Schema.optional(Count),
  tokensPer5h: Schema.optional(Count)
})
export type KeyLimits = typeof KeyLimits.Type

/** A key as listed: never the secret, only its first characters (`prefix`) to recognise it. */
export class VirtualKey extends Schema.Class<VirtualKey>("VirtualKey")({
  id: KeyId,
  name: Schema.String,
  prefix: Schema.String,
  tenant: Tenant,
  tier: KeyTier,
  /** Glob patterns (`*` wildcard) of models this key may call; empty means any. */
  models: Schema.Array(Schema.String),
  limits: KeyLimits,
  createdAt: Timestamp,
  expiresAt: Schema.optional(Timestamp),
  disabled: Schema.Boolean,
  lastUsedAt: Schema.optional(Timestamp)
}) {}

/** Body of `POST /v1/keys`. */
export const CreateKey = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  tenant: Schema.optional(Tenant),
  tier: Schema.optional(KeyTier),
  models: Schema.optional(Schema.Array(Schema.String)),
  limits: Schema.optional(KeyLimits),
  expiresAt: Schema.optional(Timestamp)
})
export type CreateKey = typeof CreateKey.Type

/** Body of `PATCH /v1/keys/:id`. */
export const UpdateKey = Schema.Struct({
  name: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))),
  models: Schema.optional(Schema.Array(Schema.String)),
  limits: Schema.optional(KeyLimits),
  expiresAt: Schema.optional(Schema.NullOr(Timestamp)),
  disabled: Schema.optional(Schema.Boolean)
})
export type UpdateKey = typeof UpdateKey.Type

/** A record after a `PATCH`: given fields replace, absent ones keep; `expiresAt: null` clears the expiry. */
export const applyUpdate = (record: VirtualKey, patch: UpdateKey): VirtualKey => {
  const { expiresAt: previous, ...rest } = record
  const expiresAt = patch.expiresAt === undefined ? previous : (patch.expiresAt ?? undefined)
  return new VirtualKey({
    ...rest,
    ...(patch.name === undefined ? {} : { name: patch.name }),
    ...(patch.models === undefined ? {} : { models: patch.models }),
    ...(patch.limits === undefined ? {} : { limits: patch.limits }),
    ...(patch.disabled === undefined ? {} : { disabled: patch.disabled }),
    ...(expiresAt === undefined ? {} : { expiresAt })
  })
}

/** `POST /v1/keys` answer: the plaintext `key` appears here and nowhere else, ever. */
export const CreatedKey = Schema.Struct({ key: Schema.String, record: VirtualKey })
export type CreatedKey = typeof CreatedKey.Type
export const KeyList = Schema.Struct({ keys: Schema.Array(VirtualKey) })
export const KeyResponse = Schema.Struct({ record: VirtualKey })

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** Base62 of 32 random bytes (43 characters), so the key is 256 bits of entropy. */
const base62 = (bytes: Uint8Array): string => {
  let n = BigInt("0x" + Buffer.from(bytes).toString("hex"))
  let out = ""
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out
    n /= 62n
  }
  return out.padStart(43, "0")
}

/** A new secret: `sk-mks-` + base62 of 32 random bytes. */
export const generateSecret = (): string => KEY_PREFIX + base62(randomBytes(32))

/** Hex SHA-256 of a secret: the only form a key is ever stored in. */
export const hashSecret = (secret: string): string => createHash("sha256").update(secret, "utf8").digest("hex")

/** What listings show of a key: its prefix and first characters. */
export const displayPrefix = (secret: string): string => secret.slice(0, KEY_PREFIX.length + 6)

/** Constant-time comparison of two hex digests (or any equal-length strings). */
export const digestsEqual = (a: string, b: string): boolean => {
  const x = Buffer.from(a, "utf8")
  const y = Buffer.from(b, "utf8")
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Whether `model` matches a glob pattern (`*` is any run of characters). */
export const globMatches = (pattern: string, model: string): boolean => {
  const re = new RegExp("^" + pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$")
  return re.test(model)
}

/** Whether a key may call `model` (no patterns: any model). */
export const allowsModel = (key: Pick<VirtualKey, "models">, model: string): boolean =>
  key.models.length === 0 || key.models.some((p) => globMatches(p, model))

/**
 * A new key for `input` at `now`: the secret (shown once), its SHA-256 hash (all a store
 * keeps) and the record. One rule for every key store.
 */
export const mint = (
  input: CreateKey & { readonly tenant: string },
  now: number
): { readonly secret: string; readonly hash: string; readonly record: VirtualKey } => {
  const secret = generateSecret()
  const record = new VirtualKey({
    id: make.key(),
    name: input.name,
    prefix: displayPrefix(secret),
    tenant: input.tenant,
    tier: input.tier ?? "tier1",
    models: input.models ?? [],
    limits: input.limits ?? {},
    createdAt: new Date(now).toISOString(),
    ...(input.expiresAt === undefined ? {} : { expiresAt: input.expiresAt }),
    disabled: false
  })
  return { secret, hash: hashSecret(secret), record }
}
