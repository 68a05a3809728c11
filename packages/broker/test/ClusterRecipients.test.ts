/**
 * On PostgreSQL a direct send to a peer id the instance resolved before skips the lookup; the
 * group commit checks the recipient in the transaction that appends (docs/scaling.md, "Sends
 * skip the lookup of known peers"). A peer unregistered through another instance is therefore
 * refused at the next send, over a socket and over HTTP, and its inbox is not created again; a
 * name taken over by a new peer reaches the new one.
 */
import pg from "pg"
import { rmSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, pgEnabled, type TestDatabase } from "../../../test-support/pg.js"
import { http, startBroker, tempHome, type TestBroker } from "./harness.js"
import { FrameSocket, wsUrl } from "./probe.js"

const enabled = await pgEnabled("sends to known peers across instances")

if (!enabled) {
  it("sends to known peers across instances: not run, no server (see the NOT RUN line)", () => {})
} else {
  describe("a known peer unregistered through another instance", () => {
    let db: TestDatabase
    const home = tempHome()
    let a: TestBroker
    let b: TestBroker
    let client: pg.Client
    beforeAll(async () => {
      db = await createDatabase("a2a_known")
      a = await startBroker({ home, db: db.url })
      b = await startBroker({ home, db: db.url })
      client = new pg.Client({ connectionString: db.url })
      await client.connect()
    })
    afterAll(async () => {
      await client?.end()
      await a?.close()
      await b?.close()
      await db?.drop()
      rmSync(home, { recursive: true, force: true })
    })

    const register = async (broker: TestBroker, name: string) => {
      const res = await http(broker, broker.adminToken, "POST", "/api/peers", { name })
      expect(res.status, res.text).toBe(201)
      return res.json.peer.id as string
    }
    const inboxRows = async (peer: string) =>
      Number((await client.query(`SELECT (SELECT count(*) FROM a2a_inbox WHERE peer_id = $1) + (SELECT count(*) FROM a2a_inbox_state WHERE peer_id = $1) AS n`, [peer])).rows[0].n)

    it("is refused at the next send (socket and HTTP) and gets no inbox again; its name reaches the next peer", async () => {
      const sender = await register(a, "known-sender")
      const target = await register(a, "known-target")
      const socket = await FrameSocket.open(wsUrl(a, `/ws/broker/peer/${sender}`), { authorization: `Bearer ${a.adminToken}` })
      await socket.next((f) => f.type === "hello")
      // Sent twice by id through instance a: the second needs no lookup there.
      for (const ref of ["s1", "s2"]) {
        socket.send({ type: "send", to: target, body: ref, ref })
        expect(await socket.next((f) => f.ref === ref)).toMatchObject({ type: "sent", ref })
      }
      expect(await inboxRows(target)).toBe(3)

      // Unregistered through instance b: instance a learns it from the commit, not from b.
      expect((await http(b, b.adminToken, "DELETE", `/api/peers/${target}`)).status).toBe(204)
      expect(await inboxRows(target)).toBe(0)
      socket.send({ type: "send", to: target, body: "late", ref: "late" })
      expect(await socket.next((f) => f.ref === "late")).toMatchObject({ type: "error", ref: "late", error: { _tag: "PeerNotFound", peer: target } })
      const byHttp = await http(a, a.adminToken, "POST", "/api/messages", { from: sender, to: target, body: "late too" })
      expect(byHttp.status, byHttp.text).toBe(404)
      expect(byHttp.json._tag).toBe("PeerNotFound")
      expect(await inboxRows(target)).toBe(0)

      // The name, registered again through b, is a new peer; a send by name reaches it.
      const next = await register(b, "known-target")
      expect(next).not.toBe(target)
      socket.send({ type: "send", to: "known-target", body: "by name", ref: "n1" })
      expect(await socket.next((f) => f.ref === "n1")).toMatchObject({ type: "sent", ref: "n1", message: { to: next, seq: 1 } })
      // And the socket goes on: a send to a peer that exists after the refusals.
      socket.send({ type: "send", to: next, body: "by id", ref: "n2" })
      expect(await socket.next((f) => f.ref === "n2")).toMatchObject({ type: "sent", ref: "n2", message: { to: next, seq: 2 } })
      await socket.close()
    })
  })
}
