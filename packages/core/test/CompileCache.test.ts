/**
 * The compile cache the bins start through (`CompileCache.run`, src/CompileCache.ts), in real
 * Node processes: a bundle runs as `node bundle.cjs` would (module, exports, require, file names,
 * a dynamic `import()`); the first run writes the cache, the next one starts from it; a changed
 * bundle gets a new file and the old one goes; a file others may write is not read; `off` writes
 * nothing; a server's short run (`atExit: false`) leaves no cache behind.
 */
import { execFileSync } from "node:child_process"
import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs"
import Module from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { describe, expect, it } from "vitest"

const INTERNAL = pathToFileURL(join(import.meta.dirname, "..", "dist", "internal.js")).href
// Node 22.1+ uses its own compile cache instead (the `platform` outcome); this suite is about Node 20's path.
const platformCache = typeof (Module as unknown as { enableCompileCache?: unknown }).enableCompileCache === "function"

// The bundle imports an ES module the way the broker's does (Ui.ts): through the loader's import.
const bundleSource = (marker: string) => `
const path = require("node:path")
const seen = { marker: ${JSON.stringify(marker)}, file: __filename, dir: __dirname, exportsIsModuleExports: exports === module.exports, join: path.join("a", "b") }
const load = globalThis[Symbol.for("@mks/a2a/compile-cache/import")] ?? ((s) => import(s))
load(require("node:url").pathToFileURL(path.join(__dirname, "esm.mjs")).href).then((m) => process.stdout.write(JSON.stringify({ ...seen, esm: m.value }) + "\\n"))
`

/** Runs `bundle` through `CompileCache.run` in a new Node process: what `run` answered and what the bundle printed. */
const outcomeOf = (bundle: string, cache: string, options: { readonly atExit?: boolean } = {}) => {
  const script = `import { CompileCache } from ${JSON.stringify(INTERNAL)}
const outcome = CompileCache.run(${JSON.stringify(bundle)}, "test-bin", ${JSON.stringify(options)})
process.on("exit", () => process.stdout.write("outcome=" + outcome + "\\n"))`
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, A2A_COMPILE_CACHE: cache } }).toString()
  const lines = out.trim().split("\n")
  return { outcome: lines.find((l) => l.startsWith("outcome="))!.slice("outcome=".length), seen: JSON.parse(lines.find((l) => l.startsWith("{"))!) as Record<string, unknown> }
}

const project = (marker: string) => {
  const dir = mkdtempSync(join(tmpdir(), "a2a-compile-cache-test-"))
  writeFileSync(join(dir, "esm.mjs"), "export const value = 42\n")
  const bundle = join(dir, "bundle.cjs")
  writeFileSync(bundle, `#!/usr/bin/env node\n${bundleSource(marker)}`)
  return { dir, bundle, cache: join(dir, "cache") }
}

const cacheFiles = (cache: string) => {
  try {
    return readdirSync(cache).filter((f) => f.endsWith(".v8cache"))
  } catch {
    return []
  }
}

if (platformCache) {
  it("on Node 22.1+ runs the bundle through Node's own compile cache", () => {
    const { dir, bundle, cache } = project("platform")
    expect(outcomeOf(bundle, cache)).toEqual({ outcome: "platform", seen: { marker: "platform", file: bundle, dir, exportsIsModuleExports: true, join: join("a", "b"), esm: 42 } })
  })
} else describe("CompileCache.run", () => {
  it("runs a bundle as node would, writes the cache on the first run and starts from it on the next", () => {
    const { dir, bundle, cache } = project("one")
    const first = outcomeOf(bundle, cache)
    expect(first.seen).toEqual({ marker: "one", file: bundle, dir, exportsIsModuleExports: true, join: join("a", "b"), esm: 42 })
    expect(first.outcome).toBe("none")
    expect(cacheFiles(cache)).toHaveLength(1)
    expect(cacheFiles(cache)[0]).toMatch(/^test-bin-v\d+\.\d+\.\d+-[a-z0-9]+-[0-9a-f]{20}\.v8cache$/)
    const second = outcomeOf(bundle, cache)
    expect(second).toEqual({ outcome: "used", seen: first.seen })
  })

  it("gives a changed bundle its own file and removes the old one", () => {
    const { bundle, cache } = project("before")
    outcomeOf(bundle, cache)
    const [before] = cacheFiles(cache)
    writeFileSync(bundle, bundleSource("after")) // same length or not, a different content
    const changed = outcomeOf(bundle, cache)
    expect(changed.outcome).toBe("none")
    expect(changed.seen.marker).toBe("after")
    const after = cacheFiles(cache)
    expect(after).toHaveLength(1)
    expect(after[0]).not.toBe(before)
    expect(outcomeOf(bundle, cache).outcome).toBe("used")
  })

  it("does not read a cache file that others may write, and replaces it with one of its own", () => {
    const { bundle, cache } = project("mode")
    outcomeOf(bundle, cache)
    const [file] = cacheFiles(cache)
    chmodSync(join(cache, file!), 0o666)
    expect(outcomeOf(bundle, cache).outcome).toBe("none")
    expect(outcomeOf(bundle, cache).outcome).toBe("used")
  })

  it("treats a file V8 refuses (not a code cache) as none: the bundle still runs and the file is rewritten", () => {
    const { bundle, cache } = project("garbage")
    outcomeOf(bundle, cache)
    const [file] = cacheFiles(cache)
    writeFileSync(join(cache, file!), Buffer.alloc(4096, 7), { mode: 0o600 })
    const refused = outcomeOf(bundle, cache)
    expect(refused.outcome).toBe("rejected")
    expect(refused.seen.marker).toBe("garbage")
    expect(outcomeOf(bundle, cache).outcome).toBe("used")
  })

  it("writes nothing when off, and a server's short run (atExit: false) leaves no cache", () => {
    const { bundle, cache } = project("off")
    expect(outcomeOf(bundle, "off").outcome).toBe("off")
    expect(outcomeOf(bundle, cache, { atExit: false }).outcome).toBe("none")
    expect(cacheFiles(cache)).toEqual([])
  })
})
