// The one tsup configuration of every library package: ESM for Node 20 with declarations
// and source maps, dist/ emptied first. A package's tsup.config.ts names only its entries.
import { defineConfig, type Options } from "tsup"

/** The configuration of a library built from `entry` (default `src/index.ts`). */
export const library = (entry: Options["entry"] = ["src/index.ts"]) =>
  defineConfig({
    entry,
    format: ["esm"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "node20"
  })
