// Content-defined chunking (@cage/core ContentDefined, FastCDC with restic's bounds) against
// two references on the same bytes in the same process: a plain JS byte loop (the ceiling of
// any per-byte JS scan) and node:crypto SHA-256 (which a chunk store runs over every byte
// anyway). Interleaved rounds (A B C, B C A, ...), medians; chunk count and mean size too.
// Usage: node bench/cdc.mjs [--reps 5] [--size-mib 256]. JSON in bench/out/cdc.json.
import { createHash, randomFillSync } from "node:crypto"
import * as path from "node:path"
import { numberOption, ROOT, table, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 5)
const sizeMiB = numberOption("--size-mib", 256)
const { ContentDefined } = await import(path.join(ROOT, "packages/core/dist/index.js"))
const data = randomFillSync(Buffer.alloc(sizeMiB << 20))
let chunks = 0
const cases = {
  "ContentDefined (FastCDC 512K/1M/8M)": () => {
    const c = ContentDefined.make()
    // Fed in 1 MiB pieces, as a file is read.
    let n = 0
    for (let i = 0; i < data.length; i += 1 << 20) n += c.push(data.subarray(i, i + (1 << 20))).length
    chunks = n + c.end().length
  },
  "JS byte loop (sum)": () => {
    let x = 0
    for (let i = 0; i < data.length; i++) x = (x + data[i]) | 0
    if (x === 0.5) console.log(x)
  },
  "node:crypto SHA-256": () => createHash("sha256").update(data).digest()
}
const names = Object.keys(cases)
const times = Object.fromEntries(names.map((k) => [k, []]))
for (let r = 0; r < reps; r++) {
  for (let j = 0; j < names.length; j++) {
    const k = names[(r + j) % names.length]
    const t = performance.now()
    cases[k]()
    times[k].push((performance.now() - t) / 1000)
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mbs = Object.fromEntries(names.map((k) => [k, data.length / 1e6 / median(times[k])]))
console.log(`${sizeMiB} MiB of random bytes, ${reps} interleaved rounds, medians`)
console.log(table([["run", "MB/s", "ratio to FastCDC"], ...names.map((k) => [k, mbs[k].toFixed(0), (mbs[k] / mbs[names[0]]).toFixed(2)])]))
console.log(`${chunks} chunks, mean ${(data.length / chunks / 1048576).toFixed(2)} MiB`)
writeResult("cdc", { sizeMiB, reps, mbs, chunks })
