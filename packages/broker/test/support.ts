/** Small awaiting helpers for channel tests: wait for the event, never sleep. */
import type { PromiseClient } from "@mks/a2a"
import WebSocket from "ws"

type Channel = PromiseClient.PromiseChannel
type MessageJson = PromiseClient.MessageJson
type EventJson = PromiseClient.PeerEventJson

/** Collects what a channel receives and lets a test await a condition on it. */
export const record = (channel: Channel) => {
  const messages: Array<MessageJson> = []
  const events: Array<EventJson> = []
  const waiters = new Set<() => void>()
  const notify = () => waiters.forEach((w) => w())
  channel.on("message", (m) => {
    messages.push(m)
    notify()
  })
  channel.on("event", (e) => {
    events.push(e)
    notify()
  })
  const until = <A>(check: () => A | undefined, what: string, timeoutMs = 5_000): Promise<A> =>
    new Promise((resolve, reject) => {
      const done = () => {
        const value = check()
        if (value !== undefined) {
          waiters.delete(done)
          clearTimeout(timer)
          resolve(value)
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(done)
        reject(new Error(`timed out waiting for ${what}; got ${messages.length} messages, ${events.length} events`))
      }, timeoutMs)
      waiters.add(done)
      done()
    })
  return {
    messages,
    events,
    until,
    message: (predicate: (m: MessageJson) => boolean, what = "a message") => until(() => messages.find(predicate), what),
    event: (predicate: (e: EventJson) => boolean, what = "an event") => until(() => events.find(predicate), what),
    count: (n: number) => until(() => (messages.length >= n ? messages.slice(0, n) : undefined), `${n} messages`)
  }
}

/** Resolves once the channel said hello. */
export const opened = (channel: Channel) => new Promise<void>((resolve) => channel.on("open", () => resolve()))

/** A runner link speaking raw frames (`hello` sent on open); announces the relay only when asked. */
export const fakeRunner = (url: string, token: string, id: string, features?: Array<string>) =>
  new Promise<{ ws: WebSocket; next: (type: string) => Promise<any>; send: (frame: unknown) => void }>((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/ws/runner/${id}`, { headers: { authorization: `Bearer ${token}` } })
    const frames: Array<any> = []
    const waiting: Array<{ type: string; resolve: (f: any) => void }> = []
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      const i = waiting.findIndex((w) => w.type === frame.type)
      if (i >= 0) waiting.splice(i, 1)[0]!.resolve(frame)
      else frames.push(frame)
    })
    ws.on("unexpected-response", (_req, res) => reject(new Error(`runner link refused: ${res.statusCode}`)))
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "hello", runner: { id, host: "fake", labels: {}, capacity: 2, presets: ["command"], version: "test" }, agents: [], ...(features ? { features } : {}) }))
      resolve({
        ws,
        send: (frame) => ws.send(JSON.stringify(frame)),
        next: (type) =>
          new Promise((res) => {
            const i = frames.findIndex((f) => f.type === type)
            if (i >= 0) res(frames.splice(i, 1)[0])
            else waiting.push({ type, resolve: res })
          })
      })
    })
  })
