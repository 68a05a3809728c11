/**
 * Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it
 * over the target, fsync the directory. A reader (or a restart after SIGKILL) sees either the
 * old content or the new one, never a torn file.
 */
import { Data, Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"

export class FileError extends Data.TaggedError("FileError")<{
  readonly path: string
  readonly reason: "read" | "write" | "missing"
  readonly message: string
}> {}

const describe = (cause: unknown): string =>
  cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause)

/** Replace `file` with `data` atomically; the file gets `mode` (0600 by default) from its first byte. */
export const writeAtomic = (file: string, data: string, mode = 0o600): Effect.Effect<void, FileError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = path.dirname(file)
      await fs.mkdir(dir, { recursive: true, mode: 0o700 })
      const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`)
      // `wx` with the mode: the secret-bearing temp file is never readable by others, not even briefly.
      const handle = await fs.open(temp, "wx", mode)
      try {
        await handle.writeFile(data, "utf8")
        await handle.sync()
      } finally {
        await handle.close()
      }
      try {
        await fs.rename(temp, file)
      } catch (error) {
        await fs.rm(temp, { force: true })
        throw error
      }
      // The rename itself is durable only once the directory entry is on disk.
      const dirHandle = await fs.open(dir, "r")
      try {
        await dirHandle.sync()
      } finally {
        await dirHandle.close()
      }
    },
    catch: (cause) => new FileError({ path: file, reason: "write", message: `cannot write ${file}: ${describe(cause)}` })
  })

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
