// Start-up time (issue 13 §2): `cage --version` and `cage --help` against `age --version`
// and `node -e 0` (Node's own start-up, the floor for any Node program) in the same run,
// interleaved round by round, medians. Wall time of each spawned process, measured here.
// Usage: node bench/startup.mjs [--reps 15]. Target: cage --version and --help ≤ 0.15 s.
import { spawnSync } from "node:child_process"
import { CAGE, numberOption, table, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 15)
const cases = {
  "cage --version": ["node", CAGE, "--version"],
  "cage --help": ["node", CAGE, "--help"],
  "age --version": ["age", "--version"],
  "node -e 0": ["node", "-e", "0"]
}
const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]))
const names = Object.keys(cases)
// One warm-up each: the first start reads the files from disk.
for (const argv of Object.values(cases)) spawnSync(argv[0], argv.slice(1))
for (let r = 0; r < reps; r++) {
  for (let j = 0; j < names.length; j++) {
    const name = names[(r + j) % names.length]
    const argv = cases[name]
    const t0 = process.hrtime.bigint()
    const p = spawnSync(argv[0], argv.slice(1), { stdio: "ignore" })
    const s = Number(process.hrtime.bigint() - t0) / 1e9
    if (p.status !== 0) throw new Error(`${argv.join(" ")} exited ${p.status}`)
    times[name].push(s)
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const node = med(times["node -e 0"])
console.log(`start-up, median of ${reps} interleaved runs`)
console.log(table([
  ["command", "s", "vs node -e 0", "target"],
  ...names.map((n) => [n, med(times[n]).toFixed(3), (med(times[n]) / node).toFixed(2) + "x", n.startsWith("cage") ? (med(times[n]) <= 0.15 ? "≤ 0.15 s: met" : "≤ 0.15 s: not met") : ""])
]))
writeResult("startup", { reps, medians: Object.fromEntries(names.map((n) => [n, med(times[n])])), times })
