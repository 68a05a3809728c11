/**
 * Oidc: real JWTs signed by the test, verified against a JWKS served on 127.0.0.1 (discovery
 * document or a fixed `jwksUri`), with the config decoded from its Schema.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Authenticator, Oidc } from "../src/index.js"

let server: http.Server
let issuer = ""
let discoveryHits = 0
let discoveryBroken = false
let signingKey: CryptoKey
let otherKey: CryptoKey

beforeAll(async () => {
  const pair = await generateKeyPair("RS256", { extractable: true })
  const other = await generateKeyPair("RS256", { extractable: true })
  signingKey = pair.privateKey
  otherKey = other.privateKey
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "RS256", use: "sig" }
  server = http.createServer((req, res) => {
    if (req.url === "/.well-known/openid-configuration") {
      discoveryHits++
      if (discoveryBroken) return void res.writeHead(500).end()
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks.json` }))
    } else if (req.url === "/jwks.json") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ keys: [jwk] }))
    } else res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(
  () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
)

const sign = (claims: JWTPayload, options: { key?: CryptoKey; iss?: string; aud?: string; exp?: string | number } = {}) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "RS256", kid: "k1" })
    .setIssuer(options.iss ?? issuer)
    .setAudience(options.aud ?? "a2a-test")
    .setIssuedAt()
    .setExpirationTime(options.exp ?? "5m")
    .sign(options.key ?? signingKey)

const config = (input: Record<string, unknown> = {}) => Schema.decodeUnknownSync(Oidc.OidcConfig)({ issuer, audience: "a2a-test", ...input })

const refusal = (auth: Authenticator.AuthenticatorService, token: string) => Effect.flip(auth.authenticate(token))

describe("Oidc", () => {
  it("the config schema fills the defaults and refuses a missing audience", () => {
    expect(config()).toEqual({ issuer, audience: "a2a-test", allowedClients: [], tenantClaim: "tenant", defaultTenant: "default", rolesClaim: "roles" })
    expect(() => Schema.decodeUnknownSync(Oidc.OidcConfig)({ issuer })).toThrow(/audience/)
  })

  it.effect("a valid token becomes a Principal: sub, tenant and roles from the claims, client from azp or client_id", () =>
    Effect.gen(function* () {
      const auth = yield* Oidc.make(config({ allowedClients: ["cli", "bot"] }))
      const p = yield* auth.authenticate(yield* Effect.promise(() => sign({ sub: "alice", tenant: "acme", roles: ["admin"], azp: "cli" })))
      expect({ subject: p.subject, tenant: p.tenant, roles: p.roles, clientId: p.clientId, isAdmin: p.isAdmin }).toEqual({
        subject: "alice",
        tenant: "acme",
        roles: ["admin"],
        clientId: "cli",
        isAdmin: true
      })
      // client_credentials: no sub beyond the client, roles as a space-separated string, no tenant claim.
      const m2m = yield* auth.authenticate(yield* Effect.promise(() => sign({ client_id: "bot", roles: "runner bogus" })))
      expect({ subject: m2m.subject, tenant: m2m.tenant, roles: m2m.roles, clientId: m2m.clientId }).toEqual({
        subject: "bot",
        tenant: "default",
        roles: ["runner"],
        clientId: "bot"
      })
      // No known role: peer.
      expect((yield* auth.authenticate(yield* Effect.promise(() => sign({ sub: "bob", azp: "cli", roles: ["root"] })))).roles).toEqual(["peer"])
    }))

  it.effect("custom claims and a fixed jwksUri (no discovery)", () =>
    Effect.gen(function* () {
      const before = discoveryHits
      const auth = yield* Oidc.make(config({ jwksUri: `${issuer}/jwks.json`, tenantClaim: "org", rolesClaim: "groups", defaultTenant: "fallback" }))
      const p = yield* auth.authenticate(yield* Effect.promise(() => sign({ sub: "carol", org: "initech", groups: ["admin", "peer"] })))
      expect({ tenant: p.tenant, roles: p.roles }).toEqual({ tenant: "initech", roles: ["admin", "peer"] })
      expect((yield* auth.authenticate(yield* Effect.promise(() => sign({ sub: "dave" })))).tenant).toBe("fallback")
      expect(discoveryHits).toBe(before)
    }))

  it.effect("bad signature, expired, wrong audience, wrong issuer, client not allowed, not a JWT, bad tenant: Unauthorized", () =>
    Effect.gen(function* () {
      const auth = yield* Oidc.make(config({ allowedClients: ["cli"] }))
      const cases: Array<[string, RegExp]> = [
        [yield* Effect.promise(() => sign({ sub: "x", azp: "cli" }, { key: otherKey })), /invalid token: ERR_JWS_SIGNATURE_VERIFICATION_FAILED/],
        [yield* Effect.promise(() => sign({ sub: "x", azp: "cli" }, { exp: Math.floor(Date.now() / 1000) - 60 })), /invalid token: ERR_JWT_EXPIRED/],
        [yield* Effect.promise(() => sign({ sub: "x", azp: "cli" }, { aud: "someone-else" })), /invalid token: ERR_JWT_CLAIM_VALIDATION_FAILED/],
        [yield* Effect.promise(() => sign({ sub: "x", azp: "cli" }, { iss: "http://127.0.0.1:1" })), /invalid token: ERR_JWT_CLAIM_VALIDATION_FAILED/],
        [yield* Effect.promise(() => sign({ sub: "x", azp: "other" })), /client not allowed/],
        [yield* Effect.promise(() => sign({ sub: "x" })), /client not allowed/],
        [yield* Effect.promise(() => sign({ sub: "x", azp: "cli", tenant: "no spaces allowed" })), /tenant is not a tenant name/],
        ["a2a_static-token", /^invalid token$/]
      ]
      for (const [token, message] of cases) {
        const error = yield* refusal(auth, token)
        expect(error._tag).toBe("Unauthorized")
        expect(error.message).toMatch(message)
      }
    }))

  it.effect("a failed discovery refuses the token and is tried again on the next one", () =>
    Effect.gen(function* () {
      const auth = yield* Oidc.make(config())
      const token = yield* Effect.promise(() => sign({ sub: "erin" }))
      discoveryBroken = true
      const error = yield* refusal(auth, token)
      expect(error.message).toMatch(/OIDC discovery .* failed: HTTP 500/)
      discoveryBroken = false
      expect((yield* auth.authenticate(token)).subject).toBe("erin")
    }))

  it.effect("layer provides the Authenticator tag", () =>
    Effect.gen(function* () {
      const auth = yield* Authenticator.Authenticator
      expect((yield* auth.authenticate(yield* Effect.promise(() => sign({ sub: "frank" })))).subject).toBe("frank")
    }).pipe(Effect.provide(Oidc.layer(config())))
  )
})
