/**
 * Browser-test support: Debian's chromium driven by playwright-core with the machine's flags
 * and a fresh profile, a fake runner on `/ws/runner/:id`, and waiting helpers (no sleeps).
 */
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { chromium, type BrowserContext, type Page } from "playwright-core"
import WebSocket from "ws"
import { distDir } from "../index.js"

export const CHROMIUM = process.env["A2A_CHROMIUM"] ?? "/usr/bin/chromium"
export const ARTIFACTS = join(import.meta.dirname, "..", "test-results")

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

/** Fail early and clearly when the dashboard was not built. */
export const requireBuilt = () => {
  if (!existsSync(join(distDir, "index.html"))) throw new Error(`the dashboard is not built (${distDir}): run \`npm run build -w packages/dashboard\` first`)
}

export interface Browser {
  /** A page at the broker's origin; every request it makes is recorded in `requests`. */
  readonly page: (options?: { viewport?: { width: number; height: number }; init?: string }) => Promise<Page>
  /** URLs of every request made by any page. */
  readonly requests: Array<string>
  readonly close: () => Promise<void>
}

/**
 * One chromium process (playwright gives it a fresh temporary user-data-dir); each `page()`
 * is a new isolated context, so every page has its own sessionStorage, like a new tab.
 */
export const launch = async (): Promise<Browser> => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS })
  const requests: Array<string> = []
  const open = async (options: { viewport?: { width: number; height: number }; init?: string } = {}) => {
    const context: BrowserContext = await browser.newContext({ viewport: options.viewport ?? { width: 1366, height: 860 } })
    context.on("request", (r) => requests.push(r.url()))
    if (options.init !== undefined) await context.addInitScript(options.init)
    const page = await context.newPage()
    // Fail within the test timeout with playwright's own message (which says what it waited for).
    page.setDefaultTimeout(10_000)
    page.on("pageerror", (e) => console.error("page error:", e))
    return page
  }
  return { page: open, requests, close: () => browser.close() }
}

export const screenshot = async (page: Page, name: string) => {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/** Log in through the form; resolves once the live channel is open. */
export const login = async (page: Page, url: string, token: string) => {
  await page.goto(`${url}/ui/`)
  await page.fill('input[name="token"]', token)
  await page.click('button[type="submit"]')
  await page.waitForSelector('[data-testid="channel"][data-state="open"]')
}

/** A runner speaking the runner-link frames: records orders, reports statuses. */
export const fakeRunner = (url: string, token: string, id: string, info: { host?: string; capacity?: number; labels?: Record<string, string> } = {}) =>
  new Promise<{ ws: WebSocket; next: (type: string) => Promise<any>; send: (frame: unknown) => void }>((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/ws/runner/${id}`, { headers: { authorization: `Bearer ${token}` } })
    const frames: Array<any> = []
    const waiting: Array<{ type: string; resolve: (f: any) => void }> = []
    let taken = 0
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data))
      frames.push(frame)
      const i = waiting.findIndex((w) => w.type === frame.type)
      if (i >= 0) {
        taken++
        waiting.splice(i, 1)[0]!.resolve(frame)
      }
    })
    ws.on("unexpected-response", (_req, res) => reject(new Error(`runner link refused: ${res.statusCode}`)))
    ws.on("open", () => {
      ws.send(
        JSON.stringify({
          type: "hello",
          runner: { id, host: info.host ?? "runner-host", labels: info.labels ?? { zone: "a" }, capacity: info.capacity ?? 2, presets: ["command", "claude"], version: "test" },
          agents: []
        })
      )
      resolve({
        ws,
        send: (frame) => ws.send(JSON.stringify(frame)),
        next: (type) =>
          new Promise((res) => {
            const already = frames.slice(taken).find((f) => f.type === type)
            if (already !== undefined) {
              taken++
              res(already)
            } else waiting.push({ type, resolve: res })
          })
      })
    })
  })
