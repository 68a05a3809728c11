#!/usr/bin/env node
// Keeps every CPU busy while a command runs, to show that a test suite (or anything else)
// holds on a loaded machine:   node scripts/stress.mjs [--workers N] -- npm test
// Each worker thread spins in a tight loop; the command inherits stdio and its exit code is
// ours. The load average at the start and the end, and the command's wall time, are printed.
// Without a command it loads the machine until SIGINT/SIGTERM.
import { spawn } from "node:child_process"
import { availableParallelism, loadavg } from "node:os"
import { Worker } from "node:worker_threads"

const argv = process.argv.slice(2)
const dash = argv.indexOf("--")
const own = dash === -1 ? argv : argv.slice(0, dash)
const command = dash === -1 ? [] : argv.slice(dash + 1)
const at = own.indexOf("--workers")
const workers = at === -1 ? availableParallelism() : Number(own[at + 1])
if (!Number.isInteger(workers) || workers < 1) {
  console.error("stress: --workers needs a positive integer")
  process.exit(2)
}

const spin = "for (;;) { Math.sqrt(Math.random()) }"
const threads = Array.from({ length: workers }, () => new Worker(spin, { eval: true }))
const load = () => loadavg().map((l) => l.toFixed(2)).join(" ")
console.error(`stress: ${workers} busy thread(s); load average ${load()}`)
const stop = (code) => {
  for (const t of threads) void t.terminate()
  process.exitCode = code
}

if (command.length === 0) {
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop(0))
} else {
  const started = Date.now()
  const child = spawn(command[0], command.slice(1), { stdio: "inherit" })
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal))
  child.on("exit", (code, signal) => {
    const seconds = ((Date.now() - started) / 1000).toFixed(0)
    console.error(`stress: \`${command.join(" ")}\` ended (${signal ?? `exit ${code}`}) after ${seconds} s under ${workers} busy thread(s); load average ${load()}`)
    stop(code ?? 1)
  })
}
