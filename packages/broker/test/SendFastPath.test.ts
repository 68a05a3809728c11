/**
 * The fast path of `POST /api/messages` and of acks over HTTP (SendRoute.ts) keeps the HttpApi routes' contract: the
 * same requests (success, every refusal, the odd ones) sent to three real brokers on 127.0.0.1
 * get the same status, content type and body (ids aside), and the brokers count the same
 * statuses in /metrics:
 *   - "node": `BrokerServer.layer`, the bins' broker (the Node-level fast path);
 *   - "app": `BrokerServer.layerApp` mounted on a host's server (the route inside the app);
 *   - "api": `BrokerServer.layer` with `fastSend: false` (every send through the HttpApi).
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Ids, SpawnTokens } from "@mks/a2a"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { rmSync } from "node:fs"
import { createServer } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BrokerConfig, BrokerServer, TokenStore } from "../src/index.js"
import { tempHome } from "./harness.js"

const LIMIT = 4096
type Kind = "node" | "app" | "api"

interface Target {
  readonly kind: Kind
  readonly url: string
  readonly token: (tenant: string, roles?: Array<"admin" | "peer">) => Promise<{ token: string; id: string }>
  readonly revoke: (id: string) => Promise<void>
  readonly spawnToken: (tenant: string, spawnId: string) => Promise<string>
  readonly revokeSpawn: (spawnId: string) => Promise<void>
  readonly close: () => Promise<void>
}

const start = async (kind: Kind): Promise<Target> => {
  const home = tempHome()
  const config = BrokerConfig.make({ port: 0, host: "127.0.0.1", db: ":memory:", home, maxBodyBytes: LIMIT })
  const quiet = Logger.minimumLogLevel(LogLevel.Warning)
  let runtime: ManagedRuntime.ManagedRuntime<any, any>
  let url: string
  if (kind === "app") {
    const Serve = Layer.unwrapEffect(Effect.map(BrokerServer.BrokerApp, ({ app }) => HttpServer.serve(HttpRouter.empty.pipe(HttpRouter.all("*", app)))))
    runtime = ManagedRuntime.make(
      Serve.pipe(
        Layer.provideMerge(BrokerServer.layerApp(config)),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
        Layer.provide(quiet)
      )
    )
    const server = await runtime.runPromise(HttpServer.HttpServer)
    url = `http://127.0.0.1:${(server.address as { port: number }).port}`
  } else {
    runtime = ManagedRuntime.make(BrokerServer.layer(config, { fastSend: kind === "node" }).pipe(Layer.provide(quiet)))
    url = (await runtime.runPromise(BrokerServer.BrokerAddress)).url
  }
  const run = <A>(effect: Effect.Effect<A, unknown, any>) => runtime.runPromise(effect)
  return {
    kind,
    url,
    token: (tenant, roles = ["peer"]) =>
      run(Effect.flatMap(TokenStore.TokenStore, (s) => s.create({ tenant, roles }))).then((r) => ({ token: r.token, id: r.info.id })),
    revoke: (id) => run(Effect.flatMap(TokenStore.TokenStore, (s) => s.revoke(id))),
    spawnToken: (tenant, spawnId) => run(Effect.flatMap(SpawnTokens.SpawnTokens, (s) => s.issue(tenant, spawnId as Ids.SpawnId))),
    revokeSpawn: (spawnId) => run(Effect.flatMap(SpawnTokens.SpawnTokens, (s) => s.revoke(spawnId as Ids.SpawnId))),
    close: async () => {
      await runtime.dispose()
      rmSync(home, { recursive: true, force: true })
    }
  }
}

interface Answer {
  readonly status: number
  readonly type: string | null
  readonly body: unknown
}

/** One request; `body` is sent as given (a string) or as JSON. */
const request = async (url: string, init: { token?: string | undefined; authorization?: string; body?: unknown; type?: string | null; path?: string; chunked?: boolean; blob?: boolean }): Promise<Answer> => {
  const headers: Record<string, string> = {}
  const authorization = init.authorization ?? (init.token === undefined ? undefined : `Bearer ${init.token}`)
  if (authorization !== undefined) headers["authorization"] = authorization
  if (init.type !== null) headers["content-type"] = init.type ?? "application/json"
  const text = init.body === undefined ? undefined : typeof init.body === "string" ? init.body : JSON.stringify(init.body)
  const body =
    init.chunked === true && text !== undefined
      ? new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(text))
            controller.close()
          }
        })
      : init.blob === true && text !== undefined
        ? new Blob([text]) // no type: fetch sends no content-type (a string body would be text/plain)
        : text
  const res = await fetch(url + (init.path ?? "/api/messages"), { method: "POST", headers, body, ...(init.chunked ? { duplex: "half" } : {}) } as RequestInit)
  const raw = await res.text()
  let parsed: unknown = raw
  try {
    parsed = raw === "" ? "" : JSON.parse(raw)
  } catch {}
  return { status: res.status, type: res.headers.get("content-type"), body: parsed }
}

/** Each broker's own ids (peers, messages, threads) and times replaced by placeholders, in order of appearance. */
const normalize = (answer: Answer, names: Map<string, string>): Answer => {
  const text = JSON.stringify(answer.body)
    .replace(/\b(p|m|t)_[A-Za-z0-9_-]+/g, (id) => {
      if (!names.has(id)) names.set(id, `<id${names.size}>`)
      return names.get(id)!
    })
    .replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, "<time>")
  return { ...answer, body: JSON.parse(text) }
}

/** What each broker has for one scenario: tokens and peers, made the same way on each. */
interface World {
  readonly target: Target
  readonly alice: { token: string; id: string }
  readonly bob: { token: string; id: string }
  readonly alicePeer: string
  readonly bobPeer: string
}

const world = async (target: Target): Promise<World> => {
  const alice = await target.token("fast")
  const bob = await target.token("fast")
  const register = async (token: string, name: string) => {
    const res = await request(target.url, { token, body: { name }, path: "/api/peers" })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    return (res.body as { peer: { id: string } }).peer.id
  }
  return { target, alice, bob, alicePeer: await register(alice.token, "alice"), bobPeer: await register(bob.token, "bob") }
}

const deep = (n: number) => "[".repeat(n) + "]".repeat(n)

/** The scenarios: name → the request each broker gets (built from its own world). */
const scenarios: Array<[string, (w: World) => Parameters<typeof request>[1]]> = [
  ["success, direct", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: w.bobPeer, body: "hi" } })],
  ["success, by name, with a query string", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: "bob", body: "hi", meta: { k: "v" } }, path: "/api/messages?x=1" })],
  ["success, charset and extra fields", (w) => ({ token: w.alice.token, type: "application/json; charset=utf-8", body: { from: w.alicePeer, to: "bob", body: "é ✓", extra: 1 } })],
  ["success, chunked body", (w) => ({ token: w.alice.token, chunked: true, body: { from: w.alicePeer, to: "bob", body: "chunked" } })],
  ["no content type 415", (w) => ({ token: w.alice.token, type: null, blob: true, body: { from: w.alicePeer, to: "bob", body: "untyped" } })],
  ["string body fetch types text/plain: 415", (w) => ({ token: w.alice.token, type: null, body: JSON.stringify({ from: w.alicePeer, to: "bob", body: "typed by fetch" }) })],
  ["bad token 401", (w) => ({ token: "a2a_not-a-token", body: { from: w.alicePeer, to: "bob", body: "x" } })],
  ["token not of the a2a form 401", (w) => ({ token: "nope", body: { from: w.alicePeer, to: "bob", body: "x" } })],
  ["no authorization header 401", (w) => ({ body: { from: w.alicePeer, to: "bob", body: "x" } })],
  ["empty bearer 401", (w) => ({ authorization: "Bearer ", body: { from: w.alicePeer, to: "bob", body: "x" } })],
  ["bad token beats bad JSON: 401", () => ({ token: "a2a_not-a-token", body: "{not json" })],
  ["another principal's peer 403", (w) => ({ token: w.bob.token, body: { from: w.alicePeer, to: "bob", body: "x" } })],
  ["unknown sender 404", (w) => ({ token: w.alice.token, body: { from: "p_nosuchpeer", to: "bob", body: "x" } })],
  ["unknown recipient 404", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: "nobody", body: "x" } })],
  ["unknown team 404", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, team: "noteam", body: "x" } })],
  ["text/plain 415", (w) => ({ token: w.alice.token, type: "text/plain", body: JSON.stringify({ from: w.alicePeer, to: "bob", body: "x" }) })],
  ["text/plain with a bad token: 415", (w) => ({ token: "a2a_not-a-token", type: "text/plain", body: JSON.stringify({ from: w.alicePeer, to: "bob", body: "x" }) })],
  ["body over the limit 413", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: "bob", body: "x".repeat(LIMIT) } })],
  ["chunked body over the limit 413", (w) => ({ token: w.alice.token, chunked: true, body: { from: w.alicePeer, to: "bob", body: "x".repeat(LIMIT) } })],
  ["not JSON 400", (w) => ({ token: w.alice.token, body: "{not json" })],
  ["JSON whose error text reads like a size 400", (w) => ({ token: w.alice.token, body: "max size" })],
  ["empty body 400", (w) => ({ token: w.alice.token, body: "" })],
  ["nesting too deep 400", (w) => ({ token: w.alice.token, body: deep(200) })],
  ["missing from 400", (w) => ({ token: w.alice.token, body: { to: "bob", body: "x" } })],
  ["both to and team 400", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: "bob", team: "t", body: "x" } })],
  ["neither to nor team 400", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, body: "x" } })],
  ["body of the wrong type 400", (w) => ({ token: w.alice.token, body: { from: w.alicePeer, to: "bob", body: 5 } })],
  ["an array 400", (w) => ({ token: w.alice.token, body: [1, 2] })],
  ["null 400", (w) => ({ token: w.alice.token, body: "null" })],
  // Acks over HTTP take the same fast path.
  ["ack: success", (w) => ({ token: w.bob.token, body: { upTo: 1 }, path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: success past the last message, with a query string", (w) => ({ token: w.bob.token, body: { upTo: 1000 }, path: `/api/peers/${w.bobPeer}/inbox/ack?x=1` })],
  ["ack: percent-encoded id (the router decodes it)", (w) => ({ token: w.bob.token, body: { upTo: 1 }, path: `/api/peers/${encodeURIComponent(w.bobPeer).replace("_", "%5F")}/inbox/ack` })],
  ["ack: bad token 401", (w) => ({ token: "a2a_not-a-token", body: { upTo: 1 }, path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: another principal's peer 403", (w) => ({ token: w.alice.token, body: { upTo: 1 }, path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: unknown peer 404", (w) => ({ token: w.bob.token, body: { upTo: 1 }, path: `/api/peers/p_nosuchpeer/inbox/ack` })],
  ["ack: not a peer id 400", (w) => ({ token: w.bob.token, body: { upTo: 1 }, path: `/api/peers/-/inbox/ack` })],
  ["ack: negative upTo 400", (w) => ({ token: w.bob.token, body: { upTo: -1 }, path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: upTo a string 400", (w) => ({ token: w.bob.token, body: { upTo: "1" }, path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: not JSON 400", (w) => ({ token: w.bob.token, body: "{", path: `/api/peers/${w.bobPeer}/inbox/ack` })],
  ["ack: text/plain 415", (w) => ({ token: w.bob.token, type: "text/plain", body: "{}", path: `/api/peers/${w.bobPeer}/inbox/ack` })]
]

const httpCounters = async (target: Target, admin: string) => {
  const text = await (await fetch(`${target.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text()
  return text.split("\n").filter((line) => line.startsWith("a2a_http_requests_total") || line.startsWith("a2a_messages_in_total"))
}

describe("POST /api/messages and /api/peers/:id/inbox/ack: the fast paths answer as the HttpApi routes do", () => {
  const kinds: Array<Kind> = ["node", "app", "api"]
  const targets = new Map<Kind, Target>()
  const worlds = new Map<Kind, World>()
  const admins = new Map<Kind, string>()

  beforeAll(async () => {
    for (const kind of kinds) {
      const target = await start(kind)
      targets.set(kind, target)
      admins.set(kind, (await target.token("default", ["admin"])).token)
      worlds.set(kind, await world(target))
    }
  }, 60_000)
  afterAll(async () => {
    for (const target of targets.values()) await target.close()
  })

  for (const [name, build] of scenarios) {
    it(name, async () => {
      const answers = new Map<Kind, Answer>()
      for (const kind of kinds) {
        const w = worlds.get(kind)!
        answers.set(kind, normalize(await request(w.target.url, build(w)), new Map([[w.alicePeer, "<alice>"], [w.bobPeer, "<bob>"]])))
      }
      const api = answers.get("api")!
      expect(answers.get("node")).toEqual(api)
      expect(answers.get("app")).toEqual(api)
      // The contract itself (docs/protocol.md): a JSON body, 201 with the message, or a tagged error.
      expect(api.type).toBe("application/json")
      expect(api.status, JSON.stringify(api.body)).toBe(name.startsWith("success") ? 201 : name.startsWith("ack: success") || name.includes("percent") ? 200 : Number(/(\d{3})$/.exec(name)![1]))
      if (name === "ack: success") expect(api.body).toEqual({ cursor: 1 })
      if (api.status === 201) expect(api.body).toMatchObject({ message: { from: "<alice>", to: "<bob>" }, recipients: ["<bob>"] })
      else if (api.status >= 400) expect(Object.keys(api.body as object)).toContain("_tag")
    })
  }

  it("a send and an ack are answered with their length, not chunked, as through the HttpApi (the fast path writes its own headers)", async () => {
    for (const kind of kinds) {
      const w = worlds.get(kind)!
      for (const [path, token, body] of [
        ["/api/messages", w.alice.token, { from: w.alicePeer, to: "bob", body: "sized é" }],
        [`/api/peers/${w.bobPeer}/inbox/ack`, w.bob.token, { upTo: 1 }]
      ] as const) {
        const res = await fetch(w.target.url + path, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) })
        const bytes = new Uint8Array(await res.arrayBuffer())
        expect(res.status, `${kind} ${path}`).toBeLessThan(300)
        expect(res.headers.get("transfer-encoding"), `${kind} ${path}`).toBeNull()
        expect(res.headers.get("content-length"), `${kind} ${path}`).toBe(String(bytes.byteLength))
      }
    }
  })

  it("a revoked static token is refused at once, as through the HttpApi", async () => {
    for (const kind of kinds) {
      const target = targets.get(kind)!
      const w = worlds.get(kind)!
      const carol = await target.token("fast")
      const carolPeer = (await request(target.url, { token: carol.token, body: { name: `carol-${kind}` }, path: "/api/peers" })).body as { peer: { id: string } }
      const send = () => request(target.url, { token: carol.token, body: { from: carolPeer.peer.id, to: w.bobPeer, body: "before" } })
      expect((await send()).status, kind).toBe(201)
      await target.revoke(carol.id)
      expect(await send(), kind).toEqual({ status: 401, type: "application/json", body: { _tag: "Unauthorized", message: "invalid token" } })
    }
  })

  it("a revoked spawn token is refused at once, as through the HttpApi", async () => {
    const answers = new Map<Kind, Array<Answer>>()
    for (const kind of kinds) {
      const target = targets.get(kind)!
      const w = worlds.get(kind)!
      const spawnId = "s_fastpathtest01"
      const token = await target.spawnToken("fast", spawnId)
      const send = () => request(target.url, { token, body: { from: w.alicePeer, to: "bob", body: "x" } })
      // Authenticated (the spawn's principal owns no peer): 403, then 401 once revoked.
      const before = await send()
      await target.revokeSpawn(spawnId)
      const after = await send()
      answers.set(kind, [before, after].map((a) => normalize(a, new Map([[w.alicePeer, "<alice>"]]))))
    }
    expect(answers.get("api")!.map((a) => a.status)).toEqual([403, 401])
    expect(answers.get("node")).toEqual(answers.get("api"))
    expect(answers.get("app")).toEqual(answers.get("api"))
  })

  it("every broker counted the same statuses and messages", async () => {
    const counters = await Promise.all(kinds.map((kind) => httpCounters(targets.get(kind)!, admins.get(kind)!)))
    expect(counters[2]!.some((line) => line.startsWith('a2a_http_requests_total{status="201"}'))).toBe(true)
    expect(counters[0]).toEqual(counters[2])
    expect(counters[1]).toEqual(counters[2])
  })
})
