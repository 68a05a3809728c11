/**
 * The Tasks view in a real browser (Debian chromium via playwright-core) against a real broker
 * in this process: a team's board in columns by state, kept current by the channel's `task`
 * events (a task created over HTTP by another client appears, moves to claimed and done as a
 * peer claims and completes it, with no list request in between), and create, cancel and
 * reassign from the page. Screenshots go to packages/dashboard/test-results/.
 */
import { createBrokerClient, type PromiseClient } from "@mks/a2a"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type TestBroker } from "../../broker/test/harness.js"
import { launch, login, requireBuilt, screenshot, type Browser } from "./browser.js"

const card = (state: string, id: string) => `[data-testid="board"] [data-column="${state}"] li[data-task="${id}"][data-state="${state}"]`

describe("the task board in chromium", () => {
  let broker: TestBroker
  let browser: Browser
  let page: Page
  /** The admin's client: the worker peer claims and completes with it. */
  let admin: PromiseClient.PromiseBrokerClient
  /** Another client (a peer token of the tenant) that puts tasks on the board. */
  let planner: PromiseClient.PromiseBrokerClient
  let worker: { id: string; name: string }
  let plannerPeer: { id: string }
  const closers: Array<() => Promise<unknown>> = []
  /** Task list requests the page made so far. */
  const listRequests = () => browser.requests.filter((url) => new URL(url).pathname === "/api/tasks").length

  beforeAll(async () => {
    requireBuilt()
    broker = await startBroker()
    browser = await launch()
    page = await browser.page()
    admin = createBrokerClient({ url: broker.url, token: broker.adminToken })
    planner = createBrokerClient({ url: broker.url, token: await broker.token("default", "peer") })
    await admin.teams.create({ name: "crew", description: "the release crew" })
    worker = (await admin.peers.register({ name: "worker-1", agent: "claude-code", host: "box-w", teams: ["crew"] })).peer
    plannerPeer = (await planner.peers.register({ name: "planner-bot", agent: "script", host: "box-p", teams: ["crew"] })).peer
    // Both stay online with their channels.
    for (const [client, id] of [[admin, worker.id], [planner, plannerPeer.id]] as const) {
      const channel = client.connect(id, { heartbeatInterval: 1_000, autoAck: true })
      channel.on("message", () => {})
      closers.push(() => channel.close())
    }
  })

  afterAll(async () => {
    for (const close of closers) await close().catch(() => undefined)
    await admin?.close()
    await planner?.close()
    await browser?.close()
    await broker?.close()
  })

  it("shows a team's board in columns by state; a board of another team is polled until the operator joins it", async () => {
    const seed = (await planner.tasks.create({ team: "crew", title: "Seed the changelog", body: "from the last tag", priority: 1, labels: ["docs"], peer: plannerPeer.id })).task
    const held = (await planner.tasks.create({ team: "crew", title: "Bump versions", peer: plannerPeer.id })).task
    await admin.tasks.claim(held.id, { peer: worker.id })

    await login(page, broker.url, broker.adminToken)
    await page.click('[data-nav="tasks"]')
    await page.waitForSelector('[data-testid="board"][data-team="crew"]')
    await page.waitForSelector(card("open", seed.id))
    await page.waitForSelector(card("claimed", held.id))
    expect(await page.textContent(card("open", seed.id))).toContain("Seed the changelog")
    expect(await page.textContent(card("open", seed.id))).toContain("docs")
    expect(await page.textContent(card("open", seed.id))).toContain("by planner-bot")
    expect(await page.textContent(card("claimed", held.id))).toContain("held by worker-1")
    expect(await page.$$eval("[data-column]", (columns) => columns.map((c) => c.getAttribute("data-column")))).toEqual(["open", "claimed", "done", "failed", "cancelled"])

    // The operator is not in crew, so the broker pushes it nothing of crew: the board is listed again and again.
    await page.waitForSelector('[data-testid="board-live"][data-live="polling"]')
    const polled = listRequests()
    const third = (await planner.tasks.create({ team: "crew", title: "Found by polling", peer: plannerPeer.id })).task
    await page.waitForSelector(card("open", third.id), { timeout: 15_000 })
    expect(listRequests()).toBeGreaterThan(polled)
    await screenshot(page, "tasks-polling")

    await page.click('[data-testid="board-live"] button:has-text("Join crew")')
    await page.waitForSelector('[data-testid="board-live"][data-live="events"]')
  })

  it("a task created over HTTP by another client appears live, and moves to claimed and done as a peer claims and completes it", async () => {
    const before = listRequests()
    const task = (await planner.tasks.create({ team: "crew", title: "Write the release notes", body: "what changed since 1.2", priority: 5, labels: ["docs", "release"], peer: plannerPeer.id })).task
    await page.waitForSelector(card("open", task.id), { timeout: 5_000 })
    // Highest priority first in the open column.
    expect(await page.$$eval('[data-column="open"] li[data-task]', (cards) => cards[0]?.getAttribute("data-task"))).toBe(task.id)

    const claimed = (await admin.tasks.claimNext({ team: "crew", peer: worker.id })).task
    expect(claimed?.id).toBe(task.id)
    await page.waitForSelector(card("claimed", task.id), { timeout: 5_000 })
    expect(await page.locator(`[data-column="open"] li[data-task="${task.id}"]`).count()).toBe(0)
    expect(await page.textContent(`${card("claimed", task.id)} [data-testid="assignee"]`)).toBe("held by worker-1")
    await screenshot(page, "tasks-claimed")

    await admin.tasks.complete(task.id, { peer: worker.id, result: "Notes are in NOTES.md" })
    await page.waitForSelector(card("done", task.id), { timeout: 5_000 })
    expect(await page.textContent(`${card("done", task.id)} [data-testid="result"]`)).toContain("Notes are in NOTES.md")
    expect(await page.textContent(`${card("done", task.id)} [data-testid="assignee"]`)).toBe("by worker-1")
    // Every change came on the channel: the page did not list the board again.
    expect(listRequests()).toBe(before)
    await screenshot(page, "tasks")
  })

  it("creates, cancels and reassigns tasks from the page", async () => {
    const operatorName = (await page.textContent('[data-testid="operator"]'))!
    const operator = (await admin.peers.list()).peers.find((p) => p.name === operatorName)!

    await page.fill('input[name="task-title"]', "Review the dashboard copy")
    await page.fill('input[name="task-priority"]', "3")
    await page.fill('input[name="task-labels"]', "ui, review")
    await page.fill('textarea[name="task-body"]', "Every view, at tablet width too.")
    await page.click('form[aria-label="Create a task on crew"] button[type="submit"]')
    const created = await page.waitForSelector('[data-column="open"] li[data-title="Review the dashboard copy"]')
    const id = (await created.getAttribute("data-task"))!
    expect((await admin.tasks.get(id)).task).toMatchObject({ team: "crew", priority: 3, labels: ["ui", "review"], body: "Every view, at tablet width too.", createdBy: operator.id, state: "open" })
    // The form is empty again.
    expect(await page.inputValue('input[name="task-title"]')).toBe("")

    // The form does not send a priority that is not a whole number.
    await page.fill('input[name="task-title"]', "Bad priority")
    await page.fill('input[name="task-priority"]', "1.5")
    await page.click('form[aria-label="Create a task on crew"] button[type="submit"]')
    expect(await page.locator('li[data-title="Bad priority"]').count()).toBe(0)
    await page.fill('input[name="task-title"]', "")
    await page.fill('input[name="task-priority"]', "0")

    // Reassign to the worker: it holds the task (a fresh lease), then back to open.
    await page.selectOption(`li[data-task="${id}"] select[name="reassign-to"]`, worker.id)
    await page.click(`li[data-task="${id}"] button:has-text("Reassign")`)
    await page.waitForSelector(card("claimed", id))
    expect(await page.textContent(`${card("claimed", id)} [data-testid="assignee"]`)).toBe("held by worker-1")
    expect((await admin.tasks.get(id)).task).toMatchObject({ state: "claimed", assignee: worker.id, attempts: 1 })
    await page.selectOption(`li[data-task="${id}"] select[name="reassign-to"]`, "")
    await page.click(`li[data-task="${id}"] button:has-text("Reassign")`)
    await page.waitForSelector(card("open", id))
    expect((await admin.tasks.get(id)).task.state).toBe("open")

    // Cancel: it moves to the cancelled column, and the broker agrees.
    await page.click(`li[data-task="${id}"] button:has-text("Cancel")`)
    await page.waitForSelector(card("cancelled", id))
    expect((await admin.tasks.get(id)).task.state).toBe("cancelled")
    expect(await page.locator(`${card("cancelled", id)} button`).count()).toBe(0)

    // A task someone else cancels moves too (a `cancelled` event).
    const other = (await planner.tasks.create({ team: "crew", title: "Withdrawn by its creator", peer: plannerPeer.id })).task
    await page.waitForSelector(card("open", other.id))
    await planner.tasks.cancel(other.id, { reason: "not needed" })
    await page.waitForSelector(card("cancelled", other.id))
    expect(await page.textContent(card("cancelled", other.id))).toContain("not needed")
    await screenshot(page, "tasks-actions")

    // By keyboard (Alt+7) and at tablet width: the columns scroll sideways, every card is there.
    await page.keyboard.press("Alt+1")
    await page.waitForSelector('[data-nav="peers"][aria-current="page"]')
    await page.keyboard.press("Alt+7")
    await page.waitForSelector('[data-nav="tasks"][aria-current="page"]')
    await page.waitForSelector(card("cancelled", other.id))
    await page.setViewportSize({ width: 820, height: 1180 })
    await screenshot(page, "tasks-tablet")
    await page.setViewportSize({ width: 1366, height: 860 })
  })

  it("a peer that may not cancel gets the broker's refusal on the page", async () => {
    // A second dashboard with a plain peer token: it did not create the task and is no admin.
    const task = (await admin.tasks.create({ team: "crew", title: "Only the admin may withdraw this" })).task
    const other = await browser.page()
    await login(other, broker.url, await broker.token("default", "peer"))
    await other.goto(`${broker.url}/ui/tasks?team=crew`)
    await other.waitForSelector(card("open", task.id))
    await other.click(`li[data-task="${task.id}"] button:has-text("Cancel")`)
    expect(await (await other.waitForSelector('[data-testid="notice"].error')).textContent()).toContain("Forbidden")
    expect((await admin.tasks.get(task.id)).task.state).toBe("open")
    expect(await other.locator(card("open", task.id)).count()).toBe(1)
    await other.context().close()
  })
})
