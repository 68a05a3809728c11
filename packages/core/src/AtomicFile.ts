/**
 * Crash-safe file replacement, the one implementation the a2a packages share (token files,
 * key and usage files, the stack record, the runner's spawn records and session config).
 *
 * The data goes to a temporary file in the same directory, created with its final mode (so a
 * secret is never readable by others, not even briefly), is fsynced, then renamed over the
 * target; the directory is fsynced too unless `syncDir: false`. A reader, or a restart after
 * SIGKILL or power loss, sees the old content or the new one, never a torn or empty file, and a
 * failed write leaves the old file as it was (the temporary file is removed).
 *
 * `writeSync` for synchronous callers; `write` is the same steps with non-blocking I/O, as an
 * Effect that fails with {@link AtomicFileError}.
 */
import { Data, Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import { basename, dirname, join } from "node:path"

export interface Options {
  /** The file's mode, from its first byte (default 0600: most of these files hold secrets or message bodies). */
  readonly mode?: number | undefined
  /** The mode of the directory when it has to be created (default 0700). */
  readonly dirMode?: number | undefined
  /** fsync the directory after the rename so the rename itself is durable (default true). */
  readonly syncDir?: boolean | undefined
}

export class AtomicFileError extends Data.TaggedError("AtomicFileError")<{
  readonly path: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** An I/O failure in a few words: the errno code (`EACCES`, `ENOSPC`, …) or the message. */
export const describe = (cause: unknown): string =>
  cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause)

const tempOf = (file: string): string =>
  join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`)

/** Replace `file` with `data` atomically (blocking I/O); throws the underlying error. */
export const writeSync = (file: string, data: string | Uint8Array, options: Options = {}): void => {
  const dir = dirname(file)
  fs.mkdirSync(dir, { recursive: true, mode: options.dirMode ?? 0o700 })
  const temp = tempOf(file)
  // `wx` with the mode: created fresh, never readable by others.
  const fd = fs.openSync(temp, "wx", options.mode ?? 0o600)
  try {
    try {
      fs.writeFileSync(fd, data)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(temp, file)
  } catch (error) {
    fs.rmSync(temp, { force: true })
    throw error
  }
  if (options.syncDir !== false) {
    try {
      const dfd = fs.openSync(dir, "r")
      try {
        fs.fsyncSync(dfd)
      } finally {
        fs.closeSync(dfd)
      }
    } catch {
      // Some filesystems refuse to open or fsync a directory; the rename is still atomic.
    }
  }
}

/** {@link writeSync} with non-blocking I/O, as an Effect: a server's event loop keeps serving during the fsyncs. */
export const write = (file: string, data: string | Uint8Array, options: Options = {}): Effect.Effect<void, AtomicFileError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = dirname(file)
      await fsp.mkdir(dir, { recursive: true, mode: options.dirMode ?? 0o700 })
      const temp = tempOf(file)
      const handle = await fsp.open(temp, "wx", options.mode ?? 0o600)
      try {
        try {
          await handle.writeFile(data)
          await handle.sync()
        } finally {
          await handle.close()
        }
        await fsp.rename(temp, file)
      } catch (error) {
        await fsp.rm(temp, { force: true })
        throw error
      }
      if (options.syncDir !== false) {
        try {
          const dirHandle = await fsp.open(dir, "r")
          try {
            await dirHandle.sync()
          } finally {
            await dirHandle.close()
          }
        } catch {
          // As in writeSync.
        }
      }
    },
    catch: (cause) => new AtomicFileError({ path: file, message: `cannot write ${file}: ${describe(cause)}`, cause })
  })
