import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

// These check the built packages as users install them; `npm test` builds first.
const root = join(import.meta.dirname, "..", "..", "..")
const packages = ["core", "broker", "proxy", "runner", "mcp", "cli"] as const
/** Every published package (the above, and the test kit). */
const published = [...packages, "testing"] as const
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(root, "packages", dir, "package.json"), "utf8"))
/** Effect and its packages: one copy in a host app, so a host's tags and the packages' are the same. */
const isEffect = (name: string) => name === "effect" || name.startsWith("@effect/")

describe("built packages", () => {
  it("each package builds to dist/ with types and an exports map that lists types first", () => {
    for (const dir of packages) {
      const manifest = manifestOf(dir)
      // A package with executables ships their small launchers in bin/ (each a file that exists).
      expect(manifest.files).toEqual(manifest.bin === undefined ? ["dist"] : ["bin", "dist"])
      for (const launcher of Object.values(manifest.bin ?? {}) as Array<string>) {
        expect(launcher.startsWith("./bin/"), `${manifest.name} ${launcher}`).toBe(true)
        expect(existsSync(join(root, "packages", dir, launcher)), `${manifest.name} ${launcher}`).toBe(true)
      }
      expect(Object.keys(manifest.exports["."])[0]).toBe("types")
      for (const target of Object.values(manifest.exports["."]) as Array<string>) {
        expect(existsSync(join(root, "packages", dir, target)), `${manifest.name} ${target}`).toBe(true)
      }
    }
  })

  it("effect and @effect/* are peer dependencies of every published package (and dev dependencies of the workspace, same range)", () => {
    for (const dir of published) {
      const manifest = manifestOf(dir)
      const dependencies = Object.keys(manifest.dependencies ?? {})
      expect(dependencies.filter(isEffect), `${manifest.name} dependencies`).toEqual([])
      const peers: Record<string, string> = manifest.peerDependencies ?? {}
      expect(Object.keys(peers), `${manifest.name} peerDependencies`).toContain("effect")
      for (const [name, range] of Object.entries(peers)) {
        expect(isEffect(name), `${manifest.name} peer ${name}`).toBe(true)
        expect(manifest.devDependencies?.[name], `${manifest.name} devDependencies ${name}`).toBe(range)
      }
      // Whatever the built code imports of Effect is declared as a peer.
      const imported = new Set<string>()
      for (const file of readdirSync(join(root, "packages", dir, "dist")).filter((f) => f.endsWith(".js"))) {
        const source = readFileSync(join(root, "packages", dir, "dist", file), "utf8")
        for (const m of source.matchAll(/(?:from|import)\s*\(?\s*["']((?:@effect\/[^/"']+)|effect)(?:\/[^"']*)?["']/g)) imported.add(m[1]!)
      }
      for (const name of imported) expect(peers[name], `${manifest.name} imports ${name}`).toBeDefined()
    }
  })

  it("import('@mks/a2a') from another workspace resolves the built package and its documented exports", () => {
    const out = execFileSync(
      process.execPath,
      ["--input-type=module", "-e", "const m = await import('@mks/a2a'); console.log(JSON.stringify({ keys: Object.keys(m).sort(), url: import.meta.resolve('@mks/a2a') }))"],
      { cwd: join(root, "packages", "broker"), encoding: "utf8" }
    )
    const { keys, url } = JSON.parse(out)
    expect(url).toMatch(/packages\/core\/dist\/index\.js$/)
    expect(keys).toEqual(
      expect.arrayContaining([
        "Authenticator", "BrokerApi", "BrokerClient", "ChannelFrame", "ChannelHub", "Codec", "Errors", "Ids", "Inbox",
        "KeyStore", "Message", "Peer", "PeerRegistry", "Principal", "ProxyApi", "Runner", "RunnerFrame", "Spawn",
        "SpawnPlane", "Team", "TeamDirectory", "Usage", "UsageMeter", "VirtualKey", "createBrokerClient"
      ])
    )
  })

  it("@mks/a2a/client is the Promise client as one file that imports no Effect package", () => {
    const out = execFileSync(
      process.execPath,
      ["--input-type=module", "-e", "const m = await import('@mks/a2a/client'); console.log(JSON.stringify({ keys: Object.keys(m).sort(), url: import.meta.resolve('@mks/a2a/client') }))"],
      { cwd: join(root, "packages", "broker"), encoding: "utf8" }
    )
    const { keys, url } = JSON.parse(out)
    expect(url).toMatch(/packages\/core\/dist\/client\.js$/)
    expect(keys).toEqual(["BrokerError", "createBrokerClient"])
    const source = readFileSync(join(root, "packages", "core", "dist", "client.js"), "utf8")
    const specifiers = [...source.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1])
    expect(specifiers.filter((s) => /^(effect|@effect\/)/.test(s!))).toEqual([])
    expect(specifiers.filter((s) => !s!.startsWith("node:"))).toEqual(expect.arrayContaining(["ws"]))
  })
})
