/**
 * The channel behaviour suite (test-support/channelBehaviour.ts) against the broker over
 * WebSockets: the same suite core's in-process host of `ChannelSession` passes.
 */
import WebSocket from "ws"
import { channelBehaviour, frameQueue } from "../../../test-support/channelBehaviour.js"
import { client, startBroker } from "./harness.js"

channelBehaviour("the broker (WebSocket)", async () => {
  const broker = await startBroker()
  const admin = client(broker, broker.adminToken)
  return {
    peer: async (name) => (await admin.peers.register({ name })).peer.id,
    connect: (peer, options = {}) =>
      new Promise((resolve, reject) => {
        const url = `${broker.url.replace(/^http/, "ws")}/ws/broker/peer/${peer}${options.after === undefined ? "" : `?after=${options.after}`}`
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${broker.adminToken}` } })
        const queue = frameQueue()
        const closed = new Promise<void>((done) => ws.once("close", () => done()))
        ws.on("message", (data) => queue.push(JSON.parse(data.toString())))
        ws.once("close", (code) => queue.end(new Error(`socket closed (${code})`)))
        ws.once("error", reject)
        ws.once("open", () =>
          resolve({
            next: queue.next,
            send: (frame) => ws.send(JSON.stringify(frame)),
            sendText: (text) => ws.send(text),
            close: () => {
              ws.close(1000)
              return closed
            }
          })
        )
      }),
    close: async () => {
      await admin.close()
      await broker.close()
    }
  }
})
