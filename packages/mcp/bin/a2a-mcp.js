#!/usr/bin/env node
// The `a2a-mcp` command. This small file is committed so the bin exists from the moment of
// install (npm links bins before anything is built); it loads the build in ../dist.
import { existsSync } from "node:fs"

const cli = new URL("../dist/cli.js", import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write("a2a-mcp: this copy is not built (no dist/cli.js); in a checkout of the repository run: npm run build\n")
  process.exit(1)
}
await import(cli.href)
