import { defineConfig } from "tsup"

export default defineConfig([
  {
    // `internal` is the plumbing the sibling packages share (`@mks/a2a/internal`).
    entry: ["src/index.ts", "src/internal.ts"],
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    sourcemap: true,
    clean: true
  },
  {
    // `@mks/a2a/client`: the Promise client with Effect and the platform inlined, for fast start-up.
    entry: { client: "src/client.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: false,
    sourcemap: false,
    clean: false,
    minify: true,
    treeshake: true,
    noExternal: [/^effect(\/.*)?$/, /^@effect\//],
    external: ["ws"]
  }
])
