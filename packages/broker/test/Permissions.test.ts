/**
 * The permission table of docs/security.md, row by row, allowed and refused, for admin, peer,
 * spawn and runner tokens and an OIDC principal; and spawn tokens bound to their spawn. A real
 * broker (on 127.0.0.1, OIDC against a local issuer) and a real `a2a-runner` process; the agents
 * are `token-agent.mjs`, which hands its spawn token to the test (as a `command` agent and as the
 * runner's fake `claude` binary).
 */
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from "jose"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, type RunnerProcess, startRunner } from "../../runner/test/helpers.js"
import { refusedRelay } from "../../runner/test/relay.js"
import { http, startBroker, type TestBroker } from "./harness.js"
import { serveIssuer } from "./probe.js"

const AGENT = join(import.meta.dirname, "fixtures", "token-agent.mjs")
const RUNNER = "perm-box"

describe("permissions for spawning, stopping and attaching (docs/security.md table)", () => {
  const audience = "a2a-broker"
  let broker: TestBroker
  let runner: RunnerProcess
  let issuer: Awaited<ReturnType<typeof serveIssuer>>
  let home: string
  let tokenDir: string
  let sign: (claims: JWTPayload) => Promise<string>
  const t: Record<string, string> = {}

  /** Spawn the token agent as `token`; returns the HTTP answer. */
  const spawnAs = (token: string, body: Record<string, unknown> = {}) =>
    http(broker, token, "POST", "/api/spawn", { runner: RUNNER, command: process.execPath, args: [AGENT], env: { TOKEN_DIR: tokenDir }, ...body })
  const claudeAs = (token: string, body: Record<string, unknown> = {}) =>
    http(broker, token, "POST", "/api/spawn", { runner: RUNNER, preset: "claude", env: { TOKEN_DIR: tokenDir }, ...body })
  /** The spawn's own token, as its agent received it. */
  const spawnTokenOf = (spawnId: string) =>
    eventually(() => {
      try {
        const [token, name] = readFileSync(join(tokenDir, spawnId), "utf8").split("\n")
        return { token: token!, name: name! }
      } catch {
        return undefined
      }
    }, `the agent of ${spawnId} to start`, 20_000)
  const statusOf = async (spawnId: string) => (await http(broker, t.admin!, "GET", `/api/spawn/${spawnId}`)).json.spawn.status as string
  const until = (spawnId: string, status: string) => eventually(async () => ((await statusOf(spawnId)) === status ? true : undefined), `${spawnId} ${status}`, 20_000)
  const expect403 = (res: { status: number; json: any; text: string }, message?: RegExp) => {
    expect(res.status, res.text).toBe(403)
    expect(res.json._tag).toBe("Forbidden")
    if (message !== undefined) expect(res.json.message).toMatch(message)
  }

  beforeAll(async () => {
    const keys = await generateKeyPair("ES256")
    issuer = await serveIssuer({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "ES256", use: "sig" }] })
    sign = (claims) =>
      new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(issuer.issuer).setAudience(audience).setSubject(String(claims.sub)).setExpirationTime("10m").sign(keys.privateKey)
    home = mkdtempSync(join(tmpdir(), "a2a-broker-perm-"))
    tokenDir = mkdtempSync(join(tmpdir(), "a2a-broker-perm-tokens-"))
    // With OIDC configured no first-start admin token is written; the harness reads broker.token.
    writeFileSync(join(home, "broker.token"), "unused\n", { mode: 0o600 })
    broker = await startBroker({
      home,
      gcInterval: 100,
      oidc: { issuer: issuer.issuer, audience, allowedClients: [], tenantClaim: "tenant", defaultTenant: "default", rolesClaim: "roles" }
    })
    t.admin = await broker.token("default", "admin")
    t.peer = await broker.token("default", "peer")
    t.other = await broker.token("default", "peer")
    t.commander = await broker.scopedToken("default", ["peer"], ["spawn:command"])
    t.runner = await broker.token("default", "runner")
    t.oidcPeer = await sign({ sub: "olga", tenant: "default", roles: ["peer"] })
    t.oidcCommander = await sign({ sub: "oscar", tenant: "default", roles: ["peer"], a2a_permissions: "spawn:command attach:any not-a-permission" })
    runner = await startRunner(["--broker", broker.url, "--token", t.runner, "--id", RUNNER, "--capacity", "32", "--claude-bin", AGENT])
    await eventually(async () => ((await http(broker, t.admin!, "GET", "/api/runners")).json.runners.some((r: any) => r.id === RUNNER && r.status === "online") ? true : undefined), "the runner online", 20_000)
  }, 60_000)

  afterAll(async () => {
    await runner?.stop()
    await broker?.close()
    await issuer?.close()
    rmSync(home, { recursive: true, force: true })
    rmSync(tokenDir, { recursive: true, force: true })
  })

  it("spawn (claude preset): admin, peer, OIDC peer yes; runner token and a spawn's own token no", async () => {
    for (const who of ["admin", "peer", "oidcPeer"]) {
      const res = await claudeAs(t[who]!)
      expect(res.status, `${who}: ${res.text}`).toBe(202)
      expect(res.json.spawn.spec.owner).toBeDefined()
      await spawnTokenOf(res.json.spawn.id)
      expect((await http(broker, t.admin!, "DELETE", `/api/spawn/${res.json.spawn.id}`)).status).toBe(202)
    }
    expect403(await claudeAs(t.runner!), /"spawn" permission/)
    const parent = await claudeAs(t.peer!)
    const child = await spawnTokenOf(parent.json.spawn.id)
    expect403(await claudeAs(child.token), /spawn's token may not spawn/)
    expect403(await spawnAs(child.token), /spawn's token may not spawn/)
  }, 60_000)

  it("spawn:command: admin, a scoped peer token, an OIDC principal with the claim yes; a plain peer, a plain OIDC peer, a runner no", async () => {
    for (const who of ["admin", "commander", "oidcCommander"]) {
      const res = await spawnAs(t[who]!)
      expect(res.status, `${who}: ${res.text}`).toBe(202)
      await spawnTokenOf(res.json.spawn.id)
    }
    for (const who of ["peer", "oidcPeer", "runner"]) expect403(await spawnAs(t[who]!), /"spawn:command" permission/)
    // A client cannot claim to be someone else: the broker stamps the owner.
    const forged = await spawnAs(t.commander!, { owner: "t_admin" })
    expect(forged.status).toBe(202)
    expect(forged.json.spawn.spec.owner).not.toBe("t_admin")
  }, 60_000)

  it("stop: own spawns with `stop`, any with `stop:any` (admin); another principal's spawn is 403; runner and spawn tokens no", async () => {
    const mine = (await spawnAs(t.commander!)).json.spawn.id as string
    const theirs = (await claudeAs(t.other!)).json.spawn.id as string
    const child = await spawnTokenOf(mine)
    await spawnTokenOf(theirs)
    expect403(await http(broker, t.commander!, "DELETE", `/api/spawn/${theirs}`), /stop:any/)
    expect403(await http(broker, t.runner!, "DELETE", `/api/spawn/${theirs}`), /"stop" permission/)
    expect403(await http(broker, child.token, "DELETE", `/api/spawn/${mine}`), /may not stop/)
    expect403(await http(broker, t.oidcPeer!, "DELETE", `/api/spawn/${mine}`), /stop:any/)
    expect((await http(broker, t.commander!, "DELETE", `/api/spawn/${mine}`)).status).toBe(202)
    expect((await http(broker, t.admin!, "DELETE", `/api/spawn/${theirs}`)).status).toBe(202)
    await until(mine, "exited")
    await until(theirs, "exited")
    // An OIDC principal stops what it created.
    const own = (await claudeAs(t.oidcPeer!)).json.spawn.id as string
    await spawnTokenOf(own)
    expect((await http(broker, t.oidcPeer!, "DELETE", `/api/spawn/${own}`)).status).toBe(202)
  }, 60_000)

  it("attach (log, terminal): own with `attach`, any with `attach:any`; others, runner and spawn tokens are 403", async () => {
    const mine = (await claudeAs(t.peer!)).json.spawn.id as string
    const child = await spawnTokenOf(mine)
    await until(mine, "running")
    const refused = (path: string, token: string) => refusedRelay(broker.url, path, token)
    // Allowed ones upgrade (refusedRelay rejects on an upgrade); refused ones answer 403 before it.
    for (const [who, kind] of [["other", "logs"], ["other", "terminal"], ["runner", "logs"], ["oidcPeer", "terminal"]] as const) {
      expect(await refused(`/ws/broker/spawns/${mine}/${kind}`, t[who]!), who).toMatchObject({ status: 403, body: { _tag: "Forbidden" } })
    }
    expect(await refused(`/ws/broker/spawns/${mine}/terminal`, child.token)).toMatchObject({ status: 403, body: { message: expect.stringMatching(/may not attach/) } })
    for (const who of ["peer", "admin", "oidcCommander"]) {
      await expect(refused(`/ws/broker/spawns/${mine}/logs`, t[who]!), who).rejects.toThrow()
    }
  }, 60_000)

  it("grants: a spawn's token can spawn, stop and attach only as its spec grants, and only what its creator holds", async () => {
    expect403(await spawnAs(t.commander!, { grants: ["stop:any"] }), /only permissions its creator holds/)
    const parent = (await spawnAs(t.commander!, { grants: ["spawn", "stop"] })).json.spawn.id as string
    const child = await spawnTokenOf(parent)
    const grandchild = await claudeAs(child.token)
    expect(grandchild.status, grandchild.text).toBe(202)
    expect403(await spawnAs(child.token), /"spawn:command"/)
    await spawnTokenOf(grandchild.json.spawn.id)
    // It stops what it created (and itself); not its creator's other spawns.
    const sibling = (await spawnAs(t.commander!)).json.spawn.id as string
    expect403(await http(broker, child.token, "DELETE", `/api/spawn/${sibling}`), /stop:any/)
    expect((await http(broker, child.token, "DELETE", `/api/spawn/${grandchild.json.spawn.id}`)).status).toBe(202)
    expect((await http(broker, child.token, "DELETE", `/api/spawn/${parent}`)).status).toBe(202)
    // Unknown permission names are refused at the door.
    expect((await spawnAs(t.commander!, { grants: ["root"] })).status).toBe(400)
  }, 60_000)

  it("the audit log has every spawn, stop and attach above (who, what, where, when, result); reading it needs `audit`", async () => {
    const res = await http(broker, t.admin!, "GET", "/api/audit?limit=1000")
    expect(res.status, res.text).toBe(200)
    const entries = res.json.entries as Array<{ seq: number; at: string; actor: string; action: string; result: string; spawnId?: string; runnerId?: string; detail?: string; error?: string }>
    const has = (action: string, result: string, error?: RegExp) =>
      entries.some((e) => e.action === action && e.result === result && (error === undefined || error.test(e.error ?? "")))
    expect(has("spawn", "allowed")).toBe(true)
    expect(has("spawn", "refused", /Forbidden: spawning the command preset needs the "spawn:command" permission/)).toBe(true)
    expect(has("spawn", "refused", /spawn's token may not spawn/)).toBe(true)
    expect(has("stop", "allowed")).toBe(true)
    expect(has("stop", "refused", /stop:any/)).toBe(true)
    expect(has("attach", "allowed")).toBe(true)
    expect(has("attach", "refused", /attach/)).toBe(true)
    const allowedSpawn = entries.find((e) => e.action === "spawn" && e.result === "allowed" && e.detail?.startsWith("command"))!
    expect(allowedSpawn).toMatchObject({ runnerId: RUNNER, spawnId: expect.stringMatching(/^s_/) })
    expect(allowedSpawn.detail).toContain(AGENT)
    expect(Date.parse(allowedSpawn.at)).toBeGreaterThan(0)
    // Every entry is the actor's subject; seq increases; paging with `after`.
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b))
    const page = (await http(broker, t.admin!, "GET", `/api/audit?after=${entries[1]!.seq}&limit=2`)).json.entries
    expect(page.map((e: { seq: number }) => e.seq)).toEqual([entries[2]!.seq, entries[3]!.seq])
    // A plain peer may not read it; a bad query is 400; no token 401.
    expect403(await http(broker, t.peer!, "GET", "/api/audit"), /"audit" permission/)
    expect((await http(broker, t.admin!, "GET", "/api/audit?limit=0")).status).toBe(400)
    expect((await http(broker, undefined, "GET", "/api/audit")).status).toBe(401)
    // Another tenant sees none of it.
    const acme = await broker.token("acme", "admin")
    expect((await http(broker, acme, "GET", "/api/audit")).json.entries).toEqual([])
    // `a2a audit` shows the same.
    const { execFile } = await import("node:child_process")
    const { promisify } = await import("node:util")
    const cli = join(import.meta.dirname, "..", "..", "cli", "dist", "cli.js")
    const out = await promisify(execFile)(process.execPath, [cli, "audit", "--json", "--limit", "1000"], { env: { PATH: process.env.PATH ?? "", HOME: home, A2A_BROKER_URL: broker.url, A2A_TOKEN: t.admin! } })
    expect((JSON.parse(out.stdout) as Array<{ seq: number }>).map((e) => e.seq)).toEqual(entries.map((e) => e.seq))
    const denied = await promisify(execFile)(process.execPath, [cli, "audit"], { env: { PATH: process.env.PATH ?? "", HOME: home, A2A_BROKER_URL: broker.url, A2A_TOKEN: t.peer! } }).catch((e) => e)
    expect(denied.code).not.toBe(0)
    expect(denied.stderr).toMatch(/Forbidden: reading the audit log needs the "audit" permission/)
  }, 60_000)

  it("a spawn's token registers exactly its spawn's peer: another name 403, a second peer 403; the peer is gone (name free) when the spawn ends", async () => {
    const spawnId = (await spawnAs(t.commander!, { name: "kid" })).json.spawn.id as string
    const { token, name } = await spawnTokenOf(spawnId)
    expect(name).toBe("kid")
    expect403(await http(broker, token, "POST", "/api/peers", { name: "notkid" }), /only the peer "kid"/)
    for (let i = 0; i < 5; i++) expect403(await http(broker, token, "POST", "/api/peers", { name: `extra-${i}` }))
    const first = await http(broker, token, "POST", "/api/peers", { name: "kid" })
    expect(first.status, first.text).toBe(201)
    expect(first.json.peer).toMatchObject({ name: "kid", spawnId })
    // Without a name it is the spawn's peer again (a resume), never a second one.
    const again = await http(broker, token, "POST", "/api/peers", {})
    expect(again.json.peer.id).toBe(first.json.peer.id)
    const peers = (await http(broker, t.admin!, "GET", "/api/peers")).json.peers as Array<{ spawnId?: string }>
    expect(peers.filter((p) => p.spawnId === spawnId)).toHaveLength(1)
    await until(spawnId, "registered")

    expect((await http(broker, t.commander!, "DELETE", `/api/spawn/${spawnId}`)).status).toBe(202)
    await until(spawnId, "exited")
    await eventually(async () => ((await http(broker, t.admin!, "GET", `/api/peers/${first.json.peer.id}`)).status === 404 ? true : undefined), "the spawn's peer unregistered", 20_000)
    // The token is dead, and the name is free for its real owner.
    expect((await http(broker, token, "POST", "/api/peers", { name: "kid" })).status).toBe(401)
    const owner = await http(broker, t.peer!, "POST", "/api/peers", { name: "kid" })
    expect(owner.status, owner.text).toBe(201)
  }, 60_000)
})
