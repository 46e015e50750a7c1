// Benchmark and "must show" checks of @cage/backup on a 1 GiB file (built dist).
//
// - manifest hashing: SHA-256 of every 64 KiB chunk, the package's worker pool against a
//   single-thread loop over the same bytes. The headline (and the ">= 1.8x" target) is
//   file-range hashing: what create does once a direct-mode cipher (AGCM) has written the
//   backup, and what verify does. In-memory segments (what create does for ciphers without
//   direct mode) are reported for information;
// - verify (keyless, per-chunk digests) against raw single-thread SHA-256 of the same file;
// - create / resume / restore throughput and the peak RSS of each (child processes);
// - must show: a flipped byte in chunk k is reported as chunk k only, undamaged ranges
//   still restore; kill -9 during create then resume verifies and restores byte-identical;
//   a corrupted registry gives a clear error and `recover` loses nothing.
//
// Usage: pnpm --filter @cage/backup build && node bench/backup.mjs [--size-mib 1024] [--reps 5]
// Prints a table and writes bench/out/backup.json. Inputs live under /tmp/cage-bench/backup-<pid>
// and are deleted afterwards. Exits 1 when a "must show" check fails.
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { numberOption, peakRssKiB } from "./lib.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const pkg = path.join(here, "../packages/backup")
const args = process.argv.slice(2)
const opt = numberOption
const MB = 1e6
const MiB = 1 << 20
const CHUNK = 64 * 1024

const load = async () => ({
  b: await import(path.join(pkg, "dist/index.js")),
  // HashPool is not public API: the bench measures it from its own built file.
  hp: await import(path.join(pkg, "dist/internal/hashPool.js")),
  Effect: (await import(path.join(pkg, "node_modules/effect/dist/index.js"))).Effect
})
const run = (Effect, e) => Effect.runPromise(e)
const cipherFor = (b, keyFile, workers) => b.agcmCipher({ key: Buffer.from(fs.readFileSync(keyFile, "utf8").trim(), "hex") }, workers ? { workers } : {})

// ---- worker: one operation in a child process; prints wall time and peak RSS ----
if (args[0] === "--worker") {
  const [, op, source, dir, keyFile, extra] = args
  const { b, Effect } = await load()
  const cipher = cipherFor(b, keyFile)
  const t0 = performance.now()
  let bytes = 0
  if (op === "create" || op === "resume") {
    // `extra`: checkpoint interval in ms (the kill -9 run checkpoints often); default the engine's 1000.
    const interval = extra ? { checkpointIntervalMs: Number(extra) } : {}
    const r = await run(Effect, (op === "create" ? b.create : b.resume)({ source, dir, cipher, chunkManifest: true, ...interval }))
    bytes = r.summary.bytesProcessed
    process.stdout.write(JSON.stringify({ resumedFrom: r.summary.resumedFrom, totalChunks: r.summary.totalChunks }) + "\n")
  }
  if (op === "restore") bytes = (await run(Effect, b.restore({ source, dir, cipher, output: extra }))).bytes
  if (op === "verify-deep") bytes = (await run(Effect, b.verify({ source, dir, cipher, deep: true }))).bytes
  const ms = performance.now() - t0
  process.stdout.write(JSON.stringify({ op, ms, bytes, maxRssKiB: peakRssKiB() }) + "\n")
  process.exit(0)
}

const child = (op, source, dir, keyFile, extra = "") => {
  const p = spawn(process.execPath, [fileURLToPath(import.meta.url), "--worker", op, source, dir, keyFile, extra], { stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  let err = ""
  p.stdout.on("data", (d) => (out += d))
  p.stderr.on("data", (d) => (err += d))
  const done = new Promise((resolve, reject) => p.on("close", (code, signal) => {
    if (signal) return resolve({ signal })
    if (code !== 0) return reject(new Error(`${op} exited ${code}: ${err}`))
    const lines = out.trim().split("\n").map((l) => JSON.parse(l))
    resolve(Object.assign({}, ...lines))
  }))
  return { process: p, done }
}

/**
 * Times the contenders `fs` alternately, `reps` rounds, and keeps each one's best (shortest)
 * time: on a shared machine other processes only ever add time, and alternating exposes
 * both sides to the same background load.
 */
const timeBest = async (reps, fs) => {
  const best = fs.map(() => Infinity)
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < fs.length; k++) {
      const t0 = performance.now()
      await fs[k]()
      best[k] = Math.min(best[k], performance.now() - t0)
    }
  }
  return best
}
const sha256File = (file) => {
  const fd = fs.openSync(file, "r")
  const h = createHash("sha256")
  const buf = Buffer.allocUnsafe(4 * MiB)
  let n
  while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n))
  fs.closeSync(fd)
  return h.digest("hex")
}
const checks = []
const check = (name, ok, detail) => {
  checks.push({ name, ok, detail })
  process.stderr.write(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}\n`)
}

const sizeMiB = opt("--size-mib", 1024)
const reps = opt("--reps", 5)
const size = sizeMiB * MiB
const root = path.join("/tmp/cage-bench", `backup-${process.pid}`)
fs.mkdirSync(root, { recursive: true })
const { b, hp, Effect } = await load()
try {
  // ---- inputs ----
  const source = path.join(root, "source.bin")
  {
    const block = randomBytes(64 * MiB)
    const fd = fs.openSync(source, "w")
    for (let off = 0; off < size; off += block.length) {
      block.writeUInt32LE(off / block.length, 0) // no two blocks alike
      fs.writeSync(fd, block, 0, Math.min(block.length, size - off))
    }
    fs.closeSync(fd)
  }
  const keyFile = path.join(root, "key.hex")
  fs.writeFileSync(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 })
  const sourceSha = sha256File(source)
  const cores = os.availableParallelism()
  const results = { sizeBytes: size, chunkBytes: CHUNK, cores, node: process.version, loadAverageAtStart: os.loadavg()[0] }

  // ---- create (child: peak RSS) ----
  const bdir = path.join(root, "backups")
  const created = await child("create", source, bdir, keyFile).done
  results.create = { ms: created.ms, MBps: size / MB / (created.ms / 1000), peakRssMiB: created.maxRssKiB / 1024 }
  const [gen] = await run(Effect, b.list({ dir: bdir }))
  const backupFile = path.join(bdir, gen.file)
  const backupSize = fs.statSync(backupFile).size

  // ---- manifest hashing: pool against one thread, same chunks (file ranges: create and verify) ----
  const ranges = []
  for (let off = 0; off < size; off += CHUNK) ranges.push([off, Math.min(CHUNK, size - off)])
  const pool = new hp.HashPool(cores)
  await pool.hashFileRanges(source, ranges.slice(0, 64)) // start the workers outside the timing
  const [singleFileMs, poolFileMs] = await timeBest(reps, [async () => hp.hashFileRangesHere(source, ranges), () => pool.hashFileRanges(source, ranges)])
  // In memory, as create does for ciphers without direct mode: 1 MiB segments of 64 KiB
  // chunks, 4 segments in flight (informational).
  const memBytes = Math.min(size, 256 * MiB)
  const segments = []
  {
    const fd = fs.openSync(source, "r")
    for (let off = 0; off < memBytes; off += MiB) {
      const seg = Buffer.allocUnsafe(MiB)
      fs.readSync(fd, seg, 0, MiB, off)
      segments.push(Array.from({ length: MiB / CHUNK }, (_, k) => seg.subarray(k * CHUNK, (k + 1) * CHUNK)))
    }
    fs.closeSync(fd)
  }
  const [singleMemMs, poolMemMs] = await timeBest(reps, [
    async () => {
      for (const s of segments) for (const c of s) createHash("sha256").update(c).digest()
    },
    async () => {
      let next = 0
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (next < segments.length) await pool.hashBuffers(segments[next++])
      }))
    }
  ])
  await pool.close()
  results.hashing = {
    fileRanges: { singleMBps: size / MB / (singleFileMs / 1000), poolMBps: size / MB / (poolFileMs / 1000), speedup: singleFileMs / poolFileMs },
    inMemory: { bytes: memBytes, singleMBps: memBytes / MB / (singleMemMs / 1000), poolMBps: memBytes / MB / (poolMemMs / 1000), speedup: singleMemMs / poolMemMs }
  }

  // ---- verify against raw SHA-256 of the same bytes ----
  const [rawMs, verifyMs] = await timeBest(reps, [
    async () => sha256File(backupFile),
    async () => {
      const r = await run(Effect, b.verifyReport({ dir: bdir, source }))
      if (!r.ok) throw new Error("verify failed on an intact backup")
    }
  ])
  results.verify = { rawSha256MBps: backupSize / MB / (rawMs / 1000), verifyMBps: backupSize / MB / (verifyMs / 1000), ratio: rawMs / verifyMs }
  const deep = await child("verify-deep", source, bdir, keyFile).done
  results.verifyDeep = { ms: deep.ms, MBps: backupSize / MB / (deep.ms / 1000), peakRssMiB: deep.maxRssKiB / 1024 }

  // ---- must show: one flipped byte in chunk k ----
  {
    const m = await run(Effect, b.Registry.loadManifest(bdir, gen.manifest))
    const cr = b.chunkRanges(m.layout)
    const k = Math.floor(cr.length / 2) + 3
    const at = cr[k][0] + (cr[k][1] >> 1)
    const flip = () => {
      const fd = fs.openSync(backupFile, "r+")
      const one = Buffer.alloc(1)
      fs.readSync(fd, one, 0, 1, at)
      one[0] ^= 1
      fs.writeSync(fd, one, 0, 1, at)
      fs.closeSync(fd)
    }
    flip()
    const r = await run(Effect, b.verifyReport({ dir: bdir, source }))
    const named = r.damage.map((d) => `${d.kind} ${d.chunk} [${d.start}, ${d.end})`)
    check("verify names chunk k and only chunk k", r.damage.length === 1 && r.damage[0].kind === "chunk" && r.damage[0].chunk === k && r.damage[0].start === cr[k][0], `k = ${k}, flipped byte ${at}; reported: ${named.join("; ")}`)
    const cipher = cipherFor(b, keyFile)
    const good = { start: (k + 100) * CHUNK + 123, end: (k + 100) * CHUNK + 123 + 8 * MiB }
    const out = path.join(root, "range.bin")
    await run(Effect, b.restore({ dir: bdir, source, cipher, output: out, range: good }))
    const want = Buffer.alloc(good.end - good.start)
    const sfd = fs.openSync(source, "r")
    fs.readSync(sfd, want, 0, want.length, good.start)
    fs.closeSync(sfd)
    check("restore of an undamaged range works", fs.readFileSync(out).equals(want), `bytes ${good.start}:${good.end} (8 MiB, chunks ${k + 100}..${k + 228})`)
    const bad = await run(Effect, Effect.result(b.restore({ dir: bdir, source, cipher, output: path.join(root, "bad.bin"), range: { start: k * CHUNK, end: k * CHUNK + 10 } })))
    check("restore of a range over chunk k fails with exit code 3", bad._tag === "Failure" && bad.failure.exitCode === 3 && !fs.existsSync(path.join(root, "bad.bin")), bad._tag === "Failure" ? bad.failure.message : "it succeeded")
    flip()
    fs.rmSync(out)
  }

  // ---- must show: kill -9 during create, then resume ----
  {
    const dir2 = path.join(root, "backups-kill")
    const k9 = child("create", source, dir2, keyFile, "200")
    const mdir = path.join(dir2, ".cage_backups.d")
    let completed = 0
    while (completed === 0) {
      await new Promise((r) => setTimeout(r, 20))
      const cp = fs.existsSync(mdir) ? fs.readdirSync(mdir).find((n) => n.endsWith(".checkpoint.json")) : undefined
      if (cp) {
        try {
          completed = JSON.parse(fs.readFileSync(path.join(mdir, cp), "utf8")).completed[0]?.[1] ?? 0
        } catch {
          completed = 0 // being renamed into place
        }
      }
    }
    k9.process.kill("SIGKILL")
    const killed = await k9.done
    const partial = await run(Effect, b.list({ dir: dir2 }))
    check("kill -9 leaves a partial generation", killed.signal === "SIGKILL" && partial.length === 1 && partial[0].status === "partial", `killed after checkpointed chunk ${completed}; registry: ${partial.map((g) => g.status).join(",")}`)
    const resumed = await child("resume", source, dir2, keyFile).done
    // resumedFrom = totalChunks: the kill came after the backup file was written, only the hashing was left.
    results.resume = { ms: resumed.ms, resumedFromChunk: resumed.resumedFrom, totalChunks: resumed.totalChunks, MBps: resumed.bytes / MB / (resumed.ms / 1000), peakRssMiB: resumed.maxRssKiB / 1024 }
    const v = await run(Effect, b.verifyReport({ dir: dir2, source }))
    check("the resumed backup verifies", v.ok && v.chunked, `${v.chunks} chunks, resumed at chunk ${resumed.resumedFrom}`)
    const out = path.join(root, "restored.bin")
    const restored = await child("restore", source, dir2, keyFile, out).done
    results.restore = { ms: restored.ms, MBps: size / MB / (restored.ms / 1000), peakRssMiB: restored.maxRssKiB / 1024 }
    const same = sha256File(out) === sourceSha
    check("the resumed backup restores byte-identical", same, `SHA-256 ${same ? "equal" : "DIFFERENT"}`)
    fs.rmSync(out)
    fs.rmSync(dir2, { recursive: true })
  }

  // ---- must show: corrupted registry ----
  {
    await run(Effect, b.create({ source, dir: bdir, cipher: cipherFor(b, keyFile) }))
    const before = await run(Effect, b.list({ dir: bdir }))
    const reg = path.join(bdir, ".cage_backups.json")
    const text = fs.readFileSync(reg, "utf8")
    fs.writeFileSync(reg, text.slice(0, text.length >> 1))
    const err = await run(Effect, Effect.result(b.list({ dir: bdir })))
    check("a corrupted registry gives a clear error", err._tag === "Failure" && err.failure._tag === "RegistryCorrupt" && err.failure.exitCode === 3, err._tag === "Failure" ? err.failure.message : "no error")
    const rec = await run(Effect, b.recover({ dir: bdir }))
    const after = await run(Effect, b.list({ dir: bdir }))
    check("recover loses nothing", JSON.stringify(after) === JSON.stringify(before), `${rec.generations} generations rebuilt (${rec.fromManifests} from manifests); corrupt file kept as ${path.basename(rec.corruptMovedTo ?? "-")}`)
  }

  // ---- report ----
  const f = (n) => n.toLocaleString("en-US", { maximumFractionDigits: 1 })
  // Ratios with two decimals: the target is 1.8, and 1.76 must not print as "1.8".
  const x = (n) => n.toFixed(2)
  const rows = [
    ["what", "MB/s", "ratio", "peak RSS MiB"],
    ["create (AGCM direct mode, then file-range manifest; 1 child)", f(results.create.MBps), "", f(results.create.peakRssMiB)],
    ["chunk SHA-256, file, 1 thread", f(results.hashing.fileRanges.singleMBps), "1.00", ""],
    [`chunk SHA-256, file, pool of ${cores} (create + verify)`, f(results.hashing.fileRanges.poolMBps), x(results.hashing.fileRanges.speedup), ""],
    ["chunk SHA-256, memory, 1 thread (info)", f(results.hashing.inMemory.singleMBps), "1.00", ""],
    [`chunk SHA-256, memory, pool of ${cores} (info: ciphers without direct mode)`, f(results.hashing.inMemory.poolMBps), x(results.hashing.inMemory.speedup), ""],
    ["raw SHA-256 of the backup file", f(results.verify.rawSha256MBps), "1.00", ""],
    ["verify (keyless)", f(results.verify.verifyMBps), x(results.verify.ratio), ""],
    ["verify --deep (decrypt + digests)", f(results.verifyDeep.MBps), "", f(results.verifyDeep.peakRssMiB)],
    [`resume after kill -9 (from chunk ${results.resume.resumedFromChunk} of ${results.resume.totalChunks})`, f(results.resume.MBps), "", f(results.resume.peakRssMiB)],
    ["restore", f(results.restore.MBps), "", f(results.restore.peakRssMiB)]
  ]
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  results.loadAverageAtEnd = os.loadavg()[0]
  console.log(`@cage/backup on ${f(size / MiB)} MiB, ${CHUNK / 1024} KiB chunks, ${cores} cores, best of ${reps} alternating rounds (MB = 10^6 B); load average ${f(results.loadAverageAtStart)} → ${f(results.loadAverageAtEnd)}`)
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "))
  results.targets = {
    // Create (with AGCM) and verify both hash file ranges; the in-memory row is informational.
    manifestHashingSpeedupAtLeast1_8: results.hashing.fileRanges.speedup >= 1.8,
    verifyAtLeast90PercentOfRawSha256: results.verify.ratio >= 0.9
  }
  results.checks = checks
  console.log(`targets: manifest hashing (file ranges) >= 1.8x single-thread: ${results.targets.manifestHashingSpeedupAtLeast1_8} (${x(results.hashing.fileRanges.speedup)}x); verify >= 0.9x raw SHA-256: ${results.targets.verifyAtLeast90PercentOfRawSha256}`)
  console.log(`must show: ${checks.filter((c) => c.ok).length}/${checks.length} ok`)
  fs.mkdirSync(path.join(here, "out"), { recursive: true })
  fs.writeFileSync(path.join(here, "out/backup.json"), JSON.stringify(results, null, 2) + "\n")
  if (checks.some((c) => !c.ok)) process.exitCode = 1
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
