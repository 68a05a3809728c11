/**
 * The A2A gateway with OIDC: the card lists the OpenID Connect scheme next to Bearer, and an A2A
 * client with an OIDC access token (official SDK client) reaches a peer of its token's tenant;
 * another tenant's peer is not found.
 */
import { type Message, Role } from "@a2a-js/sdk"
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client"
import { exportJWK, generateKeyPair, SignJWT } from "jose"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { client, http, startBroker, type TestBroker } from "./harness.js"
import { serveIssuer } from "./probe.js"
import { opened } from "./support.js"

const audience = "a2a-broker"
let broker: TestBroker
let home: string
let issuer: Awaited<ReturnType<typeof serveIssuer>>
let jwt: string
let closePeer: () => Promise<void>

beforeAll(async () => {
  const keys = await generateKeyPair("ES256")
  issuer = await serveIssuer({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "ES256", use: "sig" }] })
  home = mkdtempSync(join(tmpdir(), "a2a-broker-a2a-oidc-"))
  writeFileSync(join(home, "broker.token"), "unused\n", { mode: 0o600 })
  broker = await startBroker({ home, oidc: { issuer: issuer.issuer, audience, allowedClients: [], tenantClaim: "tenant", defaultTenant: "default", rolesClaim: "roles" } })
  jwt = await new SignJWT({ tenant: "acme", roles: ["peer"] })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setIssuer(issuer.issuer)
    .setAudience(audience)
    .setSubject("alice")
    .setExpirationTime("10m")
    .sign(keys.privateKey)
  // The peer answering A2A clients is registered with the same OIDC identity's tenant.
  const api = client(broker, jwt)
  const peer = (await api.peers.register({ name: "oidc-echo", meta: { a2a: true } })).peer
  const channel = api.connect(peer.id, { autoAck: true })
  channel.on("message", (m) => void channel.send({ to: m.from, body: `echo: ${m.body}`, replyTo: m.id }).catch(() => undefined))
  await opened(channel)
  closePeer = () => api.close()
})
afterAll(async () => {
  await closePeer?.()
  await broker?.close()
  await issuer?.close()
  rmSync(home, { recursive: true, force: true })
})

it("the card lists OpenID Connect; an OIDC token sends a message; another tenant's token finds nothing", async () => {
  const card = await http(broker, jwt, "GET", "/a2a/peers/oidc-echo/.well-known/agent-card.json", undefined, { "a2a-version": "1.0" })
  expect(card.status).toBe(200)
  expect(card.json.securitySchemes.oidc).toEqual({ openIdConnectSecurityScheme: { description: "OIDC access token, sent as a Bearer token", openIdConnectUrl: `${issuer.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration` } })
  const legacy = await http(broker, jwt, "GET", "/a2a/peers/oidc-echo/.well-known/agent-card.json")
  expect(legacy.json.securitySchemes.oidc).toMatchObject({ type: "openIdConnect" })

  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers)
    headers.set("authorization", `Bearer ${jwt}`)
    return fetch(input, { ...init, headers })
  }
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, { cardResolver: new DefaultAgentCardResolver({ fetchImpl }), transports: [new JsonRpcTransportFactory({ fetchImpl })] }))
  const a2a = await factory.createFromUrl(broker.url, "/a2a/peers/oidc-echo/.well-known/agent-card.json")
  const answer = (await a2a.sendMessage({
    tenant: "",
    message: { messageId: randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: "text", value: "hi" }, metadata: undefined, filename: "", mediaType: "" }], contextId: "", taskId: "", metadata: undefined, extensions: [], referenceTaskIds: [] },
    configuration: undefined,
    metadata: undefined
  })) as Message
  expect(answer.parts[0]?.content).toEqual({ $case: "text", value: "echo: hi" })

  const staticDefault = await broker.token("default", "peer")
  expect((await http(broker, staticDefault, "GET", "/a2a/peers/oidc-echo/.well-known/agent-card.json")).status).toBe(404)
})
