/**
 * KeyStore: the proxy's virtual keys, stored only as SHA-256 hashes of the secret.
 */
import { Context, Effect, Layer } from "effect"
import { KeyNotFound, ServiceUnavailable, Unauthorized } from "./Errors.js"
import type { KeyId } from "./Ids.js"
import * as internal from "./internal/keyStoreMemory.js"
import type { CreatedKey, CreateKey, UpdateKey, VirtualKey } from "./VirtualKey.js"

export interface KeyStoreService {
  /** Mint a secret, store its hash, return the secret once with the record. */
  readonly create: (input: CreateKey & { readonly tenant: string }) => Effect.Effect<CreatedKey, ServiceUnavailable>
  /**
   * The record of a presented secret. Unknown, disabled and expired keys are `Unauthorized`;
   * a store that cannot be read is `ServiceUnavailable` (fail closed, never free use).
   */
  readonly authenticate: (secret: string) => Effect.Effect<VirtualKey, Unauthorized | ServiceUnavailable>
  readonly get: (id: KeyId) => Effect.Effect<VirtualKey, KeyNotFound | ServiceUnavailable>
  /** Records of a tenant, or of every tenant. */
  readonly list: (tenant?: string) => Effect.Effect<ReadonlyArray<VirtualKey>, ServiceUnavailable>
  readonly update: (id: KeyId, patch: UpdateKey) => Effect.Effect<VirtualKey, KeyNotFound | ServiceUnavailable>
  /** Delete the key; its secret stops working at once. */
  readonly revoke: (id: KeyId) => Effect.Effect<void, KeyNotFound | ServiceUnavailable>
  /** Record use (`lastUsedAt`), best effort. */
  readonly touch: (id: KeyId, at: number) => Effect.Effect<void>
}

export class KeyStore extends Context.Tag("@mks/a2a/KeyStore")<KeyStore, KeyStoreService>() {}

/** In-memory KeyStore (keys are lost on restart): only the hash of each secret is kept. */
export const layerMemory: Layer.Layer<KeyStore> = Layer.effect(KeyStore, internal.make)
