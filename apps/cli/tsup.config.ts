import { defineConfig } from "tsup"

export default defineConfig([
  {
    entry: ["src/index.ts"],
    format: ["esm"],
    dts: { entry: ["src/index.ts"] },
    sourcemap: true,
    clean: true,
    target: "node20"
  },
  {
    // The `cage` binary is one bundled file: resolving and compiling a few hundred ES
    // modules of effect and the workspace packages cost ~0.5 s of start-up per command.
    // node-pty stays outside (a native addon, loaded only for passphrases through age).
    entry: { bin: "src/bin.ts" },
    format: ["esm"],
    sourcemap: true,
    target: "node20",
    platform: "node",
    splitting: false,
    treeshake: true,
    // Whitespace and syntax only: ~10% faster start-up, and identifiers (so stack traces of
    // an internal error) stay readable.
    esbuildOptions: (o) => {
      o.minifyWhitespace = true
      o.minifySyntax = true
    },
    noExternal: [/.*/],
    external: ["node-pty"],
    banner: { js: "import { createRequire as __cageCreateRequire } from \"node:module\"; const require = __cageCreateRequire(import.meta.url);" }
  }
])
