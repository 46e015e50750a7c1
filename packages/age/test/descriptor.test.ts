/**
 * `cat in | cage encrypt - > out` through descriptors: age reads stdin and writes stdout
 * itself (recipients: inherited; passphrase: opened by /proc name while the terminal carries
 * only the prompts). Real shell pipes, real age, real PTY.
 */
import { Encrypter } from "age-encryption"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { afterAll, expect, it } from "vitest"
import { keygen, requireAge, tempDir, digestOf } from "./helpers.js"

requireAge()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const worker = new URL("./fixtures/descriptor-worker.mjs", import.meta.url).pathname
const key = keygen(dir)
const PASS = "descriptor pass 55"

/** Runs the worker as `cat IN | node worker | cat > OUT` (real pipes on both sides). */
const piped = (op: string, options: object, inFile: string, outFile: string) => {
  const r = spawnSync("sh", ["-c", 'cat "$1" | node "$2" "$3" "$4" | cat > "$5"', "sh", inFile, worker, op, JSON.stringify(options), outFile], { encoding: "utf8" })
  const report = JSON.parse(r.stderr.slice(r.stderr.indexOf("{"))) as { ok?: Record<string, unknown>; error?: string }
  if (report.ok === undefined) throw new Error(`worker failed: ${report.error}`)
  return report.ok
}

const plain = Buffer.alloc(200_001).map((_, i) => (i * 7) & 0xff)
const inFile = nodePath.join(dir, "plain")
fs.writeFileSync(inFile, plain)

it("recipients: age reads stdin and writes stdout itself", () => {
  const out = nodePath.join(dir, "r.age")
  const s = piped("encrypt", { backend: "age", recipients: [key.recipient] }, inFile, out)
  expect(s.strategy).toBe("direct")
  expect(s.bytesIn).toBeUndefined()
  expect(digestOf(execFileSync("age", ["-d", "-i", key.identityFile, out], { maxBuffer: 1 << 24 }))).toEqual(digestOf(plain))
  const back = nodePath.join(dir, "r.out")
  const d = piped("decrypt", { backend: "age", identityFiles: [key.identityFile] }, out, back)
  expect(d.strategy).toBe("pipe")
  expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(plain))
})

it("passphrase: stdin and stdout pipes are opened by name, nothing is staged", async () => {
  const e = new Encrypter()
  e.setPassphrase(PASS)
  e.setScryptWorkFactor(10)
  const encFile = nodePath.join(dir, "low.age")
  fs.writeFileSync(encFile, await e.encrypt(plain))
  const back = nodePath.join(dir, "p.out")
  const d = piped("decrypt", { backend: "age", passphrase: PASS, strategy: "pipe" }, encFile, back)
  expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(plain))
  expect(d.strategy).toBe("pipe")

  const out = nodePath.join(dir, "p.age")
  const s = piped("encrypt", { backend: "age", passphrase: PASS }, inFile, out)
  expect(s.strategy).toBe("direct")
  expect(fs.readFileSync(out).subarray(0, 22).toString()).toBe("age-encryption.org/v1\n")
})

it("the library backend takes descriptors too", () => {
  const out = nodePath.join(dir, "lib.age")
  const s = piped("encrypt", { backend: "age-lib", recipients: [key.recipient], armor: true }, inFile, out)
  expect(s.strategy).toBe("library")
  expect(digestOf(execFileSync("age", ["-d", "-i", key.identityFile, out], { maxBuffer: 1 << 24 }))).toEqual(digestOf(plain))
})
