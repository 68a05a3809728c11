/**
 * Event kinds are added over time (the `task` event was): a client must skip a frame it
 * cannot decode and keep its channel. A fake broker on 127.0.0.1 sends a hello, an event of a
 * kind no schema knows, a `task` event and a message; the Promise client skips the first and
 * delivers the others. And a client built before the `task` event (the previous event union)
 * cannot decode it, which is why the skipping matters.
 */
import { Schema } from "effect"
import { createServer } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { WebSocketServer } from "ws"
import { ChannelFrame, createBrokerClient, Task } from "../src/index.js"
import { at, directMessage, peer, team } from "./fixtures.js"

const task = new Task.Task({
  id: "t_0123456789abcdefghjkmnpq" as Task.TaskId,
  team,
  title: "fix the parser",
  body: "",
  priority: 1,
  labels: [],
  state: "open",
  attempts: 0,
  maxAttempts: 3,
  dependsOn: [],
  createdBy: peer.id,
  createdAt: at,
  updatedAt: at
})

const encode = Schema.encodeSync(ChannelFrame.ServerFrame)

let server: ReturnType<typeof createServer>
let url: string
let connections = 0
beforeAll(async () => {
  server = createServer()
  const wss = new WebSocketServer({ server })
  wss.on("connection", (socket) => {
    connections++
    socket.send(JSON.stringify(encode({ type: "hello", peer, cursor: 0 })))
    socket.send(JSON.stringify({ type: "event", event: { type: "weather_changed", sky: "blue", at } }))
    socket.send(JSON.stringify(encode({ type: "event", event: { type: "task", change: "created", task, at } })))
    socket.send(JSON.stringify(encode({ type: "message", message: directMessage })))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

describe("channel events are forward compatible", () => {
  it("the client skips an event kind it does not know and keeps delivering events and messages", async () => {
    const client = createBrokerClient({ url, token: "t" })
    const channel = client.connect(peer.id)
    const events: Array<unknown> = []
    channel.on("event", (e) => events.push(e))
    const message = await new Promise<any>((resolve) => channel.on("message", resolve))
    expect(message.id).toBe(directMessage.id)
    expect(events).toHaveLength(1)
    // One socket: the unknown frame was skipped, not a reason to drop the link and reconnect.
    expect(connections).toBe(1)
    expect(events[0]).toMatchObject({ type: "task", change: "created", task: { id: task.id, state: "open" } })
    await client.close()
  }, 60_000)

  it("a client built before the task event cannot decode it (so it must skip, as it does)", () => {
    const before = Schema.Union(ChannelFrame.PeerJoined, ChannelFrame.PeerLeft, ChannelFrame.PeerUpdated, ChannelFrame.TeamChanged, ChannelFrame.SpawnStatusChanged, ChannelFrame.PeersChanged)
    const frame = Schema.encodeSync(ChannelFrame.TaskEvent)({ type: "task", change: "done", task, at })
    expect(Schema.decodeUnknownOption(before)(frame)._tag).toBe("None")
    expect(Schema.decodeUnknownOption(ChannelFrame.PeerEvent)(frame)._tag).toBe("Some")
  })
})
