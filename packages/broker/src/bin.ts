#!/usr/bin/env node
/**
 * `dist/cli.js`, what `a2a-broker` runs: the bin's bundle (`dist/cli.cjs`, built from ./cli.ts)
 * started through V8's code cache (`CompileCache` in `@mks/a2a/internal`), so that only the first
 * start after an install or upgrade compiles it.
 */
import { CompileCache } from "@mks/a2a/internal"
import { fileURLToPath } from "node:url"

// A server: the cache is written by a run that lived past start-up (not by `--help`).
CompileCache.run(fileURLToPath(new URL("./cli.cjs", import.meta.url)), "a2a-broker", { atExit: false })
