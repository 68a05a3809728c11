import { defineConfig } from "tsup"

// A library: dependencies stay external, so a test shares one copy of effect with the servers.
export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: false,
  sourcemap: true,
  clean: true
})
