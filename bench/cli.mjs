// Issue 2's figures: `cage encrypt`/`cage decrypt` (the real binary) against `age -e -r` /
// `age -d -i` on the same 1 GiB file in the same run, outputs deleted before each run; and
// peak RSS of `cage encrypt` at 256 MiB and 2 GiB inputs.
//
// age never fsyncs; cage fsyncs its output before publishing it (and before each checkpoint)
// unless --no-fsync. Both are measured: `--no-fsync` is the like-for-like comparison, the
// default shows the price of durability on this disk.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, interleaved, mbps, median, randomFile, table, WORK, writeResult } from "./lib.mjs"

const GiB = 1 << 30
const runs = Number(process.env.CAGE_BENCH_RUNS ?? 3)
ensureWork()
const input = randomFile("input-1g.bin", GiB)
const key = path.join(WORK, "bench.key")
fs.rmSync(key, { force: true })
execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
const id = path.join(WORK, "age-id.txt")
fs.rmSync(id, { force: true })
execFileSync("age-keygen", ["-o", id], { stdio: "ignore" })
const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(id, "utf8"))[0]

const enc = path.join(WORK, "out.agcm")
const dec = path.join(WORK, "out.plain")
const ageEnc = path.join(WORK, "out.age")
const ageDec = path.join(WORK, "out.age.plain")
const cage = (...args) => ["node", CAGE, ...args, "-q"]

// Encryptions first (the decryptions read their outputs), each round running every command once.
const r = interleaved({
  ageEncrypt: [["age", "-e", "-r", recipient, "-o", ageEnc, input], { remove: [ageEnc] }],
  cageEncryptNoFsync: [cage("encrypt", "--key", key, "--no-fsync", "-o", enc, input), { remove: [enc] }],
  cageEncrypt: [cage("encrypt", "--key", key, "-o", enc, input), { remove: [enc] }],
  cp: [["cp", input, dec], { remove: [dec] }]
}, runs)
Object.assign(r, interleaved({
  ageDecrypt: [["age", "-d", "-i", id, "-o", ageDec, ageEnc], { remove: [ageDec] }],
  cageDecryptNoFsync: [cage("decrypt", "--key", key, "--no-fsync", "-o", dec, enc), { remove: [dec] }],
  cageDecrypt: [cage("decrypt", "--key", key, "-o", dec, enc), { remove: [dec] }]
}, runs))
for (const f of [enc, dec, ageEnc, ageDec]) fs.rmSync(f, { force: true })

const rss = {}
for (const [label, bytes] of [["256MiB", 256 << 20], ["2GiB", 2 * GiB]]) {
  const file = randomFile(`input-${label}.bin`, bytes)
  rss[label] = median(cage("encrypt", "--key", key, "--no-fsync", "-o", enc, file), 1, { remove: [enc] }).rssMiB
  fs.rmSync(enc, { force: true })
  if (bytes !== GiB) fs.rmSync(file, { force: true })
}

const row = (name, m, ref) => [name, (mbps(GiB, m.seconds)).toFixed(0), m.seconds.toFixed(2), ref ? (ref.seconds / m.seconds).toFixed(2) + "x" : "", m.rssMiB.toFixed(0)]
console.log("1 GiB, median of", runs, "runs; ratio = reference time / this time (> 1 is faster than the reference)")
console.log(table([
  ["run", "MB/s", "s", "vs age", "peak RSS MiB"],
  row("age -e -r (reference)", r.ageEncrypt),
  row("cage encrypt --no-fsync", r.cageEncryptNoFsync, r.ageEncrypt),
  row("cage encrypt (fsync)", r.cageEncrypt, r.ageEncrypt),
  row("age -d -i (reference)", r.ageDecrypt),
  row("cage decrypt --no-fsync", r.cageDecryptNoFsync, r.ageDecrypt),
  row("cage decrypt (fsync)", r.cageDecrypt, r.ageDecrypt),
  row("cp", r.cp)
]))
console.log(`peak RSS of cage encrypt: 256 MiB input ${rss["256MiB"].toFixed(0)} MiB, 1 GiB ${r.cageEncryptNoFsync.rssMiB.toFixed(0)} MiB, 2 GiB ${rss["2GiB"].toFixed(0)} MiB`)
writeResult("cli", { bytes: GiB, runs, results: r, rssByInput: { "256MiB": rss["256MiB"], "1GiB": r.cageEncryptNoFsync.rssMiB, "2GiB": rss["2GiB"] } })
if (!process.env.CAGE_BENCH_KEEP) fs.rmSync(input, { force: true })
