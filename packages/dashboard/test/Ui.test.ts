/**
 * The broker's `/ui` piece (packages/broker/src/Ui.ts) over real HTTP: the built dashboard with
 * content types and caching, client routes to index.html, missing assets and path tricks
 * refused, and a clear 404 when the dashboard package is missing or not built.
 */
import { HttpApp } from "@effect/platform"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { watch } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Ui from "../../broker/src/Ui.js"
import { startBroker, startBrokerProcess, type TestBroker } from "../../broker/test/harness.js"
import { distDir } from "../index.js"
import { requireBuilt } from "./browser.js"

describe("Ui: the dashboard at /ui", () => {
  let broker: TestBroker
  beforeAll(async () => {
    requireBuilt()
    broker = await startBroker()
  })
  afterAll(async () => {
    await broker?.close()
  })

  it("serves index.html for /ui, /ui/ and client routes, without auth, never cached", async () => {
    for (const path of ["/ui", "/ui/", "/ui/peers", "/ui/agents/p_123?x=1"]) {
      const res = await fetch(broker.url + path)
      expect(res.status, path).toBe(200)
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8")
      expect(res.headers.get("cache-control")).toBe("no-cache")
      expect(res.headers.get("content-security-policy")).toContain("default-src 'self'")
      expect(await res.text()).toContain('<div id="app">')
    }
  })

  it("leaves the rest of the broker as it was: open health, authenticated API, unknown paths 404", async () => {
    expect((await fetch(`${broker.url}/healthz`)).status).toBe(200)
    expect((await fetch(`${broker.url}/api/peers`)).status).toBe(401)
    expect((await fetch(`${broker.url}/api/peers`, { headers: { authorization: `Bearer ${broker.adminToken}` } })).status).toBe(200)
    expect((await fetch(`${broker.url}/uix`)).status).toBe(404)
  })

  it("serves hashed assets with their content type and immutable caching", async () => {
    const html = await (await fetch(`${broker.url}/ui/`)).text()
    const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(html)?.[1]
    const style = /href="(\/ui\/assets\/[^"]+\.css)"/.exec(html)?.[1]
    expect(script).toBeDefined()
    expect(style).toBeDefined()
    const js = await fetch(broker.url + script)
    expect(js.status).toBe(200)
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
    const css = await fetch(broker.url + style)
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8")
    // Everything is bundled: no reference to another origin in the page or its code.
    expect(await js.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org\/)/)
    expect(html).not.toMatch(/https?:\/\//)
  })

  it("answers a missing asset with a 404 JSON error, and never leaves the dist directory", async () => {
    const missing = await fetch(`${broker.url}/ui/assets/nope-123.js`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ _tag: "AssetNotFound", path: "assets/nope-123.js" })
    for (const path of ["/ui/..%2f..%2fpackage.json", "/ui/%2e%2e/%2e%2e/package.json", "/ui/assets/..%2f..%2f..%2fpackage.json"]) {
      const res = await fetch(broker.url + path)
      const text = await res.text()
      expect(text, path).not.toContain('"name": "@mks/a2a-dashboard"')
    }
  })

  it("resolves raw dot-dot paths inside the dist directory, never outside", async () => {
    for (const path of ["/ui/../package.json", "/ui/../../broker/package.json", "/ui/assets/../../index.js", "/ui/%00"]) {
      const response = await Effect.runPromise(Ui.serveFrom(distDir, path))
      const body = new TextDecoder().decode((response.body as { body: Uint8Array }).body)
      // The files outside (the package's index.js and package.json) never come back.
      expect(body, path).not.toMatch(/fileURLToPath|"name":/)
      expect(response.status === 200 ? body : "index", path).toContain(response.status === 200 ? '<div id="app">' : "index")
    }
  })

  it("answers 404 DashboardNotInstalled when the package is missing or not built", async () => {
    const absent = HttpApp.toWebHandler(Ui.makeHandler("@mks/no-such-dashboard"))
    const res = await absent(new Request("http://127.0.0.1/ui/"))
    expect(res.status).toBe(404)
    const body = (await res.json()) as { _tag: string; message: string }
    expect(body._tag).toBe("DashboardNotInstalled")
    expect(body.message).toContain("@mks/no-such-dashboard is not installed")

    // A package that exists but has no build.
    const root = mkdtempSync(join(tmpdir(), "a2a-ui-"))
    try {
      mkdirSync(join(root, "dist"))
      writeFileSync(join(root, "index.js"), `export const distDir = ${JSON.stringify(join(root, "dist"))}\n`)
      const unbuilt = HttpApp.toWebHandler(Ui.makeHandler(join(root, "index.js")))
      const answer = await unbuilt(new Request("http://127.0.0.1/ui/"))
      expect(answer.status).toBe(404)
      expect(await answer.json()).toMatchObject({ _tag: "DashboardNotInstalled", message: expect.stringContaining("is not built") })
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  it("finds the built dashboard through the package's distDir export", async () => {
    expect(await Ui.locate()).toEqual({ distDir })
  })

  it("is served by the a2a-broker bin too, also when the bin starts from its compile cache (no import() inside the cached bundle)", async () => {
    const cache = mkdtempSync(join(tmpdir(), "a2a-ui-compile-cache-"))
    const cacheFile = async () => {
      // The bin writes its cache 2 s after start; watch the directory until the file is there.
      const present = () => readdirSync(cache).find((f) => f.endsWith(".v8cache"))
      const abort = new AbortController()
      const events = watch(cache, { signal: abort.signal }) // before the first look: no event missed
      try {
        if (present() !== undefined) return present()!
        for await (const _ of events) if (present() !== undefined) return present()!
      } finally {
        abort.abort()
      }
      throw new Error("the cache directory's watcher ended")
    }
    const serveUi = async () => {
      const home = mkdtempSync(join(tmpdir(), "a2a-ui-bin-"))
      const bin = await startBrokerProcess(home, [], { A2A_COMPILE_CACHE: cache })
      try {
        const res = await fetch(`${bin.url}/ui/`)
        expect(res.status).toBe(200)
        expect(await res.text()).toContain('<div id="app">')
        return bin
      } catch (e) {
        bin.child.kill("SIGKILL")
        throw e
      }
    }
    try {
      const first = await serveUi() // compiles the bundle, then writes the cache
      const file = await cacheFile()
      first.child.kill("SIGTERM")
      await first.exited
      const written = statSync(join(cache, file)).mtimeMs
      const second = await serveUi() // from the cache
      second.child.kill("SIGTERM")
      await second.exited
      // A cache V8 used is not written again.
      expect(readdirSync(cache).filter((f) => f.endsWith(".v8cache"))).toEqual([file])
      expect(statSync(join(cache, file)).mtimeMs).toBe(written)
    } finally {
      rmSync(cache, { recursive: true, force: true })
    }
  })
})
