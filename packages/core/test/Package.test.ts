import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

// These check the built packages as users install them; `npm test` builds first.
const root = join(import.meta.dirname, "..", "..", "..")
const packages = ["core", "broker", "proxy", "runner", "mcp", "cli"] as const

describe("built packages", () => {
  it("each package builds to dist/ with types and an exports map that lists types first", () => {
    for (const dir of packages) {
      const manifest = JSON.parse(readFileSync(join(root, "packages", dir, "package.json"), "utf8"))
      expect(manifest.files).toEqual(["dist"])
      expect(Object.keys(manifest.exports["."])[0]).toBe("types")
      for (const target of Object.values(manifest.exports["."]) as Array<string>) {
        expect(existsSync(join(root, "packages", dir, target)), `${manifest.name} ${target}`).toBe(true)
      }
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
