import { Either, Schema } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { RunnerPolicy, type Spawn } from "../src/index.js"

const example = join(import.meta.dirname, "..", "..", "..", "examples", "locked-down-runner", "policy.json")
const policy = Schema.decodeUnknownSync(Schema.parseJson(RunnerPolicy.RunnerPolicy))(readFileSync(example, "utf8"))
const verdict = (spec: Spawn.SpawnSpec, active = 0) => {
  const result = RunnerPolicy.check("box", policy, spec, active)
  return Either.isLeft(result) ? result.left.reason : "ok"
}

describe("RunnerPolicy.check (the example locked-down policy)", () => {
  it("commands: an argv prefix or an executable; anything else is refused", () => {
    expect(verdict({ command: "/usr/bin/node", args: ["/srv/agents/reviewer.mjs", "--fast"] })).toBe("ok")
    expect(verdict({ command: "/usr/bin/../bin/node", args: ["/srv/agents/reviewer.mjs"] })).toBe("ok")
    expect(verdict({ command: "/usr/bin/node", args: ["/srv/agents/other.mjs"] })).toBe("command")
    expect(verdict({ command: "/usr/bin/node" })).toBe("command")
    expect(verdict({ command: "pytest", args: ["-x"] })).toBe("ok")
    expect(verdict({ command: "/opt/venv/bin/pytest" })).toBe("ok")
    expect(verdict({ command: "/opt/venv/bin/notpytest" })).toBe("command")
    expect(verdict({ command: "sh", args: ["-c", "pytest"] })).toBe("command")
    // The claude preset's command is the runner's own binary: the command rules do not apply.
    expect(verdict({ preset: "claude", prompt: "hi" })).toBe("ok")
  })

  it("cwds: inside an allowed directory, with no escape through .. or a relative path", () => {
    expect(verdict({ command: "pytest", cwd: "/srv/work" })).toBe("ok")
    expect(verdict({ command: "pytest", cwd: "/srv/work/repo/sub" })).toBe("ok")
    expect(verdict({ command: "pytest", cwd: "/srv/work/../secrets" })).toBe("cwd")
    expect(verdict({ command: "pytest", cwd: "/srv/workshop" })).toBe("cwd")
    expect(verdict({ command: "pytest", cwd: "repo" })).toBe("cwd")
    expect(verdict({ command: "pytest" })).toBe("ok")
  })

  it("env keys refused by name or prefix; maximum per principal", () => {
    expect(verdict({ command: "pytest", env: { CI: "1" } })).toBe("ok")
    expect(verdict({ command: "pytest", env: { LD_PRELOAD: "/tmp/x.so" } })).toBe("env")
    expect(verdict({ command: "pytest", env: { AWS_SECRET_ACCESS_KEY: "x" } })).toBe("env")
    expect(verdict({ command: "pytest", env: { A2A_TOKEN: "x" } })).toBe("env")
    expect(verdict({ command: "pytest", owner: "t_1" }, 1)).toBe("ok")
    expect(verdict({ command: "pytest", owner: "t_1" }, 2)).toBe("concurrency")
  })

  it("no policy allows everything; a bad policy file does not decode", () => {
    expect(Either.isRight(RunnerPolicy.check("box", undefined, { command: "rm", args: ["-rf", "/"] }))).toBe(true)
    expect(() => Schema.decodeUnknownSync(RunnerPolicy.RunnerPolicy)({ cwds: ["relative"] })).toThrow()
    expect(() => Schema.decodeUnknownSync(RunnerPolicy.RunnerPolicy)({ maxPerPrincipal: 0 })).toThrow()
    expect(() => Schema.decodeUnknownSync(RunnerPolicy.RunnerPolicy)({ presets: ["shell"] })).toThrow()
  })
})
