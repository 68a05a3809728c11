// The broker inside your own Effect program, with your own authenticator: here the app signs
// its users' tokens (`user.tenant.signature`, HMAC-SHA256 with the app's secret), and the broker
// accepts them next to its own token file. Two users of tenant "acme" then talk over the bus.
// Run: node examples/embed-broker/index.mjs   (PORT=4300 to pick the port; default: a free one)
import { Authenticator, createBrokerClient, Errors, Principal } from "@mks/a2a"
import { BrokerConfig, BrokerServer, TokenStore } from "@mks/a2a-broker"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const secret = process.env.APP_SECRET ?? randomBytes(32).toString("hex")
const sign = (user, tenant) => createHmac("sha256", secret).update(`${user}.${tenant}`).digest("base64url")
const tokenFor = (user, tenant) => `${user}.${tenant}.${sign(user, tenant)}`

// The custom authenticator: a valid signature gives a peer of that tenant; anything else goes
// on to the broker's own tokens (the admin token in <home>/broker.token keeps working). Spawned
// agents' tokens need nothing here: the broker tries them after any authenticator.
const AppAuthenticator = Layer.effect(
  Authenticator.Authenticator,
  Effect.gen(function* () {
    const brokerTokens = yield* TokenStore.TokenStore
    const appTokens = {
      authenticate: (token) => {
        const [user, tenant, signature, extra] = token.split(".")
        if (extra !== undefined || !user || !tenant || !signature) return Effect.fail(new Errors.Unauthorized({ message: "not an app token" }))
        const expected = Buffer.from(sign(user, tenant))
        const given = Buffer.from(signature)
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) return Effect.fail(new Errors.Unauthorized({ message: "bad signature" }))
        return Effect.succeed(new Principal.Principal({ subject: `app:${user}`, tenant, roles: ["peer"] }))
      }
    }
    return Authenticator.firstOf(appTokens, brokerTokens)
  })
)

const home = mkdtempSync(join(tmpdir(), "a2a-embed-"))
const config = BrokerConfig.make({ port: Number(process.env.PORT ?? 0), home, db: ":memory:" })
const Broker = BrokerServer.layer(config, { authenticator: AppAuthenticator })

const program = Effect.gen(function* () {
  const { url } = yield* BrokerServer.BrokerAddress
  console.log(`broker embedded at ${url}`)
  yield* Effect.promise(async () => {
    const alice = createBrokerClient({ url, token: tokenFor("alice", "acme") })
    const bob = createBrokerClient({ url, token: tokenFor("bob", "acme") })
    const a = (await alice.peers.register({ name: "alice" })).peer
    const b = (await bob.peers.register({ name: "bob" })).peer
    const inbox = bob.connect(b.id, { autoAck: true })
    await alice.messages.send({ from: a.id, to: "bob", body: "hello from an app token" })
    for await (const m of inbox) {
      console.log(`bob got "${m.body}" from ${m.fromName}`)
      break
    }
    const forged = createBrokerClient({ url, token: `mallory.acme.${"x".repeat(43)}` })
    const refused = await forged.peers.list().catch((e) => e)
    console.log(`a forged token gets ${refused.status} ${refused._tag}`)
    await Promise.all([alice.close(), bob.close(), forged.close()])
  })
})

await Effect.runPromise(program.pipe(Effect.provide(Broker), Logger.withMinimumLogLevel(LogLevel.Warning)))
rmSync(home, { recursive: true, force: true })
console.log("broker stopped")
