#!/usr/bin/env node
// `npm start`: check the configuration, rebuild only the packages whose inputs changed (quietly:
// a build's output shows only when it fails), then run `a2a up` in this very process, so
// SIGINT/SIGTERM sent to npm reach the stack (npm forwards them to its child; `sh -c` execs a
// single command) and Ctrl-C prints the "stopped" line.
//
// A package is up to date when `dist/.inputs` holds the hash of its inputs: every file of the
// package but dist/, node_modules/, test/, test-results/ and *.md, the root's tsconfig.base.json, and the hashes
// of the workspace packages it depends on (a changed core rebuilds what builds against it).
// Flags go to `a2a up` (npm start -- --port 4311). `--rebuild` rebuilds everything first.
// `--stamp` (run by `npm run build` after it built everything) only records the hashes.
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const args = process.argv.slice(2).filter((a) => a !== "--rebuild" && a !== "--stamp")
const rebuildAll = process.argv.includes("--rebuild")
const cli = join(root, "packages", "cli", "dist", "cli.js")
// test-results/: what browser tests leave behind (gitignored), not an input.
const SKIP = new Set(["dist", "node_modules", "test", "test-results", ".turbo"])

const say = (line) => process.stderr.write(`npm start: ${line}\n`)

/** Run a command quietly; its output is shown only when it fails. */
const quiet = (cmd, argv, cwd) =>
  new Promise((resolve) => {
    const child = spawn(cmd, argv, { cwd, stdio: ["ignore", "pipe", "pipe"] })
    const out = []
    child.stdout.on("data", (d) => out.push(d))
    child.stderr.on("data", (d) => out.push(d))
    child.once("error", (e) => resolve({ code: 1, output: String(e.message) }))
    child.once("close", (code) => resolve({ code, output: Buffer.concat(out).toString() }))
  })

const files = (dir, prefix = "") =>
  readdirSync(dir, { withFileTypes: true })
    .filter((e) => !SKIP.has(e.name) && !(e.isFile() && e.name.endsWith(".md")))
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name), `${prefix}${e.name}/`) : e.isFile() ? [`${prefix}${e.name}`] : []))

// The workspace packages with a build, in dependency order.
const workspaces = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).workspaces
const manifests = new Map(workspaces.map((ws) => [ws, JSON.parse(readFileSync(join(root, ws, "package.json"), "utf8"))]))
const byName = new Map([...manifests].map(([ws, m]) => [m.name, ws]))
const depsOf = (ws) => {
  const m = manifests.get(ws)
  return Object.keys({ ...m.dependencies, ...m.devDependencies, ...m.peerDependencies }).filter((n) => byName.has(n)).map((n) => byName.get(n))
}
const order = []
const visit = (ws, seen = new Set()) => {
  if (order.includes(ws) || seen.has(ws)) return
  seen.add(ws)
  for (const dep of depsOf(ws)) visit(dep, seen)
  order.push(ws)
}
for (const ws of workspaces) visit(ws)

const base = readFileSync(join(root, "tsconfig.base.json"))
const hashes = new Map()
const stale = []
for (const ws of order) {
  const dir = join(root, ws)
  const hash = createHash("sha256").update(base)
  for (const f of files(dir)) hash.update(`${f}\0`).update(readFileSync(join(dir, f))).update("\0")
  for (const dep of depsOf(ws)) hash.update(`${dep}=${hashes.get(dep)}\0`)
  hashes.set(ws, hash.digest("hex"))
  if (manifests.get(ws).scripts?.build === undefined) continue
  const stamp = join(dir, "dist", ".inputs")
  if (rebuildAll || !existsSync(stamp) || readFileSync(stamp, "utf8").trim() !== hashes.get(ws)) stale.push(ws)
}

if (process.argv.includes("--stamp")) {
  for (const ws of order) {
    if (manifests.get(ws).scripts?.build !== undefined && existsSync(join(root, ws, "dist"))) writeFileSync(join(root, ws, "dist", ".inputs"), hashes.get(ws) + "\n")
  }
  process.exit(0)
}

// Configuration first: with a previous build, a config error shows before any rebuild.
if (stale.length > 0 && existsSync(cli)) {
  const { code, output } = await quiet(process.execPath, [cli, "up", "--check-config", ...args], root)
  if (code !== 0) {
    process.stderr.write(output)
    process.exit(code ?? 1)
  }
}

if (stale.length > 0) {
  say(`building ${stale.map((ws) => ws.replace(/^packages\//, "")).join(", ")}…`)
  for (const ws of stale) {
    const { code, output } = await quiet("npm", ["run", "build", "--silent"], join(root, ws))
    if (code !== 0) {
      process.stderr.write(output)
      say(`the build of ${ws} failed (above); nothing started`)
      process.exit(1)
    }
    writeFileSync(join(root, ws, "dist", ".inputs"), hashes.get(ws) + "\n")
  }
}

// The stack, in this process.
process.argv = [process.argv[0], cli, "up", ...args]
await import(cli)
