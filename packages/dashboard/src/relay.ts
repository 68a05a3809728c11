/**
 * Agent logs and terminals, relayed by the broker from the agent's runner over two
 * WebSockets (docs/dashboard.md, "Relay"): `GET /ws/broker/spawns/:id/logs?n=` and
 * `GET /ws/broker/spawns/:id/terminal?cols=&rows=`, with the token as `?token=` (browsers
 * cannot set headers on a WebSocket). The views and the terminal are written against the
 * `Relay` interface, so an embedder (or a test) may put another one in `window.a2aRelay`.
 */
import type { RelayLogsFrameJson, RelayTerminalFrameJson } from "@mks/a2a/client"

/** A live view of an agent's output lines. */
export interface LogStream {
  readonly close: () => void
}

/** An attached terminal: bytes in both directions plus the window size. */
export interface TerminalSession {
  readonly write: (data: string) => void
  readonly resize: (cols: number, rows: number) => void
  readonly close: () => void
}

export interface TerminalHandlers {
  readonly onOutput: (data: string | Uint8Array) => void
  readonly onExit: (reason: string) => void
  /** The terminal is attached (its socket is open). */
  readonly onOpen?: (() => void) | undefined
}

export interface Relay {
  /** Why the relay cannot be used, or undefined when it can. */
  readonly unavailable: string | undefined
  readonly logs: (agent: { spawnId: string }, onLines: (lines: ReadonlyArray<string>) => void, onEnd: (reason: string) => void) => LogStream
  readonly terminal: (agent: { spawnId: string }, size: { cols: number; rows: number }, handlers: TerminalHandlers) => TerminalSession
}

/** Lines of history the live log asks for. */
export const LOG_HISTORY = 500
/** Most characters of one input frame (RunnerFrame.MAX_TERMINAL_DATA in @mks/a2a). */
const MAX_INPUT = 65_536

/** Relay close codes (RunnerFrame.RelayCloseCode in @mks/a2a). */
export const RelayCloseCode = { normal: 1000, goingAway: 1001, revoked: 4003, slowConsumer: 4008, notFound: 4404, runnerUnavailable: 4503 } as const

/** What the broker writes on a log or terminal relay socket (core's relay frames, as types). */
type ServerFrame = RelayLogsFrameJson | RelayTerminalFrameJson

const parse = (text: string): ServerFrame | undefined => {
  try {
    const frame = JSON.parse(text) as ServerFrame
    return typeof frame === "object" && frame !== null && typeof frame.type === "string" ? frame : undefined
  } catch {
    return undefined
  }
}

/** Why a relay socket closed, for people, when no frame said it. */
export const closeReason = (code: number): string => {
  switch (code) {
    case RelayCloseCode.normal:
      return "ended"
    case RelayCloseCode.goingAway:
      return "the broker is shutting down"
    case RelayCloseCode.revoked:
      return "the token was revoked"
    case RelayCloseCode.slowConsumer:
      return "this page fell behind and the broker dropped the stream: reopen the agent to resume"
    case RelayCloseCode.notFound:
      return "the runner does not know this agent any more"
    case RelayCloseCode.runnerUnavailable:
      return "the agent's runner is not linked to the broker"
    default:
      return "the broker refused or lost the connection (is the token allowed to reach this agent?)"
  }
}

const exitText = (frame: { status: string; exitCode?: number }) => `the agent ${frame.status}${frame.exitCode !== undefined ? ` with code ${frame.exitCode}` : ""}`

/** The relay of the broker the page came from, with the session's token. */
export const makeBrokerRelay = (token: string, origin: { protocol: string; host: string } = location): Relay => {
  const url = (spawnId: string, what: string, query: Record<string, number>) => {
    const scheme = origin.protocol === "https:" ? "wss:" : "ws:"
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]))
    params.set("token", token)
    return `${scheme}//${origin.host}/ws/broker/spawns/${encodeURIComponent(spawnId)}/${what}?${params}`
  }
  return {
    unavailable: undefined,
    logs: (agent, onLines, onEnd) => {
      const socket = new WebSocket(url(agent.spawnId, "logs", { n: LOG_HISTORY }))
      let said: string | undefined
      let closed = false
      socket.onmessage = (event) => {
        const frame = parse(String(event.data))
        if (frame?.type === "log") onLines(frame.lines)
        else if (frame?.type === "end") said = frame.exitCode !== undefined || frame.status !== undefined ? `log ended: ${exitText({ status: frame.status ?? "ended", exitCode: frame.exitCode })}` : `log ended: ${frame.reason}`
        else if (frame?.type === "error") said = `${frame.error._tag}: ${frame.error.message}`
      }
      socket.onclose = (event) => {
        if (!closed) onEnd(said ?? closeReason(event.code))
      }
      return {
        close: () => {
          closed = true
          socket.close(RelayCloseCode.normal)
        }
      }
    },
    terminal: (agent, size, handlers) => {
      const socket = new WebSocket(url(agent.spawnId, "terminal", { cols: size.cols, rows: size.rows }))
      const queued: Array<string> = []
      let said: string | undefined
      let closed = false
      const send = (frame: object) => {
        const text = JSON.stringify(frame)
        if (socket.readyState === WebSocket.OPEN) socket.send(text)
        else if (socket.readyState === WebSocket.CONNECTING) queued.push(text)
      }
      socket.onopen = () => {
        for (const text of queued.splice(0)) socket.send(text)
        handlers.onOpen?.()
      }
      socket.onmessage = (event) => {
        const frame = parse(String(event.data))
        if (frame === undefined) return
        switch (frame.type) {
          case "output":
            return handlers.onOutput(frame.data)
          case "exit":
            said = exitText(frame)
            return
          case "end":
            said = frame.reason
            return
          case "error":
            // Refused keystrokes leave the terminal attached; a fatal error is followed by a close.
            said = `${frame.error._tag}: ${frame.error.message}`
            return handlers.onOutput(`\r\n\x1b[31m${said}\x1b[0m\r\n`)
        }
      }
      socket.onclose = (event) => {
        if (!closed) handlers.onExit(event.code === RelayCloseCode.normal ? (said ?? "ended") : (said ?? closeReason(event.code)))
      }
      return {
        write: (data) => {
          for (let i = 0; i < data.length; i += MAX_INPUT) send({ type: "input", data: data.slice(i, i + MAX_INPUT) })
        },
        resize: (cols, rows) => send({ type: "resize", cols, rows }),
        close: () => {
          closed = true
          socket.close(RelayCloseCode.normal)
        }
      }
    }
  }
}

const NOT_LOGGED_IN = "Log in to see agent logs and terminals."

/** A relay that cannot be used (not logged in). */
export const noRelay: Relay = {
  unavailable: NOT_LOGGED_IN,
  logs: (_agent, _onLines, onEnd) => {
    queueMicrotask(() => onEnd(NOT_LOGGED_IN))
    return { close: () => {} }
  },
  terminal: (_agent, _size, handlers) => {
    queueMicrotask(() => handlers.onExit(NOT_LOGGED_IN))
    return { write: () => {}, resize: () => {}, close: () => {} }
  }
}

let cached: { readonly token: string; readonly relay: Relay } | undefined

/**
 * The relay in use: `window.a2aRelay` when an embedder (or a test) set one before the app
 * loaded, else the broker's with this token (one object per token, so views keep their sockets).
 */
export const currentRelay = (token: string | undefined): Relay => {
  const embedded = (globalThis as { a2aRelay?: Relay }).a2aRelay
  if (embedded !== undefined) return embedded
  if (token === undefined) return noRelay
  if (cached?.token !== token) cached = { token, relay: makeBrokerRelay(token) }
  return cached.relay
}
