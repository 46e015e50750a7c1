import { defineConfig } from "tsup"

export default defineConfig([
  {
    entry: ["src/index.ts"],
    format: ["esm"],
    dts: { entry: ["src/index.ts"] },
    sourcemap: true,
    // The build script empties dist/ first: three parallel builds must not clean each other.
    clean: false,
    target: "node20"
  },
  {
    // The `cage` program is one bundled CommonJS file: resolving and compiling a few hundred
    // ES modules of effect and the workspace packages cost ~0.5 s of start-up per command,
    // and a classic script can use V8's code cache (see src/bin.ts). node-pty stays
    // outside (a native addon, loaded only for passphrases through age).
    // `cluster.cjs`: the cluster commands, run by `cli.cjs` as a child process (their
    // PostgreSQL client and cluster runtime would slow every command's start-up).
    entry: { cli: "src/cli.ts", cluster: "src/cluster-cli.ts" },
    format: ["cjs"],
    outExtension: () => ({ js: ".cjs" }),
    sourcemap: true,
    target: "node20",
    platform: "node",
    splitting: false,
    treeshake: true,
    shims: true,
    // Whitespace and syntax only: faster start-up, and identifiers (so stack traces of an
    // internal error) stay readable.
    esbuildOptions: (o) => {
      o.minifyWhitespace = true
      o.minifySyntax = true
      // An ASCII bundle decodes as latin1 at start-up (src/bin.ts); the licenses are in the
      // dependencies' packages.
      o.legalComments = "none"
    },
    noExternal: [/.*/],
    external: ["node-pty"]
  },
  {
    // The executable: runs cli.cjs with V8's code cache (written after this build by
    // scripts/write-code-cache.mjs, which is not shipped).
    entry: { bin: "src/bin.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node"
  }
])
