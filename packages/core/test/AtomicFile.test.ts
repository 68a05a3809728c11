import { Effect, Exit } from "effect"
import fs from "node:fs"
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as AtomicFile from "../src/AtomicFile.js"

const dir = () => mkdtempSync(join(tmpdir(), "a2a-atomic-"))
const modeOf = (file: string) => statSync(file).mode & 0o777

/** Make one `node:fs` function fail like a disk error, for the named ESM imports too. */
const restore: Array<() => void> = []
const breakFs = (name: "fsyncSync") => {
  const original = fs[name]
  ;(fs as any)[name] = () => {
    throw Object.assign(new Error("i/o error"), { code: "EIO" })
  }
  syncBuiltinESMExports()
  restore.push(() => {
    ;(fs as any)[name] = original
    syncBuiltinESMExports()
  })
}
afterEach(() => {
  for (const undo of restore.splice(0)) undo()
})

describe("AtomicFile", () => {
  it("writes with mode 0600 by default and keeps the caller's mode otherwise, creating the directory 0700", async () => {
    const base = dir()
    const secret = join(base, "nested", "token")
    AtomicFile.writeSync(secret, "s3cret\n")
    expect(readFileSync(secret, "utf8")).toBe("s3cret\n")
    expect(modeOf(secret)).toBe(0o600)
    expect(modeOf(join(base, "nested"))).toBe(0o700)

    const open = join(base, "stack.json")
    await Effect.runPromise(AtomicFile.write(open, "{}\n", { mode: 0o644 }))
    expect(modeOf(open)).toBe(0o644)
    expect(readFileSync(open, "utf8")).toBe("{}\n")
  })

  it("replaces the file (a new inode with the new mode), and leaves no temporary file", async () => {
    const base = dir()
    const file = join(base, "keys.json")
    writeFileSync(file, "old", { mode: 0o644 })
    const before = statSync(file).ino
    AtomicFile.writeSync(file, "new")
    expect(readFileSync(file, "utf8")).toBe("new")
    expect(statSync(file).ino).not.toBe(before)
    expect(modeOf(file)).toBe(0o600)
    await Effect.runPromise(AtomicFile.write(file, new TextEncoder().encode("newer")))
    expect(readFileSync(file, "utf8")).toBe("newer")
    expect(readdirSync(base)).toEqual(["keys.json"])
  })

  it("a write that fails leaves the old content whole and no temporary file (sync)", () => {
    const base = dir()
    const file = join(base, "tokens.json")
    writeFileSync(file, "old content", { mode: 0o600 })
    breakFs("fsyncSync")
    expect(() => AtomicFile.writeSync(file, "new content that never lands")).toThrow(/i\/o error/)
    expect(readFileSync(file, "utf8")).toBe("old content")
    expect(readdirSync(base)).toEqual(["tokens.json"])
  })

  it("a write that fails leaves the old content whole and no temporary file (Effect, typed error)", async () => {
    const base = dir()
    const file = join(base, "usage.json")
    writeFileSync(file, "old content", { mode: 0o600 })
    const original = fs.promises.rename
    fs.promises.rename = () => Promise.reject(Object.assign(new Error("i/o error"), { code: "EIO" }))
    syncBuiltinESMExports()
    restore.push(() => {
      fs.promises.rename = original
      syncBuiltinESMExports()
    })
    const exit = await Effect.runPromiseExit(AtomicFile.write(file, "new content that never lands"))
    if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
      expect(exit.cause.error._tag).toBe("AtomicFileError")
      expect(exit.cause.error.message).toBe(`cannot write ${file}: EIO`)
    } else expect.fail("expected a typed failure")
    expect(readFileSync(file, "utf8")).toBe("old content")
    expect(readdirSync(base)).toEqual(["usage.json"])
  })
})
