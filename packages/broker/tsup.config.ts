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
  // The bin (`dist/cli.js`): one self-contained, tree-shaken bundle. Loading effect,
  // @effect/platform(-node) and core module by module costs over a second and ~150 MB RSS at
  // start; the bundle keeps only what the bin uses. Native and optional modules stay external.
  {
    entry: ["src/cli.ts"],
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    // A multi-megabyte map of bundled dependencies is not worth shipping.
    sourcemap: false,
    clean: false,
    // Everything but the native and optional modules (tsup's `noExternal` wins over `external`).
    noExternal: [/^(?!(better\-sqlite3|@mks\/a2a\-dashboard|pg\-native)(\/|$))/],
    external: ["better-sqlite3", "@mks/a2a-dashboard", "pg-native"],
    minify: true,
    esbuildOptions(options) {
      options.alias = {
        "@mks/a2a": fileURLToPath(new URL("../core/src/index.ts", import.meta.url)),
        "@mks/a2a/internal": fileURLToPath(new URL("../core/src/internal.ts", import.meta.url))
      }
    },
    define: { __VERSION__: JSON.stringify(version) },
    // Bundled CommonJS dependencies (ws, …) call require() for node built-ins.
    banner: { js: 'import { createRequire as __a2aCreateRequire } from "node:module"; const require = __a2aCreateRequire(import.meta.url);' }
  }
])
