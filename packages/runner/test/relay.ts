/**
 * Test helpers for the broker's relay sockets (`/ws/broker/spawns/:id/logs|terminal`): a
 * WebSocket client that records frames and lets a test await one (never sleep), and the
 * refusal of an upgrade as a status and JSON body.
 */
import WebSocket from "ws"

export interface RelayClient {
  readonly ws: WebSocket
  readonly frames: Array<any>
  /** Every log line received so far. */
  readonly lines: () => Array<string>
  /** Terminal output received so far, escape sequences removed. */
  readonly output: () => string
  /** The first frame (from index `from`) matching. */
  readonly next: (predicate: (frame: any) => boolean, what: string, timeoutMs?: number, from?: number) => Promise<any>
  /** Resolves once the terminal output matches `re`. */
  readonly untilOutput: (re: RegExp, timeoutMs?: number) => Promise<string>
  /** Resolves once the log shows a line matching `re`. */
  readonly untilLine: (re: RegExp, timeoutMs?: number) => Promise<string>
  readonly closed: Promise<{ code: number; reason: string }>
  readonly send: (frame: unknown) => void
}

const wsUrl = (url: string) => url.replace(/^http/, "ws")
// eslint-disable-next-line no-control-regex
const stripAnsi = (text: string) => text.replace(/\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007]*\u0007|\r/g, "")

/** Open a relay socket with a Bearer header (or `?token=` when `query` is set). */
export const openRelay = (brokerUrl: string, path: string, token: string, options: { query?: boolean } = {}) =>
  new Promise<RelayClient>((resolve, reject) => {
    const sep = path.includes("?") ? "&" : "?"
    const ws = new WebSocket(
      options.query === true ? `${wsUrl(brokerUrl)}${path}${sep}token=${encodeURIComponent(token)}` : `${wsUrl(brokerUrl)}${path}`,
      options.query === true ? {} : { headers: { authorization: `Bearer ${token}` } }
    )
    const frames: Array<any> = []
    const waiters = new Set<() => void>()
    const notify = () => waiters.forEach((w) => w())
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      ws.on("close", (code, reason) => {
        done({ code, reason: String(reason) })
        notify()
      })
    )
    ws.on("message", (raw) => {
      frames.push(JSON.parse(String(raw)))
      notify()
    })
    ws.on("unexpected-response", (_req, res) => {
      let body = ""
      res.on("data", (c) => (body += c))
      res.on("end", () => reject(Object.assign(new Error(`relay refused: ${res.statusCode} ${body}`), { status: res.statusCode, body: body.length > 0 ? JSON.parse(body) : undefined })))
    })
    ws.on("error", (e) => reject(e))
    const until = <A>(check: () => A | undefined, what: string, timeoutMs = 10_000) =>
      new Promise<A>((res, rej) => {
        const done = () => {
          const value = check()
          if (value !== undefined) {
            waiters.delete(done)
            clearTimeout(timer)
            res(value)
          }
        }
        const timer = setTimeout(() => {
          waiters.delete(done)
          rej(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(frames).slice(-2_000)}`))
        }, timeoutMs)
        waiters.add(done)
        done()
      })
    const lines = () => frames.filter((f) => f.type === "log").flatMap((f) => f.lines as Array<string>)
    const output = () => stripAnsi(frames.filter((f) => f.type === "output").map((f) => f.data as string).join(""))
    ws.on("open", () =>
      resolve({
        ws,
        frames,
        lines,
        output,
        next: (predicate, what, timeoutMs, from = 0) => until(() => frames.slice(from).find(predicate), what, timeoutMs),
        untilOutput: (re, timeoutMs) => until(() => re.exec(output())?.[0], `output ${re}`, timeoutMs),
        untilLine: (re, timeoutMs) => until(() => lines().find((l) => re.test(l)), `a log line ${re}`, timeoutMs),
        closed,
        send: (frame) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
      })
    )
  })

/** Open a relay socket that must be refused before the upgrade: its HTTP status and JSON body. */
export const refusedRelay = (brokerUrl: string, path: string, token: string | undefined) =>
  openRelay(brokerUrl, path, token ?? "").then(
    (client) => {
      client.ws.close()
      throw new Error(`${path} was upgraded, expected a refusal`)
    },
    (e: { status?: number; body?: any }) => {
      if (e.status === undefined) throw e
      return { status: e.status, body: e.body }
    }
  )
