/**
 * OIDC admins on the control plane, against a real proxy and a local issuer (discovery and
 * JWKS on 127.0.0.1, tokens signed by the test): a JWT with the `admin` role manages its
 * tenant's keys and usage; a valid JWT without it gets 403; a bad, expired, wrong-audience,
 * wrong-issuer or unlisted-client token gets 401; the static admin token keeps working; the
 * settings come from the config file and the `A2A_PROXY_OIDC_*` variables.
 */
import { Effect } from "effect"
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ProxyConfig } from "../src/index.js"
import { ensureBuilt, run, serve } from "./helpers/cli.js"
import type { FakeUpstream } from "./helpers/fakeUpstream.js"
import { startFake } from "./helpers/fakeUpstream.js"
import type { Harness } from "./helpers/proxy.js"
import { oneProvider, postMessages, startProxy, tempDir } from "./helpers/proxy.js"

const AUDIENCE = "a2a-proxy"
let issuerServer: http.Server
let issuer = ""
let jwksRequests = 0
let signingKey: CryptoKey
let strangerKey: CryptoKey
let fake: FakeUpstream
let proxy: Harness

const sign = (claims: JWTPayload, options: { key?: CryptoKey; iss?: string; aud?: string; exp?: number | string } = {}) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", kid: "proxy-test" })
    .setIssuer(options.iss ?? issuer)
    .setAudience(options.aud ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.exp ?? "10m")
    .sign(options.key ?? signingKey)

const call = async (token: string | undefined, method: string, p: string, body?: unknown) => {
  const res = await fetch(proxy.url + p, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" })
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, json: text === "" ? undefined : JSON.parse(text), text }
}

const message = { model: "claude-text", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }

beforeAll(async () => {
  ensureBuilt()
  const pair = await generateKeyPair("ES256", { extractable: true })
  signingKey = pair.privateKey
  strangerKey = (await generateKeyPair("ES256")).privateKey
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: "proxy-test", alg: "ES256", use: "sig" }
  issuerServer = http.createServer((req, res) => {
    if (req.url === "/.well-known/openid-configuration") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/keys` }))
    } else if (req.url === "/keys") {
      jwksRequests++
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ keys: [jwk] }))
    } else res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => issuerServer.listen(0, "127.0.0.1", resolve))
  issuer = `http://127.0.0.1:${(issuerServer.address() as AddressInfo).port}`
  fake = await startFake()
  proxy = await startProxy(oneProvider(fake.url), {
    env: { A2A_PROXY_OIDC_ISSUER: issuer, A2A_PROXY_OIDC_AUDIENCE: AUDIENCE, A2A_PROXY_OIDC_ALLOWED_CLIENTS: "ops-console, ci-bot" }
  })
}, 120_000)
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
  await new Promise<void>((resolve) => {
    issuerServer?.closeAllConnections()
    issuerServer?.close(() => resolve())
  })
})

describe("OIDC admins on the control plane", () => {
  it("an admin JWT creates, lists (masked), updates and revokes keys of its tenant, and reads their usage", async () => {
    const admin = await sign({ sub: "alice", tenant: "acme", roles: ["admin"], azp: "ops-console" })
    // A key of another tenant, made with the static admin token: the OIDC admin must not see it.
    const foreign = await proxy.createKey({ name: "foreign", tenant: "globex" })

    const created = await call(admin, "POST", "/v1/keys", { name: "acme-ci", limits: { requestsPerMinute: 100 } })
    expect(created.status, created.text).toBe(201)
    expect(created.json.key).toMatch(/^sk-mks-/)
    expect(created.json.record).toMatchObject({ name: "acme-ci", tenant: "acme" })
    const id = created.json.record.id
    expect((await postMessages(proxy.url, created.json.key, message)).status).toBe(200)

    const list = await call(admin, "GET", "/v1/keys")
    expect(list.status).toBe(200)
    expect(list.json.keys.map((k: any) => k.id)).toEqual([id])
    expect(list.text).not.toContain(created.json.key)

    const updated = await call(admin, "PATCH", `/v1/keys/${id}`, { name: "acme-ci-2" })
    expect(updated.status, updated.text).toBe(200)
    expect(updated.json.record.name).toBe("acme-ci-2")

    const usage = await call(admin, "GET", `/v1/usage?key=${id}`)
    expect(usage.status, usage.text).toBe(200)
    expect(usage.json.usage[0].window.requests).toBe(1)
    expect(usage.json.usage[0].remaining.requestsPerMinute).toBe(99)

    // Another tenant's key: 404 everywhere, as if it did not exist; creating in that tenant is 403.
    for (const [method, p, body] of [
      ["PATCH", `/v1/keys/${foreign.record.id}`, { name: "x" }],
      ["DELETE", `/v1/keys/${foreign.record.id}`, undefined],
      ["GET", `/v1/usage?key=${foreign.record.id}`, undefined]
    ] as const) {
      const res = await call(admin, method, p, body)
      expect(res.status, `${method} ${p}: ${res.text}`).toBe(404)
      expect(res.json._tag).toBe("KeyNotFound")
    }
    const elsewhere = await call(admin, "POST", "/v1/keys", { name: "sneaky", tenant: "globex" })
    expect(elsewhere.status).toBe(403)
    expect(elsewhere.json._tag).toBe("Forbidden")

    expect((await call(admin, "DELETE", `/v1/keys/${id}`)).status).toBe(204)
    expect((await postMessages(proxy.url, created.json.key, message)).status).toBe(401)
    // The static admin token still sees every tenant.
    expect((await proxy.admin("GET", "/v1/keys")).json.keys.map((k: any) => k.id)).toContain(foreign.record.id)
  })

  it("a valid JWT without the admin role is 403 Forbidden on every admin endpoint", async () => {
    const peer = await sign({ sub: "bob", tenant: "acme", roles: ["peer", "runner"], azp: "ops-console" })
    const noRoles = await sign({ client_id: "ci-bot" })
    for (const token of [peer, noRoles]) {
      for (const [method, p, body] of [
        ["POST", "/v1/keys", { name: "nope" }],
        ["GET", "/v1/keys", undefined],
        ["PATCH", "/v1/keys/key_doesnotmatter", { name: "x" }],
        ["DELETE", "/v1/keys/key_doesnotmatter", undefined],
        ["GET", "/v1/usage", undefined]
      ] as const) {
        const res = await call(token, method, p, body)
        expect(res.status, `${method} ${p}: ${res.text}`).toBe(403)
        expect(res.json._tag).toBe("Forbidden")
        expect(res.json.message).toMatch(/lacks the admin role/)
      }
    }
  })

  it("bad signature, expired, wrong audience or issuer, unlisted or missing client, garbage: 401 Unauthorized", async () => {
    const claims = { sub: "mallory", tenant: "acme", roles: ["admin"], azp: "ops-console" }
    const cases: Array<[string, string | undefined]> = [
      ["signed by another key", await sign(claims, { key: strangerKey })],
      ["expired", await sign(claims, { exp: Math.floor(Date.now() / 1000) - 120 })],
      ["wrong audience", await sign(claims, { aud: "a2a-broker" })],
      ["wrong issuer", await sign(claims, { iss: "http://127.0.0.1:9" })],
      ["client not on the allowlist", await sign({ ...claims, azp: "someone-else" })],
      ["no client id", await sign({ sub: "mallory", tenant: "acme", roles: ["admin"] })],
      ["not a JWT", "a2a_admin_not-the-token"],
      ["a JWT's shape, nothing more", "aaa.bbb.ccc"],
      ["no token", undefined]
    ]
    for (const [what, token] of cases) {
      for (const [method, p] of [
        ["GET", "/v1/keys"],
        ["GET", "/v1/usage"]
      ] as const) {
        const res = await call(token, method, p)
        expect(res.status, `${what}: ${res.text}`).toBe(401)
        expect(res.json._tag, what).toBe("Unauthorized")
        expect(typeof res.json.message).toBe("string")
      }
    }
  })

  it("an admin JWT is no virtual key: /v1/usage/me and the data plane refuse it (401)", async () => {
    const admin = await sign({ sub: "alice", tenant: "acme", roles: ["admin"], azp: "ops-console" })
    const me = await call(admin, "GET", "/v1/usage/me")
    expect(me.status).toBe(401)
    expect(me.json._tag).toBe("Unauthorized")
    const data = await postMessages(proxy.url, undefined, message, { authorization: `Bearer ${admin}` })
    expect(data.status).toBe(401)
    expect(data.json.error.type).toBe("authentication_error")
    expect(jwksRequests).toBeGreaterThan(0)
  })
})

describe("OIDC settings", () => {
  it("come from the config file's oidc section, with the A2A_PROXY_OIDC_* variables over it field by field", async () => {
    const dir = tempDir()
    const file = path.join(dir, "proxy.yaml")
    fs.writeFileSync(
      file,
      [
        "providers: [{ name: fake, baseUrl: 'http://127.0.0.1:9', apiKey: k }]",
        "oidc:",
        `  issuer: ${issuer}`,
        "  audience: from-file",
        "  allowedClients: [a, b]",
        "  tenantClaim: org"
      ].join("\n")
    )
    const fromFile = await Effect.runPromise(ProxyConfig.load({ configPath: file, env: {} }))
    expect(fromFile.oidc).toEqual({ issuer, audience: "from-file", allowedClients: ["a", "b"], tenantClaim: "org", defaultTenant: "default", rolesClaim: "roles" })
    const overridden = await Effect.runPromise(
      ProxyConfig.load({ configPath: file, env: { A2A_PROXY_OIDC_AUDIENCE: "from-env", A2A_PROXY_OIDC_ROLES_CLAIM: "groups", A2A_PROXY_OIDC_JWKS_URI: `${issuer}/keys` } })
    )
    expect(overridden.oidc).toMatchObject({ audience: "from-env", rolesClaim: "groups", tenantClaim: "org", jwksUri: `${issuer}/keys` })
    const none = await Effect.runPromise(ProxyConfig.make({ providers: [{ name: "fake", baseUrl: "http://127.0.0.1:9" }] }, { env: {} }))
    expect(none.oidc).toBeUndefined()
  })

  it("refuse an issuer without audience, an audience without issuer, a non-URL issuer, unknown fields", async () => {
    const base = { providers: [{ name: "fake", baseUrl: "http://127.0.0.1:9" }] }
    const error = (input: unknown, env: Record<string, string> = {}) =>
      Effect.runPromise(Effect.flip(ProxyConfig.make(input, { env }))).then((e) => e.message)
    expect(await error(base, { A2A_PROXY_OIDC_ISSUER: issuer })).toMatch(/an audience is required with the issuer \(oidc.audience or A2A_PROXY_OIDC_AUDIENCE\)/)
    expect(await error({ ...base, oidc: { audience: "x" } })).toMatch(/an issuer is required/)
    expect(await error(base, { A2A_PROXY_OIDC_ISSUER: "not a url", A2A_PROXY_OIDC_AUDIENCE: "x" })).toMatch(/oidc: issuer not a url is not a URL/)
    expect(await error({ ...base, oidc: { issuer, audience: "x", scopes: ["y"] } })).toMatch(/oidc/)
  })

  it("the CLI takes them from the environment: no admin token file is created, and `keys` works with an admin JWT", async () => {
    const home = tempDir()
    const file = path.join(home, "proxy.yaml")
    fs.writeFileSync(file, `providers:\n  - { name: fake, baseUrl: '${fake.url}', apiKeyEnv: FAKE_KEY }\ndefault: fake\n`)
    const running = await serve(["--port", "0", "--config", file], {
      A2A_HOME: home,
      FAKE_KEY: "real",
      A2A_PROXY_OIDC_ISSUER: issuer,
      A2A_PROXY_OIDC_AUDIENCE: AUDIENCE
    })
    try {
      expect(fs.existsSync(path.join(home, "proxy.token"))).toBe(false)
      const admin = await sign({ sub: "ops", tenant: "acme", roles: "admin" })
      const created = await run(["keys", "create", "--name", "from-cli"], { A2A_HOME: home, A2A_PROXY_URL: running.url, A2A_PROXY_ADMIN_TOKEN: admin })
      expect(created.code, created.stderr).toBe(0)
      expect(created.stdout.trim()).toMatch(/^sk-mks-/)
      const listed = await run(["keys", "list", "--json"], { A2A_HOME: home, A2A_PROXY_URL: running.url, A2A_PROXY_ADMIN_TOKEN: await sign({ sub: "viewer", tenant: "acme" }) })
      expect(listed.code).not.toBe(0)
      expect(listed.stderr).toMatch(/Forbidden|admin role/)
    } finally {
      running.child.kill("SIGTERM")
      await running.exited
    }
  })
})
