/**
 * CliSpec: one spec gives the parser, the settings' precedence (flag, environment, default),
 * the `--help` text and the docs tables.
 */
import { describe, expect, it } from "vitest"
import * as CliSpec from "../src/CliSpec.js"

const spec: CliSpec.Spec = {
  bin: "demo",
  summary: "a demo [server](docs.md)",
  commands: [
    { usage: "[--port N]", what: "serve" },
    { usage: "keys create --tier tier1|tier2", what: "a key (`tier1\\|tier2`)", group: "Keys" }
  ],
  settings: [
    { flag: "port", arg: "N", env: "DEMO_PORT", default: "`4200`", what: "`0` picks a free port" },
    { flag: "label", arg: "k=v", multiple: true, env: "DEMO_LABELS", what: "labels" },
    { flag: "json", what: "JSON out" },
    { env: "DEMO_SECRET", default: "unset", what: "see [security](security.md)" }
  ],
  footer: ["That is all."]
}

describe("CliSpec", () => {
  it("a flag wins over its variable, which wins over nothing; an empty variable is unset", () => {
    expect(CliSpec.parse(spec, ["--port", "1"], { DEMO_PORT: "2" }).get("port")).toBe("1")
    expect(CliSpec.parse(spec, [], { DEMO_PORT: "2" }).get("port")).toBe("2")
    expect(CliSpec.parse(spec, [], { DEMO_PORT: "" }).get("port")).toBeUndefined()
    expect(CliSpec.parse(spec, [], { DEMO_SECRET: "s" }).get("DEMO_SECRET")).toBe("s")
  })

  it("lists: repeated flags, else the variable split on commas and spaces", () => {
    expect(CliSpec.parse(spec, ["--label", "a=1", "--label", "b=2"], { DEMO_LABELS: "c=3" }).list("label")).toEqual(["a=1", "b=2"])
    expect(CliSpec.parse(spec, [], { DEMO_LABELS: "c=3, d=4 e=5" }).list("label")).toEqual(["c=3", "d=4", "e=5"])
  })

  it("switches, positionals, the built-in --help/-h and --version; an unknown flag or a missing value throws", () => {
    const parsed = CliSpec.parse(spec, ["keys", "create", "--json", "-h"], {})
    expect(parsed.positionals).toEqual(["keys", "create"])
    expect(parsed.has("json")).toBe(true)
    expect(parsed.has("help")).toBe(true)
    expect(parsed.has("version")).toBe(false)
    expect(() => CliSpec.parse(spec, ["--bogus"], {})).toThrow(/^Unknown option '--bogus'$/)
    expect(() => CliSpec.parse(spec, ["--port"], {})).toThrow(/--port/)
    // parseArgs' two-line message for a value that looks like a flag comes as one line
    expect(() => CliSpec.parse(spec, ["--port", "-1"], {})).toThrow(/^Option '--port' argument is ambiguous\. Did you forget to specify the option argument for '--port'\? To specify an option argument starting with a dash use '--port=-XYZ'\.$/)
    expect(() => parsed.get("nothing")).toThrow(/no setting nothing/)
  })

  it("--help names every command, flag, variable and default, in plain text", () => {
    const text = CliSpec.help(spec, "1.2.3")
    expect(text.startsWith("demo 1.2.3: a demo server\n")).toBe(true)
    for (const part of ["usage:\n  demo [--port N]", "Keys:\n  demo keys create --tier tier1|tier2", "a key (tier1|tier2)", "--port N    (env DEMO_PORT; default 4200)", "0 picks a free port", "--label k=v …    (env DEMO_LABELS)", "-h, --help", "--version", "environment only:\n  DEMO_SECRET    (default unset)", "see security", "That is all."]) {
      expect(text).toContain(part)
    }
    expect(text).not.toMatch(/`|\]\(/)
  })

  it("a long usage line breaks before an option group and stays under 100 columns", () => {
    const long: CliSpec.Spec = { ...spec, commands: [{ usage: `keys create ${Array.from({ length: 12 }, (_, i) => `[--option-${i} VALUE]`).join(" ")}`, what: "many" }] }
    const lines = CliSpec.help(long, "1").split("\n")
    const at = lines.indexOf("  demo keys create [--option-0 VALUE] [--option-1 VALUE] [--option-2 VALUE] [--option-3 VALUE]")
    expect(at).toBeGreaterThan(0)
    expect(lines[at + 1]).toMatch(/^ {4}\[--option-4 VALUE\]/)
    expect(lines.filter((l) => l.length > 100)).toEqual([])
    expect(lines.slice(at, at + 4).join(" ").replace(/\s+/g, " ")).toContain("[--option-10 VALUE] [--option-11 VALUE]")
  })

  it("connection limits are documented from the numbers the server uses", () => {
    const settings = CliSpec.connectionLimits("X", { headersTimeout: 1, requestTimeout: 2, keepAliveTimeout: 3, maxPendingConnections: 4, listenBacklog: 5 })
    expect(settings.map((s) => [s.env, s.default])).toEqual([
      ["X_HEADERS_TIMEOUT_MS", "`1`"],
      ["X_REQUEST_TIMEOUT_MS", "`2`"],
      ["X_KEEP_ALIVE_TIMEOUT_MS", "`3`"],
      ["X_MAX_PENDING_CONNECTIONS", "`4`"],
      ["X_LISTEN_BACKLOG", "`5`"]
    ])
  })

  it("docs tables: commands (pipes escaped in code) and settings; written between the markers only", () => {
    const table = CliSpec.markdown(spec)
    expect(table).toContain("| `demo keys create --tier tier1\\|tier2` | a key (`tier1\\|tier2`) |")
    expect(table).toContain("| `--port N` | `DEMO_PORT` | `4200` | `0` picks a free port |")
    expect(table).toContain("|  | `DEMO_SECRET` | unset | see [security](security.md) |")
    const [begin, end] = CliSpec.markers("demo")
    const doc = `# Demo\n\n${begin}\nold table\n${end}\n\nmore prose\n`
    const updated = CliSpec.updateDoc(doc, spec)!
    expect(updated).toBe(`# Demo\n\n${begin}\n${table}\n${end}\n\nmore prose\n`)
    expect(CliSpec.updateDoc(updated, spec)).toBe(updated)
    expect(CliSpec.updateDoc("# no markers\n", spec)).toBeUndefined()
  })
})
