import preact from "@preact/preset-vite"
import { defineConfig } from "vite"

// Served by the broker under /ui; every asset is bundled (no external requests at run time).
export default defineConfig({
  base: "/ui/",
  plugins: [preact()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    assetsInlineLimit: 0
  }
})
