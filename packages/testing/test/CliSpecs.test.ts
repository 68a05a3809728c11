/**
 * Every bin's flags, environment variables and defaults come from one spec (`src/CliSpec.ts`):
 * the built bin's `--help` is the spec's, the tables in its docs page are the spec's (written by
 * `npm run docs:cli`), and every `A2A_*` variable its source reads is in the spec — or is one of
 * the few named below that are not settings of that bin.
 */
import { execFile } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { CliSpec } from "../../core/src/internal.js"
import { spec as broker } from "../../broker/src/CliSpec.js"
import { spec as cli } from "../../cli/src/CliSpec.js"
import { spec as mcp } from "../../mcp/src/CliSpec.js"
import { spec as proxy } from "../../proxy/src/CliSpec.js"
import { spec as runner } from "../../runner/src/CliSpec.js"

const run = promisify(execFile)
const ROOT = resolve(import.meta.dirname, "..", "..", "..")

/** `notSettings`: variables a bin's source names that users do not set on it (each with why). */
const BINS: ReadonlyArray<{ pkg: string; doc: string; spec: CliSpec.Spec; notSettings: Record<string, string> }> = [
  { pkg: "broker", doc: "docs/broker.md", spec: broker, notSettings: {} },
  { pkg: "proxy", doc: "docs/proxy.md", spec: proxy, notSettings: {} },
  {
    pkg: "runner",
    doc: "docs/runner.md",
    spec: runner,
    notSettings: {
      A2A_SPAWN_ID: "set for the agents it starts",
      A2A_PEER_NAME: "set for the agents it starts",
      A2A_TEAMS: "set for the agents it starts",
      A2A_TASK_ID: "set for the agents it starts",
      A2A_CHANNELS: "set for the agents it starts (in their MCP config)"
    }
  },
  { pkg: "mcp", doc: "docs/mcp.md", spec: mcp, notSettings: { A2A_MCP_HOLD_EFFECT: "a test hook: the Effect part waits for SIGUSR2" } },
  { pkg: "cli", doc: "docs/cli.md", spec: cli, notSettings: { A2A_CHANNELS: "written into the .mcp.json that a2a up prints, for the MCP server" } }
]

const sourceVariables = (pkg: string): Set<string> => {
  const dir = join(ROOT, "packages", pkg, "src")
  const names = new Set<string>()
  for (const file of readdirSync(dir, { recursive: true }) as Array<string>) {
    if (!file.endsWith(".ts")) continue
    for (const m of readFileSync(join(dir, file), "utf8").matchAll(/\bA2A_[A-Z0-9_]*[A-Z0-9]\b/g)) names.add(m[0])
  }
  return names
}

describe.each(BINS)("$pkg", ({ pkg, doc, spec, notSettings }) => {
  it("--help is generated from the spec", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "packages", pkg, "package.json"), "utf8"))
    const { stdout } = await run(process.execPath, [join(ROOT, "packages", pkg, "dist", "cli.js"), "--help"], { timeout: 30_000 })
    expect(stdout).toBe(CliSpec.help(spec, version))
  })

  it("its docs page carries the spec's tables (npm run docs:cli)", () => {
    const page = readFileSync(join(ROOT, doc), "utf8")
    const [begin, end] = CliSpec.markers(spec.bin)
    expect(page).toContain(begin)
    expect(page).toContain(end)
    expect(CliSpec.updateDoc(page, spec)).toBe(page)
  })

  it("every A2A_ variable its source reads is a setting of the spec, or named as not one", () => {
    const documented = new Set(spec.settings.flatMap((s) => (s.env === undefined ? [] : [s.env])))
    const undocumented = [...sourceVariables(pkg)].filter(
      (name) =>
        !documented.has(name) &&
        !(name in notSettings) &&
        // a prefix handed to a reader of several variables (ServerLimits.fromEnv("A2A_BROKER"))
        ![...documented].some((d) => d.startsWith(`${name}_`))
    )
    expect(undocumented).toEqual([])
    // and no flag or variable twice
    const flags = spec.settings.flatMap((s) => (s.flag === undefined ? [] : [s.flag]))
    expect(new Set(flags).size).toBe(flags.length)
    expect(documented.size).toBe(spec.settings.filter((s) => s.env !== undefined).length)
  })
})
