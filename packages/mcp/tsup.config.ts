import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { defineConfig } from "tsup"

const { version } = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"))

export default defineConfig([
  // The library: dependencies stay external, so embedding programs share one copy of effect.
  {
    entry: ["src/index.ts"],
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    sourcemap: true,
    clean: true,
    define: { __VERSION__: JSON.stringify(version) }
  },
  // The bin (`dist/cli.js`): a self-contained, tree-shaken, minified bundle. Loading effect,
  // @effect/platform(-node) and core module by module costs over a second and ~150 MB RSS at
  // start; the bundle keeps only what the bin uses. Core is bundled from its source, not from
  // its built index (one file holding every module, which esbuild cannot prune), so only the
  // core modules the bin imports are in it. Every byte of the bundle is parsed and kept as
  // source text in the heap, so minifying it lowers start time and idle RSS too.
  //
  // The bundle is split into a few chunk files (the extra `cli-*` entries only draw the chunk
  // lines: the MCP SDK, zod, effect with core), all loaded at start. V8 parses each module
  // file on its own, and one 1.5 MB module needed a 27 MB parser peak in malloc that glibc
  // often kept (idle RSS 103 instead of 86 MiB, by chance of the heap layout); chunks of at
  // most ~750 KB peak at 19 MB and left 86 MiB in every run.
  {
    entry: {
      cli: "src/cli.ts",
      "cli-sdk": fileURLToPath(new URL("../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/mcp.js", import.meta.url)),
      "cli-zod": fileURLToPath(new URL("../../node_modules/zod/v4/index.js", import.meta.url)),
      "cli-effect": fileURLToPath(new URL("../core/src/BrokerClient.ts", import.meta.url))
    },
    splitting: true,
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    // A multi-megabyte map of bundled dependencies is not worth shipping.
    sourcemap: false,
    clean: false,
    noExternal: [/.*/],
    minify: true,
    // See src/lazyGlobals.ts: keeps a read of the global FormData from loading Node's undici.
    inject: ["src/lazyGlobals.ts"],
    esbuildOptions(options) {
      options.alias = {
        "@mks/a2a": fileURLToPath(new URL("../core/src/index.ts", import.meta.url)),
        // Commands.ts's CliSpec (from core's source, like the rest of core: only what is used is bundled).
        "@mks/a2a/internal": fileURLToPath(new URL("../core/src/internal.ts", import.meta.url))
      }
    },
    define: { __VERSION__: JSON.stringify(version) },
    // Bundled CommonJS dependencies (ws, …) call require() for node built-ins.
    banner: { js: 'import { createRequire as __a2aCreateRequire } from "node:module"; const require = __a2aCreateRequire(import.meta.url);' }
  }
])
