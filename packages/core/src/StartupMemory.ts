/**
 * A server's start-up without the memory it does not need afterwards (used by the broker's bin;
 * a host that embeds the layers decides about its own process).
 *
 * Start-up (loading the bundle, building the layers, migrations) is an allocation burst that V8
 * answers by growing the young generation from 1 MiB to 16 MiB semi-spaces (32 MiB in all).
 * Nothing shrinks it again until V8's memory reducer runs, and the reducer is set going by
 * allocation: a broker that does nothing while idle (no ticking timers) was measured holding
 * 101–106 MiB RSS 30 s after start, its young generation still at 32 MiB, against ~78 MiB once
 * the reducer had run (bench/footprint.mjs's idle reading; a preloaded logger of
 * `process.memoryUsage()` and V8's heap spaces showed which space held it).
 *
 * `hold` (the bin's launcher, before the bundle loads) sets V8's semi-space growth factor to 1,
 * so start-up runs in the initial young generation; `resume` (once the server listens) sets it
 * back to V8's default of 2, so a server under load grows it as before. V8 reads the factor each
 * time it would grow (Node's `--max-semi-space-size` is read only when the process starts, which
 * a bin cannot choose). Measured: the idle broker at ~78 MiB from its first seconds on, its
 * start ~25–35 ms slower (more scavenges during start-up; docs/benchmarks.md, "Footprint").
 * Where the runtime ignores the flag, both do nothing.
 */
import { setFlagsFromString } from "node:v8"

/** The V8 flags `hold` and `resume` set (V8's default growth factor is 2, on Node 20 and later). */
export const HOLD_FLAG = "--semi-space-growth-factor=1"
export const RESUME_FLAG = "--semi-space-growth-factor=2"

const set = (flag: string) => {
  try {
    setFlagsFromString(flag)
  } catch {
    // A runtime without the flag: nothing to hold.
  }
}

/** Keep the young generation at its initial size while a server starts. */
export const hold = (): void => set(HOLD_FLAG)

/** Let the young generation grow again (the server is up). */
export const resume = (): void => set(RESUME_FLAG)
