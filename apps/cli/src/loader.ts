#!/usr/bin/env node
/**
 * The `cage` executable: runs the bundled program `cli.cjs` through V8's code cache.
 *
 * Compiling the ~1.5 MB bundle costs ~60–90 ms of every command's start-up; `cli.cjs.cache`
 * (V8 code cache, written at build time by running `cage --help` with
 * `CAGE_WRITE_CODE_CACHE=1`) skips it. V8 rejects a cache made by another Node/V8 version
 * or with other V8 flags, and the program then compiles as usual: the cache only ever
 * saves time. Nothing is written at run time.
 *
 * @module
 */
import * as fs from "node:fs"
import { createRequire, Module } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as vm from "node:vm"

const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "cli.cjs")
const cacheFile = `${file}.cache`
const source = fs.readFileSync(file, "utf8").replace(/^#!.*/, "")
let cachedData: Buffer | undefined
try {
  cachedData = fs.readFileSync(cacheFile)
} catch {
  // No cache (a development build): compile as usual.
}

// import() inside a script compiled from a code cache finds no module loader: plugins (ES
// modules) are imported through this module's own (see Registry.ts, IMPORT_KEY).
;(globalThis as Record<symbol, unknown>)[Symbol.for("@cage/cli/import")] = (url: string) => import(url)

const script = new vm.Script(Module.wrap(source), { filename: file, cachedData })
if (process.env.CAGE_CODE_CACHE_REPORT === "1") {
  // For the build's test: a cache V8 rejects costs start-up time without any other sign.
  process.stderr.write(`cage: code cache ${cachedData === undefined ? "absent" : script.cachedDataRejected ? "rejected" : "accepted"}\n`)
}

if (process.env.CAGE_WRITE_CODE_CACHE === "1") {
  // Build time only: keep what this run compiled (top level and the functions it called).
  process.once("exit", () => {
    const tmp = `${cacheFile}.${process.pid}`
    fs.writeFileSync(tmp, script.createCachedData())
    fs.renameSync(tmp, cacheFile)
  })
}

const module = { exports: {} }
const run = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: unknown, filename: string, dirname: string) => void
run(module.exports, createRequire(file), module, file, path.dirname(file))
