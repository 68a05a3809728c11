/**
 * The proxy's files (keys, usage, the admin token): crash-safe replacement is core's
 * `AtomicFile` (temp file in the same directory, fsync, rename, fsync of the directory); this
 * module maps its failures, and those of reading, to the proxy's `FileError`.
 */
import { AtomicFile } from "@mks/a2a/internal"
import { Data, Effect } from "effect"
import * as fs from "node:fs/promises"

export class FileError extends Data.TaggedError("FileError")<{
  readonly path: string
  readonly reason: "read" | "write" | "missing"
  readonly message: string
}> {}

const describe = AtomicFile.describe

/** Replace `file` with `data` atomically (core's `AtomicFile`); the file gets `mode` (0600 by default) from its first byte. */
export const writeAtomic = (file: string, data: string, mode = 0o600): Effect.Effect<void, FileError> =>
  AtomicFile.write(file, data, { mode }).pipe(Effect.mapError((e) => new FileError({ path: file, reason: "write", message: e.message })))

/** The file's text, or `undefined` when it does not exist; any other failure is a `FileError`. */
export const readIfExists = (file: string): Effect.Effect<string | undefined, FileError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (cause) => cause
  }).pipe(
    Effect.catchAll((cause) =>
      (cause as NodeJS.ErrnoException)?.code === "ENOENT"
        ? Effect.succeed(undefined)
        : Effect.fail(new FileError({ path: file, reason: "read", message: `cannot read ${file}: ${describe(cause)}` }))
    )
  )
