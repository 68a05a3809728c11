// The agent the example spawns (a `command` preset): it registers with the spawn token the
// runner hands it (A2A_TOKEN, A2A_PEER_NAME), then answers every message with its body in
// upper case, in the same thread, until it is stopped.
import { createBrokerClient } from "@mks/a2a"

const broker = createBrokerClient({ url: process.env.A2A_BROKER_URL, token: process.env.A2A_TOKEN })
const me = (await broker.peers.register({ name: process.env.A2A_PEER_NAME, summary: "answers in upper case" })).peer
const channel = broker.connect(me.id, { autoAck: true })
channel.on("message", (m) => void channel.send({ to: m.from, body: m.body.toUpperCase(), replyTo: m.id, threadId: m.threadId }))
const stop = () => void broker.close().finally(() => process.exit(0))
process.on("SIGTERM", stop)
process.on("SIGHUP", stop)
