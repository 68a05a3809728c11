/**
 * The channel protocol's behaviour (docs/protocol.md), as one suite any host of it must pass:
 * the broker over WebSockets (`packages/broker/test/ChannelBehaviour.test.ts`) and core's
 * `ChannelSession` hosted in-process with no broker (`packages/core/test/ChannelSession.test.ts`).
 *
 * A host gives a `ChannelHost`: make a peer, open a client connection for it. Messages are sent
 * with `send` frames on a connection, so the suite uses nothing but the protocol itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/** A server frame as JSON. */
export type Frame = { readonly type: string } & Record<string, any>

export interface ChannelConnection {
  /** The next frame the server sent (in order); fails after `timeoutMs`. */
  readonly next: (timeoutMs?: number) => Promise<Frame>
  /** Send a client frame. */
  readonly send: (frame: object) => void
  /** Send raw text (for frames that do not decode). */
  readonly sendText: (text: string) => void
  /** Close from the client side. */
  readonly close: () => Promise<void>
}

export interface ChannelHost {
  /** A new peer (unique `name`), owned by whoever `connect` acts as; its id. */
  readonly peer: (name: string) => Promise<string>
  /** Open the channel of `peer` (`after`: replay after this seq). */
  readonly connect: (peer: string, options?: { readonly after?: number }) => Promise<ChannelConnection>
  readonly close: () => Promise<void>
}

/** The next frame of type `type` (frames of other types in between, events, are skipped). */
const nextOf = async (conn: ChannelConnection, type: string): Promise<Frame> => {
  for (;;) {
    const frame = await conn.next()
    if (frame.type === type) return frame
    if (frame.type === "error" && type !== "error") throw new Error(`error frame: ${JSON.stringify(frame)}`)
  }
}

let unique = 0
const named = (base: string) => `${base}-${process.pid}-${++unique}`

export const channelBehaviour = (hostName: string, start: () => Promise<ChannelHost>) =>
  describe(`channel protocol on ${hostName}`, () => {
    let host: ChannelHost
    beforeAll(async () => {
      host = await start()
    }, 120_000)
    afterAll(() => host?.close())

    it("says hello first (the peer, cursor 0), answers a send with `sent` (ref, seq) and delivers it live", async () => {
      const [a, b] = [await host.peer(named("a")), await host.peer(named("b"))]
      const ca = await host.connect(a)
      const cb = await host.connect(b)
      const helloA = await ca.next()
      expect(helloA).toMatchObject({ type: "hello", peer: { id: a }, cursor: 0 })
      expect(await cb.next()).toMatchObject({ type: "hello", peer: { id: b }, cursor: 0 })
      ca.send({ type: "send", ref: "r1", to: b, body: "hi" })
      const sent = await nextOf(ca, "sent")
      expect(sent).toMatchObject({ ref: "r1", message: { from: a, to: b, body: "hi", seq: 1 }, recipients: [b] })
      const got = await nextOf(cb, "message")
      expect(got.message).toMatchObject({ id: sent.message.id, seq: 1, body: "hi", from: a })
      await Promise.all([ca.close(), cb.close()])
    }, 60_000)

    it("replays what arrived while offline, in order, after the hello, then goes live without repeating any", async () => {
      const [a, b] = [await host.peer(named("a")), await host.peer(named("b"))]
      const ca = await host.connect(a)
      await nextOf(ca, "hello")
      for (const body of ["one", "two", "three"]) {
        ca.send({ type: "send", to: b, body })
        await nextOf(ca, "sent")
      }
      const cb = await host.connect(b)
      expect(await cb.next()).toMatchObject({ type: "hello", cursor: 0 })
      const replayed = [await nextOf(cb, "message"), await nextOf(cb, "message"), await nextOf(cb, "message")]
      expect(replayed.map((f) => [f.message.seq, f.message.body])).toEqual([[1, "one"], [2, "two"], [3, "three"]])
      ca.send({ type: "send", to: b, body: "four" })
      const live = await nextOf(cb, "message")
      expect([live.message.seq, live.message.body]).toEqual([4, "four"])
      await Promise.all([ca.close(), cb.close()])
    }, 60_000)

    it("`after` skips what the client has; acks are cumulative (`acked` answers with the cursor, never backwards) and a new connection replays only unacked messages", async () => {
      const [a, b] = [await host.peer(named("a")), await host.peer(named("b"))]
      const ca = await host.connect(a)
      await nextOf(ca, "hello")
      for (const body of ["m1", "m2", "m3"]) {
        ca.send({ type: "send", to: b, body })
        await nextOf(ca, "sent")
      }
      // `after` skips what the client already has (nothing acked yet).
      const fromTwo = await host.connect(b, { after: 2 })
      expect(await fromTwo.next()).toMatchObject({ type: "hello", cursor: 0 })
      expect((await nextOf(fromTwo, "message")).message).toMatchObject({ seq: 3, body: "m3" })
      await fromTwo.close()

      const cb = await host.connect(b)
      await nextOf(cb, "hello")
      for (let i = 0; i < 3; i++) await nextOf(cb, "message")
      cb.send({ type: "ack", upTo: 2 })
      expect(await nextOf(cb, "acked")).toMatchObject({ cursor: 2 })
      // An ack never moves the cursor back.
      cb.send({ type: "ack", upTo: 1 })
      expect(await nextOf(cb, "acked")).toMatchObject({ cursor: 2 })
      await cb.close()

      // Only unacked messages are replayed: after the cursor, even when `after` is below it.
      const again = await host.connect(b)
      expect(await again.next()).toMatchObject({ type: "hello", cursor: 2 })
      expect((await nextOf(again, "message")).message).toMatchObject({ seq: 3, body: "m3" })
      await again.close()
      const fromOne = await host.connect(b, { after: 1 })
      expect(await fromOne.next()).toMatchObject({ type: "hello", cursor: 2 })
      expect((await nextOf(fromOne, "message")).message).toMatchObject({ seq: 3, body: "m3" })
      // Then live: the next message is seq 4, nothing repeated.
      ca.send({ type: "send", to: b, body: "m4" })
      expect((await nextOf(fromOne, "message")).message).toMatchObject({ seq: 4, body: "m4" })
      await Promise.all([fromOne.close(), ca.close()])
    }, 60_000)

    it("handles a socket's sends in arrival order: 50 sends fired without waiting are answered and delivered in that order", async () => {
      const [a, b] = [await host.peer(named("a")), await host.peer(named("b"))]
      const ca = await host.connect(a)
      const cb = await host.connect(b)
      await nextOf(ca, "hello")
      await nextOf(cb, "hello")
      for (let i = 1; i <= 50; i++) ca.send({ type: "send", ref: `r${i}`, to: b, body: `n${i}` })
      const sent: Array<Frame> = []
      for (let i = 0; i < 50; i++) sent.push(await nextOf(ca, "sent"))
      expect(sent.map((f) => f.ref)).toEqual(Array.from({ length: 50 }, (_, i) => `r${i + 1}`))
      expect(sent.map((f) => f.message.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
      const delivered: Array<Frame> = []
      for (let i = 0; i < 50; i++) delivered.push(await nextOf(cb, "message"))
      expect(delivered.map((f) => f.message.body)).toEqual(Array.from({ length: 50 }, (_, i) => `n${i + 1}`))
      await Promise.all([ca.close(), cb.close()])
    }, 60_000)

    it("answers a frame that does not decode with an `error` frame (InvalidRequest) and keeps the channel open", async () => {
      const [a, b] = [await host.peer(named("a")), await host.peer(named("b"))]
      const ca = await host.connect(a)
      await nextOf(ca, "hello")
      ca.sendText("{not json")
      expect(await nextOf(ca, "error")).toMatchObject({ error: { _tag: "InvalidRequest" } })
      ca.send({ type: "send", ref: "x", to: "nobody-" + named("x"), body: "?" })
      expect(await nextOf(ca, "error")).toMatchObject({ ref: "x", error: { _tag: "PeerNotFound" } })
      ca.send({ type: "send", ref: "ok", to: b, body: "still here" })
      expect(await nextOf(ca, "sent")).toMatchObject({ ref: "ok" })
      await ca.close()
    }, 60_000)
  })

/** A frame queue: `push` from the transport, `next` from the suite. */
export const frameQueue = () => {
  const frames: Array<Frame> = []
  const waiters: Array<() => void> = []
  let ended: Error | undefined
  return {
    push: (frame: Frame) => {
      frames.push(frame)
      for (const w of waiters.splice(0)) w()
    },
    end: (error: Error) => {
      ended = error
      for (const w of waiters.splice(0)) w()
    },
    next: async (timeoutMs = 30_000): Promise<Frame> => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const frame = frames.shift()
        if (frame !== undefined) return frame
        if (ended !== undefined) throw ended
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          waiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
    }
  }
}
