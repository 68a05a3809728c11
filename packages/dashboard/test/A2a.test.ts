/**
 * The A2A view in a real browser against a real broker: a remote agent on the official
 * `@a2a-js/sdk` server bridged onto the bus shows with its card (description, skills,
 * capabilities, stored credential), and a peer published with `meta.a2a` with its card path.
 */
import type { Page } from "playwright-core"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type RemoteAgent, startRemoteAgent } from "../../broker/test/a2aRemote.js"
import { http, startBroker, type TestBroker } from "../../broker/test/harness.js"
import { type Browser, launch, login, requireBuilt, screenshot } from "./browser.js"

let broker: TestBroker
let remote: RemoteAgent
let browser: Browser
let page: Page

beforeAll(async () => {
  requireBuilt()
  broker = await startBroker()
  remote = await startRemoteAgent("dash-secret", "dash-remote")
  const added = await http(broker, broker.adminToken, "POST", "/api/a2a/agents", { name: "dash-remote", cardUrl: remote.cardUrl, token: "dash-secret" })
  expect(added.status).toBe(201)
  expect((await http(broker, broker.adminToken, "POST", "/api/peers", { name: "published-peer", meta: { a2a: true } })).status).toBe(201)
  browser = await launch()
  page = await browser.page()
})
afterAll(async () => {
  await browser?.close()
  await remote?.close()
  await broker?.close()
})

it("the A2A view shows the bridged agent with its card and the published peer", async () => {
  await login(page, broker.url, broker.adminToken)
  await page.click('[data-nav="a2a"]')
  const card = await page.waitForSelector('[data-agent="dash-remote"]')
  expect(await card.textContent()).toContain("An echo agent on the official A2A SDK")
  expect(await card.textContent()).toContain(remote.cardUrl)
  expect(await card.textContent()).toContain("A2A 1.0")
  expect(await card.textContent()).toContain("streaming")
  expect(await card.textContent()).toContain("stored (encrypted)")
  expect(await (await card.$('[data-testid="skills"]'))!.textContent()).toContain("echo")
  await card.waitForSelector(".badge.online")
  expect(await page.textContent('[data-testid="a2a-published"]')).toContain("/a2a/peers/published-peer/.well-known/agent-card.json")
  expect(await page.content()).not.toContain("dash-secret")
  await screenshot(page, "a2a")
})
