// `pnpm bench`: every bench/*.mjs script in turn (each prints its own table and writes
// bench/out/<name>.json). Name scripts to run only some: `node bench/run.mjs cli agcm`.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const here = path.dirname(new URL(import.meta.url).pathname)
// `*-worker.mjs` files are the child processes of a benchmark, not benchmarks.
const all = fs.readdirSync(here).filter((f) => f.endsWith(".mjs") && !["run.mjs", "lib.mjs"].includes(f) && !f.endsWith("-worker.mjs")).map((f) => f.slice(0, -4)).sort()
// Benchmarks that live with their package (the example plugin's own bench).
const extra = { gzip: path.join(here, "../examples/cage-processor-gzip/bench/gzip.mjs") }
all.push(...Object.keys(extra))
const chosen = process.argv.length > 2 ? process.argv.slice(2) : all
let failed = 0
for (const name of chosen) {
  console.log(`\n=== bench/${name}.mjs`)
  const r = spawnSync("node", [extra[name] ?? path.join(here, `${name}.mjs`)], { stdio: "inherit" })
  if (r.status !== 0) {
    failed++
    console.log(`bench/${name}.mjs failed (exit ${r.status})`)
  }
}
fs.rmSync(process.env.CAGE_BENCH_DIR ?? "/tmp/cage-bench", { recursive: true, force: true })
process.exit(failed ? 1 : 0)
