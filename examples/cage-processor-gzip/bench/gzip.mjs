#!/usr/bin/env node
// Benchmark of @acme/cage-processor-gzip (built dist) against node:zlib streaming, on a
// generated text-like file (default 256 MiB; BENCH_MIB=64 for a quick run).
//
// Each run is a child `node` process, so its peak RSS (process.resourceUsage().maxRSS) is
// its own. Throughput is MB/s (10^6 B/s) of input, and the ratio against the reference
// run (zlib.createGzip / createGunzip, one stream, same level) measured in this script.
// Prints a table and writes JSON to <repo>/bench/out/cage-processor-gzip.json.
//
// Usage: pnpm --filter @acme/cage-processor-gzip build && node examples/cage-processor-gzip/bench/gzip.mjs
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import { fileURLToPath } from "node:url"
import * as zlib from "node:zlib"

const here = path.dirname(fileURLToPath(import.meta.url))
const CHUNK_BYTES = 1 << 20

if (process.argv[2] === "--child") {
  const [, , , mode, level, input, output] = process.argv
  const t0 = process.hrtime.bigint()
  if (mode === "zlib-gzip" || mode === "zlib-gunzip") {
    const z = mode === "zlib-gzip" ? zlib.createGzip({ level: Number(level) }) : zlib.createGunzip()
    await pipeline(fs.createReadStream(input), z, fs.createWriteStream(output))
  } else {
    const { ChunkInput, ChunkOutput, runPipeline } = await import("@cage/core")
    const { Effect } = await import("effect")
    const { gzip, gunzip } = await import(path.join(here, "..", "dist", "index.js"))
    const processor = mode === "cage-gzip" ? gzip({ level: Number(level) }) : gunzip()
    await Effect.runPromise(Effect.gen(function*() {
      const src = yield* ChunkInput.fromFile(input)
      return yield* runPipeline({ input: src, output: ChunkOutput.toFile(output), pipeline: [processor], chunkBytes: CHUNK_BYTES })
    }))
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  console.log(JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS }))
  process.exit(0)
}

const mib = Number(process.env.BENCH_MIB ?? 256)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-bench-gzip-"))
try {
  // Text-like input: words from a small vocabulary, so it compresses about 3:1.
  const words = ["chunk ", "segment ", "nonce ", "cage ", "gzip ", "member ", "\n", "checkpoint ", "manifest ", "retention "]
  let x = 12345
  const block = Buffer.alloc(CHUNK_BYTES)
  for (let at = 0; at < block.length;) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    at += block.write(words[(x >>> 0) % words.length], at)
  }
  const input = path.join(dir, "input.txt")
  const fd = fs.openSync(input, "w")
  for (let i = 0; i < mib; i++) fs.writeSync(fd, block)
  fs.closeSync(fd)
  const bytes = fs.statSync(input).size

  const child = (mode, level, from, to) => {
    fs.rmSync(to, { force: true }) // overwriting a large file costs extra: always write a new one
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--child", mode, String(level), from, to], { cwd: here, encoding: "utf8" })
    return { ...JSON.parse(out.trim().split("\n").pop()), outBytes: fs.statSync(to).size }
  }
  const rows = []
  for (const level of [1, 6]) {
    const refGz = child("zlib-gzip", level, input, path.join(dir, "ref.gz"))
    const cageGz = child("cage-gzip", level, input, path.join(dir, "cage.gz"))
    const refGunzip = child("zlib-gunzip", level, path.join(dir, "ref.gz"), path.join(dir, "ref.out"))
    const cageGunzip = child("cage-gunzip", level, path.join(dir, "cage.gz"), path.join(dir, "cage.out"))
    // The cage output must be readable by zlib too, and both must give back the input.
    const check = child("zlib-gunzip", level, path.join(dir, "cage.gz"), path.join(dir, "check.out"))
    if (check.outBytes !== bytes || cageGunzip.outBytes !== bytes) throw new Error("round trip lost bytes")
    const mbs = (r) => bytes / 1e6 / (r.ms / 1000)
    for (const [what, ref, run] of [["gzip", refGz, cageGz], ["gunzip", refGunzip, cageGunzip]]) {
      rows.push({
        operation: what,
        level,
        inputMiB: mib,
        referenceMBs: Number(mbs(ref).toFixed(1)),
        cageMBs: Number(mbs(run).toFixed(1)),
        ratio: Number((mbs(run) / mbs(ref)).toFixed(2)),
        referencePeakRssMiB: Number((ref.maxRssKiB / 1024).toFixed(1)),
        cagePeakRssMiB: Number((run.maxRssKiB / 1024).toFixed(1)),
        compressedRatio: what === "gzip" ? Number((cageGz.outBytes / bytes).toFixed(3)) : undefined
      })
    }
  }
  console.log(`@acme/cage-processor-gzip vs node:zlib streams, ${mib} MiB text, ${CHUNK_BYTES >> 20} MiB chunks, ${os.cpus().length} cores`)
  console.table(rows)
  const outDir = path.join(here, "..", "..", "..", "bench", "out")
  fs.mkdirSync(outDir, { recursive: true })
  fs.writeFileSync(path.join(outDir, "cage-processor-gzip.json"), JSON.stringify({ at: new Date().toISOString(), node: process.version, cores: os.cpus().length, rows }, null, 2))
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
