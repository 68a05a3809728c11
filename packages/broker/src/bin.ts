#!/usr/bin/env node
/**
 * `dist/cli.js`, what `a2a-broker` runs: the bin's bundle (`dist/cli.cjs`, built from ./cli.ts)
 * started through V8's code cache (`CompileCache` in `@mks/a2a/internal`), so that only the first
 * start after an install or upgrade compiles it.
 */
import { CompileCache, StartupMemory } from "@mks/a2a/internal"
import { fileURLToPath } from "node:url"

// A server: the cache is written by a run that lived past start-up (not by `--help`). It starts
// in the initial young generation (StartupMemory; cli.ts lets it grow once the server listens).
CompileCache.run(fileURLToPath(new URL("./cli.cjs", import.meta.url)), "a2a-broker", { atExit: false, start: StartupMemory.hold })
