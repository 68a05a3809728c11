#!/usr/bin/env node
/**
 * `npm run docs:cli` (after `npm run build`: the specs import the built packages): writes the flag and environment tables of every bin into docs/, between
 * the markers of `CliSpec.markers` (core), from each bin's `src/CliSpec.ts` — the same spec its
 * `--help` and argument parser use. `--check` changes nothing and exits 1 when a page is out of
 * date (the CliSpecs test checks the same).
 */
import { build } from "esbuild" // tsup's own bundler, installed with it
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"

const root = join(import.meta.dirname, "..")
/** Each bin's spec and the page that documents it. */
export const BINS = [
  { pkg: "broker", doc: "docs/broker.md" },
  { pkg: "proxy", doc: "docs/proxy.md" },
  { pkg: "runner", doc: "docs/runner.md" },
  { pkg: "mcp", doc: "docs/mcp.md" },
  { pkg: "cli", doc: "docs/cli.md" }
]

// Inside the repository, so the bundle's external imports (effect, @mks/a2a, …) resolve from its node_modules.
mkdirSync(join(root, "node_modules", ".cache"), { recursive: true })
const dir = mkdtempSync(join(root, "node_modules", ".cache", "a2a-cli-docs-"))
try {
  const entry = [
    `export * as CliSpec from ${JSON.stringify(join(root, "packages/core/src/CliSpec.ts"))}`,
    ...BINS.map((b) => `export { spec as ${b.pkg} } from ${JSON.stringify(join(root, "packages", b.pkg, "src/CliSpec.ts"))}`)
  ].join("\n")
  const out = join(dir, "specs.mjs")
  await build({ stdin: { contents: entry, resolveDir: root, loader: "ts" }, bundle: true, packages: "external", platform: "node", format: "esm", outfile: out, logLevel: "error" })
  const specs = await import(pathToFileURL(out).href)
  const check = process.argv.includes("--check")
  let stale = 0
  for (const b of BINS) {
    const path = join(root, b.doc)
    const doc = readFileSync(path, "utf8")
    const next = specs.CliSpec.updateDoc(doc, specs[b.pkg])
    if (next === undefined) {
      process.stderr.write(`${b.doc}: no markers for ${specs[b.pkg].bin} (${specs.CliSpec.markers(specs[b.pkg].bin).join(" … ")})\n`)
      stale++
    } else if (next !== doc) {
      stale++
      if (check) process.stderr.write(`${b.doc}: the ${specs[b.pkg].bin} tables are out of date (npm run docs:cli)\n`)
      else {
        writeFileSync(path, next)
        process.stdout.write(`${b.doc}: ${specs[b.pkg].bin} tables written\n`)
      }
    }
  }
  if (check && stale > 0) process.exitCode = 1
} finally {
  rmSync(dir, { recursive: true, force: true })
}
