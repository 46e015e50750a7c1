// Durable writes at disk speed (issue 13 §1): default (fsync) `cage encrypt` and
// `cage decrypt` against `dd conv=fdatasync` of the same bytes (the disk's durable write)
// and against `age` (which does not fsync), with `--no-fsync` and `cp` as further
// references. Interleaved rounds (A B C …, A B C …), medians.
// Usage: node bench/durable.mjs [--reps 5] [--size-mib 1024]
// Targets: durable cage ≤ 1.15x dd conv=fdatasync and ≤ 1.1x age. Files under
// /tmp/cage-bench/durable-<pid>, deleted afterwards; JSON in bench/out/durable.json.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, interleaved, numberOption, randomFile, table, WORK, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 5)
const sizeMiB = numberOption("--size-mib", 1024)
const bytes = sizeMiB * 1048576
ensureWork()
const dir = path.join(WORK, `durable-${process.pid}`)
fs.mkdirSync(dir, { recursive: true })
try {
  const input = randomFile(`durable-${sizeMiB}.bin`, bytes)
  const key = path.join(dir, "k.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  const identity = path.join(dir, "id.txt")
  execFileSync("age-keygen", ["-o", identity], { stdio: "ignore" })
  const recipient = execFileSync("age-keygen", ["-y", identity], { encoding: "utf8" }).trim()
  const o = (name) => path.join(dir, name)
  // Sealed inputs for the decrypt rows, made once.
  execFileSync("node", [CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("in.agcm"), input])
  execFileSync("age", ["-e", "-r", recipient, "-o", o("in.age"), input])
  const cases = {
    "cage encrypt": [["node", CAGE, "encrypt", "-q", "--key", key, "-o", o("e.agcm"), input], { remove: [o("e.agcm")] }],
    "cage encrypt --no-fsync": [["node", CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("e.agcm"), input], { remove: [o("e.agcm")] }],
    "age -e": [["age", "-e", "-r", recipient, "-o", o("e.age"), input], { remove: [o("e.age")] }],
    "dd conv=fdatasync": [["dd", `if=${input}`, `of=${o("dd.out")}`, "bs=1M", "conv=fdatasync", "status=none"], { remove: [o("dd.out")] }],
    "cp": [["cp", input, o("cp.out")], { remove: [o("cp.out")] }],
    "cage decrypt": [["node", CAGE, "decrypt", "-q", "--key", key, "-o", o("d.out"), o("in.agcm")], { remove: [o("d.out")] }],
    "cage decrypt --no-fsync": [["node", CAGE, "decrypt", "-q", "--no-fsync", "--key", key, "-o", o("d.out"), o("in.agcm")], { remove: [o("d.out")] }],
    "age -d": [["age", "-d", "-i", identity, "-o", o("d.age.out"), o("in.age")], { remove: [o("d.age.out")] }]
  }
  const m = interleaved(cases, reps)
  const s = (k) => m[k].seconds
  const ratio = (a, b) => (s(a) / s(b)).toFixed(2)
  const rows = [["run", "median s", "peak RSS MiB"]]
  for (const k of Object.keys(cases)) rows.push([k, s(k).toFixed(2), m[k].rssMiB.toFixed(0)])
  const checks = [
    ["cage encrypt / dd conv=fdatasync", +ratio("cage encrypt", "dd conv=fdatasync"), 1.15],
    ["cage encrypt / age -e", +ratio("cage encrypt", "age -e"), 1.1],
    ["cage decrypt / dd conv=fdatasync", +ratio("cage decrypt", "dd conv=fdatasync"), 1.15],
    ["cage decrypt / age -d", +ratio("cage decrypt", "age -d"), 1.1]
  ]
  console.log(`${sizeMiB} MiB, ${reps} interleaved rounds, medians`)
  console.log(table(rows))
  console.log(table([["ratio (time)", "value", "target", ""], ...checks.map(([n, v, t]) => [n, v.toFixed(2), `<= ${t}`, v <= t ? "PASS" : "MISS"])]))
  writeResult("durable", { sizeMiB, reps, medians: m, checks })
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
