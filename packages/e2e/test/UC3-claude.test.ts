/**
 * UC3 with two REAL Claude Code sessions (the pinned devDependency), spawned by a runner's
 * `claude` preset: channels on, each session's requests through the proxy to a fake Messages
 * API that plays the model. The fake answers a channel message by calling the a2a MCP tool
 * `send_peer_message`, so one session's message arrives in the other's model request as a
 * `<channel>` turn, and the answer comes back the same way. Built broker, proxy and runner.
 */
import { createBrokerClient } from "@mks/a2a"
import { FakeMessages, startFakeMessages } from "@mks/a2a-testing"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanEnv, createToken, eventually, startBroker, startServer, tempDir } from "./support.js"

const SEND = "mcp__a2a__send_peer_message"
/** The runner API key, for starting the runner and for reading its agents' logs on a failure. */
const RUNNER_KEY = "e2e-runner-key-claude"

/** The model: a channel message asking for a PING makes it send one; a PING makes it answer PONG. */
const model: FakeMessages.Script = (r) => {
  const lastUser = [...(r.body?.messages ?? [])].reverse().find((m: any) => m?.role === "user")
  if (Array.isArray(lastUser?.content) && lastUser.content.some((b: any) => b?.type === "tool_result")) return "sent."
  if (!r.tools.includes(SEND)) return undefined
  const channel = /<channel [^>]*>([\s\S]*?)<\/channel>/.exec(r.lastUserText)
  if (channel === null) return undefined
  const fromId = /from_id="([^"]+)"/.exec(channel[0])?.[1]
  if (channel[1]!.includes("KICKOFF: send PING to claude-2")) return FakeMessages.toolUse(SEND, { to: "claude-2", message: "PING from claude-1" })
  if (channel[1]!.includes("PING from claude-1") && fromId !== undefined) return FakeMessages.toolUse(SEND, { to: fromId, message: "PONG from claude-2", reply_to: /message_id="([^"]+)"/.exec(channel[0])?.[1] })
  return undefined
}

describe("UC3 with two real Claude Code sessions", () => {
  let fake: Awaited<ReturnType<typeof startFakeMessages>>
  let broker: Awaited<ReturnType<typeof startBroker>>
  let proxy: Awaited<ReturnType<typeof startServer>>
  let runner: Awaited<ReturnType<typeof startServer>>
  let runnerDir: string
  beforeAll(async () => {
    fake = await startFakeMessages({ script: model })
    broker = await startBroker()
    const proxyHome = tempDir("a2a-e2e-uc3c-proxy-")
    const admin = "a2a_admin_e2e_uc3_claude_0123456789"
    writeFileSync(join(proxyHome, "proxy.json"), JSON.stringify({ providers: [{ name: "fake", baseUrl: fake.url, apiKey: "sk-fake-upstream" }], default: "fake", keyFile: ":memory:", usageFile: ":memory:" }))
    proxy = await startServer(BIN.proxy, ["--config", join(proxyHome, "proxy.json")], cleanEnv({ A2A_HOME: proxyHome, A2A_PROXY_ADMIN_TOKEN: admin }))
    const created = await fetch(proxy.url + "/v1/keys", { method: "POST", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ name: "runner" }) })
    const { key } = (await created.json()) as { key: string }
    runnerDir = tempDir("a2a-e2e-uc3c-runner-")
    runner = await startServer(
      BIN.runner,
      ["--data-dir", runnerDir, "--api-key", RUNNER_KEY, "--id", "claude-box", "--broker", broker.url, "--token", await createToken(broker.home, "default", "runner"),
        "--proxy", proxy.url, "--proxy-key", key, "--claude-bin", BIN.claude, "--mcp-command", `${process.execPath} ${BIN.mcp}`],
      cleanEnv({ HOME: runnerDir, A2A_HOME: join(runnerDir, "home") })
    )
  })
  afterAll(async () => {
    await runner?.stop()
    await proxy?.stop()
    await broker?.stop()
    await fake?.close()
  })

  /** Claude Code's own MCP logs of the sessions (under the runner's HOME), newest lines last. */
  const claudeMcpLogs = (): Array<{ file: string; text: string }> => {
    const logs = join(runnerDir, ".cache", "claude-cli-nodejs")
    if (!existsSync(logs)) return []
    return readdirSync(logs, { recursive: true, encoding: "utf8" })
      .filter((file) => file.endsWith(".jsonl"))
      .map((file) => ({ file, text: readFileSync(join(logs, file), "utf8") }))
  }
  const channelHandlers = () => claudeMcpLogs().filter((l) => l.text.includes("Channel notifications registered")).length

  /** On a failed wait: what each session's screen showed and what the model saw, so a CI failure says where the message stopped. */
  const diagnose = async (error: unknown): Promise<never> => {
    const auth = { authorization: `Bearer ${RUNNER_KEY}` }
    const lines: Array<string> = [String(error)]
    try {
      const { agents } = (await (await fetch(runner.url + "/agents", { headers: auth })).json()) as { agents: Array<{ id: string; status: string }> }
      for (const a of agents) {
        const { lines: log } = (await (await fetch(`${runner.url}/agents/${a.id}/logs?n=80`, { headers: auth })).json()) as { lines: Array<string> }
        lines.push(`--- agent ${a.id} (${a.status}), last ${log.length} log lines:`, ...log)
      }
    } catch (e) {
      lines.push(`(runner logs unavailable: ${String(e)})`)
    }
    // Claude Code's own MCP log of each session (connection, the MCP server's stderr, each channel notification).
    for (const { file, text } of claudeMcpLogs()) lines.push(`--- ${file}:`, ...text.split("\n").slice(-60).map((l) => l.slice(0, 400)))
    lines.push(`--- ${fake.requests.length} model requests:`, ...fake.requests.map((r) => JSON.stringify(r.lastUserText.slice(-300))))
    throw new Error(lines.join("\n"))
  }

  it("a channel message from one session arrives in the other's model request, and the answer comes back", async () => {
    const boss = createBrokerClient({ url: broker.url, token: broker.adminToken })
    try {
      const me = (await boss.peers.register({ name: "boss" })).peer
      const channel = boss.connect(me.id, { autoAck: true })
      const events: Array<any> = []
      const wake = new Set<() => void>()
      channel.on("event", (e) => {
        events.push(e)
        for (const w of [...wake]) w()
      })
      await new Promise<void>((resolve) => channel.on("open", () => resolve()))
      const registered = (spawnId: string) =>
        new Promise<any>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`spawn ${spawnId} not registered in time; events: ${JSON.stringify(events.map((e) => e.spawn?.status))}`)), 90_000)
          const check = () => {
            const e = events.find((x) => x.type === "spawn_status" && x.spawn.id === spawnId && x.spawn.status === "registered")
            if (e === undefined) return
            clearTimeout(timer)
            wake.delete(check)
            resolve(e.spawn)
          }
          wake.add(check)
          check()
        })

      const spawns = []
      for (const name of ["claude-1", "claude-2"]) {
        spawns.push((await boss.spawn.create({ runner: "claude-box", preset: "claude", name, prompt: `You are ${name}. Wait for messages.`, requestedBy: me.id })).spawn)
      }
      const [one, two] = await Promise.all(spawns.map((s) => registered(s.id))).catch(diagnose)
      // Both sessions started and talked to the model once (their first prompt).
      await fake.waitFor((r) => r.lastUserText.includes("You are claude-2. Wait for messages."), { timeoutMs: 60_000, what: "claude-2's first prompt" }).catch(diagnose)
      // … and both have their channel handler in place: Claude Code registers it a moment after the
      // MCP handshake (~0.5 s on a busy machine) and drops a notification that comes sooner.
      await eventually(() => channelHandlers() >= 2 || undefined, "both sessions' \"Channel notifications registered\"", 60_000).catch(diagnose)

      await boss.messages.send({ from: me.id, to: one.peerId, body: "KICKOFF: send PING to claude-2" })
      // claude-1's model got the kickoff as a channel turn and called send_peer_message …
      const kicked = await fake.waitFor((r) => /<channel [^>]*>[\s\S]*KICKOFF: send PING to claude-2/.test(r.lastUserText) && r.tools.includes(SEND), { timeoutMs: 90_000, what: "the kickoff in claude-1's model request" }).catch(diagnose)
      expect(kicked.lastUserText).toContain('from_name="boss"')
      // … so claude-2's model request carries claude-1's message as a <channel> turn …
      const ping = await fake.waitFor((r) => /<channel [^>]*from_name="claude-1"[^>]*>[\s\S]*PING from claude-1/.test(r.lastUserText), { timeoutMs: 90_000, what: "claude-1's PING in claude-2's model request" }).catch(diagnose)
      expect(ping.lastUserText).toContain('source="a2a"')
      expect(ping.lastUserText).toContain(`from_id="${one.peerId}"`)
      // … and claude-2's answer arrives in claude-1's model request.
      const pong = await fake.waitFor((r) => /<channel [^>]*from_name="claude-2"[^>]*>[\s\S]*PONG from claude-2/.test(r.lastUserText), { timeoutMs: 90_000, what: "claude-2's PONG in claude-1's model request" }).catch(diagnose)
      expect(pong.lastUserText).toContain(`from_id="${two.peerId}"`)
      // Every model request went through the proxy (the fake sees the provider's key, never the virtual one).
      expect(new Set(fake.requests.map((r) => r.headers["x-api-key"]))).toEqual(new Set(["sk-fake-upstream"]))

      for (const s of spawns) await boss.spawn.stop(s.id)
      await channel.close()
    } finally {
      await boss.close()
    }
  }, 240_000)
})
