/**
 * Bad input against real brokers: every malformed body, frame, id, oversize body, full inbox
 * and unknown peer or team gets the documented typed error and status, and the broker keeps
 * serving (a fast-check batch against the CLI process, then a normal exchange).
 */
import { Message, Peer, ChannelFrame, Spawn, Team } from "@mks/a2a"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { readFileSync, rmSync } from "node:fs"
import { request } from "node:http"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { client, http, startBroker, startBrokerProcess, tempHome, type BrokerProcess, type TestBroker } from "./harness.js"
import { FrameSocket, wsRefusal, wsUrl } from "./probe.js"

type Answer = { status: number; json: any; text: string }

const expectError = (res: Answer, status: number, tag: string, fields: Record<string, unknown> = {}) => {
  expect(res.status, res.text).toBe(status)
  expect(res.json?._tag, res.text).toBe(tag)
  expect(typeof res.json.message).toBe("string")
  expect(res.json).toMatchObject(fields)
}

/** POST a body of `bytes` bytes with chunked transfer encoding (no content-length). */
const postChunked = (url: string, token: string, parts: ReadonlyArray<string>): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "transfer-encoding": "chunked" } }, (res) => {
      let text = ""
      res.on("data", (chunk) => (text += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text), text }))
    })
    req.on("error", reject)
    for (const part of parts) req.write(part)
    req.end()
  })

describe("typed errors for bad input (in-process broker, inbox capacity 3)", () => {
  let broker: TestBroker
  let token: string
  let a: { id: string }
  let b: { id: string }
  let c: { id: string }

  const register = async (name: string, teams: Array<string> = []) => {
    const res = await http(broker, token, "POST", "/api/peers", { name, teams })
    expect(res.status, res.text).toBe(201)
    return res.json.peer as { id: string }
  }
  const inboxOf = async (id: string) => (await http(broker, token, "GET", `/api/peers/${id}/inbox`)).json as { cursor: number; messages: Array<any> }

  beforeAll(async () => {
    broker = await startBroker({ inboxCapacity: 3 })
    token = await broker.token("bad", "peer")
    a = await register("a", ["crew"])
    b = await register("b", ["crew"])
    c = await register("c", ["crew"])
  })
  afterAll(() => broker?.close())

  it("malformed JSON is 400 InvalidRequest on every JSON endpoint", async () => {
    for (const [method, path] of [
      ["POST", "/api/peers"],
      ["PATCH", `/api/peers/${a.id}`],
      ["POST", "/api/messages"],
      ["POST", `/api/peers/${a.id}/inbox/ack`],
      ["POST", "/api/teams"],
      ["POST", "/api/teams/crew/members"],
      ["POST", "/api/spawn"]
    ] as const) {
      for (const body of ["{not json", '{"name":', "", "{}}", "'single'", "\u0000"]) {
        expectError(await http(broker, token, method, path, body), 400, "InvalidRequest")
      }
    }
    // Not JSON at all: a body of another content type is refused before it is read.
    expectError(await http(broker, token, "POST", "/api/peers", "name=x", { "content-type": "text/plain" }), 415, "UnsupportedMediaType")
    expectError(await http(broker, token, "POST", "/api/peers", "null"), 400, "InvalidRequest")
    expectError(await http(broker, token, "POST", "/api/peers", [1, 2]), 400, "InvalidRequest")
  })

  it("wrong types are 400 InvalidRequest naming the first bad field", async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ["POST", "/api/peers", { name: 42 }, "name"],
      ["POST", "/api/peers", { name: "has space" }, "name"],
      ["POST", "/api/peers", { teams: ["ok", "bad name"] }, "teams.1"],
      ["POST", "/api/peers", { pid: -3 }, "pid"],
      ["POST", "/api/peers", { meta: [1] }, "meta"],
      ["POST", "/api/messages", { from: a.id, to: b.id, body: 5 }, "body"],
      ["POST", "/api/messages", { from: a.id, to: b.id, body: "" }, "body"],
      ["POST", "/api/messages", { from: a.id, to: b.id, body: "x".repeat(Message.MAX_BODY + 1) }, "body"],
      ["POST", "/api/messages", { from: "-x", to: b.id, body: "x" }, "from"],
      ["POST", "/api/messages", { from: a.id, body: "x" }, "to"],
      ["POST", "/api/messages", { from: a.id, to: b.id, team: "crew", body: "x" }, "to"],
      ["POST", "/api/messages", { from: a.id, to: b.id, body: "x", threadId: 7 }, "threadId"],
      ["POST", "/api/messages", { from: a.id, to: b.id, body: "x", meta: "not an object" }, "meta"],
      ["POST", `/api/peers/${a.id}/inbox/ack`, { upTo: "3" }, "upTo"],
      ["POST", `/api/peers/${a.id}/inbox/ack`, { upTo: -1 }, "upTo"],
      ["POST", `/api/peers/${a.id}/inbox/ack`, { upTo: 1.5 }, "upTo"],
      ["POST", `/api/peers/${a.id}/inbox/ack`, '{"upTo": 9e999}', "upTo"],
      ["POST", `/api/peers/${a.id}/inbox/ack`, '{"upTo": 123456789012345678901234567890}', "upTo"],
      ["PATCH", `/api/peers/${a.id}`, { summary: 5 }, "summary"],
      ["PATCH", `/api/peers/${a.id}`, { summary: "x".repeat(Peer.MAX_SUMMARY + 1) }, "summary"],
      ["POST", "/api/teams", { name: "bad name" }, "name"],
      ["POST", "/api/teams", { description: "no name" }, "name"],
      ["POST", "/api/teams/crew/members", { peerId: 12 }, "peerId"],
      ["POST", "/api/spawn", { preset: "command" }, "command"],
      ["POST", "/api/spawn", { preset: "shell" }, "preset"]
    ]
    for (const [method, path, body, field] of cases) {
      expectError(await http(broker, token, method, path, body), 400, "InvalidRequest", { field })
    }
    // Query strings too.
    for (const [query, field] of [
      ["limit=abc", "limit"],
      ["limit=0", "limit"],
      ["after=-1", "after"],
      ["wait=999", "wait"]
    ]) {
      expectError(await http(broker, token, "GET", `/api/peers/${a.id}/inbox?${query}`), 400, "InvalidRequest", { field })
    }
    expectError(await http(broker, token, "GET", "/api/peers?status=zombie"), 400, "InvalidRequest", { field: "status" })
    // Nothing was changed by any of them.
    expect((await http(broker, token, "GET", `/api/peers/${a.id}`)).json.peer.summary).toBe("")
    expect((await inboxOf(b.id)).messages).toEqual([])
  })

  it("bad ids in paths are 400 InvalidRequest with the path field", async () => {
    for (const [method, path, field] of [
      ["GET", "/api/peers/-leading-dash", "id"],
      ["GET", "/api/peers/has%20space", "id"],
      ["GET", `/api/peers/${"x".repeat(129)}`, "id"],
      ["PATCH", "/api/peers/bad!id", "id"],
      ["DELETE", "/api/peers/bad!id", "id"],
      ["POST", "/api/peers/bad!id/heartbeat", "id"],
      ["GET", "/api/peers/bad!id/inbox", "id"],
      ["POST", "/api/peers/bad!id/inbox/ack", "id"],
      ["GET", "/api/teams/bad!name", "name"],
      ["DELETE", "/api/teams/crew/members/bad!id", "peerId"],
      ["GET", "/api/spawn/bad!id", "id"]
    ] as const) {
      const body = path.endsWith("/ack") ? { upTo: 0 } : method === "PATCH" ? {} : undefined
      const res = await http(broker, token, method, path, body)
      expect(res.status, `${method} ${path}: ${res.text}`).toBe(400)
      expectError(res, 400, "InvalidRequest", { field })
    }
    const ws = await wsRefusal(wsUrl(broker, `/ws/broker/peer/bad!id?token=${token}`))
    expect(ws.status).toBe(400)
    expect(ws.body._tag).toBe("InvalidRequest")
    const after = await wsRefusal(wsUrl(broker, `/ws/broker/peer/${a.id}?after=-1&token=${token}`))
    expect(after.status).toBe(400)
    expect(after.body._tag).toBe("InvalidRequest")
  })

  it("a 1 MiB body is 413 PayloadTooLarge with the limit, with or without content-length; the broker keeps serving", async () => {
    const big = { from: a.id, to: b.id, body: "x".repeat(1024 * 1024) }
    expectError(await http(broker, token, "POST", "/api/messages", big), 413, "PayloadTooLarge", { limit: 1024 * 1024 - 1 })
    expectError(await http(broker, token, "POST", "/api/peers", { summary: "y".repeat(1024 * 1024) }), 413, "PayloadTooLarge")
    // Chunked: the size is only known while reading.
    const chunk = "x".repeat(64 * 1024)
    const chunked = await postChunked(`${broker.url}/api/messages`, token, [`{"from":"${a.id}","to":"${b.id}","body":"`, ...Array.from({ length: 16 }, () => chunk), `"}`])
    expectError(chunked, 413, "PayloadTooLarge", { limit: 1024 * 1024 - 1 })
    // A small chunked body is fine.
    const small = await postChunked(`${broker.url}/api/peers`, token, ['{"name":', '"chunky"}'])
    expect(small.status, small.text).toBe(201)
    expect((await inboxOf(b.id)).messages).toEqual([])
    expect((await http(broker, undefined, "GET", "/healthz")).status).toBe(200)
  })

  it("a WebSocket frame over the limit (1 MiB − 1 bytes) closes the socket with 1009 before it is buffered; a new socket works", async () => {
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    const closed = new Promise<number>((resolve) => socket.ws.on("close", (code) => resolve(code)))
    socket.send({ type: "send", to: b.id, body: "x".repeat(1024 * 1024), ref: "big" })
    expect(await closed).toBe(1009)
    const again = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await again.next((f) => f.type === "hello")
    again.send({ type: "ack", upTo: 0 })
    expect(await again.next((f) => f.type === "acked")).toEqual({ type: "acked", cursor: 0 })
    await again.close()
  })

  it("a full inbox is 429 InboxFull naming the peer; a team send appends to nobody", async () => {
    for (let i = 1; i <= 3; i++) {
      const res = await http(broker, token, "POST", "/api/messages", { from: a.id, to: b.id, body: `m${i}` })
      expect(res.status, res.text).toBe(201)
    }
    const full = await http(broker, token, "POST", "/api/messages", { from: a.id, to: "b", body: "one too many" })
    expectError(full, 429, "InboxFull", { peer: b.id, capacity: 3 })

    // The team send fails as a whole: c (room to spare) gets nothing either, and no seq is used up.
    const team = await http(broker, token, "POST", "/api/messages", { from: a.id, team: "crew", body: "to all" })
    expectError(team, 429, "InboxFull", { peer: b.id, capacity: 3 })
    expect((await inboxOf(c.id)).messages).toEqual([])
    expect((await inboxOf(b.id)).messages.map((m) => m.body)).toEqual(["m1", "m2", "m3"])

    // Over the channel: the same error as an error frame with the ref; the socket stays open.
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    socket.send({ type: "send", team: "crew", body: "again", ref: "r-full" })
    const error = await socket.next((f) => f.type === "error")
    expect(error).toMatchObject({ ref: "r-full", error: { _tag: "InboxFull", peer: b.id, capacity: 3 } })

    // Once b acks, there is room again, and c's first message is its seq 1.
    expect((await http(broker, token, "POST", `/api/peers/${b.id}/inbox/ack`, { upTo: 3 })).status).toBe(200)
    socket.send({ type: "send", team: "crew", body: "now it fits", ref: "r-ok" })
    const sent = await socket.next((f) => f.type === "sent")
    expect(sent.ref).toBe("r-ok")
    expect([...sent.recipients].sort()).toEqual([b.id, c.id].sort())
    expect((await inboxOf(c.id)).messages.map((m) => [m.seq, m.body])).toEqual([[1, "now it fits"]])
    await socket.close()
  })

  it("unknown peers are 404 PeerNotFound and unknown teams 404 TeamNotFound, naming what was missing", async () => {
    expectError(await http(broker, token, "POST", "/api/messages", { from: a.id, to: "p_nobody", body: "x" }), 404, "PeerNotFound", { peer: "p_nobody" })
    expectError(await http(broker, token, "POST", "/api/messages", { from: a.id, to: "nobody", body: "x" }), 404, "PeerNotFound", { peer: "nobody" })
    expectError(await http(broker, token, "POST", "/api/messages", { from: "p_nobody", to: a.id, body: "x" }), 404, "PeerNotFound", { peer: "p_nobody" })
    for (const [method, path, body] of [
      ["GET", "/api/peers/p_nobody", undefined],
      ["PATCH", "/api/peers/p_nobody", { summary: "x" }],
      ["DELETE", "/api/peers/p_nobody", undefined],
      ["POST", "/api/peers/p_nobody/heartbeat", undefined],
      ["GET", "/api/peers/p_nobody/inbox", undefined],
      ["POST", "/api/peers/p_nobody/inbox/ack", { upTo: 1 }],
      ["POST", "/api/teams/crew/members", { peerId: "p_nobody" }]
    ] as const) {
      expectError(await http(broker, token, method, path, body), 404, "PeerNotFound", { peer: "p_nobody" })
    }
    expect((await wsRefusal(wsUrl(broker, `/ws/broker/peer/p_nobody?token=${token}`))).status).toBe(404)
    // The longest legal id (128 characters) reaches the handler like any other.
    const longest = "p".repeat(128)
    expectError(await http(broker, token, "GET", `/api/peers/${longest}`), 404, "PeerNotFound", { peer: longest })
    expect((await wsRefusal(wsUrl(broker, `/ws/broker/peer/${longest}?token=${token}`))).body).toMatchObject({ _tag: "PeerNotFound" })

    expectError(await http(broker, token, "POST", "/api/messages", { from: a.id, team: "ghosts", body: "x" }), 404, "TeamNotFound", { team: "ghosts" })
    expectError(await http(broker, token, "DELETE", `/api/teams/ghosts/members/${a.id}`), 404, "TeamNotFound", { team: "ghosts" })
    expectError(await http(broker, token, "GET", "/api/teams/ghosts"), 404, "TeamNotFound", { team: "ghosts" })
    expectError(await http(broker, token, "GET", "/api/spawn/s_nothing"), 404, "SpawnNotFound", { spawn: "s_nothing" })
    // Over the channel, with the ref.
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    socket.send({ type: "send", to: "nobody", body: "x", ref: "r1" })
    expect(await socket.next((f) => f.type === "error")).toMatchObject({ ref: "r1", error: { _tag: "PeerNotFound", peer: "nobody" } })
    socket.send({ type: "send", team: "ghosts", body: "x", ref: "r2" })
    expect(await socket.next((f) => f.type === "error")).toMatchObject({ ref: "r2", error: { _tag: "TeamNotFound", team: "ghosts" } })
    await socket.close()
  })

  it("unknown or malformed WebSocket frames get an error frame with the documented _tag, and the socket stays open", async () => {
    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    const cases: Array<[string | Buffer, string, string | undefined]> = [
      ['{"type":"subscribe","topic":"all"}', "InvalidRequest", "type"],
      ['{"type":"hello"}', "InvalidRequest", "type"],
      ['{"kind":"ack"}', "InvalidRequest", "type"],
      ["not json", "InvalidRequest", undefined],
      ["", "InvalidRequest", undefined],
      ["null", "InvalidRequest", undefined],
      ["[1,2,3]", "InvalidRequest", "type"],
      ['{"type":"ack","upTo":-1}', "InvalidRequest", "upTo"],
      ['{"type":"ack","upTo":9e999}', "InvalidRequest", "upTo"],
      ['{"type":"ack","upTo":"1"}', "InvalidRequest", "upTo"],
      ['{"type":"send","body":"no target"}', "InvalidRequest", "to"],
      ['{"type":"send","to":"b","body":""}', "InvalidRequest", "body"],
      [Buffer.from([0xff, 0xfe, 0x00, 0x01]), "InvalidRequest", undefined]
    ]
    for (const [frame, tag, field] of cases) {
      if (typeof frame === "string") socket.send(frame)
      else socket.ws.send(frame)
      const answer = await socket.next((f) => f.type !== "event")
      expect(answer.type, String(frame)).toBe("error")
      expect(answer.error._tag).toBe(tag)
      expect(answer.error.field).toBe(field)
    }
    expect(socket.ws.readyState).toBe(socket.ws.OPEN)
    socket.send({ type: "ack", upTo: 0 })
    expect(await socket.next((f) => f.type !== "event")).toEqual({ type: "acked", cursor: 0 })
    await socket.close()
  })

  it("deeply nested JSON is refused as InvalidRequest (HTTP 400 and error frame), never a 500 or a crash", async () => {
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n)
    for (const body of [deep(100_000), `{"name":${deep(5_000)}}`, `{"meta":{"a":${deep(1_000)}}}`]) {
      expectError(await http(broker, token, "POST", "/api/peers", body), 400, "InvalidRequest")
    }
    expectError(await http(broker, token, "PATCH", `/api/peers/${a.id}`, `{"meta":{"a":${deep(5_000)}}}`), 400, "InvalidRequest")
    // Moderate nesting in meta is still fine.
    expect((await http(broker, token, "PATCH", `/api/peers/${a.id}`, `{"meta":{"a":${deep(20)}}}`)).status).toBe(200)

    const socket = await FrameSocket.open(wsUrl(broker, `/ws/broker/peer/${a.id}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    for (const frame of [deep(100_000), `{"type":${deep(100_000)}}`, `{"type":"send","to":"b","body":"x","meta":{"a":${deep(5_000)}}}`]) {
      socket.send(frame)
      const answer = await socket.next((f) => f.type !== "event")
      expect(answer).toMatchObject({ type: "error", error: { _tag: "InvalidRequest" } })
    }
    socket.send({ type: "ack", upTo: 0 })
    expect(await socket.next((f) => f.type !== "event")).toEqual({ type: "acked", cursor: 0 })
    await socket.close()
    expect((await http(broker, undefined, "GET", "/healthz")).status).toBe(200)
  })
})

// ---- the batch: random malformed input against the real CLI process ----------------------

/** Whether `text` is a request the schema accepts (those are not bad input; the batch skips them). */
const isValid = (schema: Schema.Schema<any, any, never>, text: string): boolean => {
  try {
    return Either.isRight(Schema.decodeUnknownEither(schema)(JSON.parse(text)))
  } catch {
    return false // not JSON, or nested too deep to even decode here
  }
}

/** Numbers no schema accepts where a small integer or a string belongs, as raw JSON text. */
const hugeNumber = fc.oneof(
  fc.constantFrom("9e999", "-9e999", "1e308", "-0", "4.5", "1e-320", "9007199254740993"),
  fc.bigInt({ min: 10n ** 20n, max: 10n ** 400n }).map(String)
)
const junk = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string(), hugeNumber.map((n) => ({ raw: n })))
/** JSON text for an object with the given keys holding junk (raw huge numbers spliced in). */
const objectText = (keys: ReadonlyArray<string>, extra: Record<string, unknown> = {}) =>
  fc.dictionary(fc.constantFrom(...keys), junk, { maxKeys: keys.length }).map((o) => {
    const parts = Object.entries({ ...extra, ...o }).map(([k, v]) =>
      `${JSON.stringify(k)}:${typeof v === "object" && v !== null && "raw" in (v as object) ? (v as { raw: string }).raw : JSON.stringify(v)}`
    )
    return `{${parts.join(",")}}`
  })
const anyText = fc.oneof(
  fc.string({ unit: "binary" }),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  hugeNumber,
  fc.constantFrom("", "{", "}", "[", "{}}", '{"a":1,}', "nul", "true false", '"\\ud800"', "\u0000\u0001"),
  // Deep nesting, bare or inside a field.
  fc.tuple(fc.integer({ min: 200, max: 20_000 }), fc.constantFrom("", '{"type":', '{"meta":{"a":', '{"name":')).map(
    ([n, open]) => open + "[".repeat(n) + "]".repeat(n) + "}".repeat((open.match(/\{/g) ?? []).length)
  )
)

interface HttpTarget {
  readonly method: string
  readonly path: (ids: { a: string; b: string }) => string
  readonly schema: Schema.Schema<any, any, never>
  readonly body: fc.Arbitrary<string>
}

const httpTargets = (ids: { a: string; b: string }): ReadonlyArray<HttpTarget> => [
  { method: "POST", path: () => "/api/peers", schema: Peer.PeerRegistration, body: fc.oneof(anyText, objectText(["name", "summary", "teams", "pid", "meta", "spawnId", "gitRoot"])) },
  { method: "PATCH", path: ({ a }) => `/api/peers/${a}`, schema: Peer.PeerUpdate, body: fc.oneof(anyText, objectText(["summary", "meta"])) },
  {
    method: "POST",
    path: () => "/api/messages",
    schema: Message.SendMessage,
    body: fc.oneof(anyText, objectText(["from", "to", "team", "body", "threadId", "replyTo", "meta"]), objectText(["body", "to", "team", "meta"], { from: ids.a }))
  },
  { method: "POST", path: ({ a }) => `/api/peers/${a}/inbox/ack`, schema: Message.InboxAck, body: fc.oneof(anyText, objectText(["upTo"])) },
  { method: "POST", path: () => "/api/teams", schema: Team.CreateTeam, body: fc.oneof(anyText, objectText(["name", "description"])) },
  { method: "POST", path: () => "/api/teams/fuzz/members", schema: Team.JoinTeam, body: fc.oneof(anyText, objectText(["peerId"])) },
  { method: "POST", path: () => "/api/spawn", schema: Spawn.SpawnSpec, body: fc.oneof(anyText, objectText(["runner", "labels", "preset", "command", "args", "env", "name", "teams"])) }
]

const wsFrame = fc.oneof(
  anyText,
  objectText(["type", "upTo", "to", "team", "body", "ref", "meta"]),
  objectText(["upTo"], { type: "ack" }),
  objectText(["to", "team", "body", "ref", "threadId", "replyTo", "meta"], { type: "send" }),
  fc.string().filter((t) => !["ack", "send", "heartbeat"].includes(t)).chain((type) => objectText(["upTo", "to", "body"], { type })),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.from(bytes))
)

const isValidFrame = (frame: string | Buffer) => isValid(ChannelFrame.ClientFrame, typeof frame === "string" ? frame : frame.toString("utf8"))

describe("a batch of random malformed input against the CLI process", () => {
  let home: string
  let proc: BrokerProcess
  let token: string

  beforeAll(async () => {
    home = tempHome()
    proc = await startBrokerProcess(home)
    token = readFileSync(join(home, "broker.token"), "utf8").trim()
  })
  afterAll(async () => {
    if (proc !== undefined && proc.child.exitCode === null) {
      proc.child.kill("SIGTERM")
      await proc.exited
    }
    rmSync(home, { recursive: true, force: true })
  })

  it("150 random malformed bodies and frames: every HTTP answer a 4xx with a JSON _tag, every frame an error frame, the socket open; then a normal exchange works", async () => {
    const register = async (name: string) => (await http(proc, token, "POST", "/api/peers", { name })).json.peer.id as string
    const ids = { a: await register("fuzz-a"), b: await register("fuzz-b") }
    const targets = httpTargets(ids)
    const socket = await FrameSocket.open(wsUrl(proc, `/ws/broker/peer/${ids.a}`), { authorization: `Bearer ${token}` })
    await socket.next((f) => f.type === "hello")
    const statuses = new Map<number, number>()
    const tags = new Set<string>()
    const counts = { http: 0, ws: 0 }

    const input = fc.oneof(
      fc.integer({ min: 0, max: targets.length - 1 }).chain((target) => targets[target]!.body.map((body) => ({ kind: "http" as const, target, body }))),
      wsFrame.map((frame) => ({ kind: "ws" as const, frame }))
    )

    await fc.assert(
      fc.asyncProperty(input, async (item) => {
        if (item.kind === "http") {
          const target = targets[item.target]!
          fc.pre(!isValid(target.schema, item.body))
          counts.http++
          const res = await http(proc, token, target.method, target.path(ids), item.body)
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
          expect(res.status, `${target.method} ${target.path(ids)} ${item.body.slice(0, 200)} → ${res.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400)
          expect(res.status).toBeLessThan(500)
          expect(typeof res.json?._tag, res.text).toBe("string")
          expect(typeof res.json.message).toBe("string")
          tags.add(res.json._tag)
        } else {
          fc.pre(!isValidFrame(item.frame))
          counts.ws++
          if (typeof item.frame === "string") socket.send(item.frame)
          else socket.ws.send(item.frame)
          const answer = await socket.next((f) => f.type !== "event")
          expect(answer.type, `${String(item.frame).slice(0, 200)} → ${JSON.stringify(answer).slice(0, 200)}`).toBe("error")
          expect(typeof answer.error._tag).toBe("string")
          expect(typeof answer.error.message).toBe("string")
          expect(socket.ws.readyState).toBe(socket.ws.OPEN)
          tags.add(answer.error._tag)
        }
      }),
      { numRuns: 150 }
    )
    // Both kinds were exercised; mostly decoding errors; never a 5xx.
    expect(counts.http).toBeGreaterThan(30)
    expect(counts.ws).toBeGreaterThan(30)
    expect([...statuses.keys()].every((s) => s >= 400 && s < 500)).toBe(true)
    expect(tags.has("InvalidRequest")).toBe(true)

    // The process is alive and serving, the fuzzed socket still works ...
    expect(proc.child.exitCode).toBeNull()
    expect((await http(proc, undefined, "GET", "/healthz")).json).toMatchObject({ status: "ok" })
    socket.send({ type: "ack", upTo: 0 })
    expect(await socket.next((f) => f.type !== "event")).toMatchObject({ type: "acked" })
    await socket.close()

    // ... and a normal exchange through the client works end to end.
    const sdk = client(proc, token)
    try {
      const alice = (await sdk.peers.register({ name: "after-alice" })).peer
      const bob = (await sdk.peers.register({ name: "after-bob" })).peer
      const channel = sdk.connect(bob.id)
      const got = new Promise<any>((resolve) => channel.on("message", (m) => m.body === "still here?" && resolve(m)))
      await new Promise<void>((resolve) => channel.on("open", () => resolve()))
      await sdk.messages.send({ from: alice.id, to: bob.id, body: "still here?" })
      expect(await got).toMatchObject({ from: alice.id, fromName: "after-alice", to: bob.id })
      await channel.close()
    } finally {
      await sdk.close()
    }
    expect(proc.child.exitCode).toBeNull()
  }, 120_000)
})
