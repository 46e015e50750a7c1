import { defineConfig } from "tsup"

// One ESM entry with its declarations (dist/index.js, dist/index.d.ts) for Node 20.
export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20"
})
