/**
 * Starts a real proxy (ProxyServer.layer) on 127.0.0.1, port 0, in the test process, with its
 * log lines captured, and small fetch helpers for the control plane.
 */
import { Context, Effect, Exit, Layer, Logger, PubSub, Queue, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ProxyConfig, ProxyServer } from "../../src/index.js"

export const ADMIN = "test-admin-token-0123456789"
export const PROVIDER_KEY = "sk-ant-provider-REAL-KEY-42"

export interface Harness {
  readonly url: string
  readonly server: ProxyServer.ProxyServerService
  readonly logs: Array<string>
  readonly dir: string
  /** Resolves with the first settlement matching `predicate` published after this call. */
  settled(predicate?: (s: ProxyServer.Settlement) => boolean): Promise<ProxyServer.Settlement>
  /** Resolves when a log line containing `text` has been (or is) written. */
  logged(text: string): Promise<string>
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>
  createKey(body?: Record<string, unknown>): Promise<{ key: string; record: any }>
  close(): Promise<void>
}

export const tempDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), "a2a-proxy-test-"))

export const startProxy = async (
  input: Record<string, unknown>,
  options: {
    readonly env?: Record<string, string>
    readonly dir?: string
    readonly input?: Record<string, unknown>
    /** How to build the server from the config (default `ProxyServer.layer`). */
    readonly layer?: (config: ProxyConfig.ProxyConfig) => Layer.Layer<ProxyServer.ProxyServer, ProxyServer.ProxyStartError>
  } = {}
): Promise<Harness> => {
  const dir = options.dir ?? tempDir()
  const logs: Array<string> = []
  const waiters: Array<{ text: string; resolve: (line: string) => void }> = []
  const logger = Logger.make(({ logLevel, message }) => {
    const line = `${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`
    logs.push(line)
    for (const w of [...waiters]) {
      if (line.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  })
  const config = await Effect.runPromise(
    ProxyConfig.make(
      { port: 0, keyFile: path.join(dir, "keys.json"), usageFile: path.join(dir, "usage.json"), flushIntervalMs: 200, ...input, ...options.input },
      { env: { PROVIDER_KEY, ...options.env }, adminToken: ADMIN }
    )
  )
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(
    Layer.buildWithScope((options.layer ?? ProxyServer.layer)(config), scope).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
  )
  const server = Context.get(context, ProxyServer.ProxyServer)
  const url = server.url

  /** Subscribes at once (synchronously), so nothing published after the call is missed. */
  const settled = (predicate: (s: ProxyServer.Settlement) => boolean = () => true): Promise<ProxyServer.Settlement> => {
    const subscription = Effect.runSync(Scope.make())
    const queue = Effect.runSync(Scope.extend(PubSub.subscribe(server.settlements), subscription))
    return (async () => {
      try {
        for (;;) {
          const s = await Effect.runPromise(Queue.take(queue))
          if (predicate(s)) return s
        }
      } finally {
        await Effect.runPromise(Scope.close(subscription, Exit.void))
      }
    })()
  }

  const admin = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(url + p, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.text()
    return { status: res.status, json: text === "" ? undefined : JSON.parse(text) }
  }

  return {
    url,
    server,
    logs,
    dir,
    settled,
    logged(text) {
      const found = logs.find((l) => l.includes(text))
      if (found !== undefined) return Promise.resolve(found)
      return new Promise((resolve) => waiters.push({ text, resolve }))
    },
    admin,
    async createKey(body = {}) {
      const res = await admin("POST", "/v1/keys", { name: "test", ...body })
      if (res.status !== 201) throw new Error(`create key: ${res.status} ${JSON.stringify(res.json)}`)
      return res.json
    },
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** A config with one provider `fake` (the default) at `url`. */
export const oneProvider = (url: string, extra: Record<string, unknown> = {}) => ({
  providers: [{ name: "fake", baseUrl: url, apiKeyEnv: "PROVIDER_KEY" }],
  default: "fake",
  ...extra
})

/** POST /v1/messages with a virtual key; returns status, headers and the body text. */
export const postMessages = async (url: string, key: string | undefined, body: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(url + "/v1/messages", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "anthropic-version": "2023-06-01",
      ...(key === undefined ? {} : { "x-api-key": key }),
      ...headers
    },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}
