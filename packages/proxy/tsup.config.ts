import { defineConfig } from "tsup"

export default defineConfig([
  // The library: dependencies stay external, so embedding programs share one copy of effect.
  {
    entry: ["src/index.ts"],
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    sourcemap: true,
    clean: true
  },
  // The `a2a-proxy` bin: one self-contained, tree-shaken file. Loading all of effect,
  // @effect/platform(-node) and core module by module costs ~150 MB RSS and ~1.5 s; the bundle
  // keeps only what the proxy uses.
  {
    entry: ["src/cli.ts"],
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    // An 11 MB map of bundled dependencies is not worth shipping.
    sourcemap: false,
    clean: false,
    noExternal: [/.*/],
    // Bundled CommonJS dependencies (ws, yaml) call require() for node built-ins.
    banner: { js: 'import { createRequire as __a2aCreateRequire } from "node:module"; const require = __a2aCreateRequire(import.meta.url);' }
  }
])
