/**
 * One supervised agent: its pseudo-terminal process, restart policy with backoff, stop that
 * kills the whole tree, and listeners for status, output and exit. Plain callbacks inside
 * (pty events arrive on the Node event loop); the `Supervisor` service wraps it in Effects.
 */
import * as pty from "node-pty"
import type { AgentSpec, AgentStatus, RestartPolicy } from "../Agent.js"
import type { AgentLog } from "./agentLog.js"
import { isAlive, signalAll, treeOf } from "./processTree.js"

/** What to execute, recomputed at every (re)start. */
export interface Launch {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Record<string, string>
  /** Drives the session once started (e.g. accepts a confirmation, types the first prompt). */
  readonly drive?: ((io: TerminalIo) => void) | undefined
}

export interface TerminalIo {
  readonly write: (data: string) => void
  readonly onData: (listener: (data: string) => void) => () => void
}

export interface Backoff {
  readonly initialMs: number
  readonly maxMs: number
  /** A run longer than this resets the backoff. */
  readonly resetAfterMs: number
}

export interface AgentInit {
  readonly id: string
  readonly name: string
  readonly spec: AgentSpec
  readonly preset: "command" | "claude"
  readonly restart: RestartPolicy
  readonly spawnId?: string | undefined
  readonly launch: () => Launch
  readonly log: AgentLog
  readonly backoff: Backoff
  readonly onStatus: (agent: AgentProcess, from: AgentStatus | null, to: AgentStatus) => void
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export class AgentProcess {
  status: AgentStatus = "stopped"
  pid: number | undefined
  startedAt: string | undefined
  startedAtMs = 0
  restarts = 0
  exitCode: number | undefined
  command: string
  args: ReadonlyArray<string>
  cwd: string
  private term: pty.IPty | undefined
  private restartTimer: ReturnType<typeof setTimeout> | undefined
  private stopRequested = false
  private failures = 0
  private exitWaiters: Array<() => void> = []
  private readonly dataListeners = new Set<(data: string) => void>()
  private cols = 120
  private rows = 40
  removed = false

  constructor(readonly init: AgentInit) {
    this.command = init.spec.command ?? "claude"
    this.args = init.spec.args ?? []
    this.cwd = init.spec.cwd ?? process.cwd()
  }

  get id() {
    return this.init.id
  }

  /** Whether a restart is scheduled (crashed or exited, coming back). */
  get restartPending() {
    return this.restartTimer !== undefined
  }

  get running() {
    return this.term !== undefined
  }

  /** Start now (cancels a scheduled restart); no-op while a process runs. Throws if it cannot start. */
  start(): void {
    if (this.term !== undefined) return
    this.cancelRestart()
    this.stopRequested = false
    this.failures = 0
    this.spawnNow()
  }

  /** Stop the whole tree: SIGTERM, then SIGKILL after `graceMs`. Resolves once it is gone. */
  async stop(graceMs: number): Promise<void> {
    this.stopRequested = true
    const pending = this.restartPending
    this.cancelRestart()
    const term = this.term
    if (term === undefined) {
      if (pending || this.status === "starting") this.setStatus("stopped")
      return
    }
    const root = term.pid
    this.setStatus("stopping")
    const exited = this.waitExit()
    let pids = treeOf(root)
    signalAll(root, pids, "SIGTERM")
    const deadline = Date.now() + graceMs
    const timedOut = await Promise.race([exited.then(() => false), delay(graceMs).then(() => true)])
    if (timedOut) pids = [...new Set([...pids, ...treeOf(root)])]
    // Descendants that outlived the root (or ignore SIGTERM) get the rest of the grace, then SIGKILL.
    while (pids.some((p) => p !== root && isAlive(p)) && Date.now() < deadline) await delay(20)
    const survivors = pids.filter(isAlive)
    if (survivors.length > 0) signalAll(root, survivors, "SIGKILL")
    await exited
    // SIGKILL is delivered asynchronously: answer only once the tree is really gone (bounded).
    const killDeadline = Date.now() + 2_000
    while (survivors.some(isAlive) && Date.now() < killDeadline) await delay(10)
  }

  /** Stop, then start; resolves when the new process runs. */
  async restart(graceMs: number): Promise<void> {
    await this.stop(graceMs)
    this.restarts++
    this.start()
  }

  write(data: string): void {
    this.term?.write(data)
  }

  resize(cols: number, rows: number): void {
    this.cols = cols
    this.rows = rows
    this.init.log.resize(cols, rows)
    try {
      this.term?.resize(cols, rows)
    } catch {
      // the process just ended
    }
  }

  onData(listener: (data: string) => void): () => void {
    this.dataListeners.add(listener)
    return () => this.dataListeners.delete(listener)
  }

  private waitExit(): Promise<void> {
    return this.term === undefined ? Promise.resolve() : new Promise((resolve) => this.exitWaiters.push(resolve))
  }

  private cancelRestart() {
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer)
    this.restartTimer = undefined
  }

  private setStatus(to: AgentStatus) {
    const from = this.status
    if (from === to) return
    this.status = to
    this.init.onStatus(this, from, to)
  }

  private spawnNow(): void {
    if (this.removed) return
    this.setStatus("starting")
    let term: pty.IPty
    try {
      const launch = this.init.launch()
      // A clean screen for the live log's lines, the pty's size.
      this.init.log.reset()
      this.init.log.resize(this.cols, this.rows)
      this.command = launch.file
      this.args = launch.args
      this.cwd = launch.cwd
      term = pty.spawn(launch.file, [...launch.args], {
        name: "xterm-256color",
        cols: this.cols,
        rows: this.rows,
        cwd: launch.cwd,
        env: launch.env
      })
      this.term = term
      this.pid = term.pid
      this.exitCode = undefined
      this.startedAtMs = Date.now()
      this.startedAt = new Date(this.startedAtMs).toISOString()
      term.onData((data) => {
        this.init.log.write(data)
        for (const listener of this.dataListeners) listener(data)
      })
      term.onExit(({ exitCode, signal }) => this.exited(term, exitCode, signal))
      this.init.log.note(`started pid ${term.pid}: ${[launch.file, ...launch.args].join(" ")}`)
      this.setStatus("running")
      launch.drive?.({ write: (data) => this.term === term && term.write(data), onData: (l) => this.onData(l) })
    } catch (e) {
      this.term = undefined
      this.pid = undefined
      this.exitCode = 127
      this.init.log.note(`could not start: ${(e as Error).message}`)
      this.scheduleRestart(true)
      this.setStatus("crashed")
      throw e
    }
  }

  private exited(term: pty.IPty, exitCode: number, signal: number | undefined) {
    if (this.term !== term) return
    this.term = undefined
    this.pid = undefined
    this.exitCode = signal !== undefined && signal > 0 ? 128 + signal : exitCode
    this.init.log.flush()
    this.init.log.note(`exited with code ${this.exitCode}${signal ? ` (signal ${signal})` : ""}`)
    const waiters = this.exitWaiters
    this.exitWaiters = []
    if (this.stopRequested) {
      this.setStatus("stopped")
    } else {
      // Schedule first, so status listeners can tell a crash that comes back from a final one.
      this.scheduleRestart(this.exitCode !== 0)
      this.setStatus(this.exitCode === 0 ? "exited" : "crashed")
    }
    for (const resolve of waiters) resolve()
  }

  private scheduleRestart(failed: boolean) {
    const policy = this.init.restart
    if (this.removed || this.stopRequested || policy === "never" || (policy === "on-failure" && !failed)) return
    const ranFor = Date.now() - this.startedAtMs
    this.failures = ranFor > this.init.backoff.resetAfterMs ? 1 : this.failures + 1
    const wait = Math.min(this.init.backoff.maxMs, this.init.backoff.initialMs * 2 ** (this.failures - 1))
    this.init.log.note(`restarting in ${wait} ms (policy ${policy}, attempt ${this.failures})`)
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      this.restarts++
      try {
        this.spawnNow()
      } catch {
        // recorded in the log; spawnNow scheduled the next attempt
      }
    }, wait)
  }
}
