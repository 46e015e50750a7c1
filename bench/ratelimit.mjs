// `cage encrypt --limit-rate`: does a 50 MiB/s cap on a 256 MiB file take 256/50 = 5.12 s
// (±10%), and does the read rate in any 1 s window stay within 1.2x the cap? An unlimited
// run of the same command, interleaved with the limited ones, is the reference.
// Usage: node bench/ratelimit.mjs [--reps 3] [--size-mib 256] [--limit-mib 50]
// Prints a table, writes bench/out/ratelimit.json, exits 1 if a check fails. Files go under
// /tmp/cage-bench/ratelimit-<pid> and are deleted afterwards.
//
// Read times come from the audit log. It has no chunk_start events (the audit translator
// drops them); each `chunk` event carries `at` = when its segment completed (ms) and
// `durationMs` = the segment's time / its chunk count. Every chunk of a segment shares
// both, so the segment's start, i.e. when the limiter admitted it and its read began
// (core's chunk_start time), is at - durationMs x chunks. Windows count a segment's
// bytes at that start; all `chunk` events of the run are used, none excluded.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, numberOption, randomFile, table, timed, WORK, writeResult } from "./lib.mjs"

const MiB = 1 << 20
const reps = numberOption("--reps", 3)
const sizeMiB = numberOption("--size-mib", 256)
const limitMiB = numberOption("--limit-mib", 50)
const bytes = sizeMiB * MiB
const rate = limitMiB * MiB
const ideal = bytes / rate
const TIME_TOLERANCE = 0.1
const WINDOW_MAX = 1.2

/** Segments of a run's `chunk` events: { start, end, bytes } in ms since the epoch. */
const segments = (logFile) => {
  if (fs.existsSync(`${logFile}.1`)) throw new Error(`${logFile} was rotated; raise [audit] max_bytes`)
  const events = fs.readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l))
  const done = events.find((e) => e.type === "run_complete")
  if (!done?.ok) throw new Error(`${logFile}: the run did not complete`)
  const segs = []
  for (const e of events.filter((x) => x.type === "chunk")) {
    const at = Date.parse(e.at)
    const g = segs.at(-1)
    if (g && g.end === at && g.durationMs === e.durationMs && e.chunk === g.first + g.n) {
      g.n++
      g.bytes += e.bytes
    } else segs.push({ end: at, durationMs: e.durationMs, first: e.chunk, n: 1, bytes: e.bytes })
  }
  const total = segs.reduce((n, s) => n + s.bytes, 0)
  if (total !== done.bytes) throw new Error(`${logFile}: chunk events cover ${total} bytes, run_complete says ${done.bytes}`)
  return { chunkEvents: segs.reduce((n, s) => n + s.n, 0), segs: segs.map((s) => ({ start: s.end - s.durationMs * s.n, end: s.end, bytes: s.bytes })) }
}

/** Most bytes in any window [t, t + ms) with t at one of the times, as a multiple of `rate`. */
const maxWindow = (points, ms) => {
  const sorted = [...points].sort((a, b) => a.t - b.t)
  let best = 0
  for (let i = 0, j = 0, sum = 0; i < sorted.length; sum -= sorted[i].bytes, i++) {
    for (; j < sorted.length && sorted[j].t < sorted[i].t + ms; j++) sum += sorted[j].bytes
    best = Math.max(best, sum)
  }
  return best / (rate * ms / 1000)
}

const dir = path.join(WORK, `ratelimit-${process.pid}`)
let failed = false
try {
  ensureWork()
  fs.mkdirSync(dir, { recursive: true })
  const input = randomFile(path.relative(WORK, path.join(dir, "in.bin")), bytes)
  const key = path.join(dir, "bench.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  const out = path.join(dir, "out.agcm")
  const log = path.join(dir, "audit.jsonl")
  const encrypt = (...extra) => ["node", CAGE, "encrypt", "--key", key, ...extra, "--audit-log", log, "-q", "-o", out, input]

  // Alternating, so drift in disk or CPU speed hits both alike; `timed` deletes the output
  // and the log, then syncs and settles, before each run.
  const limited = []
  const unlimited = []
  for (let i = 0; i < reps; i++) {
    const { seconds } = timed(encrypt("--limit-rate", `${limitMiB}MiB`), { remove: [out, log] })
    const { segs, chunkEvents } = segments(log)
    limited.push({
      seconds, chunkEvents, segments: segs.length,
      maxWindowByStart: maxWindow(segs.map((s) => ({ t: s.start, bytes: s.bytes })), 1000),
      // For information: completion bunches up behind the ordered writes, so it is not the read rate.
      maxWindowByEnd: maxWindow(segs.map((s) => ({ t: s.end, bytes: s.bytes })), 1000)
    })
    unlimited.push({ seconds: timed(encrypt(), { remove: [out, log] }).seconds })
  }

  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const limitedS = med(limited.map((r) => r.seconds))
  const unlimitedS = med(unlimited.map((r) => r.seconds))
  const ratio = limitedS / ideal
  const worst = Math.max(...limited.map((r) => r.maxWindowByStart))
  const worstByEnd = Math.max(...limited.map((r) => r.maxWindowByEnd))
  const timeOk = Math.abs(ratio - 1) <= TIME_TOLERANCE
  const windowOk = worst <= WINDOW_MAX
  failed = !(timeOk && windowOk)

  const list = (rs) => rs.map((r) => r.seconds.toFixed(2)).join(" ")
  console.log(`${sizeMiB} MiB input, median of ${reps} runs each (limited and unlimited alternating); ideal = ${sizeMiB}/${limitMiB} = ${ideal.toFixed(2)} s`)
  console.log(`1 s windows: sliding, one starting at each segment start (at - durationMs x chunks) of all ${limited[0].chunkEvents} \`chunk\` events per run, worst of ${reps} runs`)
  console.log(table([
    ["run", "median s", "runs s", "MiB/s", "vs ideal", "max 1 s window", "check"],
    [`--limit-rate ${limitMiB}MiB`, limitedS.toFixed(2), list(limited), (sizeMiB / limitedS).toFixed(1), `${ratio.toFixed(3)}x`, `${worst.toFixed(3)}x limit`,
      `time ${timeOk ? "PASS" : "FAIL"} (±${TIME_TOLERANCE * 100}%), window ${windowOk ? "PASS" : "FAIL"} (<= ${WINDOW_MAX}x)`],
    ["no limit (reference)", unlimitedS.toFixed(2), list(unlimited), (sizeMiB / unlimitedS).toFixed(1), "", "", ""]
  ]))
  console.log(`(by completion time instead of start: max 1 s window ${worstByEnd.toFixed(3)}x limit; not checked)`)
  writeResult("ratelimit", {
    bytes, limitBytesPerSecond: rate, runs: reps, idealSeconds: ideal, tolerance: TIME_TOLERANCE, windowMax: WINDOW_MAX,
    window: { ms: 1000, anchors: "segment start (at - durationMs x chunks) of every chunk event", events: "chunk (all)" },
    limited: { medianSeconds: limitedS, ratioToIdeal: ratio, maxWindowRatio: worst, maxWindowRatioByCompletion: worstByEnd, runs: limited, timeOk, windowOk },
    unlimited: { medianSeconds: unlimitedS, runs: unlimited }
  })
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
