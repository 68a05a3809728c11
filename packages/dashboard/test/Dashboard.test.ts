/**
 * The dashboard in a real browser (Debian chromium via playwright-core) against a real broker
 * in this process: login, live presence, conversations, spawns with a fake runner, the agent
 * view's live log and terminal relayed from a real `a2a-runner` process, tenancy.
 * Screenshots of every view go to packages/dashboard/test-results/.
 */
import { createBrokerClient } from "@mks/a2a"
import { join } from "node:path"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type TestBroker } from "../../broker/test/harness.js"
import { eventually, FIXTURES, isAlive, startRunner } from "../../runner/test/helpers.js"
import { fakeRunner, launch, login, requireBuilt, screenshot, type Browser } from "./browser.js"

/** The page's live channel heartbeats this often here, so the short test peer timeout keeps it online. */
const FAST_HEARTBEAT = "window.a2aHeartbeatMs = 300"

/** A relay in the page (window.a2aRelay): one log line, and a line terminal that runs `echo`. */
const FAKE_RELAY = `window.a2aRelay = {
  unavailable: undefined,
  logs: (agent, onLines) => { setTimeout(() => onLines(["agent " + agent.spawnId + " says hello"]), 0); return { close() {} } },
  terminal: (agent, size, h) => {
    let line = ""
    setTimeout(() => h.onOutput("$ "), 0)
    return {
      write(data) {
        for (const ch of data) {
          if (ch === "\\r") { const m = /^echo (.*)$/.exec(line); h.onOutput("\\r\\n" + (m ? m[1] + "\\r\\n" : "") + "$ "); line = "" }
          else { line += ch; h.onOutput(ch) }
        }
      },
      resize() {}, close() {}
    }
  }
}`

describe("dashboard in chromium", () => {
  let broker: TestBroker
  let browser: Browser
  let page: Page

  beforeAll(async () => {
    requireBuilt()
    // Peers without heartbeats go offline after 1.5 s here, so "goes offline" is observable quickly.
    broker = await startBroker({ peerTimeout: 1_500, gcInterval: 100 })
    browser = await launch()
    page = await browser.page({ init: FAST_HEARTBEAT })
  })

  afterAll(async () => {
    await browser?.close()
    await broker?.close()
  })

  it("a bad token gets a clear message on the login view, and nothing else is reachable", async () => {
    const stranger = await browser.page()
    await stranger.goto(`${broker.url}/ui/peers`)
    await stranger.waitForSelector('input[name="token"]')
    await stranger.fill('input[name="token"]', "a2a_not-a-real-token-000000000000000000000")
    await stranger.click('button[type="submit"]')
    const error = await stranger.waitForSelector('[data-testid="login-error"]')
    expect(await error.textContent()).toMatch(/refused this token/i)
    expect(await stranger.locator("nav").count()).toBe(0)
    expect(await stranger.evaluate(() => sessionStorage.getItem("a2a.dashboard.token"))).toBeNull()
    await screenshot(stranger, "login-bad-token")
    // Every view path still shows only the login form.
    for (const path of ["peers", "spawns", "agents/x"]) {
      await stranger.goto(`${broker.url}/ui/${path}`)
      await stranger.waitForSelector('input[name="token"]')
      expect(await stranger.locator('[data-testid="peers"], [data-testid="spawns"], nav').count()).toBe(0)
    }
    await stranger.context().close()
  })

  it("logs in with a token kept in sessionStorage, never in the URL", async () => {
    await page.goto(`${broker.url}/ui/`)
    await page.waitForSelector('input[name="token"]')
    await screenshot(page, "login")
    await login(page, broker.url, broker.adminToken)
    expect(page.url()).not.toContain(broker.adminToken)
    expect(await page.evaluate(() => sessionStorage.getItem("a2a.dashboard.token"))).toBe(broker.adminToken)
    const operator = await page.textContent('[data-testid="operator"]')
    expect(operator).toMatch(/^operator-[0-9a-f]{8}$/)
    // The operator is a peer of the tenant with agent kind "dashboard".
    const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
    const peers = (await api.peers.list()).peers
    expect(peers.find((p) => p.name === operator)).toMatchObject({ agent: "dashboard", status: "online" })
    // A reload logs in again from sessionStorage.
    await page.reload()
    await page.waitForSelector('[data-testid="channel"][data-state="open"]')
    await api.close()
  })

  it("two SDK peers appear within 1 s of registering, filter by team and host, and show offline when they go", async () => {
    const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
    const started = Date.now()
    const [, beta] = await Promise.all([
      api.peers.register({ name: "alpha", summary: "reviews pull requests", agent: "claude-code", host: "box-a", teams: ["red"] }),
      api.peers.register({ name: "beta", summary: "writes tests", agent: "codex", host: "box-b", teams: ["blue"] })
    ])
    const registered = Date.now()
    // beta stays online with heartbeats; alpha never heartbeats and times out.
    const betaChannel = api.connect(beta.peer.id, { heartbeatInterval: 300 })
    betaChannel.on("message", () => {})
    await page.waitForSelector('tr[data-peer="alpha"][data-status="online"]', { timeout: 1_000 })
    await page.waitForSelector('tr[data-peer="beta"][data-status="online"]', { timeout: 1_000 })
    const shown = Date.now()
    console.log(`peers registered in ${registered - started} ms, visible ${shown - registered} ms after registering`)
    expect(shown - registered).toBeLessThan(1_000)
    const alphaRow = page.locator('tr[data-peer="alpha"]')
    expect(await alphaRow.textContent()).toContain("reviews pull requests")
    expect(await alphaRow.textContent()).toContain("claude-code")
    expect(await alphaRow.textContent()).toContain("box-a")
    expect(await alphaRow.textContent()).toContain("red")
    await screenshot(page, "peers")

    await page.selectOption('select[name="team"]', "blue")
    await page.waitForFunction(() => document.querySelector('tr[data-peer="alpha"]') === null && document.querySelector('tr[data-peer="beta"]') !== null)
    await page.selectOption('select[name="team"]', "")
    await page.selectOption('select[name="host"]', "box-a")
    await page.waitForFunction(() => document.querySelector('tr[data-peer="beta"]') === null && document.querySelector('tr[data-peer="alpha"]') !== null)
    await screenshot(page, "peers-filtered")
    await page.selectOption('select[name="host"]', "")

    // alpha is silent: the broker's GC marks it offline and the page follows (peer_left).
    await page.waitForSelector('tr[data-peer="alpha"][data-status="offline"]', { timeout: 5_000 })
    // beta unregisters: it leaves the list (or shows offline).
    await api.peers.unregister(beta.peer.id)
    await page.waitForFunction(() => {
      const row = document.querySelector('tr[data-peer="beta"]')
      return row === null || row.getAttribute("data-status") === "offline"
    })
    await betaChannel.close().catch(() => undefined)
    await api.close()
  })

  it("a message sent from the page arrives at a peer, and its reply shows in the thread", async () => {
    const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
    const gamma = (await api.peers.register({ name: "gamma", agent: "claude-code", host: "box-c" })).peer
    const channel = api.connect(gamma.id, { heartbeatInterval: 300, autoAck: true })
    const received: Array<{ id: string; from: string; body: string }> = []
    const arrived = new Promise<{ id: string; from: string; body: string }>((resolve) =>
      channel.on("message", (m) => {
        received.push(m)
        if (m.body === "hello gamma, from the dashboard") resolve(m)
      })
    )
    await page.click('[data-nav="peers"]')
    await page.click('tr[data-peer="gamma"] a.button')
    await page.waitForSelector('[data-testid="thread-title"]:has-text("gamma")')
    await page.fill("#composer", "hello gamma, from the dashboard")
    await page.press("#composer", "Enter")
    const message = await arrived
    const operator = await page.textContent('[data-testid="operator"]')
    expect(message).toMatchObject({ fromName: operator })
    await page.waitForSelector('[data-testid="messages"] li.mine:has-text("hello gamma, from the dashboard")')

    await channel.send({ to: message.from, body: "hi operator, gamma here", replyTo: message.id })
    await page.waitForSelector('[data-testid="messages"] li.theirs:has-text("hi operator, gamma here")')
    await screenshot(page, "conversations")

    // Team thread: the operator joins a team from the Teams view and writes to it.
    await api.teams.join("green", gamma.id)
    await page.click('[data-nav="teams"]')
    await page.click('li[data-team="green"] button:has-text("Join")')
    await page.waitForSelector('li[data-team="green"] button:has-text("Leave")')
    await screenshot(page, "teams")
    await page.click('li[data-team="green"] a.button')
    await page.fill("#composer", "standup in 5")
    await page.press("#composer", "Enter")
    const teamMessage = await new Promise<{ team?: string; body: string }>((resolve) => {
      const found = received.find((m) => m.body === "standup in 5")
      if (found !== undefined) resolve(found)
      channel.on("message", (m) => m.body === "standup in 5" && resolve(m))
    })
    expect(teamMessage.team).toBe("green")
    await channel.close()
    await api.close()
  })

  it("a spawn from the form reaches registered on the page, and stop ends it", async () => {
    const runner = await fakeRunner(broker.url, await broker.token("default", "runner"), "rt-ui", { host: "runner-box", capacity: 3, labels: { zone: "eu" } })
    await page.click('[data-nav="runners"]')
    await page.waitForSelector('li[data-runner="rt-ui"][data-status="online"]')
    expect(await page.textContent('li[data-runner="rt-ui"] [data-testid="capacity"]')).toContain("0 / 3")
    await screenshot(page, "runners")

    await page.click('[data-nav="spawns"]')
    await page.waitForSelector('select[name="runner"] option[value="rt-ui"]', { state: "attached" })
    // No runner has these labels: the broker's refusal is shown, nothing is ordered.
    await page.check('input[name="preset"][value="command"]')
    await page.fill('input[name="labels"]', "zone=mars")
    await page.fill('input[name="command"]', "node")
    await page.click('form.spawn-form button[type="submit"]')
    expect(await (await page.waitForSelector('[data-testid="notice"].error')).textContent()).toContain("NoRunnerAvailable")
    await page.fill('input[name="labels"]', "")
    await page.selectOption('select[name="runner"]', "rt-ui")
    await page.check('input[name="preset"][value="command"]')
    await page.fill('input[name="name"]', "helper-ui")
    await page.fill('input[name="team"]', "crew")
    await page.fill('input[name="provider"]', "glm")
    await page.fill('input[name="model"]', "glm-4.5-air")
    await page.fill('input[name="command"]', "node")
    await page.fill('input[name="args"]', 'agent.js --say "two words"')
    await page.fill('textarea[name="prompt"]', "say hello")
    await page.click('form.spawn-form button[type="submit"]')

    const order = await runner.next("spawn")
    expect(order.spawn.spec).toMatchObject({ runner: "rt-ui", command: "node", args: ["agent.js", "--say", "two words"], name: "helper-ui", teams: ["crew"], provider: "glm", model: "glm-4.5-air", prompt: "say hello" })
    const spawnId: string = order.spawn.id
    const row = `tr[data-spawn="${spawnId}"]`
    await page.waitForSelector(`${row}[data-status="dispatched"]`)
    runner.send({ type: "spawn_status", spawnId, status: "running", pid: 4242 })
    await page.waitForSelector(`${row}[data-status="running"]`)
    // The agent registers with the spawn's token and id: the page shows `registered`.
    const agent = createBrokerClient({ url: order.spawn.brokerUrl, token: order.spawn.token })
    const peer = (await agent.peers.register({ name: "helper-ui", teams: ["crew"], spawnId, agent: "command" })).peer
    await page.waitForSelector(`${row}[data-status="registered"]`)
    expect(await page.textContent(row)).toContain("pid 4242")
    await screenshot(page, "spawns")

    // The agent detail view: peer facts, spawn, and — this fake runner does not announce the
    // relay — the broker's clear refusal in the log and terminal panels.
    await page.click(`${row} a:has-text("helper-ui")`)
    await page.waitForSelector('h2:has-text("helper-ui")')
    await page.waitForSelector('[data-testid="log-status"]:has-text("does not relay logs and terminals")')
    await page.waitForSelector('[data-testid="terminal-status"]:has-text("does not relay logs and terminals")')
    expect(page.url()).toContain(`/ui/agents/${peer.id}`)
    await screenshot(page, "agent")

    // An embedder's relay (window.a2aRelay) replaces the broker's: the components use it.
    const relayed = await browser.page({ init: `${FAST_HEARTBEAT}; ${FAKE_RELAY}` })
    await login(relayed, broker.url, broker.adminToken)
    await relayed.goto(`${broker.url}/ui/agents/${peer.id}`)
    await relayed.waitForSelector(`[data-testid="log"]:has-text("agent ${spawnId} says hello")`)
    await relayed.waitForSelector('[data-testid="terminal"] .xterm-rows')
    await relayed.click('[data-testid="terminal"]')
    await relayed.keyboard.type("echo hi")
    await relayed.keyboard.press("Enter")
    await relayed.waitForFunction(() =>
      Array.from(document.querySelectorAll('[data-testid="terminal"] .xterm-rows > div')).some((row) => row.textContent?.trim() === "hi")
    )
    await screenshot(relayed, "agent-terminal")
    await relayed.context().close()

    // Stop from the page: the runner gets the order, reports the exit, the page shows it.
    await page.click('button:has-text("Stop agent")')
    const stop = await runner.next("stop")
    expect(stop.spawnId).toBe(spawnId)
    runner.send({ type: "spawn_status", spawnId, status: "exited", exitCode: 0 })
    await page.click('[data-nav="spawns"]')
    await page.waitForSelector(`${row}[data-status="exited"]`)
    expect(await page.locator(`${row} button:has-text("Stop")`).count()).toBe(0)
    runner.ws.close()
    await agent.close()
  })

  it("with a real runner: the live log shows what the agent prints, the terminal runs `echo hi`, stop ends the agent", async () => {
    const runner = await startRunner(["--broker", broker.url, "--token", await broker.token("default", "runner"), "--id", "rt-real", "--capacity", "2"])
    try {
      await page.click('[data-nav="runners"]')
      await page.waitForSelector('li[data-runner="rt-real"][data-status="online"]')
      await page.click('[data-nav="spawns"]')
      await page.waitForSelector('select[name="runner"] option[value="rt-real"]', { state: "attached" })
      await page.selectOption('select[name="runner"]', "rt-real")
      await page.check('input[name="preset"][value="command"]')
      await page.fill('input[name="name"]', "shell-ui")
      for (const field of ['input[name="labels"]', 'input[name="team"]', 'input[name="provider"]', 'input[name="model"]', 'textarea[name="prompt"]']) await page.fill(field, "")
      await page.fill('input[name="command"]', process.execPath)
      await page.fill('input[name="args"]', join(FIXTURES, "shell-agent.mjs"))
      await page.click('form.spawn-form button[type="submit"]')
      const row = 'tr[data-spawn]:has-text("shell-ui")'
      await page.waitForSelector(`${row}[data-status="registered"]`, { timeout: 15_000 })
      const spawnId = (await page.getAttribute(row, "data-spawn"))!
      await page.click(`${row} a:has-text("shell-ui")`)
      await page.waitForSelector('h2:has-text("shell-ui")')

      // The line the agent printed at start, relayed from the runner's log.
      await page.waitForSelector('[data-testid="log"]:has-text("agent shell-ui says hello")')
      await page.waitForSelector('[data-testid="terminal-status"]:has-text("attached")')
      await page.click('[data-testid="terminal"]')
      await page.keyboard.type("echo hi")
      await page.keyboard.press("Enter")
      // (The shell's prompt may land before the output: the shell and the pty's echo race.)
      await page.waitForFunction(() =>
        Array.from(document.querySelectorAll('[data-testid="terminal"] .xterm-rows > div')).some((r) => /^(\$ )?hi$/.test(r.textContent?.trim() ?? ""))
      )
      // What the terminal ran is in the live log too.
      await page.waitForFunction(() => (document.querySelector('[data-testid="log"]')?.textContent ?? "").split("\n").some((l) => /^(\$ )?hi$/.test(l.trim())))
      await screenshot(page, "agent-live")

      const api = createBrokerClient({ url: broker.url, token: broker.adminToken })
      const pid = (await api.spawn.get(spawnId)).spawn.pid!
      expect(isAlive(pid)).toBe(true)
      await page.click('button:has-text("Stop agent")')
      await page.waitForSelector('[data-testid="terminal-status"]:has-text("the agent stopped")')
      await page.waitForSelector('[data-testid="log-status"]:has-text("log ended: the agent stopped")')
      await screenshot(page, "agent-stopped")
      await eventually(async () => ((await api.spawn.get(spawnId)).spawn.status === "exited" ? true : undefined), "the spawn exited")
      expect(isAlive(pid)).toBe(false)
      await api.close()
    } finally {
      await runner.stop()
    }
  }, 60_000)

  it("a tenant sees only its own fleet", async () => {
    const acmeToken = await broker.token("acme", "peer")
    const acme = createBrokerClient({ url: broker.url, token: acmeToken })
    const bot = (await acme.peers.register({ name: "acme-bot", host: "acme-host" })).peer
    const acmeChannel = acme.connect(bot.id, { heartbeatInterval: 300 })
    acmeChannel.on("message", () => {})
    const other = await browser.page({ init: FAST_HEARTBEAT })
    await login(other, broker.url, acmeToken)
    await other.waitForSelector('tr[data-peer="acme-bot"]')
    const names = await other.$$eval("tr[data-peer]", (rows) => rows.map((r) => r.getAttribute("data-peer")))
    expect(names.sort()).toEqual(["acme-bot", (await other.textContent('[data-testid="operator"]'))!].sort())
    await other.click('[data-nav="runners"]')
    await other.waitForSelector("text=No runner has connected")
    await other.click('[data-nav="spawns"]')
    await other.waitForSelector("text=No spawns yet")
    // …and the default tenant's page never sees acme's peer.
    await page.click('[data-nav="peers"]')
    await page.waitForSelector('tr[data-peer="gamma"]')
    expect(await page.locator('tr[data-peer="acme-bot"]').count()).toBe(0)
    await other.context().close()
    await acmeChannel.close()
    await acme.close()
  })

  it("works at tablet width and by keyboard", async () => {
    await page.setViewportSize({ width: 820, height: 1180 })
    await page.keyboard.press("Alt+2")
    await page.waitForSelector('[data-nav="conversations"][aria-current="page"]')
    await page.keyboard.press("Alt+1")
    await page.waitForSelector('[data-nav="peers"][aria-current="page"]')
    await screenshot(page, "peers-tablet")
    await page.setViewportSize({ width: 1366, height: 860 })
  })

  it("makes no request outside the broker's origin", () => {
    const outside = browser.requests.filter((url) => !url.startsWith(broker.url) && !url.startsWith("data:") && !url.startsWith("ws://127.0.0.1"))
    expect(browser.requests.length).toBeGreaterThan(0)
    expect(outside).toEqual([])
  })
})
