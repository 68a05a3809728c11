/**
 * Helpers for the edge-case suites (Auth, BadInput, Gc, Cli): raw WebSockets with a frame
 * reader, the WebSocket refusal status, the built CLI as a one-shot command, a local OIDC
 * issuer, and polling an endpoint for a state change.
 */
import { spawn } from "node:child_process"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import WebSocket from "ws"

export const CLI = join(import.meta.dirname, "..", "dist", "cli.js")

export const wsUrl = (broker: { url: string }, path: string) => broker.url.replace(/^http/, "ws") + path

/** A raw WebSocket that records every JSON frame; `next` waits for the first unread frame matching. */
export class FrameSocket {
  readonly frames: Array<any> = []
  private cursor = 0
  private waiters: Array<() => void> = []
  closed: Promise<{ code: number; reason: string }>

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(String(data)))
      for (const wake of this.waiters.splice(0)) wake()
    })
    this.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })))
    ws.once("close", () => {
      for (const wake of this.waiters.splice(0)) wake()
    })
  }

  /** Open a socket; resolves once the upgrade succeeded (rejects with the refusal status otherwise). */
  static open(url: string, headers: Record<string, string> = {}): Promise<FrameSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers })
      const socket = new FrameSocket(ws)
      ws.once("open", () => resolve(socket))
      ws.once("unexpected-response", (_req, res) => reject(new Error(`refused with ${res.statusCode}`)))
      ws.once("error", reject)
    })
  }

  /** Every frame received so far matching `predicate` (read or not). */
  all(predicate: (frame: any) => boolean): Array<any> {
    return this.frames.filter(predicate)
  }

  /** The first frame after the read position matching `predicate`; frames skipped over stay in `frames`. */
  async next(predicate: (frame: any) => boolean = () => true, timeoutMs = 5_000): Promise<any> {
    const deadline = Date.now() + timeoutMs
    while (true) {
      for (let i = this.cursor; i < this.frames.length; i++) {
        if (predicate(this.frames[i])) {
          this.cursor = i + 1
          return this.frames[i]
        }
      }
      this.cursor = this.frames.length
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("socket closed while waiting for a frame")
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    this.ws.close(1000)
    await this.closed
  }
}

/** The HTTP status and body a WebSocket upgrade is refused with (throws if it is accepted). */
export const wsRefusal = (url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    ws.once("open", () => {
      ws.close()
      reject(new Error(`the upgrade of ${url} was accepted`))
    })
    ws.once("unexpected-response", (_req, res) => {
      let text = ""
      res.on("data", (chunk) => (text += chunk))
      res.on("end", () => {
        let body: any
        try {
          body = JSON.parse(text)
        } catch {
          body = text
        }
        resolve({ status: res.statusCode ?? 0, body })
      })
    })
    ws.once("error", (e) => {
      if (!/Unexpected server response/.test(String(e))) reject(e)
    })
  })

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Run the built CLI to completion. */
export const runCli = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.once("error", reject)
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

/** Poll `probe` every `intervalMs` until it returns a value other than `undefined` (or fail at the deadline). */
export const pollUntil = async <A>(probe: () => Promise<A | undefined>, what: string, timeoutMs = 5_000, intervalMs = 25): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** A minimal OIDC issuer: discovery document and JWKS on 127.0.0.1, keys chosen by the test. */
export const serveIssuer = async (jwks: { keys: ReadonlyArray<unknown> }): Promise<{ issuer: string; close: () => Promise<void> }> => {
  let issuer = ""
  const server: Server = createServer((req, res) => {
    if (req.url === "/.well-known/openid-configuration") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks.json`, id_token_signing_alg_values_supported: ["RS256", "ES256"] }))
    } else if (req.url === "/jwks.json") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify(jwks))
    } else {
      res.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    issuer,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
