#!/usr/bin/env node
// CI: are the packages publishable? Packs every non-private workspace package (from the build
// that is there), installs the tarballs into an empty project (the registry serves only the
// third-party dependencies), then uses what was installed as a stranger would: `a2a up`,
// `a2a peers`, `a2a-mcp` under an MCP SDK client that lists its tools, `a2a-mcp --print-config`,
// and imports of `@mks/a2a` and `@mks/a2a/client`; then `@mks/a2a` alone in two more empty
// projects (no native module, no server package; one copy of a host app's effect). Everything
// runs with an empty HOME.
// Usage: node .ci/pack-check.mjs [--keep]   (--keep leaves the temporary directory for a look)
import { execFileSync, spawn } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const work = mkdtempSync(join(tmpdir(), "a2a-pack-"))
const home = join(work, "home")
const project = join(work, "project")
const packs = join(work, "packs")
for (const dir of [home, project, packs]) mkdirSync(dir, { recursive: true })
const started = Date.now()
const step = (what) => process.stdout.write(`pack-check: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
const children = []
const fail = (message) => {
  process.stderr.write(`pack-check: FAILED: ${message}\n`)
  cleanup()
  process.exit(1)
}
const cleanup = () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM")
  if (!process.argv.includes("--keep")) rmSync(work, { recursive: true, force: true })
  else process.stdout.write(`pack-check: kept ${work}\n`)
}
// The stranger's environment: an empty HOME. This machine's npm cache and Node headers (nodedir,
// for native dependencies that compile) stay where they are: they are caches, not user state.
const npmConfig = (key) => execFileSync("npm", ["config", "get", key], { cwd: root }).toString().trim()
const env = { PATH: process.env.PATH, HOME: home, npm_config_cache: npmConfig("cache"), npm_config_update_notifier: "false" }
const nodedir = npmConfig("nodedir")
if (nodedir !== "" && nodedir !== "undefined") env.npm_config_nodedir = nodedir
const run = (cmd, args, options = {}) => {
  try {
    return execFileSync(cmd, args, { cwd: project, env, stdio: ["ignore", "pipe", "pipe"], timeout: 300_000, ...options }).toString()
  } catch (e) {
    fail(`${cmd} ${args.join(" ")}: ${String(e.stderr ?? e.message).trim().split("\n").slice(-15).join("\n")}`)
  }
}

// 1. Pack every package that is meant to be published.
const workspaces = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).workspaces
const published = workspaces.filter((ws) => JSON.parse(readFileSync(join(root, ws, "package.json"), "utf8")).private !== true)
run("npm", ["pack", "--silent", "--pack-destination", packs, ...published.flatMap((ws) => ["-w", ws])], { cwd: root })
const tarballs = readdirSync(packs).filter((f) => f.endsWith(".tgz")).map((f) => join(packs, f))
if (tarballs.length !== published.length) fail(`expected ${published.length} tarballs, got ${tarballs.length}`)
for (const tarball of tarballs) {
  const files = execFileSync("tar", ["-tzf", tarball]).toString()
  if (/package\/(src|test)\//.test(files)) fail(`${tarball} ships sources or tests`)
}
step(`packed ${tarballs.length} packages`)

// 2. An empty project installs them; only third-party dependencies come from the registry.
writeFileSync(join(project, "package.json"), JSON.stringify({ name: "stranger", private: true, type: "module" }, null, 2))
// Install scripts are skipped, then run for the native dependencies: compiling SQLite takes
// minutes on a loaded CI machine, so a native package of exactly the version the repository's
// install already built (same Node, same machine) gets that build copied; any other is rebuilt.
run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", "--loglevel=error", ...tarballs])
const versionOf = (dir) => (existsSync(join(dir, "package.json")) ? JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version : undefined)
for (const native of ["better-sqlite3", "node-pty"]) {
  const mine = join(project, "node_modules", native)
  const theirs = join(root, "node_modules", native)
  if (versionOf(mine) === undefined) continue
  if (versionOf(mine) === versionOf(theirs) && existsSync(join(theirs, "build"))) cpSync(join(theirs, "build"), join(mine, "build"), { recursive: true })
  else run("npm", ["rebuild", "--loglevel=error", native])
}
step("installed the tarballs into an empty project")
const bin = (name) => join(project, "node_modules", ".bin", name)

// 3. Imports of the SDK entries.
run(process.execPath, ["--input-type=module", "-e", `
  const core = await import("@mks/a2a"); const client = await import("@mks/a2a/client")
  if (typeof core.BrokerClient !== "object" || Object.keys(client).length === 0) { console.error("empty exports"); process.exit(1) }
`])
step("imported @mks/a2a and @mks/a2a/client")

// 4. `a2a up` on free ports, then `a2a peers` finds it without being told where.
const freePort = () => new Promise((resolve) => {
  const s = createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)) })
})
const [brokerPort, runnerPort] = [await freePort(), await freePort()]
const up = spawn(bin("a2a"), ["up", "--port", String(brokerPort), "--runner-port", String(runnerPort)], { cwd: project, env, stdio: ["ignore", "pipe", "pipe"] })
children.push(up)
let upOut = ""
up.stdout.on("data", (d) => (upOut += d))
up.stderr.on("data", (d) => (upOut += d))
await new Promise((resolve) => {
  const deadline = setTimeout(() => fail(`a2a up printed no summary within 120 s:\n${upOut}`), 120_000)
  const check = () => {
    if (upOut.includes("Ctrl-C stops everything")) { clearTimeout(deadline); resolve() }
  }
  up.stdout.on("data", check)
  up.once("exit", (code) => fail(`a2a up exited with ${code}:\n${upOut}`))
})
step(`a2a up is ready on port ${brokerPort}`)
const peers = run(bin("a2a"), ["peers", "--json"])
if (!Array.isArray(JSON.parse(peers))) fail(`a2a peers --json printed ${peers}`)
step("a2a peers")

// 5. `a2a-mcp --print-config` prints a command that runs what is installed; an MCP client lists the tools.
const printed = JSON.parse(run(bin("a2a-mcp"), ["--print-config", "claude"], { env: { ...env, A2A_BROKER_URL: `http://127.0.0.1:${brokerPort}` } })).mcpServers.a2a
if (printed.command === "npx") fail(`--print-config of an installed package printed npx (the package may not be on any registry)`)
writeFileSync(join(project, "mcp-check.mjs"), `
  import { Client } from "@modelcontextprotocol/sdk/client/index.js"
  import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
  const printed = JSON.parse(process.argv[2])
  const transport = new StdioClientTransport({ command: printed.command, args: printed.args, env: { ...process.env, ...printed.env }, stderr: "inherit" })
  const client = new Client({ name: "pack-check", version: "0" })
  await client.connect(transport)
  const { tools } = await client.listTools()
  console.log(JSON.stringify(tools.map((t) => t.name)))
  await client.close()
`)
const tools = JSON.parse(run(process.execPath, ["mcp-check.mjs", JSON.stringify(printed)], { timeout: 120_000 }))
for (const name of ["whoami", "list_peers", "send_peer_message", "spawn_peer"]) if (!tools.includes(name)) fail(`a2a-mcp lists no ${name} tool: ${tools.join(", ")}`)
step(`a2a-mcp (as printed by --print-config) lists ${tools.length} tools under an MCP SDK client`)

// 6. Ctrl-C stops the stack with a last line.
up.kill("SIGINT")
const code = await new Promise((resolve) => {
  up.removeAllListeners("exit")
  up.once("exit", resolve)
  setTimeout(() => resolve("timeout"), 60_000).unref()
})
if (code !== 0) fail(`a2a up exited with ${code} after SIGINT:\n${upOut}`)

// 7. A client-only install: `@mks/a2a` alone (the core tarball; its peers effect and
// @effect/platform from the registry) pulls in nothing native and nothing of the servers, and
// a host app that has its own effect still has exactly one copy of it.
const coreTarball = tarballs.find((t) => /[\/]mks-a2a-\d[^/\\]*\.tgz$/.test(t))
if (coreTarball === undefined) fail(`no core tarball among ${tarballs.join(", ")}`)
const serverPackages = new Set([
  "@mks/a2a-broker", "@mks/a2a-proxy", "@mks/a2a-runner", "@mks/a2a-mcp", "@mks/a2a-cli", "@mks/a2a-dashboard", "@mks/a2a-testing",
  "pg", "pg-native", "better-sqlite3", "node-pty", "@modelcontextprotocol/sdk", "@a2a-js/sdk",
  "@effect/platform-node", "@effect/sql", "@effect/sql-pg", "@effect/sql-sqlite-node"
])
/** Every installed package under `dir`/node_modules (nested ones too): [name, its directory]. */
const installed = (dir) => {
  const found = []
  const walk = (modules) => {
    if (!existsSync(modules)) return
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith(".")) continue
      const names = entry.startsWith("@") ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry]
      for (const name of names) {
        const pkg = join(modules, name)
        if (!existsSync(join(pkg, "package.json"))) continue
        found.push([JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).name ?? name, pkg])
        walk(join(pkg, "node_modules"))
      }
    }
  }
  walk(join(dir, "node_modules"))
  return found
}
/** Files of a native module anywhere under `dir`: build recipes and compiled addons. */
const nativeFiles = (dir) => {
  const found = []
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name === "binding.gyp" || entry.name.endsWith(".node")) found.push(path)
    }
  }
  walk(dir)
  return found
}
const freshProject = (name, manifest) => {
  const dir = join(work, name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module", ...manifest }, null, 2))
  return dir
}
const npmInstall = (dir, args) => run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...args], { cwd: dir })

const clientOnly = freshProject("client-only", {})
npmInstall(clientOnly, [coreTarball])
const clientPackages = installed(clientOnly)
const servers = clientPackages.filter(([name]) => serverPackages.has(name)).map(([name]) => name)
if (servers.length > 0) fail(`installing @mks/a2a alone pulled server packages: ${[...new Set(servers)].join(", ")}`)
// One exception, not ours: the peer @effect/platform depends on msgpackr, whose optional
// dependency msgpackr-extract ships prebuilt addons (msgpackr works without it, in plain JS, and
// `npm install --omit=optional` leaves it out). Tolerated only while it stays optional.
const optionalNative = (name) => name === "msgpackr-extract" || name.startsWith("@msgpackr-extract/")
const ownerOf = (file) => {
  const rest = file.split(`${"node_modules"}/`).at(-1).split("/")
  return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]
}
const optionalOf = new Set(clientPackages.flatMap(([, dir]) => Object.keys(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).optionalDependencies ?? {})))
const allNative = nativeFiles(join(clientOnly, "node_modules"))
const native = allNative.filter((file) => !(optionalNative(ownerOf(file)) && optionalOf.has(ownerOf(file))))
if (native.length > 0) fail(`installing @mks/a2a alone pulled native modules: ${native.join(", ")}`)
const tolerated = [...new Set(allNative.map(ownerOf))]
for (const peer of ["effect", "@effect/platform"]) if (!clientPackages.some(([name]) => name === peer)) fail(`installing @mks/a2a alone did not install its peer ${peer}`)
run(process.execPath, ["--input-type=module", "-e", `
  const core = await import("@mks/a2a"); const client = await import("@mks/a2a/client")
  if (typeof core.BrokerClient !== "object" || typeof client.createBrokerClient !== "function") { console.error("empty exports"); process.exit(1) }
`], { cwd: clientOnly })
step(`@mks/a2a alone: ${clientPackages.length} packages, no server package, no native module${tolerated.length > 0 ? ` but the optional ${tolerated.join(", ")} (of the peer @effect/platform)` : ""}`)

const effectVersion = versionOf(join(root, "node_modules", "effect"))
const host = freshProject("host-app", {})
npmInstall(host, [`effect@${effectVersion}`])
npmInstall(host, [coreTarball])
const effects = installed(host).filter(([name]) => name === "effect")
if (effects.length !== 1) fail(`a host app with its own effect has ${effects.length} copies of effect: ${effects.map(([, dir]) => dir).join(", ")}`)
if (versionOf(effects[0][1]) !== effectVersion) fail(`the host's effect ${effectVersion} was replaced by ${versionOf(effects[0][1])}`)
const hostManifest = JSON.parse(readFileSync(join(host, "package.json"), "utf8"))
if (hostManifest.dependencies?.effect === undefined) fail("the host's own effect dependency was dropped")
step(`a host app with its own effect@${effectVersion} keeps exactly one copy after installing @mks/a2a`)

cleanup()
step("ok")
