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
  // The bin's bundle (`dist/cli.cjs`): one self-contained, tree-shaken bundle. Loading effect,
  // @effect/platform(-node) and core module by module costs over a second and ~150 MB RSS at
  // start; the bundle keeps only what the bin uses. Native and optional modules stay external.
  // CommonJS, so that `dist/cli.js` (below) can start it with V8's code cache on Node 20.
  {
    entry: ["src/cli.ts"],
    format: ["cjs"],
    outExtension: () => ({ js: ".cjs" }),
    // `import.meta.url` of the bundled sources, from `__filename`.
    shims: true,
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
      // Ui.ts's fallback `import()` (the bundle run without the loader) stays an import:
      // CommonJS output would make it a require(), which cannot load the ES-module dashboard.
      options.supported = { ...options.supported, "dynamic-import": true }
    },
    define: { __VERSION__: JSON.stringify(version) }
  },
  // `dist/cli.js`: starts `dist/cli.cjs` through the compile cache (src/bin.ts); a few KB.
  {
    entry: { cli: "src/bin.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    sourcemap: false,
    clean: false,
    noExternal: [/^@mks\/a2a(\/|$)/],
    esbuildOptions(options) {
      options.alias = { "@mks/a2a/internal": fileURLToPath(new URL("../core/src/internal.ts", import.meta.url)) }
    }
  }
])
