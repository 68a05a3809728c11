/**
 * An agent's output: raw bytes appended to a size-capped rotating log file
 * (`<id>.log`, `<id>.log.1` … `<id>.log.N`), a raw backlog for terminal attach, and an
 * in-memory tail of lines as a terminal shows them, for the API, SSE and the relayed live log.
 *
 * The lines come from a screen, not from the byte stream: the output is played into a headless
 * terminal (`@xterm/headless`, the emulator the dashboard's xterm.js runs in the browser) and a
 * line is read off that screen once it is done. A TUI such as Claude Code redraws its screen with
 * cursor moves and writes only the cells that changed since its last frame, so no line of the
 * byte stream need hold a whole row of text; only a screen model reads it back reliably.
 */
import headless from "@xterm/headless"
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"

const { Terminal } = headless
type Screen = InstanceType<typeof Terminal>
type Marker = ReturnType<Screen["registerMarker"]>

// CSI / OSC / other escape sequences, then stray control characters (tab and newline are kept).
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]|[\u0000-\u0008\u000b-\u001f\u007f]/g

export const stripAnsi = (text: string): string => text.replace(ANSI, "")

/** Output is parsed in pieces of at most this many characters, and the screen is read after each. */
const PIECE = 1_024
/**
 * Rows kept above the screen. More than a piece can scroll by (one row per character at most),
 * so no row leaves the screen model before it was read.
 */
const SCROLLBACK = 1_200
/**
 * A screen that stood this long before more output came was a finished frame (a TUI's frames
 * come at most ~60 times a second; one frame's chunks follow each other far closer): it is read
 * whole, the cursor's row too, before the next output changes it. A dialog answered within
 * 50 ms still shows in the log.
 */
const FRAME_GAP_MS = 25
/** The row under the cursor, and the rows below it, are read once the output pauses this long… */
const QUIET_MS = 150
/** …or at the latest this long after output began. */
const MAX_WAIT_MS = 1_000
/** Redrawn text equal to one of the last this many lines is not repeated (a TUI redraws its screen). */
const RECENT = 512
/** A longer line (a huge wrapped row) is cut into lines of about this many characters. */
const MAX_LINE = 16_384

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
  private backlog = ""
  private atLineStart = true
  private readonly listeners = new Set<(line: string) => void>()
  readonly path: string

  private readonly screen: Screen
  /** What was last read at each line of the screen (by its first row: `stable` index in the normal buffer, row in the alternate). */
  private readonly shown = new Map<number, string>()
  /** Normal-buffer lines (by `shown` key) last read while the cursor was on them: still being written. */
  private readonly unfinished = new Set<number>()
  private bufferType: "normal" | "alternate" = "normal"
  /** The normal buffer's rows move up as rows above are dropped: a marker keeps row numbers stable. */
  private anchor: Marker | undefined
  private anchorStable = 0
  /** Normal-buffer rows (stable index) below this one are above the screen, read, and cannot change. */
  private settledRows = 0
  private readonly recent: Array<string> = []
  private readonly recentCount = new Map<string, number>()
  private quietTimer: ReturnType<typeof setTimeout> | undefined
  private pendingSince = 0
  private lastOutput = 0
  private closed = false

  constructor(
    private readonly options: LogOptions & {
      readonly cols?: number
      readonly rows?: number
      /** For tests: the clock that tells frames apart, and the pause before the cursor's row is read. */
      readonly now?: () => number
      readonly quietMs?: number
    }
  ) {
    mkdirSync(options.dir, { recursive: true })
    this.path = join(options.dir, `${options.id}.log`)
    this.screen = new Terminal({ cols: options.cols ?? 120, rows: options.rows ?? 40, scrollback: SCROLLBACK, convertEol: true, allowProposedApi: true, logLevel: "off" })
    this.anchor = this.screen.registerMarker(0)
  }

  /** Append output (as the pty gives it). */
  write(chunk: string): void {
    if (chunk.length === 0) return
    this.appendRaw(chunk)
    if (this.closed) return
    const now = (this.options.now ?? Date.now)()
    if (now - this.lastOutput >= FRAME_GAP_MS) this.afterParse(() => this.read(true))
    this.lastOutput = now
    for (let at = 0; at < chunk.length; at += PIECE) {
      this.screen.write(chunk.slice(at, at + PIECE), () => {
        this.read(false)
        this.armQuiet()
      })
    }
  }

  /** A line the runner itself writes (start, exit, restart notes): in the files and the terminal backlog, and a line of its own. */
  note(text: string): void {
    const line = `[a2a-runner] ${text}`
    this.appendRaw(`${this.atLineStart ? "" : "\r\n"}${line}\r\n`)
    // After the output before it has been read.
    this.afterParse(() => this.pushLine(line))
  }

  /** Read the whole screen now, the cursor's row too (the process ended without a newline). */
  flush(): void {
    this.afterParse(() => this.read(true))
  }

  /** A new process starts: a clean screen (its predecessor may have left the alternate screen on). */
  reset(): void {
    this.flush()
    if (this.closed) return
    this.screen.write("\u001bc", () => {
      this.shown.clear()
      this.unfinished.clear()
      this.bufferType = "normal"
      this.reanchor(0)
      this.settledRows = 0
    })
  }

  /** The pty's size changed: the screen follows, so rows wrap where the agent's do. */
  resize(cols: number, rows: number): void {
    if (this.closed || !(cols >= 1 && rows >= 1 && cols <= 1_000 && rows <= 1_000)) return
    this.afterParse(() => {
      if (!this.closed && (cols !== this.screen.cols || rows !== this.screen.rows)) this.screen.resize(cols, rows)
    })
  }

  /** Resolves once everything written so far has been parsed and read. */
  settled(): Promise<void> {
    return new Promise((resolve) => this.afterParse(resolve))
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

  /** Raw bytes for the files and the terminal backlog (bounded). */
  private appendRaw(raw: string): void {
    this.appendFile(raw)
    this.backlog += raw
    if (this.backlog.length > this.options.backlogBytes * 2) this.backlog = this.backlog.slice(-this.options.backlogBytes)
    this.atLineStart = raw.endsWith("\n")
  }

  private afterParse(f: () => void): void {
    if (this.closed) f()
    else this.screen.write("", f)
  }

  private armQuiet(): void {
    if (this.quietTimer !== undefined) return
    const now = this.options.now ?? Date.now
    const quiet = this.options.quietMs ?? QUIET_MS
    this.pendingSince = now()
    const fire = () => {
      const at = now()
      if (at - this.lastOutput < quiet && at - this.pendingSince < MAX_WAIT_MS) {
        this.quietTimer = setTimeout(fire, Math.max(1, Math.min(quiet - (at - this.lastOutput), MAX_WAIT_MS - (at - this.pendingSince))))
        this.quietTimer.unref?.()
        return
      }
      this.quietTimer = undefined
      this.afterParse(() => this.read(true))
    }
    this.quietTimer = setTimeout(fire, quiet)
    this.quietTimer.unref?.()
  }

  private reanchor(stableOfCursorRow: number): void {
    this.anchor?.dispose()
    this.anchor = this.screen.registerMarker(0)
    this.anchorStable = stableOfCursorRow
  }

  /**
   * Read the lines that are done: those above the cursor's row (a TUI draws top down, and a
   * program's lines end where the cursor leaves them), or all of them when `all`. A line (a row
   * and the rows it wrapped onto) is emitted when its text is not what was last read there; text
   * redrawn elsewhere on the screen (a TUI's scrolled or repainted rows) is not repeated, nor
   * are blank rows of a TUI.
   */
  private read(all: boolean): void {
    if (this.closed) return
    const buffer = this.screen.buffer.active
    if (buffer.type !== this.bufferType) {
      this.bufferType = buffer.type
      this.shown.clear()
      this.unfinished.clear()
    }
    const normal = buffer.type === "normal"
    const cursorRow = buffer.baseY + buffer.cursorY
    // Stable numbers for normal-buffer rows: the anchor sat on the cursor's row at the last read.
    let shift = 0
    if (normal) {
      if (this.anchor === undefined || this.anchor.isDisposed || this.anchor.line < 0) {
        // Cannot happen while pieces are shorter than the scrollback; start numbering afresh.
        this.shown.clear()
        this.unfinished.clear()
        this.reanchor(this.settledRows + cursorRow)
      }
      shift = this.anchorStable - this.anchor!.line
    }
    // Reading everything: down to the cursor's row or the last row with text, whichever is lower.
    let end = cursorRow
    if (all) {
      end = cursorRow + 1
      for (let r = buffer.length - 1; r > cursorRow; r--) {
        if ((buffer.getLine(r)?.translateToString(true) ?? "").trim().length > 0) {
          end = r + 1
          break
        }
      }
    }
    // A line longer than this many rows (a program printing megabytes without a newline) is cut
    // into lines of this size, so no read walks more rows than that.
    const maxRows = Math.max(1, Math.ceil(MAX_LINE / this.screen.cols))
    let row = normal ? Math.max(0, this.settledRows - shift) : 0
    // Where the next read starts: the end of the last line read that lies wholly above the screen.
    let settle = row
    while (row < end) {
      const first = row
      let last = row + 1
      while (last < buffer.length && last - first < maxRows && buffer.getLine(last)?.isWrapped) last++
      // A line that wraps onto the cursor's row (or beyond what is read) is not done yet.
      if (last > end) break
      // A wrapped row filled the one before it: keep that one's blanks.
      let text = ""
      for (let r = first; r < last; r++) text += buffer.getLine(r)?.translateToString(r === last - 1) ?? ""
      row = last
      if (last <= buffer.baseY) settle = last
      this.consider(normal ? first + shift : first, text.trimEnd(), normal, row <= cursorRow)
    }
    if (normal) {
      // Rows above the screen are final and never read again.
      this.settledRows = Math.max(this.settledRows, settle + shift)
      for (const key of this.shown.keys()) if (key < this.settledRows) this.shown.delete(key)
      for (const key of this.unfinished) if (key < this.settledRows) this.unfinished.delete(key)
      this.reanchor(cursorRow + shift)
    }
  }

  private consider(key: number, text: string, normal: boolean, aboveCursor: boolean): void {
    const before = this.shown.get(key)
    if (before === text) return
    const blank = text.trim().length === 0
    // A blank row at or below the cursor is where text is still to come.
    if (blank && !aboveCursor) return
    this.shown.set(key, text)
    const wasUnfinished = this.unfinished.has(key)
    if (normal && !aboveCursor) this.unfinished.add(key)
    else this.unfinished.delete(key)
    // A program's new line is emitted as it is, repeated or blank; a redrawn one only when it
    // shows text not among the last lines (a TUI repaints and scrolls its screen).
    if (normal && before === undefined) return this.pushLine(text)
    // A line read while it was still being written (the cursor's row, at a pause or a frame
    // gap) that has grown since is that line going on: new output, never a redraw, even when its
    // text equals a recent line (a flood of one character repeats its lines exactly).
    if (normal && wasUnfinished && text.length > before!.length && text.startsWith(before!)) return this.pushLine(text)
    if (blank || this.recentCount.has(text)) return
    this.pushLine(text)
  }

  private pushLine(line: string): void {
    this.lines.push(line)
    if (this.lines.length > this.options.tailLines) this.lines.splice(0, this.lines.length - this.options.tailLines)
    this.recent.push(line)
    this.recentCount.set(line, (this.recentCount.get(line) ?? 0) + 1)
    if (this.recent.length > RECENT) {
      const old = this.recent.shift()!
      const n = this.recentCount.get(old)! - 1
      if (n === 0) this.recentCount.delete(old)
      else this.recentCount.set(old, n)
    }
    for (const listener of this.listeners) listener(line)
  }

  close(): void {
    if (!this.closed) {
      this.closed = true
      if (this.quietTimer !== undefined) clearTimeout(this.quietTimer)
      this.screen.dispose()
    }
    this.closeFile()
  }

  private closeFile(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }

  /** Remove the files (the agent was deleted). */
  remove(): void {
    this.close()
    for (let i = 0; i <= this.options.keep; i++) rmSync(i === 0 ? this.path : `${this.path}.${i}`, { force: true })
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
    this.closeFile()
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
