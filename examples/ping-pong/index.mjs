// Two peers on one broker: ping sends "ping 1..N", pong answers each in the same thread.
// Run: node examples/ping-pong/index.mjs  (A2A_BROKER_URL, A2A_TOKEN or ~/.a2a/broker.token)
import { createBrokerClient } from "@mks/a2a"
import { readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

const url = process.env.A2A_BROKER_URL ?? "http://127.0.0.1:4200"
const token = process.env.A2A_TOKEN ?? readFileSync(join(process.env.A2A_HOME ?? join(homedir(), ".a2a"), "broker.token"), "utf8").trim()
const rounds = Number(process.env.ROUNDS ?? 3)

const broker = createBrokerClient({ url, token })
const ping = (await broker.peers.register({ name: "ping", summary: "says ping" })).peer
const pong = (await broker.peers.register({ name: "pong", summary: "answers pong" })).peer

const pongChannel = broker.connect(pong.id, { autoAck: true })
const answers = [] // pong's sends in flight: closing the client before they are answered would fail them
pongChannel.on("message", (m) => answers.push(pongChannel.send({ to: m.from, body: m.body.replace("ping", "pong"), replyTo: m.id, threadId: m.threadId })))

const pingChannel = broker.connect(ping.id, { autoAck: true })
// One reader for all rounds: a pong can arrive before the send that caused it has returned, and
// each `for await` is a reader of its own that sees only what arrives while it iterates.
const replies = pingChannel[Symbol.asyncIterator]()
for (let i = 1; i <= rounds; i++) {
  const { message } = await broker.messages.send({ from: ping.id, to: "pong", body: `ping ${i}` })
  for (;;) {
    const { value: reply, done } = await replies.next()
    if (done) throw new Error("the channel closed")
    if (reply.replyTo !== message.id) continue
    console.log(`${message.body} -> ${reply.body}`)
    break
  }
}
await Promise.all(answers)
await broker.close()
