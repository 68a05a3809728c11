/**
 * Short young-generation GC pauses for the `a2a-proxy` bin (imported first by `cli.ts`, before
 * loading the rest grows the heap). Under load V8 grows the semi-space to 16 MB and scavenging
 * it pauses the event loop 1-5 ms (more when the parallel GC helpers wait for a busy CPU); kept
 * at its starting size and scavenged on the main thread, each pause is ~0.2-0.5 ms, for a little
 * more GC time in total. Skipped when the operator chose GC flags (`node --max-semi-space-size=…`,
 * `NODE_OPTIONS`) or set `A2A_PROXY_GC_TUNING=0`. The library never touches process-wide flags.
 */
import * as v8 from "node:v8"

/** `"short-pauses"` when the flags were set here, `"node-defaults"` otherwise (logged at start). */
export const gcTuning: "short-pauses" | "node-defaults" = (() => {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ")
  if (process.env.A2A_PROXY_GC_TUNING === "0" || /semi[-_]space|scavenge|single[-_]threaded[-_]gc/.test(given)) return "node-defaults"
  v8.setFlagsFromString("--semi-space-growth-factor=1")
  v8.setFlagsFromString("--no-parallel-scavenge")
  return "short-pauses"
})()
