#!/usr/bin/env node
/**
 * The `cage` executable: runs the bundled program `cli.cjs` (or, for `cage cluster …`,
 * `cluster.cjs`) through V8's code cache.
 *
 * Compiling the ~1.5 MB bundle costs ~60–90 ms of every command's start-up (the 3.3 MB
 * cluster bundle ~80 ms); `cli.cjs.cache` and `cluster.cjs.cache` (V8 code caches written at
 * build time by scripts/write-code-cache.mjs, after one `cage --help` and one
 * `cage cluster --help`) skip it. The cache starts with the SHA-256 of the source it was made
 * from (V8 only compares lengths); V8 itself rejects a cache of another Node/V8 version or
 * other V8 flags. In every such case the program compiles as usual: the cache only ever
 * saves time. Nothing is written at run time.
 *
 * @module
 */
import { isAscii } from "node:buffer"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire, Module } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as vm from "node:vm"

// `cage cluster …` runs the cluster commands' own bundle (`cluster.cjs`, the same flags and
// checks: src/cluster-cli.ts) straight away, with its own code cache: through `cli.cjs`, which
// parses the flags and then starts it as a child, a cluster command started ~0.25 s later
// (bench/cluster.mjs: the client's share of a job). `cage --log-level … cluster …` still
// goes through `cli.cjs` (commands/clusterDelegate.ts).
const bundle = process.argv[2] === "cluster" ? "cluster.cjs" : "cli.cjs"
const file = path.join(path.dirname(fileURLToPath(import.meta.url)), bundle)
const cacheFile = `${file}.cache`
// The bundle is ASCII (legal comments dropped at build): decoding it as latin1 and hashing
// its bytes costs ~5 ms where UTF-8 decoding and hashing the string cost ~20 ms per start.
const raw = fs.readFileSync(file)
const source = (isAscii(raw) ? raw.toString("latin1") : raw.toString("utf8")).replace(/^#!.*/, "")
let cachedData: Buffer | undefined
try {
  const stored = fs.readFileSync(cacheFile)
  if (stored.length > 32 && stored.subarray(0, 32).equals(createHash("sha256").update(raw).digest())) cachedData = stored.subarray(32)
} catch {
  // No cache (a development build): compile as usual.
}

// import() inside a vm.Script has no module loader to call (Node offers one only as an
// experimental option): plugins (ES modules) are imported through this module's own (see
// Registry.ts, IMPORT_KEY).
;(globalThis as Record<symbol, unknown>)[Symbol.for("@cage/cli/import")] = (url: string) => import(url)

const script = new vm.Script(Module.wrap(source), { filename: file, cachedData })
if (process.env.CAGE_CODE_CACHE_REPORT === "1") {
  // For the build's test: a cache V8 rejects costs start-up time without any other sign.
  process.stderr.write(`cage: code cache ${cachedData === undefined ? "absent" : script.cachedDataRejected ? "rejected" : "accepted"}\n`)
}

const module = { exports: {} }
const run = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: unknown, filename: string, dirname: string) => void
run(module.exports, createRequire(file), module, file, path.dirname(file))
