/**
 * Start a bin's CommonJS bundle with V8's code cache, so that the second start of a bin and
 * every one after it skip compiling the bundle.
 *
 * Why this exists: a bundled server bin is one to two megabytes of JavaScript. V8 parses all of
 * an ES module before running it; on the 2-core benchmark machine `a2a-broker --help` spent
 * 120 of its ~330 ms in `compileSourceTextModule`, and start → listening was 393 ms (median of
 * six). Node 22.1+ has `module.enableCompileCache()` for exactly this, and it is used where it
 * exists; Node 20 has no compile cache for either module kind, so there the bundle is built as
 * CommonJS and run through `vm.Script` with `cachedData` (what Node's own cache does for CJS):
 * start → listening 300 ms, `--help` ~90 ms less (docs/benchmarks.md).
 *
 * The cache is one file per bin, Node version, architecture and bundle content (a hash of the
 * source: V8 itself only checks the source's length), written once when there is none that V8
 * accepts, 2 s after the bin started (so it holds the functions start-up compiled) or at exit,
 * whichever comes first (servers: not at exit, see `run`); written to a temporary name and renamed, so bins starting together never
 * read half a file; older files of the same bin are removed then. It lives in
 * `$A2A_COMPILE_CACHE` (a directory), else `$XDG_CACHE_HOME/a2a`, else `~/.cache/a2a`;
 * `A2A_COMPILE_CACHE=off` turns it off. A file that is not the user's own, or that other users
 * may write, is not read (code caches hold bytecode). Any failure to read or write the cache only
 * means compiling as without it.
 *
 * Plain Node, no Effect: this runs before the bundle (and effect) is loaded, and is all a bin's
 * `dist/cli.js` contains.
 */
import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs"
import Module, { createRequire } from "node:module"
import { homedir } from "node:os"
import { dirname, join } from "node:path"
import vm from "node:vm"

/** Where a bin started by `run` finds its `import()` (see `importer`). */
export const IMPORT: unique symbol = Symbol.for("@mks/a2a/compile-cache/import")

/**
 * `import()` for code that may run inside a bundle started by `run` (where a plain `import()`
 * fails on Node 20): the loader's when there is one, else the caller's own `fallback`.
 */
export const importer = (fallback: (specifier: string) => Promise<unknown>): ((specifier: string) => Promise<unknown>) =>
  ((globalThis as Record<symbol, unknown>)[IMPORT] as ((specifier: string) => Promise<unknown>) | undefined) ?? fallback

/** The directory the cache files go to, or `undefined` when the cache is off. */
export const directory = (env: NodeJS.ProcessEnv = process.env): string | undefined => {
  const setting = env.A2A_COMPILE_CACHE?.trim()
  if (setting !== undefined && /^(off|0|false|no)$/i.test(setting)) return undefined
  if (setting !== undefined && setting !== "") return setting
  if (env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME !== "") return join(env.XDG_CACHE_HOME, "a2a")
  const home = homedir()
  return home === "" ? undefined : join(home, ".cache", "a2a")
}

/** The cache file of `name` for this Node and this bundle source. */
export const fileFor = (dir: string, name: string, source: string): string =>
  join(dir, `${name}-${process.version}-${process.arch}-${createHash("sha256").update(source).digest("hex").slice(0, 20)}.v8cache`)

/** The file's bytes, if it is ours and only we may write it. */
const readOwn = (file: string): Buffer | undefined => {
  try {
    const stat = statSync(file)
    if (typeof process.getuid === "function" && stat.uid !== process.getuid()) return undefined
    if ((stat.mode & 0o022) !== 0) return undefined
    return readFileSync(file)
  } catch {
    return undefined
  }
}

const write = (name: string, file: string, data: Buffer): void => {
  try {
    const dir = dirname(file)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const temporary = `${file}.${process.pid}.tmp`
    writeFileSync(temporary, data, { mode: 0o600 })
    renameSync(temporary, file)
    // Older caches of this bin (other bundles or Node versions) are not read again.
    const ours = new RegExp(`^${name.replace(/[^A-Za-z0-9]/g, "\\$&")}-v\\d.*\\.v8cache$`)
    for (const entry of readdirSync(dir)) {
      if (ours.test(entry) && join(dir, entry) !== file) unlinkSync(join(dir, entry))
    }
  } catch {
    // No cache this time.
  }
}

/**
 * What `run` did: started with a cache file V8 `used`, with none (`none`) or one V8 `rejected`
 * (both write one), with the cache `off`, or through Node's own compile cache (`platform`).
 */
export type Outcome = "used" | "none" | "rejected" | "off" | "platform"

/** How long after start the cache is written (when there was none): start-up is done by then. */
const WRITE_AFTER_MS = 2_000

/**
 * Run the CommonJS bundle at `bundle` (an absolute path) as the bin `name` (the cache file's
 * prefix), as `node bundle` would. A server passes `atExit: false`: its cache is then written
 * only by a run that lived past start-up, so a `--help` does not leave a cache that lacks the
 * functions serving compiles (an accepted cache is not written again).
 */
export const run = (
  bundle: string,
  name: string,
  options: {
    readonly atExit?: boolean
    /**
     * Runs once the bundle is compiled and before it runs. For V8 flag changes
     * (`StartupMemory.hold`): V8 rejects a code cache made under other flags, so they are set
     * after the cache was checked (and a server sets them back before the cache is written).
     * On Node 22.1+ (the platform's cache compiles inside `require`) it runs before the bundle.
     */
    readonly start?: () => void
  } = {}
): Outcome => {
  const dir = directory()
  const require = createRequire(bundle)
  const enableCompileCache = (Module as unknown as { enableCompileCache?: (dir?: string) => unknown }).enableCompileCache
  if (dir === undefined || typeof enableCompileCache === "function") {
    // Node 22.1+: the platform's own compile cache (CommonJS included).
    if (dir !== undefined) enableCompileCache!(join(dir, "node"))
    options.start?.()
    require(bundle)
    return dir === undefined ? "off" : "platform"
  }
  const source = readFileSync(bundle, "utf8").replace(/^#!.*/, "")
  const file = fileFor(dir, name, source)
  let cachedData = readOwn(file)
  const script = new vm.Script(Module.wrap(source), { filename: bundle, ...(cachedData === undefined ? {} : { cachedData }) })
  // `import()` inside the script cannot work on Node 20: a script compiled from a code cache
  // loses its dynamic-import callback (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), and the option
  // that provides one is experimental (a warning on every start). The bundle imports through
  // `IMPORT` instead (`importer`), which resolves from this file's directory, the bundle's own.
  ;(globalThis as Record<symbol, unknown>)[IMPORT] = (specifier: string) => import(specifier)
  const outcome: Outcome = cachedData === undefined ? "none" : script.cachedDataRejected === true ? "rejected" : "used"
  cachedData = undefined // the bytes are V8's now; not kept for the process's life
  if (outcome !== "used") {
    let written = false
    const save = () => {
      if (written) return
      written = true
      write(name, file, script.createCachedData())
    }
    setTimeout(save, WRITE_AFTER_MS).unref()
    if (options.atExit !== false) process.once("exit", save)
  }
  options.start?.()
  const module = new Module(bundle)
  module.filename = bundle
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void
  wrapper.call(module.exports, module.exports, require, module, bundle, dirname(bundle))
  return outcome
}
