// The broker and the runner's local API mounted inside an existing @effect/platform HTTP app: the
// app keeps its own routes (`GET /hello`) on its own server, the runner's API is under `/runner`
// (an in-process Supervisor), and every other path is the broker's (HTTP API, channels, runner
// links). The broker runs on core's in-memory stores with the app's own authenticator, which
// knows nothing of spawn tokens: the broker consults those after it. The mounted runner links to
// the app's own URL and starts a `command` agent (agent.mjs) that registers with its spawn token.
// Run: node examples/embed-in-your-app/index.mjs   (PORT=4300 to pick the port; default: a free one)
import { FetchHttpClient, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Authenticator, ChannelHub, createBrokerClient, Errors, Inbox, PeerRegistry, Principal, RunnerApi, SpawnPlane, TaskBoard, TeamDirectory } from "@mks/a2a"
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

// ---- the runner, in-process: its local API as an HttpApp, linked to the app's own URL ----
// The link needs the URL, known once the server listens: the runner's layer is made from it.
const runnerKey = randomBytes(16).toString("hex")
const runnerDir = mkdtempSync(join(tmpdir(), "a2a-app-runner-"))
const Runner = Layer.unwrapEffect(
  Effect.map(HttpServer.HttpServer, (server) =>
    RunnerServer.layerApp(
      RunnerConfig.make({
        id: "app-runner",
        apiKey: runnerKey,
        dataDir: runnerDir,
        broker: { url: `http://127.0.0.1:${server.address.port}`, token: tokenFor("box", "acme", "runner") }
      })
    )
  )
)

// ---- the app: its own routes first, the runner's API under /runner, the broker for every other path ----
const AppRoutes = HttpRouter.empty.pipe(HttpRouter.get("/hello", HttpServerResponse.json({ hello: "from the app" })))
const App = Layer.unwrapEffect(
  Effect.gen(function* () {
    const broker = yield* BrokerServer.BrokerApp
    const runner = yield* RunnerServer.RunnerApp
    return HttpServer.serve(AppRoutes.pipe(HttpRouter.mountApp("/runner", runner.app), HttpRouter.all("*", broker.app)))
  })
)
const Server = NodeHttpServer.layer(createServer, { port: Number(process.env.PORT ?? 0), host: "127.0.0.1" })
// Closed in reverse: the app stops serving, the runner stops its agents, then the broker, then the server.
const Main = App.pipe(Layer.provideMerge(Runner), Layer.provideMerge(Broker), Layer.provideMerge(Server))

/** An SSE stream, once open (its `: ok` comment read): `next(match)` is the first event that matches. */
const openSse = async (url) => {
  const controller = new AbortController()
  const res = await fetch(url, { signal: controller.signal })
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  const blocks = async function* () {
    for (;;) {
      for (let i; (i = buffer.indexOf("\n\n")) >= 0; ) {
        const block = buffer.slice(0, i)
        buffer = buffer.slice(i + 2)
        yield block
      }
      const { value, done } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
    }
  }
  const stream = blocks()
  await stream.next() // ": ok"
  return {
    next: async (match) => {
      for await (const block of stream) {
        const data = block.split("\n").find((l) => l.startsWith("data: "))
        if (data !== undefined && match(JSON.parse(data.slice(6)))) return JSON.parse(data.slice(6))
      }
    },
    close: () => controller.abort()
  }
}

const program = Effect.gen(function* () {
  const server = yield* HttpServer.HttpServer
  const url = `http://127.0.0.1:${server.address.port}`
  console.log(`app listening at ${url}`)
  const hello = yield* Effect.promise(() => fetch(`${url}/hello`).then((r) => r.json()))
  console.log(`GET /hello -> ${hello.hello}`)

  // The runner's typed client (derived from core's RunnerApi), at the app's mount point.
  const runnerApi = yield* RunnerApi.client({ url: `${url}/runner`, apiKey: runnerKey })
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
    const { agents } = await Effect.runPromise(runnerApi.agents.list())
    const agent = agents.find((a) => a.spawnId === spawn.id)
    console.log(`GET /runner/agents -> ${agent.name} ${agent.status}, the spawn's agent`)
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

  // A local agent through the mounted runner API; its status change arrives over the mounted SSE.
  const status = yield* Effect.promise(() => openSse(`${url}/runner/sse/status?token=${runnerKey}`))
  yield* runnerApi.agents.create({ payload: { name: "notes", command: process.execPath, args: ["-e", "setInterval(() => {}, 1 << 30)"] } })
  const event = yield* Effect.promise(() => status.next((e) => e.agent_id === "notes" && e.new_status === "running"))
  status.close()
  console.log(`POST /runner/agents -> notes ${event.new_status} (status event over /runner/sse/status)`)
  const stopped = yield* runnerApi.agents.stop({ path: { id: "notes" } })
  yield* runnerApi.agents.remove({ path: { id: "notes" } })
  const gone = yield* Effect.flip(runnerApi.agents.get({ path: { id: "notes" } }))
  console.log(`notes ${stopped.agent.status} and removed: ${gone._tag}`)
  const stranger = yield* RunnerApi.client({ url: `${url}/runner`, apiKey: tokenFor("alice", "acme", "admin") })
  const denied = yield* Effect.flip(stranger.agents.list())
  console.log(`the runner API with an app token gets ${denied._tag}: it has its own key`)
})

await Effect.runPromise(program.pipe(Effect.provide(Main), Effect.provide(FetchHttpClient.layer), Logger.withMinimumLogLevel(LogLevel.Warning)))
rmSync(runnerDir, { recursive: true, force: true })
console.log("app stopped")
