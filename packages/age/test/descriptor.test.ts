/**
 * `cat in | cage encrypt - > out` through descriptors: age reads stdin and writes stdout
 * itself (recipients: inherited; passphrase: opened by /proc name while the terminal carries
 * only the prompts). Real shell pipes, real age, real PTY.
 */
import { Encrypter } from "age-encryption"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { keygen, requireAge, tempDir, digestOf } from "./helpers.js"

requireAge()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const worker = new URL("./fixtures/descriptor-worker.mjs", import.meta.url).pathname
const key = keygen(dir)
const PASS = "descriptor pass 55"

interface Report {
  readonly ok?: Record<string, unknown> & { readonly progress: number; readonly verbose: ReadonlyArray<string> }
  readonly error?: string
  readonly failure?: { readonly tag: string; readonly reason: string | null } | null
  /** How long the worker's operation took, ms. */
  readonly elapsedMs: number
}

/**
 * Runs the worker as `PRODUCER | node worker | cat > OUT` (real pipes on both sides); the
 * producer is `cat IN` unless given (a shell command reading "$1"). `env` (shell
 * assignments, e.g. `PATH=/x`) applies to the worker alone.
 */
const runPiped = (op: string, options: object, inFile: string, outFile: string, producer = 'cat "$1"', env = ""): Report => {
  const r = spawnSync("sh", ["-c", `${producer} | ${env} "$2" "$3" "$4" "$5" | cat > "$6"`, "sh", inFile, process.execPath, worker, op, JSON.stringify(options), outFile], {
    encoding: "utf8"
  })
  return JSON.parse(r.stderr.slice(r.stderr.indexOf("{"))) as Report
}
const piped = (op: string, options: object, inFile: string, outFile: string, producer?: string, env?: string) => {
  const report = runPiped(op, options, inFile, outFile, producer, env)
  if (report.ok === undefined) throw new Error(`worker failed: ${report.error}`)
  return report.ok
}

/** `data` encrypted with PASS at a low scrypt cost (fast tests), in the file `name`; returns its path. */
const passphraseEncrypted = async (data: Uint8Array, name: string) => {
  const e = new Encrypter()
  e.setPassphrase(PASS)
  e.setScryptWorkFactor(10)
  const file = nodePath.join(dir, name)
  fs.writeFileSync(file, await e.encrypt(data))
  return file
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

it("passphrase: stdout is opened by name, stdin relayed into the FIFO age reads, nothing is staged", async () => {
  const encFile = await passphraseEncrypted(plain, "low.age")
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

describe("decrypting from a pipe: the first bytes decide armor, cat relays the rest", () => {
  const big = Buffer.alloc(3_000_017).map((_, i) => (i * 13 + (i >> 12)) & 0xff)
  const bigFile = nodePath.join(dir, "big")
  fs.writeFileSync(bigFile, big)
  const enc = nodePath.join(dir, "big.age")
  execFileSync("age", ["-e", "-r", key.recipient, "-o", enc, bigFile])
  const identity = { backend: "age", identityFiles: [key.identityFile] }

  it("binary input is relayed by cat and reports progress from it", () => {
    const back = nodePath.join(dir, "big.out")
    // The producer stays open a while after the data, so the progress poll (every 200 ms) sees cat's reads.
    const d = piped("decrypt", identity, enc, back, '{ cat "$1"; sleep 0.6; }')
    expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(big))
    expect(d.verbose.join("\n")).toContain("relayed by cat")
    expect(d.progress).toBeGreaterThanOrEqual(fs.statSync(enc).size)
  })

  it("first bytes that arrive one at a time are kept and handed on", () => {
    const back = nodePath.join(dir, "slow.out")
    // 'a', 'g', 'e' arrive in separate writes: not enough to decide until the intro is longer.
    const producer = '{ head -c 1 "$1"; sleep 0.1; tail -c +2 "$1" | head -c 1; sleep 0.1; tail -c +3 "$1" | head -c 1; sleep 0.1; tail -c +4 "$1"; }'
    piped("decrypt", identity, enc, back, producer)
    expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(big))
  })

  it("armored input is decoded here and fed to age, with progress", () => {
    const armored = nodePath.join(dir, "big.age.asc")
    execFileSync("age", ["-e", "-a", "-r", key.recipient, "-o", armored, bigFile])
    const back = nodePath.join(dir, "armored.out")
    const d = piped("decrypt", identity, armored, back)
    expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(big))
    expect(d.verbose.join("\n")).not.toContain("relayed by cat")
    expect(d.progress).toBe(fs.statSync(armored).size)
  })

  it("age failing while the producer is idle ends the run at once (the relay is stopped)", () => {
    const other = keygen(dir, "idle")
    // Small enough for cat to have written all of it: it then waits in read() on the producer.
    const smallPlain = nodePath.join(dir, "small")
    fs.writeFileSync(smallPlain, plain.subarray(0, 1000))
    const small = nodePath.join(dir, "small.age")
    execFileSync("age", ["-e", "-r", key.recipient, "-o", small, smallPlain])
    const r = runPiped("decrypt", { backend: "age", identityFiles: [other.identityFile] }, small, nodePath.join(dir, "idle.out"), '{ cat "$1"; sleep 6; }')
    expect(r.failure).toEqual({ tag: "AgeError", reason: "NoMatch" })
    // The shell pipeline lasts as long as its producer; the worker's own time is what counts:
    // with cat left waiting in read(), it would end only with the producer, after 6 s.
    expect(r.elapsedMs).toBeLessThan(4_000)
  })

  it("whitespace-only input is decided after a bounded peek: an armor failure", () => {
    const spaces = nodePath.join(dir, "spaces")
    fs.writeFileSync(spaces, Buffer.alloc(3 << 20, 0x20))
    const r = runPiped("decrypt", identity, spaces, nodePath.join(dir, "spaces.out"))
    expect(r.failure).toEqual({ tag: "AgeError", reason: "ArmorFailure" })
  })

  it("a damaged payload is age's failure, not a broken pipe of the relay", () => {
    const bad = nodePath.join(dir, "bad.age")
    const bytes = fs.readFileSync(enc)
    bytes[bytes.length >> 3] ^= 1
    fs.writeFileSync(bad, bytes)
    const r = runPiped("decrypt", identity, bad, nodePath.join(dir, "bad.out"))
    expect(r.ok).toBeUndefined()
    expect(r.failure).toEqual({ tag: "AgeError", reason: "PayloadFailure" })
  })

  it("a wrong identity fails at the header while cat still has megabytes to relay", () => {
    const other = keygen(dir, "other")
    const r = runPiped("decrypt", { backend: "age", identityFiles: [other.identityFile] }, enc, nodePath.join(dir, "nomatch.out"))
    expect(r.failure).toEqual({ tag: "AgeError", reason: "NoMatch" })
  })

  it("without cat on PATH the bytes are pumped here", () => {
    const back = nodePath.join(dir, "nocat.out")
    const env = `PATH=/nonexistent CAGE_AGE_BIN=${execFileSync("sh", ["-c", "command -v age"], { encoding: "utf8" }).trim()}`
    const d = piped("decrypt", identity, enc, back, 'cat "$1"', env)
    expect(digestOf(fs.readFileSync(back))).toEqual(digestOf(big))
    expect(d.strategy).toBe("pipe")
    expect(d.verbose.join("\n")).toMatch(/through a pipe to/)
  })

  it("an unreadable standard input is an I/O error naming it", () => {
    const r = spawnSync("sh", ["-c", '"$1" "$2" decrypt "$3" < "$4" > /dev/null', "sh", process.execPath, worker, JSON.stringify(identity), dir], { encoding: "utf8" })
    const report = JSON.parse(r.stderr.slice(r.stderr.indexOf("{"))) as Report
    expect(report.failure?.tag).toBe("IoError")
    expect(report.error).toContain("EISDIR")
  })
})
