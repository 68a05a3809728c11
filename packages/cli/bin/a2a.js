#!/usr/bin/env node
// The `a2a` command. This small file is committed so the bin exists from the moment of
// install (npm links bins before anything is built); it loads the build in ../dist.
import { existsSync } from "node:fs"

const cli = new URL("../dist/cli.js", import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write("a2a: this copy is not built (no dist/cli.js); in a checkout of the repository run: npm run build\n")
  process.exit(1)
}
// `a2a --version` answers without loading the CLI (it is asked by scripts, often).
if (process.argv.length === 3 && process.argv[2] === "--version") {
  const { readFileSync } = await import("node:fs")
  process.stdout.write(`${JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version}\n`)
} else {
  await import(cli.href)
}
