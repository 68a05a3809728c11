/**
 * An agent's output: raw bytes appended to a size-capped rotating log file
 * (`<id>.log`, `<id>.log.1` … `<id>.log.N`), a raw backlog for terminal attach, and an
 * in-memory tail of complete lines (escape sequences stripped) for the API and SSE.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"

// CSI / OSC / other escape sequences, then stray control characters (tab and newline are kept).
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]|[\u0000-\u0008\u000b-\u001f\u007f]/g

export const stripAnsi = (text: string): string => text.replace(ANSI, "")

export interface LogOptions {
  readonly dir: string
  readonly id: string
  /** Rotate when the file passes this size. */
  readonly maxBytes: number
  /** Rotated files kept besides the current one. */
  readonly keep: number
  /** Lines kept in memory. */
  readonly tailLines: number
  /** Raw bytes kept for terminal attach. */
  readonly backlogBytes: number
}

export class AgentLog {
  private fd: number | undefined
  private size = 0
  private readonly lines: Array<string> = []
  private partial = ""
  private backlog = ""
  private readonly listeners = new Set<(line: string) => void>()
  readonly path: string

  constructor(private readonly options: LogOptions) {
    mkdirSync(options.dir, { recursive: true })
    this.path = join(options.dir, `${options.id}.log`)
  }

  /** Append output (as the pty gives it). */
  write(chunk: string): void {
    this.appendFile(chunk)
    this.backlog += chunk
    if (this.backlog.length > this.options.backlogBytes * 2) this.backlog = this.backlog.slice(-this.options.backlogBytes)
    const text = this.partial + chunk
    const parts = text.split("\n")
    this.partial = parts.pop() ?? ""
    if (this.partial.length > 65_536) {
      parts.push(this.partial)
      this.partial = ""
    }
    for (const raw of parts) this.pushLine(stripAnsi(raw.endsWith("\r") ? raw.slice(0, -1) : raw))
  }

  /** A line the runner itself writes (start, exit, restart notes). */
  note(text: string): void {
    this.write(`${this.partial.length > 0 ? "\r\n" : ""}[a2a-runner] ${text}\r\n`)
  }

  /** Complete a pending partial line (the process ended without a newline). */
  flush(): void {
    if (this.partial.length > 0) {
      const raw = this.partial
      this.partial = ""
      this.pushLine(stripAnsi(raw))
    }
  }

  tail(n: number): Array<string> {
    return n <= 0 ? [] : this.lines.slice(-n)
  }

  rawBacklog(): string {
    return this.backlog.slice(-this.options.backlogBytes)
  }

  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }

  /** Remove the files (the agent was deleted). */
  remove(): void {
    this.close()
    for (let i = 0; i <= this.options.keep; i++) rmSync(i === 0 ? this.path : `${this.path}.${i}`, { force: true })
  }

  private pushLine(line: string): void {
    this.lines.push(line)
    if (this.lines.length > this.options.tailLines) this.lines.splice(0, this.lines.length - this.options.tailLines)
    for (const listener of this.listeners) listener(line)
  }

  private appendFile(chunk: string): void {
    try {
      if (this.fd === undefined) {
        this.fd = openSync(this.path, "a", 0o600)
        this.size = fstatSync(this.fd).size
      }
      const bytes = Buffer.from(chunk, "utf8")
      if (this.size + bytes.length > this.options.maxBytes && this.size > 0) this.rotate()
      writeSync(this.fd!, bytes)
      this.size += bytes.length
    } catch {
      // A full or read-only disk must not stop the agent; the in-memory tail still works.
    }
  }

  private rotate(): void {
    this.close()
    for (let i = this.options.keep; i >= 1; i--) {
      const from = i === 1 ? this.path : `${this.path}.${i - 1}`
      if (existsSync(from)) {
        if (i === this.options.keep) rmSync(`${this.path}.${i}`, { force: true })
        renameSync(from, `${this.path}.${i}`)
      }
    }
    if (this.options.keep === 0) rmSync(this.path, { force: true })
    this.fd = openSync(this.path, "a", 0o600)
    this.size = 0
  }
}
