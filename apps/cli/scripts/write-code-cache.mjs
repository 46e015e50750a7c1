// Build step (not shipped): compiles dist/cli.cjs exactly as src/bin.ts does, runs
// `cage --help` with it (help text discarded by the caller), then writes the V8 code cache
// to dist/cli.cjs.cache, prefixed with the SHA-256 of the source it belongs to (V8 itself
// only checks the source's length). The loader never writes anything.
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire, Module } from "node:module"
import * as path from "node:path"
import * as vm from "node:vm"

const file = path.resolve("dist/cli.cjs")
const cacheFile = `${file}.cache`
const source = fs.readFileSync(file, "utf8").replace(/^#!.*/, "")
const script = new vm.Script(Module.wrap(source), { filename: file })
process.once("exit", (code) => {
  if (code !== 0) return
  const tmp = `${cacheFile}.${process.pid}`
  fs.writeFileSync(tmp, Buffer.concat([createHash("sha256").update(source).digest(), script.createCachedData()]))
  fs.renameSync(tmp, cacheFile)
})
process.argv = [process.argv[0], file, "--help"]
const module = { exports: {} }
script.runInThisContext()(module.exports, createRequire(file), module, file, path.dirname(file))
