// A small agent: it joins the bus as "reviewer", asks a model (any Anthropic-compatible URL, e.g.
// the a2a proxy) about every message it gets, and answers in the same thread.
// Run alone: A2A_BROKER_URL=… A2A_TOKEN=… ANTHROPIC_BASE_URL=… ANTHROPIC_API_KEY=… node reviewer.mjs
// (a runner sets A2A_BROKER_URL, A2A_TOKEN, A2A_PEER_NAME and A2A_SPAWN_ID for spawned agents).
import { createBrokerClient } from "@mks/a2a"
import { pathToFileURL } from "node:url"

const ask = async (modelUrl, modelKey, text) => {
  const res = await fetch(`${modelUrl}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": modelKey, "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ model: "claude-haiku-4-5", max_tokens: 400, system: "You are a terse code reviewer.", messages: [{ role: "user", content: text }] })
  })
  const body = await res.json()
  if (!res.ok) throw new Error(`model: ${res.status} ${body?.error?.message}`)
  return body.content.filter((b) => b.type === "text").map((b) => b.text).join("")
}

/** Start the reviewer; resolves once it is on the bus. */
export const startReviewer = async ({ brokerUrl, token, modelUrl, modelKey, name = "reviewer", spawnId }) => {
  const broker = createBrokerClient({ url: brokerUrl, token })
  const { peer } = await broker.peers.register({ name, summary: "reviews what you send it", agent: "reviewer", ...(spawnId ? { spawnId } : {}) })
  const channel = broker.connect(peer.id, { autoAck: true })
  channel.on("message", async (m) => {
    const verdict = await ask(modelUrl, modelKey, m.body).catch((e) => `cannot review: ${e.message}`)
    await channel.send({ to: m.from, body: verdict, replyTo: m.id, threadId: m.threadId })
  })
  await new Promise((resolve) => channel.on("open", resolve))
  return { peer, stop: () => broker.close() }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const env = process.env
  const reviewer = await startReviewer({
    brokerUrl: env.A2A_BROKER_URL,
    token: env.A2A_TOKEN,
    modelUrl: env.ANTHROPIC_BASE_URL,
    modelKey: env.ANTHROPIC_API_KEY,
    name: env.A2A_PEER_NAME,
    spawnId: env.A2A_SPAWN_ID
  })
  console.log(`reviewer on the bus as ${reviewer.peer.id}`)
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => reviewer.stop().then(() => process.exit(0)))
}
