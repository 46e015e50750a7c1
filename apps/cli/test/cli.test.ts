import { createRequire } from "node:module"
const require = createRequire(import.meta.url)
import * as fs from "node:fs"
import * as path from "node:path"
import { availableParallelism } from "node:os"
import { randomBytes } from "node:crypto"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { BIN, cage, tempDir, writeRandom } from "./helpers.js"
import { workersFor } from "../src/Io.js"

let dir: string
let key: string
beforeEach(() => {
  dir = tempDir()
  key = path.join(dir, "k.key")
  expect(cage(["keygen", "-q", "-o", key]).code).toBe(0)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const f = (name: string) => path.join(dir, name)

describe("the executable", () => {
  it("starts from V8's code cache built with it, and still imports ES-module plugins", () => {
    // A rejected cache (a V8 flag changed at load time, another Node) only shows as a slower start.
    const r = cage(["--version"], { env: { CAGE_CODE_CACHE_REPORT: "1" } })
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("code cache accepted")
    const enc = cage(["encrypt", "--key", key, "-q", "-o", f("x.agcm"), key], { env: { CAGE_CODE_CACHE_REPORT: "1" } })
    expect(enc.code).toBe(0)
    expect(enc.stderr).toContain("code cache accepted")
    // `cage cluster …` runs the cluster bundle straight from its own cache (src/bin.ts).
    const cluster = cage(["cluster", "status", "--help"], { env: { CAGE_CODE_CACHE_REPORT: "1" } })
    expect(cluster.code).toBe(0)
    expect(cluster.stderr).toContain("code cache accepted")
    expect(cluster.stdout.toString()).toContain("cage cluster status")
    // Plugins come in through import(), which a script from a code cache cannot call itself.
    fs.mkdirSync(f("node_modules/p-ok"), { recursive: true })
    fs.writeFileSync(f("node_modules/p-ok/package.json"), JSON.stringify({ name: "p-ok", version: "1.2.3", type: "module", exports: "./index.js" }))
    fs.writeFileSync(f("node_modules/p-ok/index.js"), "export default { name: 'p-ok', apiVersion: 1, description: 'ok', capabilities: { kind: 'observer', ordered: true }, make() { return {} } }\n")
    fs.writeFileSync(f("cage.toml"), `plugins = ["p-ok"]\n`)
    const list = cage(["processors", "list", "--json"], { cwd: dir })
    expect(list.stderr).toBe("")
    expect(JSON.parse(list.stdout.toString()).map((p: { name: string }) => p.name)).toContain("p-ok")
  })
  it("never runs a stale code cache: a program edited to the same length compiles afresh", () => {
    const dist = path.dirname(BIN)
    const copy = f("dist")
    fs.mkdirSync(copy)
    for (const name of ["bin.js", "cli.cjs", "cli.cjs.cache"]) fs.copyFileSync(path.join(dist, name), path.join(copy, name))
    fs.writeFileSync(path.join(copy, "package.json"), JSON.stringify({ type: "module" }))
    const program = fs.readFileSync(path.join(copy, "cli.cjs"), "utf8")
    // The version literal of the program (VERSION = "x.y.z"), edited in place to 9s: same
    // length, so V8's own check (lengths only) would take the old bytecode.
    // Every VERSION = "x.y.z" literal of the bundle (each package has its own).
    const edited = program.replace(/(VERSION\d*=")(\d+\.\d+\.\d+)"/g, (_, head: string, v: string) => `${head}${v.replace(/\d/g, "9")}"`)
    expect(edited).not.toBe(program)
    expect(edited.length).toBe(program.length)
    fs.writeFileSync(path.join(copy, "cli.cjs"), edited)
    const r = spawnSync(process.execPath, [path.join(copy, "bin.js"), "--version"], { env: { ...process.env, CAGE_CODE_CACHE_REPORT: "1" } })
    expect(r.stderr.toString()).toContain("code cache absent")
    expect(r.stdout.toString()).toMatch(/v9+\.9+\.9+/)
  })
})

describe("keygen and key files", () => {
  it("creates a 0600 key file and never overwrites it", () => {
    expect(fs.statSync(key).mode & 0o777).toBe(0o600)
    const before = fs.readFileSync(key, "utf8")
    expect(before).toMatch(/^cage-key-1:[A-Za-z0-9_-]{43}$/m)
    const r = cage(["keygen", "-o", key])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("already exists")
    expect(fs.readFileSync(key, "utf8")).toBe(before)
  })
  it("accepts a bare 64-hex-character key file", () => {
    const hexKey = f("hex.key")
    fs.writeFileSync(hexKey, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", { mode: 0o600 })
    fs.writeFileSync(f("in"), "hello")
    expect(cage(["encrypt", "-q", "--key", hexKey, f("in")]).code).toBe(0)
    expect(cage(["decrypt", "-q", "--key", hexKey, "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(fs.readFileSync(f("out"), "utf8")).toBe("hello")
  })
  it("rejects a malformed key file by name, without echoing its content", () => {
    const bad = f("bad.key")
    fs.writeFileSync(bad, "cage-key-1:SECRETSECRETSECRET\n", { mode: 0o600 })
    fs.writeFileSync(f("in"), "x")
    const r = cage(["encrypt", "--key", bad, f("in")])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(bad)
    expect(r.stderr).not.toContain("SECRET")
    expect(fs.existsSync(f("in.agcm"))).toBe(false)
  })
})

describe("encrypt and decrypt round trips", () => {
  const n = 16 * 1024
  it.for([0, 1, n - 1, n, n + 1, 2 * n - 1, 2 * n + 1])("file of %i bytes at 16 KiB chunks", (size) => {
    writeRandom(f("in"), size)
    expect(cage(["encrypt", "-q", "--key", key, "--chunk-size", "16KiB", f("in")]).code).toBe(0)
    // header + chunks of n+16, with the short final chunk always present
    const header = fs.statSync(f("in.agcm")).size - (Math.floor(size / n) + 1) * 16 - size
    expect(header).toBe(66)
    const r = cage(["decrypt", "-q", "--key", key, "-o", f("out"), f("in.agcm")])
    expect(r.code).toBe(0)
    expect(fs.readFileSync(f("out")).equals(fs.readFileSync(f("in")))).toBe(true)
    expect(fs.readdirSync(dir).filter((x) => x.endsWith(".partial") || x.endsWith(".cage-checkpoint"))).toEqual([])
  })
  it("stdin to stdout, and a passphrase file", () => {
    const data = Buffer.from("streamed through pipes ".repeat(5000))
    const pass = f("pass.txt")
    fs.writeFileSync(pass, "correct horse battery staple\n", { mode: 0o600 })
    const enc = cage(["encrypt", "-q", "--passphrase-file", pass, "-"], { input: data })
    expect(enc.code).toBe(0)
    expect(enc.stdout.subarray(0, 4).toString()).toBe("AGCM")
    const dec = cage(["decrypt", "-q", "--passphrase-file", pass, "-"], { input: enc.stdout })
    expect(dec.code).toBe(0)
    expect(dec.stdout.equals(data)).toBe(true)
  })
  it("one thread by default from a stream to a pipe, the cores otherwise (workersFor); --workers and cage.toml still decide", () => {
    const rule = (input: string, output: string, stdin?: "file" | "device" | "other", stdout?: "file" | "device" | "other", stdinOffset?: number) =>
      workersFor({ input, output, stdin, stdinOffset, stdout })
    // A pipe (or socket) in and out: one thread.
    expect(rule("-", "-", "other", "other")).toBe(1)
    // A terminal, or a file past its start, on stdin: read as a stream too.
    expect(rule("-", "-", "device", "other")).toBe(1)
    expect(rule("-", "-", "file", "other", 4096)).toBe(1)
    // A file at either end: the cipher's default (the cores).
    expect(rule("-", "-", "file", "other", 0)).toBeUndefined()
    expect(rule("-", "out.agcm", "other", undefined)).toBeUndefined()
    expect(rule("in.bin", "-", undefined, "other")).toBeUndefined()
    expect(rule("-", "-", "other", "file")).toBeUndefined()
    expect(rule("-", "-", "other", "device")).toBeUndefined()
    // Through the executable: the flag and cage.toml win over the rule (the result names its workers).
    const data = randomBytes(300_000)
    const workersOf = (r: { code: number | null; stdout: Buffer; stderr: string }) => {
      expect([r.code, r.stderr]).toEqual([0, ""])
      return JSON.parse(r.stdout.toString()).results["agcm-encrypt"].workers
    }
    expect(workersOf(cage(["encrypt", "--json", "--key", key, "-o", f("p.agcm"), "-"], { input: data }))).toBe(availableParallelism())
    expect(workersOf(cage(["encrypt", "--json", "--workers", "1", "--key", key, "-o", f("q.agcm"), "-"], { input: data }))).toBe(1)
    fs.mkdirSync(f("proj"))
    fs.writeFileSync(f("proj/cage.toml"), "workers = 1\n")
    expect(workersOf(cage(["encrypt", "--json", "--key", key, "-o", f("r.agcm"), "-"], { input: data, cwd: f("proj") }))).toBe(1)
    // Through the executable, the rule itself: the summary names the cipher's threads. Here
    // stdin and stdout are pipes (spawnSync's), a file at one end keeps the cores.
    const cores = availableParallelism()
    const threadsOf = (r: { code: number | null; stdout: Buffer; stderr: string }) => {
      expect(r.code).toBe(0)
      return Number(/, (\d+) threads?\), peak RSS/.exec(r.stderr)?.[1])
    }
    const sealed = cage(["encrypt", "--key", key, "-"], { input: data })
    expect(threadsOf(sealed)).toBe(1)
    // In the user's words: one chunk and one thread, not "1 chunks" or "1 threads".
    expect(cage(["encrypt", "--key", key, "-"], { input: randomBytes(1000) }).stderr).toMatch(/ in 1 chunk, .*, 1 thread\), peak RSS/)
    expect(threadsOf(cage(["decrypt", "--key", key, "-"], { input: sealed.stdout }))).toBe(1)
    fs.writeFileSync(f("plain.bin"), data)
    expect(threadsOf(cage(["encrypt", "--key", key, "-o", "-", f("plain.bin")]))).toBe(cores)
    expect(threadsOf(cage(["encrypt", "--key", key, "-o", f("s.agcm"), "-"], { input: data }))).toBe(cores)
  })
  it("--json with the data on standard output is refused at once (exit 2): a JSON line after the data would corrupt it", () => {
    const data = randomBytes(1000)
    const cases: Array<[ReadonlyArray<string>, string]> = [
      [["encrypt", "--json", "--key", key, "-o", "-", "-"], "standard output carries the ciphertext (-o -): leave out --json, or write to a file with -o FILE"],
      [["encrypt", "--json", "--key", key, "-"], "standard output carries the ciphertext (-o -, the default for input -): leave out --json, or write to a file with -o FILE"],
      [["decrypt", "--json", "--key", key, "-o", "-", "-"], "standard output carries the plaintext (-o -): leave out --json, or write to a file with -o FILE"],
      [["decrypt", "--json", "--key", key, "-"], "standard output carries the plaintext (-o -, the default for input -): leave out --json, or write to a file with -o FILE"],
      // The age backend too.
      [["encrypt", "--backend", "age", "-r", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "--json", "-o", "-", "-"], "standard output carries the ciphertext (-o -): leave out --json, or write to a file with -o FILE"],
      [["decrypt", "--backend", "age", "-i", key, "--json", "-"], "standard output carries the plaintext (-o -, the default for input -): leave out --json, or write to a file with -o FILE"]
    ]
    for (const [args, message] of cases) {
      const r = cage(args, { input: data })
      expect([r.code, r.stderr]).toEqual([2, ""])
      expect(JSON.parse(r.stdout.toString())).toMatchObject({ error: message, exitCode: 2 })
    }
    const plain = cage(["encrypt", "--key", key, "-o", "-", "-"], { input: data, env: {} })
    expect(plain.code).toBe(0)
    expect(plain.stdout.subarray(0, 4).toString()).toBe("AGCM")
  })
  it("stdin redirected from a file and stdout to a file or /dev/null: the same bytes as through pipes", () => {
    // Over the pool's 8 MiB threshold, with a short final chunk and a first read offset.
    writeRandom(f("in"), 9 * 1024 * 1024 + 123)
    const redirected = (args: ReadonlyArray<string>, stdin: string, stdout: string) => {
      const fds = [fs.openSync(stdin, "r"), fs.openSync(stdout, "w")]
      try {
        const r = spawnSync(process.execPath, [BIN, ...args], { stdio: [fds[0], fds[1], "pipe"] })
        return { code: r.status, stderr: r.stderr.toString() }
      } finally {
        for (const fd of fds) fs.closeSync(fd)
      }
    }
    const enc = redirected(["encrypt", "-q", "--key", key, "-o", "-", "-"], f("in"), f("in.agcm"))
    expect(enc).toEqual({ code: 0, stderr: "" })
    const dec = redirected(["decrypt", "-q", "--key", key, "-o", "-", "-"], f("in.agcm"), f("back"))
    expect(dec).toEqual({ code: 0, stderr: "" })
    expect(fs.readFileSync(f("back")).equals(fs.readFileSync(f("in")))).toBe(true)
    // The same ciphertext read through a pipe, and written to a device.
    const piped = cage(["decrypt", "-q", "--key", key, "-"], { input: fs.readFileSync(f("in.agcm")) })
    expect(piped.code).toBe(0)
    expect(piped.stdout.equals(fs.readFileSync(f("in")))).toBe(true)
    expect(redirected(["decrypt", "-q", "--key", key, "-o", "-", f("in.agcm")], "/dev/null", "/dev/null")).toEqual({ code: 0, stderr: "" })
    // A stdin already read past its start (by an earlier command of the same shell group):
    // cage reads the rest, in order, not the whole file.
    const fd = fs.openSync(f("in"), "r")
    const out = fs.openSync(f("rest.agcm"), "w")
    try {
      fs.readSync(fd, Buffer.alloc(1000), 0, 1000, null)
      const r = spawnSync(process.execPath, [BIN, "encrypt", "-q", "--key", key, "-o", "-", "-"], { stdio: [fd, out, "pipe"] })
      expect(r.status).toBe(0)
    } finally {
      fs.closeSync(fd)
      fs.closeSync(out)
    }
    const rest = cage(["decrypt", "-q", "--key", key, "-o", "-", f("rest.agcm")])
    expect(rest.stdout.equals(fs.readFileSync(f("in")).subarray(1000))).toBe(true)
    // A damaged chunk still fails the run with the integrity exit code, on a file's stdin.
    const sealed = fs.readFileSync(f("in.agcm"))
    sealed[sealed.length - 100] ^= 1
    fs.writeFileSync(f("bad.agcm"), sealed)
    const bad = redirected(["decrypt", "-q", "--key", key, "-o", "-", "-"], f("bad.agcm"), f("bad.out"))
    expect(bad.code).toBe(3)
  })
  it("a pipe that stays open: a damaged chunk or a few bytes that are not AGCM end the run at once, and so does SIGINT while it waits on stdin", async () => {
    writeRandom(f("in"), 3_000_000)
    expect(cage(["encrypt", "-q", "--key", key, f("in")]).code).toBe(0)
    const sealed = fs.readFileSync(f("in.agcm"))
    sealed[5000] ^= 1 // inside chunk 0, in the first segment
    /** Runs cage with `bytes` on a stdin pipe this test keeps open until cage has exited. */
    const openPipe = (args: ReadonlyArray<string>, bytes: Uint8Array, onStart?: (child: ReturnType<typeof spawn>) => void) =>
      new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, ...args], { stdio: ["pipe", "ignore", "pipe"] })
        let stderr = ""
        child.stderr!.on("data", (d) => { stderr += d })
        child.stdin!.on("error", () => undefined) // cage may exit before taking all of it
        // More than a pipe holds (64 KiB): written, it has been partly read, so cage is running.
        child.stdin!.write(bytes, () => onStart?.(child))
        child.on("error", reject)
        // Only the exit ends this promise: were cage waiting for end of input, the test would time out.
        child.on("exit", (code) => {
          child.stdin!.destroy()
          resolve({ code, stderr })
        })
      })
    const damaged = await openPipe(["decrypt", "-q", "--key", key, "-o", f("out"), "-"], sealed)
    expect(damaged.code).toBe(3)
    expect(damaged.stderr).toMatch(/chunk 0 failed authentication/)
    expect(fs.existsSync(f("out"))).toBe(false)
    expect(fs.existsSync(f("out.partial"))).toBe(false)
    // A few bytes that are not AGCM (shorter than its longest header, 1109 bytes): refused at once.
    const garbage = await openPipe(["decrypt", "-q", "--key", key, "-o", f("out"), "-"], Buffer.from("PK\x03\x04 a zip, not AGCM", "latin1"))
    expect(garbage.code).toBe(3)
    expect(garbage.stderr).toMatch(/not an AGCM file/)
    expect(fs.readdirSync(dir).filter((x) => x.startsWith("out"))).toEqual([])
    // Interrupted while waiting for more input: 130, nothing published.
    const stopped = await openPipe(["encrypt", "--key", key, "-o", f("enc"), "-"], fs.readFileSync(f("in")).subarray(0, 1_000_000), (child) => child.kill("SIGINT"))
    expect(stopped.code).toBe(130)
    expect(stopped.stderr).toMatch(/interrupted \(SIGINT\); nothing was published/)
    expect(fs.readdirSync(dir).filter((x) => x.startsWith("enc"))).toEqual([])
  }, 60_000)
  it("--range returns exactly the bytes asked for", () => {
    writeRandom(f("in"), 300_000)
    expect(cage(["encrypt", "-q", "--key", key, "--chunk-size", "16KiB", f("in")]).code).toBe(0)
    const r = cage(["decrypt", "-q", "--key", key, "--range", "16000:50000", "-o", "-", f("in.agcm")])
    expect(r.code).toBe(0)
    expect(r.stdout.equals(fs.readFileSync(f("in")).subarray(16000, 50000))).toBe(true)
  })
})

describe("bad input: clear errors, distinct exit codes, nothing lost", () => {
  it("a missing input is exit 4 and names the file", () => {
    const r = cage(["encrypt", "--key", key, f("nope")])
    expect(r.code).toBe(4)
    expect(r.stderr).toContain(f("nope"))
  })
  it("an existing output is never replaced without --force", () => {
    fs.writeFileSync(f("in"), "new")
    fs.writeFileSync(f("in.agcm"), "precious")
    const r = cage(["encrypt", "--key", key, f("in")])
    expect(r.code).toBe(4)
    expect(r.stderr).toContain("refusing to overwrite")
    expect(fs.readFileSync(f("in.agcm"), "utf8")).toBe("precious")
    expect(cage(["encrypt", "-q", "--force", "--key", key, f("in")]).code).toBe(0)
  })
  it("a wrong key is exit 3 and publishes nothing", () => {
    writeRandom(f("in"), 100_000)
    expect(cage(["encrypt", "-q", "--key", key, f("in")]).code).toBe(0)
    const other = f("other.key")
    cage(["keygen", "-q", "-o", other])
    const r = cage(["decrypt", "--key", other, "-o", f("out"), f("in.agcm")])
    expect(r.code).toBe(3)
    expect(fs.existsSync(f("out"))).toBe(false)
    expect(fs.existsSync(f("out.partial"))).toBe(false)
  })
  it("a flipped byte in the body is exit 3 naming the chunk, and no output", () => {
    writeRandom(f("in"), 200_000)
    expect(cage(["encrypt", "-q", "--key", key, "--chunk-size", "16KiB", f("in")]).code).toBe(0)
    const bytes = fs.readFileSync(f("in.agcm"))
    bytes[66 + 3 * (16384 + 16) + 100] ^= 1
    fs.writeFileSync(f("bad.agcm"), bytes)
    const r = cage(["decrypt", "--key", key, "-o", f("out"), f("bad.agcm")])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/chunk 3/)
    expect(fs.existsSync(f("out"))).toBe(false)
  })
  it("a truncated file is exit 3", () => {
    writeRandom(f("in"), 100_000)
    expect(cage(["encrypt", "-q", "--key", key, "--chunk-size", "16KiB", f("in")]).code).toBe(0)
    fs.truncateSync(f("in.agcm"), 66 + 2 * (16384 + 16))
    const r = cage(["decrypt", "--key", key, "-o", f("out"), f("in.agcm")])
    expect(r.code).toBe(3)
    expect(r.stderr.toLowerCase()).toContain("truncat")
  })
  it("not an AGCM file is exit 3", () => {
    fs.writeFileSync(f("plain.agcm"), "just some text, not a ciphertext")
    const r = cage(["decrypt", "--key", key, f("plain.agcm")])
    expect(r.code).toBe(3)
    expect(fs.existsSync(f("plain"))).toBe(false)
  })
  it("usage errors are exit 2", () => {
    expect(cage(["encrypt"]).code).toBe(2)
    expect(cage(["bogus"]).code).toBe(2)
    fs.writeFileSync(f("in"), "x")
    expect(cage(["encrypt", "--key", key, "--chunk-size", "lots", f("in")]).code).toBe(2)
    expect(cage(["encrypt", "--key", key, "--chunk-size", "1000", f("in")]).code).toBe(2)
    expect(cage(["decrypt", "--key", key, f("in")]).code).toBe(2) // no .agcm suffix, no -o
    expect(cage(["encrypt", "--key", key, "--passphrase-file", key, f("in")]).code).toBe(2)
  })
  it("no key and no terminal is a usage error, not a hang", () => {
    fs.writeFileSync(f("in"), "x")
    const r = cage(["encrypt", f("in")], { env: { CAGE_CONFIG: f("none.toml") } })
    expect([2]).toContain(r.code)
  })
})

describe("chunk plan and inspect", () => {
  it("plans without reading and inspects headers and checkpoints", () => {
    writeRandom(f("in"), 100_000)
    const plan = cage(["chunk", "plan", "--json", "--chunk-size", "32KiB", "--limit", "0", f("in")])
    expect(plan.code).toBe(0)
    const p = JSON.parse(plan.stdout.toString())
    expect(p.totalChunks).toBe(4)
    expect(p.chunks.at(-1)).toMatchObject({ index: 3, start: 98304, end: 100000, length: 1696, final: true })
    expect(cage(["encrypt", "-q", "--key", key, f("in")]).code).toBe(0)
    const info = JSON.parse(cage(["chunk", "inspect", "--json", f("in.agcm")]).stdout.toString())
    expect(info).toMatchObject({ kind: "agcm", version: 2, chunkSize: 65536, keyMode: "raw" })
    expect(cage(["chunk", "inspect", f("in")]).code).toBe(2)
  })
  it("plans the chunks encrypt runs: a size on a chunk boundary ends with an empty final chunk", () => {
    writeRandom(f("even"), 4 * 32768)
    const planned = JSON.parse(cage(["chunk", "plan", "--json", "--chunk-size", "32KiB", "--limit", "0", f("even")]).stdout.toString())
    const encrypted = JSON.parse(cage(["encrypt", "--json", "--key", key, "--chunk-size", "32KiB", f("even")]).stdout.toString())
    expect(planned.totalChunks).toBe(5)
    expect(encrypted.totalChunks).toBe(planned.totalChunks)
    expect(planned.chunks.at(-1)).toMatchObject({ index: 4, start: 131072, end: 131072, length: 0, final: true })
  })
})

describe("--backend age and age-lib", () => {
  it("recipient encryption is read by plain age and by the library backend, with relative paths", () => {
    const { execFileSync } = require("node:child_process") as typeof import("node:child_process")
    execFileSync("age-keygen", ["-o", f("id.txt")], { stdio: "ignore" })
    const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(f("id.txt"), "utf8"))![0]
    writeRandom(f("in"), 70_000)
    expect(cage(["encrypt", "-q", "--backend", "age", "-r", recipient, "--audit-log", "audit.jsonl", "in"], { cwd: dir }).code).toBe(0)
    // the audit trail names the recipient only by fingerprint
    const audit = fs.readFileSync(f("audit.jsonl"), "utf8")
    expect(audit).toMatch(/"recipients":\["sha256:[0-9a-f]{64}"\]/)
    expect(audit).not.toContain(recipient)
    expect(execFileSync("age", ["-d", "-i", f("id.txt"), f("in.age")]).equals(fs.readFileSync(f("in")))).toBe(true)
    expect(cage(["decrypt", "-q", "--backend", "age-lib", "-i", "id.txt", "-o", "out", "in.age"], { cwd: dir }).code).toBe(0)
    expect(fs.readFileSync(f("out")).equals(fs.readFileSync(f("in")))).toBe(true)
    const wrong = f("id2.txt")
    execFileSync("age-keygen", ["-o", wrong], { stdio: "ignore" })
    const r = cage(["decrypt", "--backend", "age", "-i", wrong, "-o", f("out2"), f("in.age")])
    expect(r.code).toBe(3)
    expect(fs.existsSync(f("out2"))).toBe(false)
  })
  it("passphrase files through the age CLI's terminal prompt, relative paths, wrong passphrase is exit 3", () => {
    writeRandom(f("in"), 50_000)
    fs.writeFileSync(f("pw"), "age passphrase\n", { mode: 0o600 })
    fs.writeFileSync(f("bad"), "not it\n", { mode: 0o600 })
    expect(cage(["encrypt", "-q", "--backend", "age", "--passphrase-file", "pw", "in"], { cwd: dir }).code).toBe(0)
    expect(cage(["decrypt", "-q", "--backend", "age", "--passphrase-file", "pw", "-o", "out", "in.age"], { cwd: dir }).code).toBe(0)
    expect(fs.readFileSync(f("out")).equals(fs.readFileSync(f("in")))).toBe(true)
    // cat big | cage encrypt --backend age --passphrase-file F - > out.age: streams, nothing staged
    const piped = cage(["encrypt", "-q", "--backend", "age", "--passphrase-file", "pw", "-"], { cwd: dir, input: fs.readFileSync(f("in")) })
    expect(piped.code).toBe(0)
    expect(piped.stdout.subarray(0, 21).toString()).toBe("age-encryption.org/v1")
    const back = cage(["decrypt", "-q", "--backend", "age", "--passphrase-file", "pw", "-"], { cwd: dir, input: piped.stdout })
    expect(back.code).toBe(0)
    expect(back.stdout.equals(fs.readFileSync(f("in")))).toBe(true)
    const r = cage(["decrypt", "--backend", "age", "--passphrase-file", "bad", "-o", "out3", "in.age"], { cwd: dir })
    expect(r.code).toBe(3)
    expect(r.stderr).not.toContain("not it")
  })
})
