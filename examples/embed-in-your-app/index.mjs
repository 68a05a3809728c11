// The broker mounted inside an existing @effect/platform HTTP app: the app keeps its own routes
// (`GET /hello`) on its own server, and every other path is the broker's (HTTP API, channels,
// runner links). The broker runs on core's in-memory stores with the app's own authenticator,
// which knows nothing of spawn tokens: the broker consults those after it. A real runner links
// to the app's URL and starts a `command` agent (agent.mjs) that registers with its spawn token.
// Run: node examples/embed-in-your-app/index.mjs   (PORT=4300 to pick the port; default: a free one)
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Authenticator, ChannelHub, createBrokerClient, Errors, Inbox, PeerRegistry, Principal, SpawnPlane, TaskBoard, TeamDirectory } from "@mks/a2a"
import { BrokerConfig, BrokerServer, TokenStore } from "@mks/a2a-broker"
import { RunnerConfig, RunnerServer } from "@mks/a2a-runner"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"

// ---- the app's own credentials: `user.tenant.role.signature`, HMAC-SHA256 with its secret ----
const secret = process.env.APP_SECRET ?? randomBytes(32).toString("hex")
const sign = (text) => createHmac("sha256", secret).update(text).digest("base64url")
const tokenFor = (user, tenant, role) => `${user}.${tenant}.${role}.${sign(`${user}.${tenant}.${role}`)}`

const AppAuthenticator = Layer.succeed(Authenticator.Authenticator, {
  authenticate: (token) => {
    const [user, tenant, role, signature, extra] = token.split(".")
    const expected = Buffer.from(sign(`${user}.${tenant}.${role}`))
    const given = Buffer.from(signature ?? "")
    if (extra !== undefined || !["admin", "peer", "runner"].includes(role) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return Effect.fail(new Errors.Unauthorized({ message: "not a token of this app" }))
    }
    return Effect.succeed(new Principal.Principal({ subject: `app:${user}`, tenant, roles: [role] }))
  }
})

// ---- core's in-memory stores, and the broker as an HttpApp (nothing written to disk) ----
const CoreStores = Layer.mergeAll(PeerRegistry.layerMemory, Inbox.layerMemory(), ChannelHub.layerMemory(), SpawnPlane.layerMemory(), TaskBoard.layerMemory).pipe(
  Layer.provideMerge(TeamDirectory.layerMemory)
)
const Broker = BrokerServer.layerApp(BrokerConfig.make({ home: mkdtempSync(join(tmpdir(), "a2a-app-")) }), {
  store: CoreStores,
  authenticator: AppAuthenticator,
  tokenStore: TokenStore.layerMemory
})

// ---- the app: its own routes first, the broker for every other path, on its own server ----
const AppRoutes = HttpRouter.empty.pipe(HttpRouter.get("/hello", HttpServerResponse.json({ hello: "from the app" })))
const App = Layer.unwrapEffect(Effect.map(BrokerServer.BrokerApp, ({ app }) => HttpServer.serve(AppRoutes.pipe(HttpRouter.all("*", app)))))
const Server = NodeHttpServer.layer(createServer, { port: Number(process.env.PORT ?? 0), host: "127.0.0.1" })
const Main = App.pipe(Layer.provideMerge(Broker), Layer.provideMerge(Server))

const program = Effect.gen(function* () {
  const server = yield* HttpServer.HttpServer
  const url = `http://127.0.0.1:${server.address.port}`
  console.log(`app listening at ${url}`)
  const hello = yield* Effect.promise(() => fetch(`${url}/hello`).then((r) => r.json()))
  console.log(`GET /hello -> ${hello.hello}`)

  // A real runner, linked to the app's URL with an app token of the runner role.
  const dataDir = mkdtempSync(join(tmpdir(), "a2a-app-runner-"))
  const runner = RunnerServer.layer(
    RunnerConfig.make({ id: "app-runner", port: 0, apiKey: randomBytes(16).toString("hex"), dataDir, broker: { url, token: tokenFor("box", "acme", "runner") } })
  )
  yield* Effect.scoped(
    Effect.gen(function* () {
      yield* Layer.build(runner)
      yield* Effect.promise(async () => {
        const alice = createBrokerClient({ url, token: tokenFor("alice", "acme", "admin") })
        // The runner links in the background: wait until the broker lists it online.
        while ((await alice.runners.list()).runners.every((r) => r.status !== "online")) await new Promise((r) => setTimeout(r, 50))
        const me = (await alice.peers.register({ name: "alice" })).peer
        const inbox = alice.connect(me.id, { autoAck: true })
        // The spawn's status changes come to its requester as events on its channel.
        const seen = []
        const waiters = []
        inbox.on("event", (e) => {
          if (e.type !== "spawn_status") return
          seen.push(e.spawn)
          for (const w of waiters.splice(0)) w()
        })
        const reached = async (id, status) => {
          while (!seen.some((s) => s.id === id && s.status === status)) await new Promise((resolve) => waiters.push(resolve))
        }
        const { spawn } = await alice.spawn.create({ name: "shouter", command: process.execPath, args: [join(import.meta.dirname, "agent.mjs")], requestedBy: me.id })
        // The agent registered its peer with its spawn token, which the app's authenticator never saw.
        await reached(spawn.id, "registered")
        console.log(`spawned ${spawn.spec.name}: registered with its spawn token`)
        const { message } = await alice.messages.send({ from: me.id, to: "shouter", body: "hello from the app" })
        for await (const reply of inbox) {
          if (reply.replyTo !== message.id) continue
          console.log(`shouter answered "${reply.body}"`)
          break
        }
        await alice.spawn.stop(spawn.id)
        await reached(spawn.id, "exited")
        console.log("shouter stopped")
        const forged = createBrokerClient({ url, token: `mallory.acme.admin.${"x".repeat(43)}` })
        const refused = await forged.peers.list().catch((e) => e)
        console.log(`a forged token gets ${refused.status} ${refused._tag}`)
        await Promise.all([alice.close(), forged.close()])
      })
    })
  )
  rmSync(dataDir, { recursive: true, force: true })
})

await Effect.runPromise(program.pipe(Effect.provide(Main), Logger.withMinimumLogLevel(LogLevel.Warning)))
console.log("app stopped")
