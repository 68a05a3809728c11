import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Effect, Either, FastCheck, Schema } from "effect"
import {
  ChannelFrame,
  Codec,
  Errors,
  Message,
  Peer,
  Principal,
  RunnerFrame,
  Spawn,
  Team,
  Usage,
  VirtualKey
} from "../src/index.js"
import * as F from "./fixtures.js"

/** encode → JSON text → decode → encode gives the same JSON text: what crosses the wire survives. */
const roundTrip = <A, I>(schema: Schema.Schema<A, I, never>, value: A) => {
  const encoded = Schema.encodeSync(schema)(value)
  const text = JSON.stringify(encoded)
  const decoded = Schema.decodeUnknownSync(schema)(JSON.parse(text))
  expect(JSON.stringify(Schema.encodeSync(schema)(decoded))).toBe(text)
  return decoded
}

/** The field an invalid input is reported at. */
const failureField = <A, I>(schema: Schema.Schema<A, I, never>, input: unknown) =>
  Effect.runSync(Effect.flip(Codec.decodeUnknown(schema)(input)))

const at = F.at

describe("channel frames (peer WebSocket)", () => {
  const serverFrames: ReadonlyArray<ChannelFrame.ServerFrame> = [
    { type: "hello", peer: F.peer, cursor: 6 },
    { type: "message", message: F.directMessage },
    { type: "message", message: F.teamMessage },
    { type: "event", event: { type: "peer_joined", peer: F.peer, at } },
    { type: "event", event: { type: "peer_left", peer: F.peer, at } },
    { type: "event", event: { type: "peer_updated", peer: F.peer, at } },
    { type: "event", event: { type: "team_changed", team: F.team, change: "joined", peerId: F.peerId, at } },
    { type: "event", event: { type: "spawn_status", spawn: F.spawn, at } },
    { type: "sent", ref: "r1", message: F.directMessage, recipients: [F.peerId] },
    { type: "acked", cursor: 8 },
    { type: "error", ref: "r2", error: new Errors.PeerNotFound({ message: "no peer nobody", peer: "nobody" }) }
  ]
  const clientFrames: ReadonlyArray<ChannelFrame.ClientFrame> = [
    { type: "ack", upTo: 8 },
    { type: "send", to: "bob", body: "hi", threadId: F.directMessage.threadId, replyTo: F.messageId, meta: { a: 1 }, ref: "r1" },
    { type: "send", team: F.team, body: "all hands" },
    { type: "heartbeat" }
  ]

  it("server frames decode what they encode, with the contract's `type` discriminator", () => {
    for (const frame of serverFrames) {
      const decoded = roundTrip(ChannelFrame.ServerFrame, frame)
      expect(decoded.type).toBe(frame.type)
      expect(JSON.parse(JSON.stringify(Schema.encodeSync(ChannelFrame.ServerFrame)(frame))).type).toBe(frame.type)
    }
  })

  it("client frames decode what they encode", () => {
    for (const frame of clientFrames) roundTrip(ChannelFrame.ClientFrame, frame)
  })

  it("an error frame carries a decodable wire error with its tag", () => {
    const text = Codec.encodeJson(ChannelFrame.ServerFrame)(serverFrames[10]!)
    expect(JSON.parse(text).error).toStrictEqual({ _tag: "PeerNotFound", message: "no peer nobody", peer: "nobody" })
    const decoded = Effect.runSync(Codec.decodeJson(ChannelFrame.ServerFrame)(text))
    expect(decoded.type === "error" && decoded.error instanceof Errors.PeerNotFound).toBe(true)
  })

  it("random server and client frames round-trip (property)", () => {
    FastCheck.assert(
      FastCheck.property(Arbitrary.make(ChannelFrame.ServerFrame), (frame) => {
        roundTrip(ChannelFrame.ServerFrame, frame)
      }),
      { numRuns: 200 }
    )
    FastCheck.assert(
      FastCheck.property(Arbitrary.make(ChannelFrame.ClientFrame), (frame) => {
        roundTrip(ChannelFrame.ClientFrame, frame)
      }),
      { numRuns: 200 }
    )
  })

  it("rejects malformed frames with an InvalidRequest naming the field", () => {
    const unknownType = failureField(ChannelFrame.ClientFrame, { type: "subscribe", topic: "x" })
    expect(unknownType).toBeInstanceOf(Errors.InvalidRequest)
    expect(unknownType.field).toBe("type")

    const wrongType = failureField(ChannelFrame.ClientFrame, { type: "ack", upTo: "7" })
    expect(wrongType.field).toBe("upTo")

    const negative = failureField(ChannelFrame.ClientFrame, { type: "ack", upTo: -1 })
    expect(negative.field).toBe("upTo")

    const oversize = failureField(ChannelFrame.ClientFrame, { type: "send", to: "bob", body: "x".repeat(Message.MAX_BODY + 1) })
    expect(oversize.field).toBe("body")

    const empty = failureField(ChannelFrame.ClientFrame, { type: "send", to: "bob", body: "" })
    expect(empty.field).toBe("body")

    const badId = failureField(ChannelFrame.ClientFrame, { type: "send", to: "bob", body: "hi", replyTo: "not an id!" })
    expect(badId.field).toBe("replyTo")

    const bothTargets = failureField(ChannelFrame.ClientFrame, { type: "send", to: "bob", team: "web", body: "hi" })
    expect(bothTargets.field).toBe("to")

    const noTarget = failureField(ChannelFrame.ClientFrame, { type: "send", body: "hi" })
    expect(noTarget.field).toBe("to")

    const nestedSeq = failureField(ChannelFrame.ServerFrame, {
      type: "message",
      message: { ...Schema.encodeSync(Message.Message)(F.directMessage), seq: "7" }
    })
    expect(nestedSeq.field).toBe("message.seq")
  })

  it("rejects text that is not JSON without a field", () => {
    const error = Effect.runSync(Effect.flip(Codec.decodeJson(ChannelFrame.ClientFrame)("{not json")))
    expect(error).toBeInstanceOf(Errors.InvalidRequest)
    expect(error.field).toBeUndefined()
  })
})

describe("runner frames (runner link)", () => {
  const up: ReadonlyArray<RunnerFrame.RunnerUpFrame> = [
    { type: "hello", runner: F.runnerInfo, agents: [{ spawnId: F.spawnId, pid: 999, status: "running" }] },
    { type: "spawn_status", spawnId: F.spawnId, status: "exited", exitCode: 0 },
    { type: "spawn_status", spawnId: F.spawnId, status: "failed", error: "ENOENT" },
    { type: "heartbeat" },
    { type: "hello", runner: F.runnerInfo, agents: [], features: ["relay"] },
    { type: "log", stream: 1, lines: ["hello", ""] },
    { type: "term_output", stream: 2, data: "\u001b[1mhi\r\n" },
    { type: "stream_end", stream: 2, reason: "the agent exited", status: "exited", exitCode: 0 },
    { type: "stream_error", stream: 3, error: new Errors.SpawnNotFound({ message: "no such spawn", spawn: F.spawnId }) }
  ]
  const down: ReadonlyArray<RunnerFrame.RunnerDownFrame> = [
    { type: "spawn", spawn: { id: F.spawnId, spec: F.spawnSpec, brokerUrl: "http://127.0.0.1:4200", token: "tok" } },
    { type: "stop", spawnId: F.spawnId, graceMs: 5000 },
    { type: "error", error: new Errors.InvalidRequest({ message: "bad frame", field: "type" }) },
    { type: "logs_open", stream: 1, spawnId: F.spawnId, n: 200 },
    { type: "term_open", stream: 2, spawnId: F.spawnId, cols: 80, rows: 24 },
    { type: "term_input", stream: 2, data: "echo hi\r" },
    { type: "term_resize", stream: 2, cols: 100, rows: 30 },
    { type: "stream_close", stream: 2 }
  ]

  it("both directions decode what they encode", () => {
    for (const frame of up) roundTrip(RunnerFrame.RunnerUpFrame, frame)
    for (const frame of down) roundTrip(RunnerFrame.RunnerDownFrame, frame)
    FastCheck.assert(
      FastCheck.property(Arbitrary.make(RunnerFrame.RunnerUpFrame), (f) => void roundTrip(RunnerFrame.RunnerUpFrame, f)),
      { numRuns: 100 }
    )
    FastCheck.assert(
      FastCheck.property(Arbitrary.make(RunnerFrame.RunnerDownFrame), (f) => void roundTrip(RunnerFrame.RunnerDownFrame, f)),
      { numRuns: 100 }
    )
  })

  it("rejects malformed runner frames naming the field", () => {
    expect(failureField(RunnerFrame.RunnerUpFrame, { type: "hello", runner: { ...F.runnerInfo, capacity: -1 }, agents: [] }).field).toBe("runner.capacity")
    expect(failureField(RunnerFrame.RunnerUpFrame, { type: "spawn_status", spawnId: F.spawnId, status: "flying" }).field).toBe("status")
    expect(failureField(RunnerFrame.RunnerUpFrame, { type: "spawn_status", spawnId: "bad id", status: "running" }).field).toBe("spawnId")
    expect(failureField(RunnerFrame.RunnerUpFrame, { type: "reboot" }).field).toBe("type")
    expect(
      failureField(RunnerFrame.RunnerDownFrame, { type: "spawn", spawn: { id: F.spawnId, spec: { preset: "command" }, brokerUrl: "x", token: "t" } }).field
    ).toBe("spawn.spec.command")
    expect(failureField(RunnerFrame.RunnerDownFrame, { type: "spawn", spawn: { id: F.spawnId, spec: { env: { A: 1 } }, brokerUrl: "x", token: "t" } }).field).toBe(
      "spawn.spec.env.A"
    )
  })

  it("bounds the relay frames: stream ids, sizes, data length", () => {
    expect(failureField(RunnerFrame.RunnerDownFrame, { type: "term_open", stream: 0, spawnId: F.spawnId, cols: 80, rows: 24 }).field).toBe("stream")
    expect(failureField(RunnerFrame.RunnerDownFrame, { type: "term_resize", stream: 1, cols: 0, rows: 24 }).field).toBe("cols")
    expect(failureField(RunnerFrame.RunnerDownFrame, { type: "logs_open", stream: 1, spawnId: F.spawnId, n: 10_001 }).field).toBe("n")
    expect(failureField(RunnerFrame.RunnerDownFrame, { type: "term_input", stream: 1, data: "x".repeat(RunnerFrame.MAX_TERMINAL_DATA + 1) }).field).toBe("data")
    expect(failureField(RunnerFrame.RelayClientFrame, { type: "input", data: "x".repeat(RunnerFrame.MAX_TERMINAL_DATA + 1) }).field).toBe("data")
    expect(failureField(RunnerFrame.RelayClientFrame, { type: "resize", cols: 80, rows: 1_001 }).field).toBe("rows")
    roundTrip(RunnerFrame.RelayLogsFrame, { type: "log", lines: ["a"], at: "2026-11-22T10:00:00.000Z" })
    roundTrip(RunnerFrame.RelayTerminalFrame, { type: "exit", status: "exited", exitCode: 3 })
  })

  it("an old broker's decoder ignores a new runner's hello features (excess fields are dropped)", () => {
    // The hello of the previous version, decoded with the codec every broker uses.
    const old = Schema.Struct({ type: Schema.Literal("hello"), runner: Schema.Unknown, agents: Schema.Array(Schema.Unknown) })
    expect(Effect.runSync(Codec.decodeUnknown(old)({ type: "hello", runner: F.runnerInfo, agents: [], features: ["relay"] }))).toEqual({ type: "hello", runner: F.runnerInfo, agents: [] })
  })
})

describe("HTTP bodies", () => {
  it("every body and record of the contract decodes what it encodes", () => {
    roundTrip(Peer.PeerRegistration, new Peer.PeerRegistration({ name: "alice", summary: "s", agent: "claude-code", cwd: "/r", gitRoot: "/r", host: "h", pid: 1, teams: [F.team], spawnId: F.spawnId, meta: { a: 1 } }))
    roundTrip(Peer.PeerUpdate, new Peer.PeerUpdate({ summary: "new", meta: { b: [1, 2] } }))
    roundTrip(Peer.PeerList, { peers: [F.peer] })
    roundTrip(Message.SendMessage, { from: F.peerId, to: "bob", body: "hi", threadId: F.directMessage.threadId })
    roundTrip(Message.SendMessage, { from: F.peerId, team: F.team, body: "hi" })
    roundTrip(Message.SendResult, { message: F.directMessage, recipients: [F.peerId, F.otherId] })
    roundTrip(Message.InboxPage, { messages: [F.directMessage, F.teamMessage], cursor: 6 })
    roundTrip(Message.InboxAck, { upTo: 8 })
    roundTrip(Message.InboxCursor, { cursor: 8 })
    roundTrip(Team.CreateTeam, { name: F.team, description: "web" })
    roundTrip(Team.JoinTeam, { peerId: F.peerId })
    roundTrip(Team.TeamList, { teams: [F.teamValue] })
    roundTrip(Spawn.SpawnSpec, F.spawnSpec)
    roundTrip(Spawn.SpawnResponse, { spawn: F.spawn })
    roundTrip(VirtualKey.CreateKey, { name: "ci", tenant: "acme", tier: "tier2", models: ["glm-*"], limits: { requestsPerMinute: 5 }, expiresAt: F.at })
    roundTrip(VirtualKey.UpdateKey, { disabled: true, expiresAt: null })
    roundTrip(VirtualKey.CreatedKey, { key: "sk-mks-abc", record: F.keyRecord })
    roundTrip(Usage.UsageReport, {
      record: F.keyRecord,
      window: { start: F.at, end: F.at, requests: 3, inputTokens: 10, outputTokens: 20, cacheCreationInputTokens: 30, cacheReadInputTokens: 40 },
      limits: F.keyRecord.limits,
      remaining: { requestsPerMinute: 57, tokensPer5h: 999_900 }
    })
    roundTrip(Principal.Principal, new Principal.Principal({ subject: "tok_1", tenant: "acme", roles: ["peer"], clientId: "cli", spawnId: F.spawnId }))
    roundTrip(Errors.WireError, new Errors.InboxFull({ message: "full", peer: F.peerId, capacity: 10 }))
  })

  it("rejects malformed bodies naming the field", () => {
    expect(failureField(Peer.PeerRegistration, { name: "has spaces" }).field).toBe("name")
    expect(failureField(Peer.PeerRegistration, { teams: ["ok", "no way"] }).field).toBe("teams.1")
    expect(failureField(Peer.PeerRegistration, { pid: "12" }).field).toBe("pid")
    expect(failureField(Message.SendMessage, { from: "p_x", to: "bob", body: 42 }).field).toBe("body")
    expect(failureField(Message.SendMessage, { to: "bob", body: "hi" }).field).toBe("from")
    expect(failureField(Spawn.SpawnSpec, { preset: "vm" }).field).toBe("preset")
    expect(failureField(VirtualKey.CreateKey, { name: "k", limits: { tokensPer5h: 0 } }).field).toBe("limits.tokensPer5h")
    expect(failureField(VirtualKey.CreateKey, { name: "k", expiresAt: "tomorrow" }).field).toBe("expiresAt")
  })

  it("ids are branded and validated", () => {
    expect(Either.isRight(Schema.decodeUnknownEither(Message.Message.fields.id)("m_abc"))).toBe(true)
    for (const bad of ["", " ", "a b", "x".repeat(129), "-lead", "ü"]) {
      expect(Either.isLeft(Schema.decodeUnknownEither(Message.Message.fields.id)(bad))).toBe(true)
    }
  })

  it("wire errors carry their HTTP status", () => {
    const cases: ReadonlyArray<[Errors.WireError, number]> = [
      [new Errors.InvalidRequest({ message: "m" }), 400],
      [new Errors.Unauthorized({ message: "m" }), 401],
      [new Errors.Forbidden({ message: "m" }), 403],
      [new Errors.PeerNotFound({ message: "m", peer: "p" }), 404],
      [new Errors.PeerNameTaken({ message: "m", name: "n" }), 409],
      [new Errors.PayloadTooLarge({ message: "m", limit: 1 }), 413],
      [new Errors.InboxFull({ message: "m", peer: "p", capacity: 1 }), 429],
      [new Errors.ServiceUnavailable({ message: "m" }), 503]
    ]
    for (const [error, status] of cases) {
      expect(Errors.statusOf(error)).toBe(status)
      expect(JSON.parse(JSON.stringify(Schema.encodeSync(Errors.WireError)(error)))._tag).toBe(error._tag)
    }
  })
})
