/**
 * `a2a tail --logs <agent>` and `a2a attach <agent>`: an agent's live log and terminal,
 * relayed by the broker from the agent's runner (`GET /ws/broker/spawns/:id/logs|terminal`,
 * Bearer header). The agent is a spawn id, or the id or name of a peer started by a spawn.
 */
import { BrokerClient, RunnerFrame, type Spawn } from "@mks/a2a"
import { Effect, Redacted, Schema } from "effect"
import WebSocket from "ws"
import { call, describe, NOTHING_LISTENS } from "./Broker.js"
import { CliError, type Output, paint } from "./Output.js"

/** Ctrl-]: detach from a terminal, as telnet does. */
export const DETACH = "\u001d"

const decodeLogs = Schema.decodeUnknownEither(Schema.parseJson(RunnerFrame.RelayLogsFrame))
const decodeTerminal = Schema.decodeUnknownEither(Schema.parseJson(RunnerFrame.RelayTerminalFrame))

/** The spawn behind `agent`: a spawn id (`s_…`), or a spawned peer's id or name. */
export const resolveSpawn = (agent: string) =>
  Effect.gen(function*() {
    const client = yield* BrokerClient.BrokerClient
    if (/^s_/.test(agent)) return (yield* call(client.api.spawn.get({ path: { id: agent as never } }))).spawn
    const { peers } = yield* call(client.api.peers.list({ urlParams: {} }))
    const peer = peers.find((p) => p.id === agent) ?? peers.find((p) => p.name === agent)
    if (peer === undefined) return yield* new CliError({ message: `no agent "${agent}": give a spawn id (s_…) or the name or id of a spawned peer` })
    if (peer.spawnId === undefined) return yield* new CliError({ message: `peer ${peer.name} was not started by a spawn order: its log and terminal are on its own machine` })
    return (yield* call(client.api.spawn.get({ path: { id: peer.spawnId } }))).spawn
  })

/** An open relay socket; `listen` hands over every frame and the close, also those that came first. */
interface RelaySocket {
  readonly ws: WebSocket
  readonly listen: (onMessage: (data: WebSocket.RawData) => void, onClose: (code: number, reason: Buffer) => void) => void
}

/**
 * Open a relay socket with the CLI's token; refusals before the upgrade become `CliError`s.
 * Frames are held from the start until `listen`: the broker may send the log's history right
 * behind the upgrade, and `ws` emits it on the next tick after `open`, before the fiber that
 * awaited `open` runs again (a listener added then missed it: `tail --logs` printed nothing).
 */
const connect = (spawn: Spawn.Spawn, what: "logs" | "terminal", query: Record<string, string | number>) =>
  Effect.gen(function*() {
    const client = yield* BrokerClient.BrokerClient
    const options = yield* BrokerClient.readConfig.pipe(Effect.mapError((e) => new CliError({ message: String(e) })))
    const token = Redacted.isRedacted(options.token) ? Redacted.value(options.token) : options.token
    const url = new URL(`/ws/broker/spawns/${encodeURIComponent(spawn.id)}/${what}`, client.url)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v))
    return yield* Effect.async<RelaySocket, CliError>((resume) => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } })
      const early: Array<WebSocket.RawData> = []
      let closed: readonly [number, Buffer] | undefined
      let onMessage: ((data: WebSocket.RawData) => void) | undefined
      let onClose: ((code: number, reason: Buffer) => void) | undefined
      ws.on("message", (data) => (onMessage !== undefined ? onMessage(data) : early.push(data)))
      ws.on("close", (code, reason) => (onClose !== undefined ? onClose(code, reason) : (closed = [code, reason])))
      const listen: RelaySocket["listen"] = (message, close) => {
        onMessage = message
        onClose = close
        for (const data of early.splice(0)) message(data)
        if (closed !== undefined) close(...closed)
      }
      ws.once("open", () => resume(Effect.succeed({ ws, listen })))
      ws.once("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (c: Buffer) => (body += c))
        res.on("end", () => {
          let error: unknown = { message: `HTTP ${res.statusCode}` }
          try {
            error = JSON.parse(body)
          } catch {
            // not the broker's JSON
          }
          resume(Effect.fail(new CliError({ message: describe(error) })))
        })
      })
      ws.once("error", (e) => resume(Effect.fail(new CliError({ message: `cannot reach the broker at ${client.url.href} (${(e as { code?: string }).code ?? e.message})${(e as { code?: string }).code === "ECONNREFUSED" ? NOTHING_LISTENS : ""}` }))))
      return Effect.sync(() => ws.terminate())
    })
  })

const closedWhy = (code: number, reason: string) =>
  code === RunnerFrame.RelayCloseCode.slowConsumer ? "the broker dropped the stream: this terminal did not read fast enough" : `the broker closed the stream (${code}${reason ? `: ${reason}` : ""})`

/**
 * Print the agent's log: the last `n` lines, then each new line until the log ends (the agent
 * ended for good) or the user interrupts. `--json`: one `{"line","at"}` object per line.
 */
export const logs = (o: Output, agent: string, n: number) =>
  Effect.gen(function*() {
    const spawn = yield* resolveSpawn(agent)
    const { listen, ws } = yield* connect(spawn, "logs", { n })
    if (!o.json) o.err(paint(o, "dim", `log of ${spawn.spec.name ?? spawn.id} (${spawn.id}) on runner ${spawn.runnerId}; Ctrl-C to stop`))
    yield* Effect.async<void, CliError>((resume) => {
      let failed: CliError | undefined
      let ended = false
      const onMessage = (data: WebSocket.RawData) => {
        const frame = decodeLogs(String(data))
        if (frame._tag === "Left") return
        const f = frame.right
        if (f.type === "log") for (const line of f.lines) o.out(o.json ? JSON.stringify({ line, at: f.at }) : line)
        else if (f.type === "end") {
          ended = true
          if (!o.json) o.err(paint(o, "dim", `log ended: ${f.reason}${f.exitCode !== undefined ? ` (exit code ${f.exitCode})` : ""}`))
        } else failed = new CliError({ message: describe(f.error) })
      }
      listen(onMessage, (code, reason) => {
        if (failed !== undefined) return resume(Effect.fail(failed))
        if (ended || code === 1000) return resume(Effect.void)
        resume(Effect.fail(new CliError({ message: closedWhy(code, String(reason)) })))
      })
      return Effect.sync(() => ws.close(1000))
    })
  })

/**
 * Attach this terminal to the agent's: keystrokes go to the agent (raw mode when stdin is a
 * TTY, so Ctrl-C reaches it too), its output comes here, the size follows this window. Ctrl-]
 * detaches. Resolves with the exit status to leave with: the agent's exit code when its
 * process ended, 0 when detached.
 */
export const attach = (o: Output, agent: string) =>
  Effect.gen(function*() {
    const spawn = yield* resolveSpawn(agent)
    const stdin = process.stdin
    const stdout = process.stdout
    const tty = stdin.isTTY === true
    const size = () => ({ cols: stdout.columns ?? 120, rows: stdout.rows ?? 40 })
    const { listen, ws } = yield* connect(spawn, "terminal", stdout.isTTY === true ? size() : {})
    o.err(paint(o, "dim", `attached to ${spawn.spec.name ?? spawn.id} (${spawn.id}) on runner ${spawn.runnerId}; Ctrl-] to detach`))
    return yield* Effect.async<number, CliError>((resume) => {
      let done = false
      let failed: CliError | undefined
      let status: number | undefined
      const send = (frame: RunnerFrame.RelayClientFrame) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(frame))
      const onInput = (chunk: Buffer | string) => {
        const text = typeof chunk === "string" ? chunk : chunk.toString("utf8")
        const at = text.indexOf(DETACH)
        const keys = at >= 0 ? text.slice(0, at) : text
        for (let i = 0; i < keys.length; i += RunnerFrame.MAX_TERMINAL_DATA) send({ type: "input", data: keys.slice(i, i + RunnerFrame.MAX_TERMINAL_DATA) })
        if (at >= 0) finish(0, `\r\ndetached from ${spawn.spec.name ?? spawn.id}`)
      }
      const onResize = () => send({ type: "resize", ...size() })
      const restore = () => {
        stdin.off("data", onInput)
        stdout.off("resize", onResize)
        if (tty) stdin.setRawMode(false)
        stdin.pause()
        // A paused pipe still holds the process open; a TTY is left for the shell that ran us.
        if (!tty) stdin.destroy()
      }
      const finish = (code: number, note?: string) => {
        if (done) return
        done = true
        restore()
        if (note !== undefined) o.err(paint(o, "dim", note))
        ws.close(1000)
        resume(Effect.succeed(code))
      }
      const onMessage = (data: WebSocket.RawData) => {
        const frame = decodeTerminal(String(data))
        if (frame._tag === "Left") return
        const f = frame.right
        switch (f.type) {
          case "output":
            stdout.write(f.data)
            return
          case "exit":
            status = f.exitCode ?? (f.status === "stopped" || f.status === "exited" ? 0 : 1)
            return o.err(paint(o, "dim", `\r\n[the agent ${f.status}${f.exitCode !== undefined ? ` with code ${f.exitCode}` : ""}]`))
          case "end":
            status = f.exitCode ?? 0
            return o.err(paint(o, "dim", `\r\n[${f.reason}]`))
          case "error":
            // Refused keystrokes leave the terminal usable; anything fatal is followed by a close.
            failed = new CliError({ message: describe(f.error) })
            return o.err(`\r\na2a: ${describe(f.error)}\r`)
        }
      }
      const onClose = (code: number, reason: Buffer) => {
        if (done) return
        done = true
        restore()
        if (status !== undefined) return resume(Effect.succeed(status))
        resume(Effect.fail(code !== 1000 && failed !== undefined ? failed : new CliError({ message: closedWhy(code, String(reason)) })))
      }
      if (tty) stdin.setRawMode(true)
      stdin.on("data", onInput)
      stdin.resume()
      if (stdout.isTTY === true) stdout.on("resize", onResize)
      // Last: frames that came before (and a close) are handed over now, with stdin set up.
      listen(onMessage, onClose)
      return Effect.sync(() => finish(130))
    })
  })
