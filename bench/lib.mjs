// Shared helpers for the benchmark scripts: input files, timed child processes with peak
// RSS (via python3's getrusage(RUSAGE_CHILDREN), which sees the child's whole life), tables.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

export const WORK = process.env.CAGE_BENCH_DIR ?? "/tmp/cage-bench"
export const ROOT = path.resolve(new URL("..", import.meta.url).pathname)
export const CAGE = path.join(ROOT, "apps/cli/dist/bin.js")

/** The number after `name` on the command line (`--reps 5`), or `dflt`. */
export const numberOption = (name, dflt) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

/**
 * This process's peak RSS in KiB, from /proc/self/status (VmHWM). Not
 * `process.resourceUsage().maxRSS`: Linux keeps ru_maxrss across fork + exec, so a child
 * spawned by a large parent (a benchmark holding its inputs) reports at least the parent's
 * RSS at the fork.
 */
export const peakRssKiB = () => {
  const hwm = /^VmHWM:\s*(\d+)/m.exec(fs.readFileSync("/proc/self/status", "latin1"))?.[1]
  return hwm === undefined ? process.resourceUsage().maxRSS : Number(hwm)
}

export const ensureWork = () => fs.mkdirSync(WORK, { recursive: true })

/** A file of `bytes` pseudo-random bytes (written in 4 MiB blocks; reused when present). */
export const randomFile = (name, bytes) => {
  ensureWork()
  const file = path.join(WORK, name)
  if (fs.existsSync(file) && fs.statSync(file).size === bytes) return file
  const block = Buffer.alloc(4 << 20)
  let x = 0x9e3779b9
  for (let i = 0; i < block.length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    block.writeUInt32LE(x >>> 0, i)
  }
  const fd = fs.openSync(file, "w")
  for (let left = bytes, k = 0; left > 0; k++) {
    const n = Math.min(left, block.length)
    block.writeUInt32LE(k, 0) // blocks differ
    fs.writeSync(fd, block, 0, n)
    left -= n
  }
  // On disk before any timed run: a run must not compete with this file's write-back.
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  return file
}

/** Pause before each timed run, in ms (see `timed`). */
const SETTLE_MS = Number(process.env.CAGE_BENCH_SETTLE_MS ?? 1000)

const RUSAGE = "import resource,subprocess,sys,time\nt=time.perf_counter()\nr=subprocess.run(sys.argv[1:],stdin=subprocess.DEVNULL,stdout=subprocess.DEVNULL,stderr=subprocess.PIPE)\nd=time.perf_counter()-t\nsys.stderr.write(r.stderr.decode(errors='replace')[-2000:])\nprint(r.returncode, d, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"

/**
 * Empties the page cache (root only; returns false elsewhere), so that a run reads its input
 * from the disk whatever ran before it: on files near the size of memory, whichever command
 * ran second otherwise found the source cached (a 10 GiB `cage encrypt` timed right after a
 * cluster job of the same file took 17.7 s against 28 s cold).
 */
export const dropCaches = () => {
  spawnSync("sync")
  try {
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3")
    return true
  } catch {
    return false
  }
}

/**
 * Runs `argv` once, returns { seconds, rssMiB }; throws on a non-zero exit. Options: `remove`
 * (paths deleted first), `env`, `coldCache` (the page cache emptied first, see `dropCaches`).
 */
export const timed = (argv, options = {}) => {
  for (const out of options.remove ?? []) fs.rmSync(out, { force: true, recursive: true })
  // Start every run with no dirty pages left by the previous one, and let the kernel finish
  // freeing a deleted GiB output (its writeback and discard would otherwise steal CPU and
  // disk from whichever command happens to run next).
  spawnSync("sync")
  spawnSync("sleep", [String(SETTLE_MS / 1000)])
  if (options.coldCache) dropCaches()
  const r = spawnSync("python3", ["-c", RUSAGE, ...argv], { encoding: "utf8", env: { ...process.env, ...options.env } })
  const [code, seconds, kib] = r.stdout.trim().split(/\s+/).map(Number)
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${r.stderr}`)
  return { seconds, rssMiB: kib / 1024 }
}

/** Median of `runs` timed runs. */
export const median = (argv, runs, options) => medianOf(Array.from({ length: runs }, () => timed(argv, options)))

/** The run of median time, with the highest peak RSS of all the runs. */
const medianOf = (runs) => {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds)
  return { ...sorted[Math.floor(sorted.length / 2)], rssMiB: Math.max(...runs.map((a) => a.rssMiB)) }
}

/**
 * Runs each command of `cases` ({ name: [argv, options] }) once per round, `runs` rounds,
 * so a machine whose speed drifts affects every command alike; returns medians by name.
 * Each round starts one command later than the one before: a command that always ran right
 * after the same other one inherited its after-effects (a deleted GiB still being freed
 * measured 0.8 s of a 1.3 s run here), whatever the settle pause.
 */
export const interleaved = (cases, runs) => {
  const all = Object.fromEntries(Object.keys(cases).map((k) => [k, []]))
  const entries = Object.entries(cases)
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < entries.length; j++) {
      const [k, [argv, options]] = entries[(i + j) % entries.length]
      all[k].push(timed(argv, options))
    }
  }
  return Object.fromEntries(Object.entries(all).map(([k, xs]) => [k, medianOf(xs)]))
}

export const mbps = (bytes, seconds) => bytes / 1e6 / seconds

export const table = (rows) => {
  const cells = rows.map((r) => r.map(String))
  const w = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)))
  return cells.map((r) => r.map((v, c) => v.padEnd(w[c])).join("  ")).join("\n")
}

export const writeResult = (name, value) => {
  const dir = path.join(ROOT, "bench/out")
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(value, null, 2) + "\n")
}
