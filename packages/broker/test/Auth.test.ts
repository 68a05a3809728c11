/**
 * Auth and tenancy against a real broker: bearer tokens (static and OIDC), tenant isolation
 * (404, existence does not leak), principal ownership (403), roles, the token file and CLI.
 */
import { createHash } from "node:crypto"
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { http, startBroker, type TestBroker } from "./harness.js"
import { FrameSocket, runCli, serveIssuer, wsRefusal, wsUrl } from "./probe.js"

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex")
const mode = (path: string) => statSync(path).mode & 0o777

const register = async (broker: TestBroker, token: string, body: Record<string, unknown>) => {
  const res = await http(broker, token, "POST", "/api/peers", body)
  expect(res.status, res.text).toBe(201)
  return res.json.peer as { id: string; name: string }
}

const expectError = (res: { status: number; json: any; text: string }, status: number, tag: string) => {
  expect(res.status, res.text).toBe(status)
  expect(res.json._tag, res.text).toBe(tag)
  expect(typeof res.json.message).toBe("string")
}

describe("static tokens and tenancy", () => {
  let broker: TestBroker
  let x: string // tenant x, principal 1
  let x2: string // tenant x, principal 2
  let y: string // tenant y
  let runnerOnly: string // tenant x, role runner only
  let xPeer: { id: string; name: string }
  let x2Peer: { id: string; name: string }
  let yPeer: { id: string; name: string }

  beforeAll(async () => {
    broker = await startBroker()
    x = await broker.token("x", "peer")
    x2 = await broker.token("x", "peer")
    y = await broker.token("y", "peer")
    runnerOnly = await broker.token("x", "runner")
    xPeer = await register(broker, x, { name: "alice" })
    x2Peer = await register(broker, x2, { name: "bob" })
    yPeer = await register(broker, y, { name: "yuri", teams: ["ops"] })
    // Y's peer has something in its inbox, so an inbox read that leaked would show it.
    const yOther = await register(broker, y, { name: "yvonne" })
    expect((await http(broker, y, "POST", "/api/messages", { from: yOther.id, to: yPeer.id, body: "secret of tenant y" })).status).toBe(201)
  })
  afterAll(() => broker?.close())

  it("no token is 401 Unauthorized on every API route, /healthz and /openapi.json stay open", async () => {
    for (const [method, path] of [
      ["GET", "/api/peers"],
      ["POST", "/api/peers"],
      ["GET", `/api/peers/${xPeer.id}`],
      ["POST", "/api/messages"],
      ["GET", `/api/peers/${xPeer.id}/inbox`],
      ["GET", "/api/teams"],
      ["GET", "/api/runners"],
      ["GET", "/api/spawn"],
      ["GET", "/metrics"]
    ] as const) {
      const res = await http(broker, undefined, method, path, method === "POST" ? {} : undefined)
      expectError(res, 401, "Unauthorized")
    }
    expect((await http(broker, undefined, "GET", "/healthz")).status).toBe(200)
    expect((await http(broker, undefined, "GET", "/openapi.json")).status).toBe(200)
  })

  it("/metrics counts every tenant, so it is an operator's: admin of tenant default or the metrics scope; a peer, runner or other tenant's admin is 403", async () => {
    const scrape = (token: string) => http(broker, token, "GET", "/metrics")
    // The broker's own admin token (tenant default) and a token with the `metrics` scope.
    const ok = await scrape(broker.adminToken)
    expect(ok.status).toBe(200)
    expect(ok.text).toMatch(/^a2a_ws_connections \d+$/m)
    expect((await scrape(await broker.scopedToken("y", ["peer"], ["metrics"]))).status).toBe(200)
    // Everyone else: peer tokens of any tenant, a runner, an admin of another tenant.
    for (const token of [x, y, runnerOnly, await broker.token("default", "peer"), await broker.token("y", "admin")]) {
      const res = await scrape(token)
      expectError(res, 403, "Forbidden")
      expect(res.text).not.toMatch(/a2a_/)
    }
  })

  it("a bad token is 401 Unauthorized {_tag, message}, whatever its shape", async () => {
    for (const bad of ["nope", "a2a_" + "x".repeat(40), x + "x", x.slice(0, -1), "a.b.c"]) {
      const res = await http(broker, bad, "GET", "/api/peers")
      expectError(res, 401, "Unauthorized")
      expect(Object.keys(res.json).sort()).toEqual(["_tag", "message"])
    }
    // A non-bearer scheme is no credential either.
    expectError(await http(broker, undefined, "GET", "/api/peers", undefined, { authorization: `Basic ${x}` }), 401, "Unauthorized")
  })

  it("WebSocket upgrades without a token or with a bad one are refused with 401", async () => {
    const url = wsUrl(broker, `/ws/broker/peer/${xPeer.id}`)
    const none = await wsRefusal(url)
    expect(none.status).toBe(401)
    expect(none.body._tag).toBe("Unauthorized")
    expect((await wsRefusal(url, { authorization: "Bearer a2a_bogus" })).status).toBe(401)
    expect((await wsRefusal(`${url}?token=a2a_bogus`)).status).toBe(401)
  })

  it("?token= authenticates the WebSocket (for browsers)", async () => {
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${xPeer.id}?token=${encodeURIComponent(x)}`))
    const hello = await socket.next((f) => f.type === "hello")
    expect(hello.peer.id).toBe(xPeer.id)
    await socket.close()
  })

  it("tenant X cannot list or read tenant Y's peers (404 PeerNotFound, not 403)", async () => {
    const list = await http(broker, x, "GET", "/api/peers")
    expect(list.status).toBe(200)
    const ids = list.json.peers.map((p: any) => p.id)
    expect(ids).toContain(xPeer.id)
    expect(ids).toContain(x2Peer.id)
    expect(ids).not.toContain(yPeer.id)
    // Filters do not reach across tenants either.
    expect((await http(broker, x, "GET", "/api/peers?team=ops")).json.peers).toEqual([])

    const get = await http(broker, x, "GET", `/api/peers/${yPeer.id}`)
    expectError(get, 404, "PeerNotFound")
    expect(get.json.peer).toBe(yPeer.id)
    // The same answer as for an id that exists nowhere: nothing tells the two apart.
    const nowhere = await http(broker, x, "GET", "/api/peers/p_doesnotexist")
    expectError(nowhere, 404, "PeerNotFound")
    expect(get.json.message.replace(yPeer.id, "ID")).toBe(nowhere.json.message.replace("p_doesnotexist", "ID"))

    // The admin of tenant "default" does not see tenant y either.
    expectError(await http(broker, broker.adminToken, "GET", `/api/peers/${yPeer.id}`), 404, "PeerNotFound")
    expect((await http(broker, broker.adminToken, "GET", "/api/peers")).json.peers).toEqual([])
  })

  it("tenant X cannot message tenant Y's peers by id or by name (404), and nothing reaches Y", async () => {
    const byId = await http(broker, x, "POST", "/api/messages", { from: xPeer.id, to: yPeer.id, body: "hi" })
    expectError(byId, 404, "PeerNotFound")
    const byName = await http(broker, x, "POST", "/api/messages", { from: xPeer.id, to: "yuri", body: "hi" })
    expectError(byName, 404, "PeerNotFound")
    // Y's team is unknown in X.
    expectError(await http(broker, x, "POST", "/api/messages", { from: xPeer.id, team: "ops", body: "hi" }), 404, "TeamNotFound")
    // Sending *as* Y's peer is a 404 as well.
    expectError(await http(broker, x, "POST", "/api/messages", { from: yPeer.id, to: xPeer.id, body: "hi" }), 404, "PeerNotFound")
    const inbox = await http(broker, y, "GET", `/api/peers/${yPeer.id}/inbox`)
    expect(inbox.json.messages.map((m: any) => m.body)).toEqual(["secret of tenant y"])
  })

  it("tenant X cannot read, ack, heartbeat, update, unregister or team-join Y's peers (404)", async () => {
    expectError(await http(broker, x, "GET", `/api/peers/${yPeer.id}/inbox`), 404, "PeerNotFound")
    expectError(await http(broker, x, "GET", `/api/peers/${yPeer.id}/inbox?wait=1`), 404, "PeerNotFound")
    expectError(await http(broker, x, "POST", `/api/peers/${yPeer.id}/inbox/ack`, { upTo: 1 }), 404, "PeerNotFound")
    expectError(await http(broker, x, "POST", `/api/peers/${yPeer.id}/heartbeat`), 404, "PeerNotFound")
    expectError(await http(broker, x, "PATCH", `/api/peers/${yPeer.id}`, { summary: "pwned" }), 404, "PeerNotFound")
    expectError(await http(broker, x, "DELETE", `/api/peers/${yPeer.id}`), 404, "PeerNotFound")
    expectError(await http(broker, x, "POST", `/api/teams/xteam/members`, { peerId: yPeer.id }), 404, "PeerNotFound")
    // Y's peer is untouched: still there, unacked message still there.
    const after = await http(broker, y, "GET", `/api/peers/${yPeer.id}`)
    expect(after.json.peer.summary).toBe("")
    expect((await http(broker, y, "GET", `/api/peers/${yPeer.id}/inbox`)).json).toMatchObject({ cursor: 0, messages: [{ seq: 1 }] })
  })

  it("tenant X cannot open the channel of Y's peer: the upgrade is refused with 404", async () => {
    const refused = await wsRefusal(wsUrl(broker, `/ws/broker/peer/${yPeer.id}`), { authorization: `Bearer ${x}` })
    expect(refused.status).toBe(404)
    expect(refused.body._tag).toBe("PeerNotFound")
    expect((await wsRefusal(wsUrl(broker, `/ws/broker/peer/${yPeer.id}?token=${x}`))).status).toBe(404)
  })

  it("names are per tenant: X may register the name Y uses and gets its own peer", async () => {
    const mine = await register(broker, x, { name: "yvonne" })
    const theirs = (await http(broker, y, "GET", "/api/peers")).json.peers.find((p: any) => p.name === "yvonne")
    expect(theirs).toBeDefined()
    expect(mine.id).not.toBe(theirs.id)
  })

  it("a peer cannot send as, read, ack or open the channel of another principal's peer in its tenant (403)", async () => {
    const asOther = await http(broker, x, "POST", "/api/messages", { from: x2Peer.id, to: xPeer.id, body: "forged" })
    expectError(asOther, 403, "Forbidden")
    expectError(await http(broker, x, "GET", `/api/peers/${x2Peer.id}/inbox`), 403, "Forbidden")
    expectError(await http(broker, x, "POST", `/api/peers/${x2Peer.id}/inbox/ack`, { upTo: 1 }), 403, "Forbidden")
    expectError(await http(broker, x, "PATCH", `/api/peers/${x2Peer.id}`, { summary: "not mine" }), 403, "Forbidden")
    expectError(await http(broker, x, "DELETE", `/api/peers/${x2Peer.id}`), 403, "Forbidden")
    const refused = await wsRefusal(wsUrl(broker, `/ws/broker/peer/${x2Peer.id}`), { authorization: `Bearer ${x}` })
    expect(refused.status).toBe(403)
    expect(refused.body._tag).toBe("Forbidden")
    // Re-registering the other principal's name is not a takeover.
    expectError(await http(broker, x, "POST", "/api/peers", { name: "bob" }), 409, "PeerNameTaken")

    // Messaging it is allowed, and the sender is the authenticated peer, whatever the body says.
    const sent = await http(broker, x, "POST", "/api/messages", { from: xPeer.id, to: "bob", body: "hello bob", fromName: "mallory" })
    expect(sent.status, sent.text).toBe(201)
    const inbox = await http(broker, x2, "GET", `/api/peers/${x2Peer.id}/inbox`)
    expect(inbox.json.messages.at(-1)).toMatchObject({ from: xPeer.id, fromName: "alice", body: "hello bob" })
  })

  it("a token with only the runner role cannot register peers (403), nor a peer token open a runner link", async () => {
    expectError(await http(broker, runnerOnly, "POST", "/api/peers", { name: "sneaky" }), 403, "Forbidden")
    expect((await http(broker, x, "GET", "/api/peers")).json.peers.map((p: any) => p.name)).not.toContain("sneaky")
    const refused = await wsRefusal(wsUrl(broker, "/ws/runner/r1"), { authorization: `Bearer ${x}` })
    expect(refused.status).toBe(403)
    expect(refused.body._tag).toBe("Forbidden")
  })

  it("the database and its WAL files are 0600 in a 0755 home, also when an older version left them 0644", async () => {
    const home = mkdtempSync(join(tmpdir(), "a2a-modes-"))
    chmodSync(home, 0o755)
    const db = join(home, "broker.db")
    try {
      const first = await startBroker({ home, db })
      // Written through, so the WAL and its index exist.
      await register(first, first.adminToken, { name: "modes" })
      expect([db, `${db}-wal`, `${db}-shm`].map(mode)).toEqual([0o600, 0o600, 0o600])
      await first.close()
      for (const path of [db, `${db}-wal`, `${db}-shm`]) if (existsSync(path)) chmodSync(path, 0o644)
      const again = await startBroker({ home, db })
      expect((await http(again, again.adminToken, "GET", "/api/peers")).json.peers.map((p: any) => p.name)).toContain("modes")
      for (const path of [db, `${db}-wal`, `${db}-shm`]) if (existsSync(path)) expect(mode(path), path).toBe(0o600)
      await again.close()
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })

  it("the tokens file is 0600 and holds only hashes; broker.token is 0600", async () => {
    const tokensFile = join(broker.home, "tokens.json")
    const adminFile = join(broker.home, "broker.token")
    expect(mode(tokensFile)).toBe(0o600)
    expect(mode(adminFile)).toBe(0o600)
    const text = readFileSync(tokensFile, "utf8")
    for (const secret of [broker.adminToken, x, x2, y, runnerOnly]) {
      expect(text).not.toContain(secret)
      expect(text).not.toContain(secret.slice(4)) // not even without its prefix
      expect(text).toContain(sha256(secret))
    }
    expect(text).not.toMatch(/a2a_[A-Za-z0-9]/)
  })

  it("token create (CLI, same home) prints the token alone and it works on the running broker; list --json shows no secret; revoke is 401 at once and closes its open sockets with 4003", async () => {
    const created = await runCli(["token", "create", "--home", broker.home, "--tenant", "x", "--role", "peer", "--name", "ci"])
    expect(created.code, created.stderr).toBe(0)
    expect(created.stdout).toMatch(/^a2a_[A-Za-z0-9]+\n$/)
    const token = created.stdout.trim()

    // The running broker picks up the file the CLI wrote.
    const peer = await register(broker, token, { name: "from-cli" })
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    // The same peer through ?token=, and another principal's socket that must survive the revoke.
    const second = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer.id}?token=${token}`))
    await second.next((f) => f.type === "hello")
    const bystander = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${xPeer.id}`), { authorization: `Bearer ${x}` })
    await bystander.next((f) => f.type === "hello")

    const [listed, text] = await Promise.all([runCli(["token", "list", "--json", "--home", broker.home]), runCli(["token", "list", "--home", broker.home])])
    expect(listed.code, listed.stderr).toBe(0)
    const infos = JSON.parse(listed.stdout) as Array<Record<string, unknown>>
    const mine = infos.find((t) => t.name === "ci")!
    expect(mine).toMatchObject({ tenant: "x", roles: ["peer"] })
    expect(typeof mine.id).toBe("string")
    for (const info of infos) {
      expect(Object.keys(info)).not.toContain("hash")
      expect(Object.keys(info)).not.toContain("token")
    }
    for (const secret of [token, broker.adminToken, x]) {
      expect(listed.stdout).not.toContain(secret)
      expect(listed.stdout).not.toContain(sha256(secret))
    }
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(String(mine.id))
    expect(text.stdout).not.toContain(token)

    const [revoked, unknown] = await Promise.all([
      runCli(["token", "revoke", String(mine.id), "--home", broker.home]),
      runCli(["token", "revoke", "t_nope", "--home", broker.home])
    ])
    expect(revoked.code, revoked.stderr).toBe(0)
    expect(revoked.stdout).toBe("")
    // Immediately: the very next request with it is refused, HTTP and WebSocket alike.
    expectError(await http(broker, token, "GET", "/api/peers"), 401, "Unauthorized")
    expect((await wsRefusal(wsUrl(broker, `/ws/broker/peer/${peer.id}?token=${token}`))).status).toBe(401)
    // Sockets already open with it are closed by the broker (the file is re-read within a second).
    expect(await socket.closed).toEqual({ code: 4003, reason: "credentials revoked" })
    expect((await second.closed).code).toBe(4003)
    // Other tokens are unaffected, their sockets too: the bystander still gets answers.
    expect((await http(broker, x, "GET", "/api/peers")).status).toBe(200)
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN)
    bystander.send({ type: "ack", upTo: 0 })
    expect(await bystander.next((f) => f.type === "acked")).toEqual({ type: "acked", cursor: 0 })
    await bystander.close()

    // Revoking an unknown id fails clearly.
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/no token t_nope/)
  }, 60_000)

  it("a token the broker mints after a CLI edit does not drop the CLI's token (the store re-reads the file first)", async () => {
    const created = await runCli(["token", "create", "--home", broker.home, "--tenant", "x", "--role", "peer"])
    expect(created.code, created.stderr).toBe(0)
    const cliToken = created.stdout.trim()
    await broker.token("x", "peer") // written by the broker itself, right after the CLI
    expect((await http(broker, cliToken, "GET", "/api/peers")).status).toBe(200)
    expect(readFileSync(join(broker.home, "tokens.json"), "utf8")).toContain(sha256(cliToken))
  }, 60_000)
})

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>
type SigningKey = Parameters<SignJWT["sign"]>[0]

describe("OIDC access tokens", () => {
  const audience = "a2a-broker"
  let broker: TestBroker
  let home: string
  let issuer: Awaited<ReturnType<typeof serveIssuer>>
  let keys: KeyPair
  let otherKeys: KeyPair
  let staticDefault: string

  const sign = (claims: JWTPayload, options: { key?: SigningKey; iss?: string; aud?: string; exp?: number | string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer(options.iss ?? issuer.issuer)
      .setAudience(options.aud ?? audience)
      .setSubject(String(claims.sub ?? "alice"))
      .setIssuedAt(typeof options.exp === "number" ? options.exp - 600 : undefined)
      .setExpirationTime(options.exp ?? "5m")
      .sign(options.key ?? keys.privateKey)

  const good = { azp: "agent-cli", tenant: "acme", roles: ["peer"] }

  beforeAll(async () => {
    keys = await generateKeyPair("ES256")
    otherKeys = await generateKeyPair("ES256")
    const jwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "ES256", use: "sig" }
    issuer = await serveIssuer({ keys: [jwk] })
    // With OIDC configured no first-start admin token is written; the harness reads broker.token, so give it one.
    home = mkdtempSync(join(tmpdir(), "a2a-broker-oidc-"))
    writeFileSync(join(home, "broker.token"), "unused\n", { mode: 0o600 })
    broker = await startBroker({
      home,
      oidc: { issuer: issuer.issuer, audience, allowedClients: ["agent-cli"], tenantClaim: "tenant", defaultTenant: "default", rolesClaim: "roles" }
    })
    staticDefault = await broker.token("default", "peer")
  })
  afterAll(async () => {
    await broker?.close()
    await issuer?.close()
    rmSync(home, { recursive: true, force: true })
  })

  it("a good token registers a peer in its tenant claim's tenant, isolated from tenant default", async () => {
    const token = await sign(good)
    const defaultPeer = await register(broker, staticDefault, { name: "dora" })
    const res = await http(broker, token, "POST", "/api/peers", { name: "acme-agent" })
    expect(res.status, res.text).toBe(201)
    const peer = res.json.peer

    const acmeList = (await http(broker, token, "GET", "/api/peers")).json.peers.map((p: any) => p.id)
    expect(acmeList).toEqual([peer.id])
    expectError(await http(broker, token, "GET", `/api/peers/${defaultPeer.id}`), 404, "PeerNotFound")
    expectError(await http(broker, token, "POST", "/api/messages", { from: peer.id, to: "dora", body: "hi" }), 404, "PeerNotFound")
    const defaultList = (await http(broker, staticDefault, "GET", "/api/peers")).json.peers.map((p: any) => p.id)
    expect(defaultList).toContain(defaultPeer.id)
    expect(defaultList).not.toContain(peer.id)

    // The channel works with the JWT too, in the header and as ?token=.
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${peer.id}?token=${token}`))
    expect((await socket.next((f) => f.type === "hello")).peer.id).toBe(peer.id)
    await socket.close()
    // Another token of the same subject acts for the same peer; another subject may not.
    const again = await sign(good)
    expect((await http(broker, again, "GET", `/api/peers/${peer.id}/inbox`)).status).toBe(200)
    const carol = await sign({ ...good, sub: "carol" })
    expectError(await http(broker, carol, "GET", `/api/peers/${peer.id}/inbox`), 403, "Forbidden")
  })

  it("a token without the tenant claim lands in the default tenant; roles come from the roles claim", async () => {
    const noTenant = await sign({ azp: "agent-cli", roles: ["peer"], sub: "dan" })
    const names = (await http(broker, noTenant, "GET", "/api/peers")).json.peers.map((p: any) => p.name)
    expect(names).toContain("dora")
    const runnerOnly = await sign({ ...good, roles: ["runner"], sub: "rita" })
    expectError(await http(broker, runnerOnly, "POST", "/api/peers", { name: "nope" }), 403, "Forbidden")
    const spaced = await sign({ ...good, roles: "runner peer", sub: "sam" })
    expect((await http(broker, spaced, "POST", "/api/peers", { name: "spaced" })).status).toBe(201)
  })

  it("the wrong audience is 401", async () => {
    expectError(await http(broker, await sign(good, { aud: "someone-else" }), "GET", "/api/peers"), 401, "Unauthorized")
  })

  it("an expired token is 401", async () => {
    const exp = Math.floor(Date.now() / 1000) - 60
    expectError(await http(broker, await sign(good, { exp }), "GET", "/api/peers"), 401, "Unauthorized")
  })

  it("the wrong issuer is 401", async () => {
    expectError(await http(broker, await sign(good, { iss: "http://127.0.0.1:1" }), "GET", "/api/peers"), 401, "Unauthorized")
  })

  it("a client not on the allowlist (azp evil) or no client id at all is 401", async () => {
    expectError(await http(broker, await sign({ ...good, azp: "evil" }), "GET", "/api/peers"), 401, "Unauthorized")
    expectError(await http(broker, await sign({ tenant: "acme", roles: ["peer"] }), "GET", "/api/peers"), 401, "Unauthorized")
    expect((await wsRefusal(wsUrl(broker, `/ws/broker/peer/p_x?token=${await sign({ ...good, azp: "evil" })}`))).status).toBe(401)
  })

  it("a client_credentials token (client_id instead of azp) is accepted", async () => {
    const token = await sign({ client_id: "agent-cli", tenant: "acme", roles: ["peer"], sub: "agent-cli" })
    const res = await http(broker, token, "POST", "/api/peers", { name: "machine" })
    expect(res.status, res.text).toBe(201)
    expect((await http(broker, token, "GET", "/api/peers")).json.peers.map((p: any) => p.name)).toContain("acme-agent")
    expectError(await http(broker, await sign({ client_id: "evil", tenant: "acme", sub: "x" }), "GET", "/api/peers"), 401, "Unauthorized")
  })

  it("a token signed by another key (same kid) is 401", async () => {
    expectError(await http(broker, await sign(good, { key: otherKeys.privateKey }), "GET", "/api/peers"), 401, "Unauthorized")
    // A tampered payload under a genuine signature too.
    const [h, , s] = (await sign(good)).split(".")
    const forged = Buffer.from(JSON.stringify({ ...good, tenant: "default", iss: issuer.issuer, aud: audience, exp: 9_999_999_999 })).toString("base64url")
    expectError(await http(broker, `${h}.${forged}.${s}`, "GET", "/api/peers"), 401, "Unauthorized")
  })

  it("static tokens keep working next to OIDC", async () => {
    expect((await http(broker, staticDefault, "GET", "/api/peers")).status).toBe(200)
    expectError(await http(broker, "a2a_notatoken", "GET", "/api/peers"), 401, "Unauthorized")
  })
})
