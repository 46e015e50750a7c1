// Standard input and output (pipes, redirected files, /dev/null): `cage encrypt`/`decrypt`
// against `age` doing the same, and a plain `cat | cat` as the price of the pipe itself.
// Interleaved rounds, medians; peak RSS is the largest process of each pipeline (cage's).
// Usage: node bench/stream.mjs [--reps 5] [--size-mib 1024]
// Files under /tmp/cage-bench/stream-<pid>, deleted afterwards; JSON in bench/out/stream.json.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, interleaved, numberOption, randomFile, table, WORK, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 5)
const sizeMiB = numberOption("--size-mib", 1024)
ensureWork()
const dir = path.join(WORK, `stream-${process.pid}`)
fs.mkdirSync(dir, { recursive: true })
try {
  const input = randomFile(`stream-${sizeMiB}.bin`, sizeMiB * 1048576)
  const o = (name) => path.join(dir, name)
  const key = o("k.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  execFileSync("age-keygen", ["-o", o("id.txt")], { stdio: "ignore" })
  const recipient = execFileSync("age-keygen", ["-y", o("id.txt")], { encoding: "utf8" }).trim()
  execFileSync("node", [CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("in.agcm"), input])
  execFileSync("age", ["-e", "-r", recipient, "-o", o("in.age"), input])
  const sh = (line, remove = []) => [["bash", "-c", line], { remove }]
  const cage = `node ${CAGE}`
  const ageE = `age -e -r ${recipient}`
  const ageD = `age -d -i ${o("id.txt")}`
  // [label, cage's command, age's command]; outputs to a file are not fsynced by either.
  const pairs = [
    ["encrypt, stdin from a file, to a file", `${cage} encrypt -q --no-fsync --key ${key} -o ${o("x")} - < ${input}`, `${ageE} -o ${o("x")} < ${input}`],
    ["encrypt, a pipe to a file", `cat ${input} | ${cage} encrypt -q --no-fsync --key ${key} -o ${o("x")} -`, `cat ${input} | ${ageE} -o ${o("x")}`],
    ["encrypt, a file to a pipe", `${cage} encrypt -q --key ${key} -o - ${input} | cat > /dev/null`, `${ageE} ${input} | cat > /dev/null`],
    ["decrypt, a pipe to a pipe", `cat ${o("in.agcm")} | ${cage} decrypt -q --key ${key} -o - - | cat > /dev/null`, `cat ${o("in.age")} | ${ageD} | cat > /dev/null`],
    ["decrypt, a file to /dev/null", `${cage} decrypt -q --key ${key} -o - ${o("in.agcm")} > /dev/null`, `${ageD} ${o("in.age")} > /dev/null`]
  ]
  const cases = { "cat | cat (the pipe alone)": sh(`cat ${input} | cat > /dev/null`) }
  for (const [label, c, a] of pairs) {
    cases[`cage ${label}`] = sh(c, [o("x")])
    cases[`age ${label}`] = sh(a, [o("x")])
  }
  const m = interleaved(cases, reps)
  const rows = [["run", "median s", "MB/s", "peak RSS MiB"]]
  for (const k of Object.keys(cases)) rows.push([k, m[k].seconds.toFixed(2), (sizeMiB * 1.048576 / m[k].seconds).toFixed(0), m[k].rssMiB.toFixed(0)])
  const ratios = pairs.map(([label]) => [label, m[`age ${label}`].seconds / m[`cage ${label}`].seconds, m[`cage ${label}`].rssMiB])
  console.log(`${sizeMiB} MiB, ${reps} interleaved rounds, medians`)
  console.log(table(rows))
  console.log(table([["cage against age", "speed (age time / cage time)", "cage peak RSS MiB (target <= 100)"], ...ratios.map(([l, r, rss]) => [l, `${r.toFixed(2)}x`, rss.toFixed(0)])]))
  writeResult("stream", { sizeMiB, reps, medians: m, ratios: Object.fromEntries(ratios.map(([l, r, rss]) => [l, { speed: r, rssMiB: rss }])) })
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
