// Processors that compose (issue 12): `cage encrypt` with
// processors = ["@acme/cage-processor-gzip", "agcm-encrypt"] (two stages: gzip, then AGCM
// cutting the gzip stream into its chunks) against `gzip -c IN | age -e -r R > OUT` and
// against plain `cage encrypt`, on the same text-like file, interleaved rounds, medians.
// Peak RSS of the composed run is measured again at a quarter of the size: flat means the
// same at both sizes.
// Usage: node bench/compose.mjs [--reps 3] [--size-mib 1024]
// Files under /tmp/cage-bench/compose-<pid>, deleted afterwards; JSON in bench/out/compose.json.
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, interleaved, numberOption, ROOT, table, timed, WORK, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 3)
const sizeMiB = numberOption("--size-mib", 1024)
ensureWork()
const dir = path.join(WORK, `compose-${process.pid}`)
fs.mkdirSync(dir, { recursive: true })

/** A SQL-dump-like text file of `bytes` bytes (compresses about 5:1 with gzip -6). */
const textFile = (name, bytes) => {
  const file = path.join(WORK, name)
  if (fs.existsSync(file) && fs.statSync(file).size === bytes) return file
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "select", "insert", "update", "values", "null", "true", "false"]
  const fd = fs.openSync(file, "w")
  let x = 0x2545f491
  let line = 0
  for (let left = bytes; left > 0;) {
    const parts = []
    for (let n = 0; n < 1 << 22;) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5
      const s = `INSERT INTO events VALUES (${line++}, '${words[(x >>> 0) % 12]}', ${(x >>> 8) % 100000}, '2026-12-${String((x >>> 4) % 28 + 1).padStart(2, "0")}');\n`
      parts.push(s)
      n += s.length
    }
    const block = Buffer.from(parts.join(""))
    const n = Math.min(left, block.length)
    fs.writeSync(fd, block, 0, n)
    left -= n
  }
  fs.closeSync(fd)
  return file
}

const sha = (file) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

try {
  const bytes = sizeMiB * 1048576
  const input = textFile(`compose-${sizeMiB}.sql`, bytes)
  const small = textFile(`compose-${sizeMiB / 4}.sql`, bytes / 4)
  const o = (name) => path.join(dir, name)
  // A project using the repository's third-party example plugin, as a user installs it.
  fs.mkdirSync(o("node_modules/@acme"), { recursive: true })
  fs.symlinkSync(path.join(ROOT, "examples/cage-processor-gzip"), o("node_modules/@acme/cage-processor-gzip"))
  fs.writeFileSync(o("cage.toml"), 'plugins = ["@acme/cage-processor-gzip", "@acme/cage-processor-gzip/gunzip"]\n[pipelines.encrypt]\nprocessors = ["@acme/cage-processor-gzip", "agcm-encrypt"]\n[pipelines.decrypt]\nprocessors = ["agcm-decrypt", "@acme/cage-processor-gzip/gunzip"]\n')
  const key = o("k.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  const identity = o("id.txt")
  execFileSync("age-keygen", ["-o", identity], { stdio: "ignore" })
  const recipient = execFileSync("age-keygen", ["-y", identity], { encoding: "utf8" }).trim()
  const inProject = (args) => ["bash", "-c", `cd ${dir} && exec node ${CAGE} ${args}`]
  const composed = (file, out, flags = "") => [inProject(`encrypt -q ${flags} --key ${key} -o ${out} ${file}`), { remove: [out] }]
  const cases = {
    "cage encrypt gzip → agcm": composed(input, o("c.agcm")),
    "cage encrypt gzip → agcm --no-fsync": composed(input, o("c.agcm"), "--no-fsync"),
    "gzip -c | age -e": [["bash", "-c", `gzip -c ${input} | age -e -r ${recipient} > ${o("g.age")}`], { remove: [o("g.age")] }],
    "cage encrypt (agcm alone) --no-fsync": [["node", CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("p.agcm"), input], { remove: [o("p.agcm")] }]
  }
  const m = interleaved(cases, reps)
  // The outputs of one more run of each, kept: sizes and a round trip.
  for (const out of ["c.agcm", "g.age", "p.agcm"]) fs.rmSync(o(out), { force: true })
  execFileSync(cases["cage encrypt gzip → agcm"][0][0], cases["cage encrypt gzip → agcm"][0].slice(1))
  execFileSync("bash", ["-c", `gzip -c ${input} | age -e -r ${recipient} > ${o("g.age")}`])
  execFileSync("node", [CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("p.agcm"), input])
  execFileSync("bash", ["-c", `cd ${dir} && node ${CAGE} decrypt -q --no-fsync --key ${key} -o ${o("back.sql")} ${o("c.agcm")}`])
  const roundTrip = sha(o("back.sql")) === sha(input)
  fs.rmSync(o("back.sql"))
  const smallRun = timed(composed(small, o("s.agcm"))[0], { remove: [o("s.agcm")] })
  const s = (k) => m[k].seconds
  const rows = [["run", "median s", "MB/s", "peak RSS MiB"]]
  for (const k of Object.keys(cases)) rows.push([k, s(k).toFixed(2), (bytes / 1e6 / s(k)).toFixed(0), m[k].rssMiB.toFixed(0)])
  const sizes = [["output", "bytes"], ["gzip → agcm", fs.statSync(o("c.agcm")).size], ["gzip | age", fs.statSync(o("g.age")).size], ["agcm alone", fs.statSync(o("p.agcm")).size]]
  console.log(`${sizeMiB} MiB of SQL-like text, ${reps} interleaved rounds, medians`)
  console.log(table(rows))
  console.log(table(sizes))
  const speed = s("gzip -c | age -e") / s("cage encrypt gzip → agcm")
  console.log(`cage gzip → agcm (durable) is ${speed.toFixed(2)}x the speed of gzip -c | age -e`)
  console.log(`round trip through cage decrypt (agcm-decrypt → gunzip): ${roundTrip ? "same SHA-256" : "DIFFERENT"}`)
  console.log(`peak RSS of cage gzip → agcm: ${smallRun.rssMiB.toFixed(0)} MiB at ${sizeMiB / 4} MiB, ${m["cage encrypt gzip → agcm"].rssMiB.toFixed(0)} MiB at ${sizeMiB} MiB`)
  writeResult("compose", { sizeMiB, reps, medians: m, sizes: Object.fromEntries(sizes.slice(1)), speedVsGzipAge: speed, roundTrip, rssSmallMiB: smallRun.rssMiB })
  if (!roundTrip) process.exitCode = 1
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
