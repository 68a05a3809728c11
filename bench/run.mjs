/**
 * Run the benchmarks: every bench/*.mjs except this file and lib.mjs, one after another, each
 * in its own child process (so one benchmark's heap, sockets and children cannot disturb the
 * next). `node bench/run.mjs broker` runs only bench/broker.mjs; extra arguments after the
 * name go to that benchmark (`node bench/run.mjs broker --quick`).
 *
 * Exit code: 0 when every benchmark ran (missed targets are reported, not failures), 1 when
 * one crashed or was killed after its time limit (BENCH_TIMEOUT_S, default 900 s each).
 */
import { spawn } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { basename, join } from "node:path"
import { BENCH_DIR, ROOT } from "./lib.mjs"

const NOT_BENCHMARKS = new Set(["run.mjs", "lib.mjs"])
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? 900) * 1000

const all = readdirSync(BENCH_DIR)
  .filter((f) => f.endsWith(".mjs") && !NOT_BENCHMARKS.has(f))
  .sort()

const [name, ...extra] = process.argv.slice(2)
let selected = all
if (name !== undefined) {
  const file = name.endsWith(".mjs") ? basename(name) : `${name}.mjs`
  if (NOT_BENCHMARKS.has(file) || !existsSync(join(BENCH_DIR, file))) {
    process.stderr.write(`no benchmark "${name}"; available: ${all.map((f) => f.replace(/\.mjs$/, "")).join(", ") || "none"}\n`)
    process.exit(2)
  }
  selected = [file]
}

let current
const stopCurrent = (signal) => {
  if (current !== undefined && current.exitCode === null && current.signalCode === null) current.kill(signal)
}
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    stopCurrent("SIGTERM")
    // The benchmark kills its own children on SIGTERM; give it a moment, then make sure.
    setTimeout(() => {
      stopCurrent("SIGKILL")
      process.exit(130)
    }, 3000).unref()
  })
}
process.on("exit", () => stopCurrent("SIGKILL"))

const runOne = (file) =>
  new Promise((resolve) => {
    const started = Date.now()
    process.stdout.write(`\n=== ${file} ===\n`)
    current = spawn(process.execPath, [join(BENCH_DIR, file), ...(selected.length === 1 ? extra : [])], { cwd: ROOT, stdio: "inherit" })
    const timer = setTimeout(() => {
      process.stderr.write(`${file}: still running after ${TIMEOUT_MS / 1000} s, stopping it\n`)
      stopCurrent("SIGTERM")
      setTimeout(() => stopCurrent("SIGKILL"), 5000).unref()
    }, TIMEOUT_MS)
    current.once("exit", (code, signal) => {
      clearTimeout(timer)
      const seconds = ((Date.now() - started) / 1000).toFixed(1)
      process.stdout.write(`=== ${file}: ${signal ?? `exit ${code}`} after ${seconds} s ===\n`)
      resolve({ file, ok: code === 0, code, signal, seconds })
    })
    current.once("error", (e) => {
      clearTimeout(timer)
      resolve({ file, ok: false, code: null, signal: null, seconds: 0, error: e.message })
    })
  })

if (selected.length === 0) {
  process.stdout.write("no benchmarks in bench/\n")
  process.exit(0)
}
const outcomes = []
for (const file of selected) outcomes.push(await runOne(file))
current = undefined
const failed = outcomes.filter((o) => !o.ok)
process.stdout.write(`\n${outcomes.length - failed.length}/${outcomes.length} benchmark(s) ran${failed.length > 0 ? `; failed: ${failed.map((o) => o.file).join(", ")}` : ""}\n`)
process.exit(failed.length > 0 ? 1 : 0)
