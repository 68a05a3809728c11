/**
 * The broker mounted in a host's own @effect/platform app (`BrokerServer.layerApp`): the host's
 * routes and the broker's side by side on the host's server, a WebSocket channel through the
 * mount, nothing written to the broker's home unless asked, and the custom authenticator alone
 * (no TokenStore chained) still answering for the host's tokens.
 */
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Authenticator, createBrokerClient, Errors, Principal } from "@mks/a2a"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { existsSync, readdirSync } from "node:fs"
import { createServer } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BrokerConfig, BrokerServer, Store, TokenStore } from "../src/index.js"
import { startBroker, tempHome } from "./harness.js"
import { FrameSocket, wsRefusal, wsUrl } from "./probe.js"

const HostAuthenticator = Layer.succeed(Authenticator.Authenticator, {
  authenticate: (token: string) =>
    token === "host-admin"
      ? Effect.succeed(new Principal.Principal({ subject: "host:admin", tenant: "host", roles: ["admin"], scopes: ["metrics"] }))
      : token === "host-admin-unscoped"
      ? Effect.succeed(new Principal.Principal({ subject: "host:admin2", tenant: "host", roles: ["admin"] }))
      : Effect.fail(new Errors.Unauthorized({ message: "not a host token" }))
})

describe("BrokerServer.layerApp mounted beside a host's routes", () => {
  const home = tempHome()
  let runtime: ManagedRuntime.ManagedRuntime<HttpServer.HttpServer | TokenStore.TokenStore, unknown>
  let url: string
  beforeAll(async () => {
    const Broker = BrokerServer.layerApp(BrokerConfig.make({ home, db: "memory" }), {
      store: Store.layerMemory,
      authenticator: HostAuthenticator,
      tokenStore: TokenStore.layerMemory
    })
    const HostRoutes = HttpRouter.empty.pipe(HttpRouter.get("/host/ping", HttpServerResponse.text("pong")))
    const Serve = Layer.unwrapEffect(Effect.map(BrokerServer.BrokerApp, ({ app }) => HttpServer.serve(HostRoutes.pipe(HttpRouter.all("*", app)))))
    runtime = ManagedRuntime.make(
      Serve.pipe(
        Layer.provideMerge(Broker),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
        Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
      )
    )
    const server = await runtime.runPromise(HttpServer.HttpServer)
    url = `http://127.0.0.1:${(server.address as { port: number }).port}`
  }, 60_000)
  afterAll(() => runtime?.dispose())

  it("serves the host's route and the broker's, counts the broker's statuses (404 included), and writes nothing to its home", async () => {
    expect(await (await fetch(`${url}/host/ping`)).text()).toBe("pong")
    expect(((await (await fetch(`${url}/healthz`)).json()) as { status: string }).status).toBe("ok")
    const missing = await fetch(`${url}/no/such/path`)
    expect(missing.status).toBe(404)
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: "Bearer host-admin" } })).text()
    expect(metrics).toContain('a2a_http_requests_total{status="404"}')
    // Process-wide metrics need the scope: the host's admin of a tenant without it is refused.
    expect((await fetch(`${url}/metrics`, { headers: { authorization: "Bearer host-admin-unscoped" } })).status).toBe(403)
    expect(existsSync(home) ? readdirSync(home) : []).toEqual([])
  }, 60_000)

  it("the host's authenticator alone answers for its tokens; a peer's channel works through the mount; the memory token store mints tokens", async () => {
    const admin = createBrokerClient({ url, token: "host-admin" })
    const { peer } = await admin.peers.register({ name: "through-the-mount" })
    const channel = admin.connect(peer.id, { autoAck: true })
    await admin.messages.send({ from: peer.id, to: peer.id, body: "to myself" })
    for await (const m of channel) {
      expect(m.body).toBe("to myself")
      break
    }
    const refused = await createBrokerClient({ url, token: "someone-else" }).peers.list().catch((e) => e)
    expect(refused.status).toBe(401)
    const minted = await runtime.runPromise(Effect.flatMap(TokenStore.TokenStore, (s) => s.create({ tenant: "host", roles: ["peer"] })))
    const viaMinted = createBrokerClient({ url, token: minted.token })
    // The memory token store's tokens are not the host authenticator's: only tokens it accepts get in.
    expect((await viaMinted.peers.list().catch((e) => e)).status).toBe(401)
    expect(existsSync(home) ? readdirSync(home) : []).toEqual([])
    await Promise.all([admin.close(), viaMinted.close()])
  }, 60_000)

  it("the routed peer channel (this mount) and the Node-level one (a broker on its own server) refuse alike and both serve a channel", async () => {
    const own = await startBroker({ db: "memory" })
    try {
      const sides = [
        { url, admin: "host-admin" },
        { url: own.url, admin: own.adminToken }
      ]
      const answers = []
      for (const side of sides) {
        const { peer } = await createBrokerClient({ url: side.url, token: side.admin }).peers.register({ name: "parity" })
        const at = (path: string) => wsUrl({ url: side.url }, path)
        const auth = { authorization: `Bearer ${side.admin}` }
        const refusals = await Promise.all([
          wsRefusal(at(`/ws/broker/peer/${peer.id}`)),
          wsRefusal(at(`/ws/broker/peer/${peer.id}`), { authorization: "Bearer a2a_bogus" }),
          wsRefusal(at("/ws/broker/peer/p_nobody"), auth),
          wsRefusal(at("/ws/broker/peer/not!an!id"), auth),
          wsRefusal(at(`/ws/broker/peer/${peer.id}?after=-1`), auth),
          wsRefusal(at(`/ws/broker/peer/${peer.id}?presence=loud`), auth)
        ])
        answers.push(refusals.map((r) => `${r.status} ${r.body._tag}`))
        // And the upgrade that passes opens a channel that says hello.
        const socket = await FrameSocket.open(at(`/ws/broker/peer/${peer.id}?token=${side.admin}`))
        expect((await socket.next((frame) => frame.type === "hello")).peer.id).toBe(peer.id)
        await socket.close()
      }
      expect(answers[0]).toEqual(["401 Unauthorized", "401 Unauthorized", "404 PeerNotFound", "400 InvalidRequest", "400 InvalidRequest", "400 InvalidRequest"])
      expect(answers[1]).toEqual(answers[0])
    } finally {
      await own.close()
    }
  }, 60_000)
})
