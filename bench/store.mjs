// The chunk store (`cage backup create`, issue 21) against restic 0.14 (Debian's `restic`,
// a local repository) on the same file in the same run: generation 1 (first backup),
// generation 2 (file unchanged), generation 3 (1 MiB overwritten in the middle), and the
// space each repository takes after the three. Each round starts both repositories empty
// and runs the generations in order, cage then restic, then restic then cage in the next
// round (interleaved); medians over the rounds. `sync` and a settle pause before each run.
// Then ten generations of a text dump of the same size (SQL-like lines), 1% of its lines
// changed or inserted between generations in three runs of consecutive lines (as a dump's
// tables change), backed up by both tools in turn: time per generation and space at the end.
// Usage: node bench/store.mjs [--reps 3] [--size-mib 1024] [--generations 10]. Needs restic
// on PATH (setup installs it for the benchmarks). JSON in bench/out/store.json.
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { randomFillSync } from "node:crypto"
import { CAGE, ensureWork, numberOption, table, timed, WORK, writeResult } from "./lib.mjs"

if (spawnSync("restic", ["version"]).status !== 0) {
  console.log("restic is not installed (bash scripts/setup.sh installs it): skipped")
  process.exit(0)
}
const reps = numberOption("--reps", 3)
const generations = numberOption("--generations", 10)
const sizeMiB = numberOption("--size-mib", 1024)
ensureWork()
const dir = path.join(WORK, `store-${process.pid}`)
fs.mkdirSync(dir, { recursive: true })
const o = (n) => path.join(dir, n)
/**
 * Truly random bytes (lib's randomFile repeats one block with a counter, which a
 * deduplicating store would collapse); reused when present.
 */
const uniqueFile = (name, bytes) => {
  const file = path.join(WORK, name)
  if (fs.existsSync(file) && fs.statSync(file).size === bytes) return file
  const fd = fs.openSync(file, "w")
  const block = Buffer.alloc(16 << 20)
  for (let left = bytes; left > 0; left -= block.length) fs.writeSync(fd, randomFillSync(block), 0, Math.min(left, block.length))
  fs.closeSync(fd)
  return file
}
/** A SQL-dump-like text of `bytes` bytes (seeded: the same every run), written line by line into one buffer. */
const textDump = (bytes) => {
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "select", "insert", "update", "values", "null"]
  const out = Buffer.alloc(bytes)
  let x = 0x2545f491
  for (let at = 0, line = 0; at < bytes; line++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    at += out.write(`INSERT INTO events VALUES (${line}, '${words[(x >>> 0) % 10]}', ${(x >>> 8) % 100000}, '${(x >>> 0).toString(36)}');\n`, at, "latin1")
  }
  return out
}

/** `dump` with a run of consecutive lines (`share` of its bytes, from a seeded place) changed: every other line replaced, the others followed by an inserted line. */
const editRun = (dump, seed, share) => {
  const from = dump.indexOf(10, seed % (dump.length - Math.ceil(dump.length * share) - 1)) + 1
  const to = dump.indexOf(10, from + Math.ceil(dump.length * share)) + 1
  const lines = dump.subarray(from, to).toString("latin1").split("\n").slice(0, -1)
  const edited = lines.map((l, k) => (k % 2 === 0 ? `UPDATE events SET v = ${seed + k} WHERE id = ${k};` : `${l}\n-- inserted ${seed + k}`)).join("\n")
  return Buffer.concat([dump.subarray(0, from), Buffer.from(`${edited}\n`, "latin1"), dump.subarray(to)])
}
const du = (p) => Number(execFileSync("du", ["-sb", p], { encoding: "utf8" }).split(/\s+/)[0])
try {
  const pristine = uniqueFile(`store-${sizeMiB}-unique.bin`, sizeMiB * 1048576)
  const source = o("dump.bin")
  const key = o("k.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  fs.writeFileSync(o("restic.pass"), "bench password\n", { mode: 0o600 })
  const env = { RESTIC_PASSWORD_FILE: o("restic.pass"), RESTIC_CACHE_DIR: o("restic-cache") }
  const tools = {
    cage: { repo: o("cage-store"), backup: () => ["node", CAGE, "backup", "create", "-q", "--key", key, "--dir", o("cage-store"), source] },
    restic: { repo: o("restic-repo"), backup: () => ["restic", "-r", o("restic-repo"), "backup", "--quiet", source] }
  }
  const times = { cage: [[], [], []], restic: [[], [], []] }
  const space = { cage: [], restic: [] }
  // Bytes each generation added to the repository (generations 2 and 3).
  const added = { cage: [[], [], []], restic: [[], [], []] }
  const sizeAfter1 = {}
  const sizeAfter2 = {}
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? ["cage", "restic"] : ["restic", "cage"]
    for (const t of Object.values(tools)) fs.rmSync(t.repo, { recursive: true, force: true })
    execFileSync("restic", ["-r", tools.restic.repo, "init", "--quiet"], { env: { ...process.env, ...env } })
    fs.copyFileSync(pristine, source)
    for (let g = 0; g < 3; g++) {
      if (g === 2) {
        // 1 MiB overwritten in the middle (new bytes: both tools must store them).
        const fd = fs.openSync(source, "r+")
        fs.writeSync(fd, Buffer.alloc(1 << 20, r + 1), 0, 1 << 20, Math.floor(sizeMiB / 2) << 20)
        fs.closeSync(fd)
      }
      for (const name of order) {
        times[name][g].push(timed(tools[name].backup(), { env }))
        if (g >= 1) added[name][g].push(du(tools[name].repo) - (g === 1 ? sizeAfter1[name] : sizeAfter2[name]))
        if (g === 0) sizeAfter1[name] = du(tools[name].repo)
        if (g === 1) sizeAfter2[name] = du(tools[name].repo)
      }
    }
    for (const name of order) space[name].push(du(tools[name].repo))
  }
  const median = (xs, f) => [...xs].sort((a, b) => f(a) - f(b))[Math.floor(xs.length / 2)]
  const rows = [["generation", "cage s", "restic s", "cage / restic", "cage peak RSS MiB"]]
  const result = {}
  for (let g = 0; g < 3; g++) {
    const c = median(times.cage[g], (x) => x.seconds)
    const rr = median(times.restic[g], (x) => x.seconds)
    rows.push([["1 (first)", "2 (unchanged)", "3 (1 MiB overwritten)"][g], c.seconds.toFixed(2), rr.seconds.toFixed(2), (c.seconds / rr.seconds).toFixed(2), c.rssMiB.toFixed(0)])
    result[`generation${g + 1}`] = { cage: c, restic: rr }
  }
  const cs = median(space.cage, (x) => x)
  const rs = median(space.restic, (x) => x)
  console.log(`${sizeMiB} MiB of random bytes, ${reps} rounds (interleaved), medians`)
  console.log(table(rows))
  const addedMiB = (name, g) => (median(added[name][g], (x) => x) / 1048576).toFixed(2)
  console.log(table([["space each generation added", "cage MiB", "restic MiB"], ["2 (unchanged)", addedMiB("cage", 1), addedMiB("restic", 1)], ["3 (1 MiB overwritten)", addedMiB("cage", 2), addedMiB("restic", 2)]]))
  console.log(table([["space after 3 generations", "MiB"], ["cage store", (cs / 1048576).toFixed(1)], ["restic", (rs / 1048576).toFixed(1)], ["cage / restic", (cs / rs).toFixed(3)]]))
  // Ten generations of a text dump.
  let dump = textDump(sizeMiB * 1048576)
  for (const t of Object.values(tools)) fs.rmSync(t.repo, { recursive: true, force: true })
  execFileSync("restic", ["-r", tools.restic.repo, "init", "--quiet"], { env: { ...process.env, ...env } })
  const dumpTimes = { cage: [], restic: [] }
  let seed = 12345
  for (let g = 0; g < generations; g++) {
    if (g > 0) {
      for (let run = 0; run < 3; run++) {
        seed = (seed * 1103515245 + 12345) >>> 0
        dump = editRun(dump, seed, 0.01 / 3)
      }
    }
    fs.writeFileSync(source, dump)
    for (const name of g % 2 === 0 ? ["cage", "restic"] : ["restic", "cage"]) dumpTimes[name].push(timed(tools[name].backup(), { env }))
  }
  const total = (name) => dumpTimes[name].reduce((n, x) => n + x.seconds, 0)
  const dumpSpace = { cage: du(tools.cage.repo), restic: du(tools.restic.repo) }
  console.log(`${generations} generations of a ${sizeMiB} MiB text dump, 1% of lines changed or inserted each time (three runs of consecutive lines)`)
  console.log(table([
    ["", "cage", "restic", "cage / restic"],
    ["total time, s", total("cage").toFixed(1), total("restic").toFixed(1), (total("cage") / total("restic")).toFixed(2)],
    ["space, MiB", (dumpSpace.cage / 1048576).toFixed(1), (dumpSpace.restic / 1048576).toFixed(1), (dumpSpace.cage / dumpSpace.restic).toFixed(3)],
    ["peak RSS, MiB", Math.max(...dumpTimes.cage.map((x) => x.rssMiB)).toFixed(0), Math.max(...dumpTimes.restic.map((x) => x.rssMiB)).toFixed(0), ""]
  ]))
  writeResult("store", { sizeMiB, reps, ...result, spaceBytes: { cage: cs, restic: rs }, addedBytes: added, dump: { generations, times: dumpTimes, spaceBytes: dumpSpace } })
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
