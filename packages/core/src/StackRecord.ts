/**
 * Where the local stack runs. `a2a up` writes `$A2A_HOME/stack.json` (default `~/.a2a`) once
 * everything listens and removes it when it stops; clients on the same machine (the `a2a` CLI,
 * the MCP server, `a2a-runner launch`, `BrokerClient.readConfig`) use its URLs when no URL is
 * given. It holds URLs only, never a secret (tokens stay in their own 0600 files).
 * A record whose process is gone (the stack was killed) is ignored.
 */
import { Effect, Option, Schema } from "effect"
import * as AtomicFile from "./AtomicFile.js"
import { readFileSync, rmSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

export class StackRecord extends Schema.Class<StackRecord>("StackRecord")({
  /** The process that runs the stack. */
  pid: Schema.Int.pipe(Schema.positive()),
  startedAt: Schema.String,
  broker: Schema.String,
  dashboard: Schema.String,
  runner: Schema.optional(Schema.String),
  proxy: Schema.optional(Schema.String)
}) {}

const decode = Schema.decodeUnknownOption(Schema.parseJson(StackRecord))

/** `$A2A_HOME` (default `~/.a2a`). */
export const home = (env: Readonly<Record<string, string | undefined>> = process.env): string => env.A2A_HOME || join(homedir(), ".a2a")

/** The record's file: `<home>/stack.json`. */
export const file = (dir: string = home()): string => join(dir, "stack.json")

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The running stack's record, if there is one and its process is alive (synchronous: a small local file). */
export const readSync = (dir: string = home()): StackRecord | undefined => {
  let text: string
  try {
    text = readFileSync(file(dir), "utf8")
  } catch {
    return undefined
  }
  return Option.getOrUndefined(decode(text).pipe(Option.filter((r) => alive(r.pid))))
}

/** {@link readSync} as an Effect. */
export const read = (dir: string = home()): Effect.Effect<Option.Option<StackRecord>> => Effect.sync(() => Option.fromNullable(readSync(dir)))

/** Write the record atomically (`AtomicFile`: a temporary file, fsynced, renamed over the old one); 0644, it holds no secret. */
export const write = (record: StackRecord, dir: string = home()): Effect.Effect<void, Error> =>
  Effect.try({
    try: () => AtomicFile.writeSync(file(dir), JSON.stringify(Schema.encodeSync(StackRecord)(record), null, 2) + "\n", { mode: 0o644 }),
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  })

/** Remove the record if it is this process's (another stack may have replaced it). */
export const remove = (dir: string = home(), pid: number = process.pid): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      const current = Option.getOrUndefined(decode(readFileSync(file(dir), "utf8")))
      if (current === undefined || current.pid === pid) rmSync(file(dir), { force: true })
    } catch {
      // nothing to remove
    }
  })
