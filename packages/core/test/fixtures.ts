// Sample values of every concept of the contract, built from the schemas' own types.
import { Message, Peer, Runner, Spawn, Team, VirtualKey } from "../src/index.js"
import type { Ids } from "../src/index.js"

export const at = "2026-11-22T10:00:00.000Z"
export const peerId = "p_0123456789abcdefghjk" as Ids.PeerId
export const otherId = "p_kjhgfedcba9876543210" as Ids.PeerId
export const messageId = "m_0123456789abcdefghjk" as Ids.MessageId
export const spawnId = "s_0123456789abcdefghjk" as Ids.SpawnId
export const runnerId = "laptop-1" as Ids.RunnerId
export const team = "frontend" as Ids.TeamName

export const peer = new Peer.Peer({
  id: peerId,
  name: "alice",
  summary: "refactoring the parser",
  agent: "claude-code",
  cwd: "/home/a/repo",
  gitRoot: "/home/a/repo",
  host: "laptop",
  pid: 4242,
  teams: [team],
  status: "online",
  registeredAt: at,
  lastSeenAt: at,
  spawnId,
  runnerId,
  meta: { model: "glm-4.6", nested: { ok: true } }
})

export const directMessage = new Message.Message({
  id: messageId,
  seq: 7,
  from: otherId,
  fromName: "bob",
  to: peerId,
  body: "can you review src/parser.ts?",
  threadId: messageId as unknown as Ids.ThreadId,
  sentAt: at,
  meta: { priority: "high" }
})

export const teamMessage = new Message.Message({
  id: "m_team0000000000000000" as Ids.MessageId,
  seq: 8,
  from: otherId,
  fromName: "bob",
  team,
  body: "standup in 5",
  threadId: messageId as unknown as Ids.ThreadId,
  replyTo: messageId,
  sentAt: at
})

export const spawnSpec = {
  runner: runnerId,
  labels: { gpu: "no" },
  preset: "command" as const,
  command: "node",
  args: ["agent.js"],
  cwd: "/tmp",
  env: { FOO: "bar" },
  name: "helper-1",
  teams: [team],
  prompt: "say hi",
  provider: "glm",
  model: "glm-4.6",
  requestedBy: peerId
}

export const spawn = new Spawn.Spawn({
  id: spawnId,
  spec: spawnSpec,
  status: "running",
  runnerId,
  peerId,
  pid: 999,
  createdAt: at,
  updatedAt: at
})

export const runnerInfo = {
  id: runnerId,
  host: "laptop",
  labels: { os: "linux" },
  capacity: 4,
  presets: ["command", "claude"] as const,
  version: "0.1.0"
}

export const runner = new Runner.Runner({ ...runnerInfo, status: "online", active: 1, connectedAt: at, lastSeenAt: at })

export const teamValue = new Team.Team({ name: team, description: "web", createdAt: at, members: [peerId, otherId] })

export const keyRecord = new VirtualKey.VirtualKey({
  id: "k_0123456789abcdefghjk" as Ids.KeyId,
  name: "alice laptop",
  prefix: "sk-mks-AbCdEf",
  tenant: "acme",
  tier: "tier1",
  models: ["glm-*"],
  limits: { requestsPerMinute: 60, tokensPer5h: 1_000_000 },
  createdAt: at,
  disabled: false
})
