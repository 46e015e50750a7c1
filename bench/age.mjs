// Benchmark of @cage/age against the age CLI driven directly (same run, same files).
// Usage: pnpm --filter @cage/age build && node bench/age.mjs [--size-mib 1024] [--reps 3] [--only TEXT]
// Prints a table and writes bench/out/age.json. Outputs are deleted before every run.
// Cage's file outputs skip fsync like `age -o` (one row compares both with fsync). Times are
// measured inside the worker after its imports (library throughput, not Node's start-up).
import { execFileSync, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { peakRssKiB } from "./lib.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const agePkg = path.join(here, "../packages/age")
const requireFromAge = createRequire(path.join(agePkg, "package.json"))
const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : dflt
}

// ---- worker: one cage operation in a child process, reports wall time and peak RSS ----
if (args[0] === "--worker") {
  const job = JSON.parse(args[1])
  const { encrypt, decrypt } = await import(path.join(agePkg, "dist/index.js"))
  const { ChunkInput, ChunkOutput } = await import(path.join(agePkg, "node_modules/@cage/core/dist/index.js"))
  const { Effect } = await import(path.join(agePkg, "node_modules/effect/dist/index.js"))
  const t0 = performance.now()
  const { descriptorInput, descriptorOutput } = await import(path.join(agePkg, "dist/index.js"))
  // "-" is what the cage CLI gets for stdin/stdout: handed to the library as descriptors.
  const input = job.in === "-" ? Effect.succeed(descriptorInput(0)) : ChunkInput.fromFile(job.in)
  // age -o does not fsync; cage's file sink does by default. Like for like unless asked.
  const output = job.out === "-" ? descriptorOutput(1) : ChunkOutput.toFile(job.out, { fsync: job.options.fsync === true })
  const op = job.op === "encrypt" ? encrypt : decrypt
  const summary = await Effect.runPromise(Effect.flatMap(input, (i) => op({ ...job.options, input: i, output })))
  const ms = performance.now() - t0
  fs.writeSync(3, JSON.stringify({ ms, maxRssKiB: peakRssKiB(), strategy: summary.strategy }))
  process.exit(0)
}

const sizeMiB = Number(opt("--size-mib", "1024"))
const reps = Number(opt("--reps", "3"))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-age-bench-"))
const pty = requireFromAge("node-pty")
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }))
// Interrupted runs clean up too (the inputs are GiBs).
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130))

const makeInput = (file, bytes) => {
  const fd = fs.openSync(file, "w")
  const block = Buffer.alloc(8 << 20)
  for (let done = 0; done < bytes; done += block.length) {
    crypto.randomFillSync(block)
    fs.writeSync(fd, block, 0, Math.min(block.length, bytes - done))
  }
  fs.closeSync(fd)
}
// Outputs are removed, dirty pages synced and the kernel given a second to finish freeing a
// deleted GiB before every run, so no run pays for the previous one's writeback or discard.
const rm = (...files) => {
  for (const f of files) fs.rmSync(f, { force: true })
  execFileSync("sync")
  execFileSync("sleep", ["1"])
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const input = path.join(dir, "in.bin")
const small = path.join(dir, "small.bin")
makeInput(input, sizeMiB << 20)
makeInput(small, 64 << 20)
const key = path.join(dir, "key.txt")
execFileSync("age-keygen", ["-o", key], { stdio: "ignore" })
const recipient = execFileSync("age-keygen", ["-y", key], { encoding: "utf8" }).trim()
const passFile = path.join(dir, "pass.txt")
fs.writeFileSync(passFile, "bench-passphrase-4f1c\n", { mode: 0o600 })
const passphrase = "bench-passphrase-4f1c"
const encR = path.join(dir, "enc.r.age")
const encP = path.join(dir, "enc.p.age")
const out = path.join(dir, "out")

/** Runs a command; returns wall ms and its peak RSS from GNU time. */
const timed = (cmd, argv, { stdin, stdout } = {}) => new Promise((resolve, reject) => {
  const t0 = performance.now()
  const child = spawn("/usr/bin/time", ["-f", "%M", cmd, ...argv], {
    stdio: [stdin ? fs.openSync(stdin, "r") : "ignore", stdout ? fs.openSync(stdout, "wx", 0o600) : "ignore", "pipe"]
  })
  let err = ""
  child.stderr.on("data", (d) => { err += d })
  child.on("close", (code) => {
    const ms = performance.now() - t0
    if (code !== 0) return reject(new Error(`${cmd} ${argv.join(" ")}: ${err}`))
    resolve({ ms, maxRssKiB: Number(err.trim().split("\n").at(-1)) })
  })
})

/** A cage operation in a child node. */
const cage = (op, inPath, outPath, options) => new Promise((resolve, reject) => {
  const job = JSON.stringify({ op, in: inPath, out: outPath, options })
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--worker", job], {
    stdio: [inPath === "-" ? "pipe" : "ignore", outPath === "-" ? "pipe" : "ignore", "inherit", "pipe"]
  })
  let report = ""
  child.stdio[3].on("data", (d) => { report += d })
  child.on("close", (code) => code === 0 ? resolve(JSON.parse(report)) : reject(new Error(`cage ${op} exited ${code}`)))
  return child
})
/** `cat IN | cage ... - > OUT`: stdin is a pipe, stdout a new file, as from a shell. */
const cagePiped = (op, inPath, outPath, options) => new Promise((resolve, reject) => {
  const job = JSON.stringify({ op, in: "-", out: "-", options })
  const child = spawn("sh", ["-c", 'cat "$1" | "$2" "$3" --worker "$4" 3>&3 > "$5"', "sh", inPath, process.execPath, fileURLToPath(import.meta.url), job, outPath], {
    stdio: ["ignore", "ignore", "inherit", "pipe"]
  })
  let report = ""
  child.stdio[3].on("data", (d) => { report += d })
  child.on("close", (code) => code === 0 ? resolve(JSON.parse(report)) : reject(new Error(`cage ${op} exited ${code}`)))
})

/** `age -p` driven directly through a pseudo-terminal (the reference for passphrase mode). */
const agePty = (argv) => new Promise((resolve, reject) => {
  const t0 = performance.now()
  const term = pty.spawn("age", argv, { name: "dumb", cols: 200, rows: 20, env: { PATH: process.env.PATH } })
  let seen = ""
  let busy = false
  term.onData((d) => {
    seen += d
    if (busy || !/passphrase[^\n]*:\s*$/i.test(seen)) return
    busy = true
    const waitEcho = () => {
      const s = execFileSync("stty", ["-F", term.ptsName, "-a"], { encoding: "utf8" })
      if (!/(^|[\s;])-echo([\s;]|$)/.test(s)) return setTimeout(waitEcho, 2)
      seen = ""
      busy = false
      term.write(`${passphrase}\r`)
    }
    waitEcho()
  })
  term.onExit(({ exitCode }) => exitCode === 0 ? resolve({ ms: performance.now() - t0, maxRssKiB: undefined }) : reject(new Error(`age ${argv.join(" ")} exited ${exitCode}`)))
})

const MB = (ms, bytes) => bytes / 1e6 / (ms / 1000)
const rows = []
const only = opt("--only", "")
const compare = async (name, bytes, reference, subject) => {
  // --only SUBSTRING runs the matching rows alone (e.g. more repetitions of the noisy ones).
  if (!name.includes(only)) return
  const ref = []
  const sub = []
  for (let i = 0; i < reps; i++) {
    ref.push(await reference())
    sub.push(await subject())
  }
  const refMs = median(ref.map((r) => r.ms))
  const subMs = median(sub.map((r) => r.ms))
  const row = {
    name,
    referenceMBs: Math.round(MB(refMs, bytes)),
    cageMBs: Math.round(MB(subMs, bytes)),
    ratio: Number((refMs / subMs).toFixed(3)),
    cagePeakRssMiB: Math.round(Math.max(...sub.map((r) => r.maxRssKiB ?? 0)) / 1024),
    strategy: sub[0].strategy
  }
  rows.push(row)
  console.log(JSON.stringify(row))
}
const bytes = sizeMiB << 20

// Recipient mode, file to file: cage vs `age -e -r -o OUT IN`.
execFileSync("age", ["-e", "-r", recipient, "-o", encR, input])
await compare("encrypt -r, file to file", bytes,
  () => (rm(out), timed("age", ["-e", "-r", recipient, "-o", out, input])),
  () => (rm(out), cage("encrypt", input, out, { backend: "age", recipients: [recipient] })))
await compare("encrypt -r, file to file, both fsync", bytes,
  () => (rm(out), timed("sh", ["-c", 'age -e -r "$1" -o "$2" "$3" && sync "$2"', "sh", recipient, out, input])),
  () => (rm(out), cage("encrypt", input, out, { backend: "age", recipients: [recipient], fsync: true })))
await compare("decrypt -i, file to file", bytes,
  () => (rm(out), timed("age", ["-d", "-i", key, "-o", out, encR])),
  () => (rm(out), cage("decrypt", encR, out, { backend: "age", identityFiles: [key] })))
// Recipient mode, streams: stdin a pipe, stdout a new file (descriptors handed to age).
await compare("encrypt -r, stdin pipe to stdout file", bytes,
  () => (rm(out), timed("age", ["-e", "-r", recipient, "-o", out, input])),
  () => (rm(out), cagePiped("encrypt", input, out, { backend: "age", recipients: [recipient] })))
await compare("decrypt -i, stdin pipe to stdout file", bytes,
  () => (rm(out), timed("age", ["-d", "-i", key, "-o", out, encR])),
  () => (rm(out), cagePiped("decrypt", encR, out, { backend: "age", identityFiles: [key] })))
// The same streams against age reading the same kind of pipe (`cat IN | age ... > OUT`):
// the pipe, not cage, sets the ceiling there (informative; the targets are against file mode).
const agePiped = (argv, inPath, outPath) =>
  timed("sh", ["-c", 'in="$1"; out="$2"; shift 2; cat "$in" | age "$@" > "$out"', "sh", inPath, outPath, ...argv])
await compare("encrypt -r, stdin pipe to stdout file, vs age on the same pipe", bytes,
  () => (rm(out), agePiped(["-e", "-r", recipient], input, out)),
  () => (rm(out), cagePiped("encrypt", input, out, { backend: "age", recipients: [recipient] })))
await compare("decrypt -i, stdin pipe to stdout file, vs age on the same pipe", bytes,
  () => (rm(out), agePiped(["-d", "-i", key], encR, out)),
  () => (rm(out), cagePiped("decrypt", encR, out, { backend: "age", identityFiles: [key] })))
// Passphrase mode through the terminal: cage vs `age -p` driven directly through a PTY.
rm(encP)
await agePty(["-p", "-o", encP, input])
await compare("encrypt -p, file to file", bytes,
  () => (rm(out), agePty(["-p", "-o", out, input])),
  () => (rm(out), cage("encrypt", input, out, { backend: "age", passphraseFile: passFile })))
await compare("decrypt -p, file to file", bytes,
  () => (rm(out), agePty(["-d", "-o", out, encP])),
  () => (rm(out), cage("decrypt", encP, out, { backend: "age", passphraseFile: passFile })))
await compare("encrypt -p, stdin pipe to stdout file", bytes,
  () => (rm(out), agePty(["-p", "-o", out, input])),
  () => (rm(out), cagePiped("encrypt", input, out, { backend: "age", passphraseFile: passFile, strategy: "pipe" })))
await compare("decrypt -p, stdin pipe to stdout file", bytes,
  () => (rm(out), agePty(["-d", "-o", out, encP])),
  () => (rm(out), cagePiped("decrypt", encP, out, { backend: "age", passphraseFile: passFile, strategy: "pipe" })))
// Library backend (informative): against the CLI's file mode.
await compare("encrypt age-lib, file to file", bytes,
  () => (rm(out), timed("age", ["-e", "-r", recipient, "-o", out, input])),
  () => (rm(out), cage("encrypt", input, out, { backend: "age-lib", recipients: [recipient] })))
await compare("decrypt age-lib, file to file", bytes,
  () => (rm(out), timed("age", ["-d", "-i", key, "-o", out, encR])),
  () => (rm(out), cage("decrypt", encR, out, { backend: "age-lib", identityFiles: [key] })))

// Peak RSS against input size: the streamed (pumped) paths at 64 MiB and at full size.
const rss = {}
for (const [label, file] of [["64MiB", small], [`${sizeMiB}MiB`, input]]) {
  rm(out)
  const a = await cagePiped("encrypt", file, out, { backend: "age", recipients: [recipient] })
  rm(out)
  const b = await cagePiped("encrypt", file, out, { backend: "age", passphraseFile: passFile, strategy: "pipe" })
  rm(out)
  const c = await cage("encrypt", file, out, { backend: "age-lib", recipients: [recipient] })
  rss[label] = { pipeRecipientMiB: Math.round(a.maxRssKiB / 1024), pipePassphraseMiB: Math.round(b.maxRssKiB / 1024), libMiB: Math.round(c.maxRssKiB / 1024) }
}
rm(out)

console.log(`\n@cage/age, ${sizeMiB} MiB, median of ${reps}, MB/s = 10^6 B/s`)
console.log("| run | reference MB/s | cage MB/s | cage/reference | cage peak RSS MiB | strategy |")
console.log("|---|---|---|---|---|---|")
for (const r of rows) console.log(`| ${r.name} | ${r.referenceMBs} | ${r.cageMBs} | ${(r.ratio * 100).toFixed(0)}% | ${r.cagePeakRssMiB} | ${r.strategy} |`)
console.log("\npeak RSS of the cage process by input size (MiB):", JSON.stringify(rss))
fs.mkdirSync(path.join(here, "out"), { recursive: true })
fs.writeFileSync(path.join(here, "out/age.json"), JSON.stringify({ sizeMiB, reps, rows, rss, node: process.version, date: new Date().toISOString() }, null, 2))
