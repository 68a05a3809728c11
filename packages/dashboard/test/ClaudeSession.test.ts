/**
 * The dashboard driving a REAL Claude Code session (the pinned devDependency) end to end, in
 * chromium: the spawn form starts the `claude` preset on a real `a2a-runner` process with a
 * chosen provider and model; the session's requests go through a real `a2a-proxy` (virtual
 * key) to one of two fake Messages APIs (one per provider), which plays the model. The agent
 * view's live log shows the model's answer as text people can read, the terminal (xterm.js in
 * the page) types a second prompt into Claude Code's input box and its answer shows, and Stop
 * ends the session. Built broker, proxy, runner, MCP server and dashboard; screenshots go to
 * packages/dashboard/test-results/.
 */
import { createBrokerClient } from "@mks/a2a"
import { FakeMessages, startFakeMessages } from "@mks/a2a-testing"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanEnv, createToken, eventually, isAlive, startBroker, startServer, tempDir } from "../../e2e/test/support.js"
import { launch, login, requireBuilt, screenshot, type Browser } from "./browser.js"

const NAME = "claude-ui"
const PROVIDER = "minimax"
const MODEL = "MiniMax-M2"
const FIRST_PROMPT = "FIRST-PROMPT: please say the magic words"
const FIRST_ANSWER = "READABLE-ANSWER-42 from the fake model"
const SECOND_PROMPT = "SECOND-PROMPT typed in the page"
// Short enough for one row of the terminal panel (a longer answer wraps there).
const SECOND_ANSWER = "SECOND-ANSWER-7 via the terminal"

/** The model: a distinctive answer to each of the two prompts (anything else gets the fake's default). */
const model: FakeMessages.Script = (r) => {
  if (r.lastUserText.includes(SECOND_PROMPT)) return SECOND_ANSWER
  if (r.lastUserText.includes(FIRST_PROMPT)) return FIRST_ANSWER
  return undefined
}

/** Text of the terminal's visible rows (xterm's DOM renderer), one string per row. */
const terminalRows = (page: Page) =>
  page.$$eval('[data-testid="terminal"] .xterm-rows > div', (rows) => rows.map((r) => (r.textContent ?? "").replace(/\u00a0/g, " ")))

const waitForTerminalText = (page: Page, text: string, timeout: number) =>
  page.waitForFunction(
    (wanted) => Array.from(document.querySelectorAll('[data-testid="terminal"] .xterm-rows > div')).some((r) => (r.textContent ?? "").replace(/\u00a0/g, " ").includes(wanted)),
    text,
    { timeout }
  )

/** On a failed wait, print what the page showed (the live log's tail and the terminal's rows). */
const explained = async <A>(page: Page, what: Promise<A>): Promise<A> => {
  try {
    return await what
  } catch (e) {
    const log = (await page.textContent('[data-testid="log"]').catch(() => null)) ?? ""
    console.error(`LIVE LOG (tail):\n${log.slice(-4_000)}\nTERMINAL:\n${(await terminalRows(page).catch(() => [])).join("\n")}`)
    throw e
  }
}

const logLines = async (page: Page) => ((await page.textContent('[data-testid="log"]')) ?? "").split("\n")

describe("dashboard with a real Claude Code session through the proxy", () => {
  let glm: Awaited<ReturnType<typeof startFakeMessages>>
  let minimax: Awaited<ReturnType<typeof startFakeMessages>>
  let broker: Awaited<ReturnType<typeof startBroker>>
  let proxy: Awaited<ReturnType<typeof startServer>>
  let runner: Awaited<ReturnType<typeof startServer>>
  let browser: Browser
  let page: Page
  let spawnId: string
  let peerId: string

  beforeAll(async () => {
    requireBuilt()
    // Two providers, each its own fake upstream with its own key: which one a request reached says
    // which provider the proxy routed it to.
    // Only the minimax upstream plays the model; glm answers everything with its default text.
    glm = await startFakeMessages()
    minimax = await startFakeMessages({ script: model })
    broker = await startBroker()
    const proxyHome = tempDir("a2a-dash-claude-proxy-")
    const admin = "a2a_admin_dashboard_claude_0123456789"
    writeFileSync(
      join(proxyHome, "proxy.json"),
      JSON.stringify({
        providers: [
          { name: "glm", baseUrl: glm.url, apiKey: "sk-glm-upstream" },
          { name: "minimax", baseUrl: minimax.url, apiKey: "sk-minimax-upstream" }
        ],
        // Claude Code's background requests (its small fast model) go somewhere that answers.
        default: "glm",
        keyFile: ":memory:",
        usageFile: ":memory:"
      })
    )
    proxy = await startServer(BIN.proxy, ["--config", join(proxyHome, "proxy.json")], cleanEnv({ A2A_HOME: proxyHome, A2A_PROXY_ADMIN_TOKEN: admin }))
    const created = await fetch(proxy.url + "/v1/keys", { method: "POST", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ name: "runner" }) })
    expect(created.ok).toBe(true)
    const { key } = (await created.json()) as { key: string }
    const runnerDir = tempDir("a2a-dash-claude-runner-")
    runner = await startServer(
      BIN.runner,
      ["--data-dir", runnerDir, "--api-key", "dash-runner-key-claude-0123", "--id", "claude-box", "--broker", broker.url, "--token", await createToken(broker.home, "default", "runner"),
        "--proxy", proxy.url, "--proxy-key", key, "--claude-bin", BIN.claude, "--mcp-command", `${process.execPath} ${BIN.mcp}`],
      cleanEnv({ HOME: runnerDir, A2A_HOME: join(runnerDir, "home") })
    )
    browser = await launch()
    page = await browser.page({ viewport: { width: 1440, height: 1000 } })
    await login(page, broker.url, broker.adminToken)
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    await runner?.stop()
    await proxy?.stop()
    await broker?.stop()
    await glm?.close()
    await minimax?.close()
  })

  it("the spawn form starts a claude session with the chosen provider and model, and it registers", async () => {
    await page.click('[data-nav="runners"]')
    await page.waitForSelector('li[data-runner="claude-box"][data-status="online"]', { timeout: 30_000 })
    await page.click('[data-nav="spawns"]')
    await page.waitForSelector('select[name="runner"] option[value="claude-box"]', { state: "attached" })
    await page.selectOption('select[name="runner"]', "claude-box")
    await page.check('input[name="preset"][value="claude"]')
    await page.fill('input[name="name"]', NAME)
    await page.fill('input[name="provider"]', PROVIDER)
    await page.fill('input[name="model"]', MODEL)
    await page.fill('textarea[name="prompt"]', FIRST_PROMPT)
    await screenshot(page, "claude-spawn-form")
    await page.click('form.spawn-form button[type="submit"]')

    const row = `tr[data-spawn][data-name="${NAME}"]`
    // Claude Code starts, accepts the channels confirmation and its MCP server registers the peer.
    await page.waitForSelector(`${row}[data-status="registered"]`, { timeout: 120_000 })
    spawnId = (await page.getAttribute(row, "data-spawn"))!
    expect(await page.textContent(`${row} [data-label="Preset"]`)).toBe("claude")
    expect(await page.textContent(row)).toMatch(/pid \d+/)
    await screenshot(page, "claude-spawns")

    const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
    try {
      const spawn = (await api.spawn.get(spawnId)).spawn
      expect(spawn.spec).toMatchObject({ runner: "claude-box", preset: "claude", name: NAME, provider: PROVIDER, model: MODEL, prompt: FIRST_PROMPT })
      expect(spawn.peerId).toBeDefined()
      peerId = spawn.peerId!
    } finally {
      await api.close()
    }

    // The session asked for `minimax/MiniMax-M2`: the proxy sent the prompt to the minimax
    // upstream, with that provider's key and the model name without the provider.
    const asked = await minimax.waitFor((r) => r.path === "/v1/messages" && r.lastUserText.includes(FIRST_PROMPT), { timeoutMs: 90_000, what: "the first prompt at the minimax upstream" })
    expect(asked.model).toBe(MODEL)
    expect(asked.headers["x-api-key"]).toBe("sk-minimax-upstream")
    expect(asked.tools.length).toBeGreaterThan(0)
    // Whatever the glm upstream got (Claude Code's background requests for its small model go to
    // the default provider), it was never asked for the chosen model.
    expect(glm.requests.filter((r) => r.model === MODEL || r.model?.startsWith(`${PROVIDER}/`))).toEqual([])
    expect(new Set(minimax.requests.map((r) => r.headers["x-api-key"]))).toEqual(new Set(["sk-minimax-upstream"]))
  }, 180_000)

  it("the agent view's live log shows the model's answer as readable text, and the terminal talks to Claude Code", async () => {
    await page.click(`tr[data-spawn="${spawnId}"] a:has-text("${NAME}")`)
    await page.waitForSelector(`h2:has-text("${NAME}")`)
    expect(page.url()).toContain(`/ui/agents/${peerId}`)

    // The answer, words and spaces as the terminal shows them (not the TUI's escape soup).
    await explained(
      page,
      page.waitForFunction((wanted) => (document.querySelector('[data-testid="log"]')?.textContent ?? "").includes(wanted), FIRST_ANSWER, { timeout: 90_000 })
    )
    // The prompt the runner typed is in the log too, and no line holds raw escape sequences.
    const lines = await logLines(page)
    expect(lines.some((l) => l.includes(FIRST_PROMPT))).toBe(true)
    expect(lines.filter((l) => l.includes("\u001b"))).toEqual([])
    await screenshot(page, "claude-live-log")

    // The terminal: attached, showing the same conversation.
    await page.waitForSelector('[data-testid="terminal-status"]:has-text("attached")', { timeout: 30_000 })
    await explained(page, waitForTerminalText(page, FIRST_ANSWER, 60_000))

    // Type a second prompt into Claude Code's input box through the page, wait until the box
    // shows it, then submit it with Enter.
    await page.click('[data-testid="terminal"]')
    // (A trailing space: Claude Code may draw a key only when the next one comes.)
    await page.keyboard.type(`${SECOND_PROMPT} `)
    await explained(page, waitForTerminalText(page, SECOND_PROMPT, 30_000))
    await page.keyboard.press("Enter")
    const second = await minimax.waitFor((r) => r.path === "/v1/messages" && r.lastUserText.includes(SECOND_PROMPT), { timeoutMs: 90_000, what: "the second prompt at the minimax upstream" })
    expect(second.model).toBe(MODEL)
    // The conversation went on: the second request carries the first exchange.
    expect(second.allText).toContain(FIRST_ANSWER)

    // Its answer shows in the terminal and in the live log.
    await explained(page, waitForTerminalText(page, SECOND_ANSWER, 90_000))
    await explained(
      page,
      page.waitForFunction((wanted) => (document.querySelector('[data-testid="log"]')?.textContent ?? "").includes(wanted), SECOND_ANSWER, { timeout: 30_000 })
    )
    expect((await terminalRows(page)).some((r) => r.includes(SECOND_ANSWER))).toBe(true)
    // The terminal gets its half of the agent view however long the log's lines are (it was a
    // ~44-column strip beside a log widened by Claude Code's long lines), and the pty follows it.
    const widths = await page.evaluate(() => ({
      panels: document.querySelector(".agent-panels")!.getBoundingClientRect().width,
      terminal: document.querySelector('[data-testid="terminal"]')!.getBoundingClientRect().width,
      log: document.querySelector('[data-testid="log"]')!.getBoundingClientRect().width
    }))
    expect(widths.terminal).toBeGreaterThan(0.45 * widths.panels)
    expect(Math.abs(widths.terminal - widths.log)).toBeLessThan(0.1 * widths.panels)
    await screenshot(page, "claude-terminal")
  }, 180_000)

  it("Stop on the page ends the session", async () => {
    const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
    try {
      const pid = (await api.spawn.get(spawnId)).spawn.pid!
      expect(isAlive(pid)).toBe(true)
      await page.click('button:has-text("Stop agent")')
      await page.waitForSelector('[data-testid="log-status"]:has-text("log ended: the agent stopped")', { timeout: 60_000 })
      await page.waitForSelector('[data-testid="terminal-status"]:has-text("the agent stopped")', { timeout: 30_000 })
      await screenshot(page, "claude-stopped")
      await page.click('[data-nav="spawns"]')
      await page.waitForSelector(`tr[data-spawn="${spawnId}"][data-status="exited"]`, { timeout: 30_000 })
      expect(await page.locator(`tr[data-spawn="${spawnId}"] button:has-text("Stop")`).count()).toBe(0)
      expect((await api.spawn.get(spawnId)).spawn.status).toBe("exited")
      await eventually(() => (isAlive(pid) ? undefined : true), `Claude Code (pid ${pid}) gone`, 30_000)
    } finally {
      await api.close()
    }
  }, 120_000)
})
