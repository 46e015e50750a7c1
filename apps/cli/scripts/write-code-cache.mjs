// Build step (not shipped): `node scripts/write-code-cache.mjs cli|cluster` compiles
// dist/<name>.cjs exactly as src/bin.ts does, runs `cage --help` (or `cage cluster --help`)
// with it (help text discarded by the caller), then writes the V8 code cache to
// dist/<name>.cjs.cache, prefixed with the SHA-256 of the file it belongs to (V8 itself
// only checks the source's length). The loader never writes anything.
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire, Module } from "node:module"
import * as path from "node:path"
import * as vm from "node:vm"

const name = process.argv[2] === "cluster" ? "cluster" : "cli"
const file = path.resolve(`dist/${name}.cjs`)
const cacheFile = `${file}.cache`
const raw = fs.readFileSync(file)
// src/bin.ts decodes the bundle as latin1 when it is ASCII (esbuild escapes the rest; legal
// comments are dropped): a byte above 127 would only make every start decode UTF-8.
if (!raw.every((b) => b < 128)) process.stderr.write(`write-code-cache: dist/${name}.cjs is not ASCII: start-up decodes it as UTF-8 (slower)\n`)
const source = raw.toString("utf8").replace(/^#!.*/, "")
const script = new vm.Script(Module.wrap(source), { filename: file })
process.once("exit", (code) => {
  if (code !== 0) return
  const tmp = `${cacheFile}.${process.pid}`
  fs.writeFileSync(tmp, Buffer.concat([createHash("sha256").update(raw).digest(), script.createCachedData()]))
  fs.renameSync(tmp, cacheFile)
})
process.argv = [process.argv[0], file, ...(name === "cluster" ? ["cluster", "--help"] : ["--help"])]
const module = { exports: {} }
script.runInThisContext()(module.exports, createRequire(file), module, file, path.dirname(file))
