/**
 * Agent logs and terminals, relayed by the broker from the agent's runner. The broker does
 * not relay them yet (see docs/dashboard.md, "Relay"): `brokerRelay` reports that, and the
 * views and the terminal are written against this interface so the relay plugs in later.
 */

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
}

export interface Relay {
  /** Why the relay cannot be used, or undefined when it can. */
  readonly unavailable: string | undefined
  readonly logs: (agent: { spawnId: string }, onLines: (lines: ReadonlyArray<string>) => void, onEnd: (reason: string) => void) => LogStream
  readonly terminal: (agent: { spawnId: string }, size: { cols: number; rows: number }, handlers: TerminalHandlers) => TerminalSession
}

const UNAVAILABLE = "This broker does not relay agent logs and terminals yet."

/** The relay of the broker the page came from; not available in this version. */
export const brokerRelay: Relay = {
  unavailable: UNAVAILABLE,
  logs: (_agent, _onLines, onEnd) => {
    queueMicrotask(() => onEnd(UNAVAILABLE))
    return { close: () => {} }
  },
  terminal: (_agent, _size, handlers) => {
    queueMicrotask(() => handlers.onExit(UNAVAILABLE))
    return { write: () => {}, resize: () => {}, close: () => {} }
  }
}

/** The relay in use: an embedder (or a test) may set `window.a2aRelay` before the app loads. */
export const currentRelay = (): Relay => (globalThis as { a2aRelay?: Relay }).a2aRelay ?? brokerRelay
