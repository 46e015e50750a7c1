import fc from "fast-check"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { describe, expect, it } from "vitest"
import { agcmCipher, chunkRanges, create, findGeneration, list, Registry, restore, resume, verify, verifyReport } from "../src/index.js"
import { cipher, CHUNK, expectIntact, fail, failingAt, flipByte, KEY, makeSource, run, tempDir } from "./helpers.js"

const n = CHUNK
const sizes = [0, 1, n - 1, n, n + 1, 2 * n - 1, 2 * n, 2 * n + 1]

describe("create, verify, restore", () => {
  it.for(sizes)("round trips %i bytes with a chunk manifest", async (size) => {
    const dir = tempDir()
    const src = makeSource(dir, size)
    const bdir = nodePath.join(dir, "backups")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0 }))
    expect(made.generation.status).toBe("complete")
    expect(made.generation.generation).toBe(1)
    expect(made.generation.plainBytes).toBe(size)
    // AGCM's final chunk is always short: a multiple of the chunk size ends with an empty chunk.
    expect(made.summary.totalChunks).toBe(Math.floor(size / n) + 1)
    const report = await run(verify({ dir: bdir, source: src.path, hashWorkers: 0 }))
    expect(report.ok).toBe(true)
    expect(report.chunks).toBe(Math.floor(size / n) + 1)
    const deep = await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))
    expect(deep.ok).toBe(true)
    const out = nodePath.join(dir, "restored.bin")
    const r = await run(restore({ dir: bdir, source: src.path, cipher, output: out }))
    expect(r.bytes).toBe(size)
    expect(fs.readFileSync(out).equals(src.bytes)).toBe(true)
  })

  it("writes registry and manifest with mode 0600 and numbers generations per source from 1", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 3 * n + 5, "a.bin")
    const b = makeSource(dir, 100, "b.bin")
    const bdir = nodePath.join(dir, "backups")
    for (let i = 0; i < 3; i++) await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    await run(create({ source: b.path, dir: bdir, cipher, hashWorkers: 0 }))
    const all = await run(list({ dir: bdir }))
    expect(all.map((g) => [nodePath.basename(g.source), g.generation])).toEqual([["a.bin", 1], ["a.bin", 2], ["a.bin", 3], ["b.bin", 1]])
    expect((await run(list({ dir: bdir, source: b.path }))).length).toBe(1)
    expect(fs.statSync(nodePath.join(bdir, ".cage_backups.json")).mode & 0o777).toBe(0o600)
    expect(fs.statSync(nodePath.join(bdir, all[0].manifest!)).mode & 0o777).toBe(0o600)
    expect(fs.statSync(nodePath.join(bdir, all[0].file)).mode & 0o777).toBe(0o600)
    // Per-chunk digests by default, whatever the size (verify names damaged chunks).
    expect(all[0].chunked).toBe(true)
    // No secret in the registry: the key's hex never appears.
    const text = fs.readFileSync(nodePath.join(bdir, ".cage_backups.json"), "utf8") + fs.readFileSync(nodePath.join(bdir, all[0].manifest!), "utf8")
    expect(text.includes(KEY.toString("hex"))).toBe(false)
  })

  it("applies the size threshold for chunk manifests", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 4 * n)
    const bdir = nodePath.join(dir, "b")
    const small = await run(create({ source: src.path, dir: bdir, cipher, manifestThreshold: 4 * n + 1, hashWorkers: 0 }))
    const big = await run(create({ source: src.path, dir: bdir, cipher, manifestThreshold: 4 * n, hashWorkers: 0 }))
    expect(small.generation.chunked).toBe(false)
    expect(big.generation.chunked).toBe(true)
  })
})

describe("damage", () => {
  const chunks = 5
  const size = chunks * n - 7

  it.for(Array.from({ length: chunks }, (_, k) => k))("a flipped byte in chunk %i is named, and only that chunk", async (k) => {
    const dir = tempDir()
    const src = makeSource(dir, size)
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 2 }))
    const m = await run(Registry.loadManifest(bdir, made.generation.manifest!))
    const ranges = chunkRanges(m.layout)
    const file = nodePath.join(bdir, made.generation.file)
    // Flip a byte at a different position inside chunk k each time: first, middle, last byte.
    for (const at of [ranges[k][0], ranges[k][0] + (ranges[k][1] >> 1), ranges[k][0] + ranges[k][1] - 1]) {
      flipByte(file, at)
      const report = await run(verifyReport({ dir: bdir, source: src.path, hashWorkers: 2 }))
      expect(report.ok).toBe(false)
      expect(report.damage).toEqual([{ kind: "chunk", chunk: k, start: ranges[k][0], end: ranges[k][0] + ranges[k][1], detail: "ciphertext digest mismatch" }])
      const err = await fail(verify({ dir: bdir, source: src.path, hashWorkers: 0 }))
      expect(err._tag).toBe("BackupDamaged")
      expect((err as { exitCode: number }).exitCode).toBe(3)
      expect(err.message).toContain(`chunk ${k} (bytes ${ranges[k][0]}..${ranges[k][0] + ranges[k][1]})`)
      // Deep verify names the same chunk as undecryptable.
      const deep = await run(verifyReport({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))
      expect(deep.damage.filter((d) => d.kind === "plaintext").map((d) => d.chunk)).toEqual([k])
      flipByte(file, at)
    }
    // Ranges that avoid chunk k still restore; a range over it fails with exit code 3.
    flipByte(file, ranges[k][0] + 3)
    const other = k === 0 ? chunks - 1 : 0
    const out = nodePath.join(dir, `other-${k}`)
    const r = await run(restore({ dir: bdir, source: src.path, cipher, output: out, range: { start: other * n, end: Math.min(size, other * n + n) } }))
    expect(fs.readFileSync(out).equals(src.bytes.subarray(other * n, Math.min(size, other * n + n)))).toBe(true)
    expect(r.chunks).toBe(1)
    const bad = await fail(restore({ dir: bdir, source: src.path, cipher, output: nodePath.join(dir, "bad"), range: { start: k * n, end: k * n + 1 } }))
    expect((bad as { exitCode: number }).exitCode).toBe(3)
    expect(fs.existsSync(nodePath.join(dir, "bad"))).toBe(false)
  })

  it("names a damaged header, a truncated file and appended bytes", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n)
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0 }))
    const file = nodePath.join(bdir, made.generation.file)
    flipByte(file, 5)
    let r = await run(verifyReport({ dir: bdir, source: src.path, hashWorkers: 0 }))
    expect(r.damage.map((d) => d.kind)).toEqual(["header"])
    flipByte(file, 5)
    fs.appendFileSync(file, Buffer.from("xx"))
    r = await run(verifyReport({ dir: bdir, source: src.path, hashWorkers: 0 }))
    expect(r.damage.map((d) => d.kind)).toEqual(["size"])
    const size = fs.statSync(file).size
    fs.truncateSync(file, size - 2 - 10)
    r = await run(verifyReport({ dir: bdir, source: src.path, hashWorkers: 0 }))
    expect(r.damage.map((d) => [d.kind, d.chunk])).toEqual([["size", undefined], ["chunk", 3]])
  })

  it("without per-chunk digests, damage is reported for the whole file", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n)
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: false, hashWorkers: 0 }))
    flipByte(nodePath.join(bdir, made.generation.file), 200 + n)
    const r = await run(verifyReport({ dir: bdir, source: src.path, hashWorkers: 0 }))
    expect(r.damage.map((d) => d.kind)).toEqual(["file"])
    const deep = await run(verifyReport({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))
    expect(deep.damage.filter((d) => d.kind === "plaintext").map((d) => d.chunk)).toEqual([1])
  })

  it("restores any range byte-identical (property)", async () => {
    const dir = tempDir()
    const size = 4 * n + 123
    const src = makeSource(dir, size)
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    let i = 0
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: size }), async (start, len) => {
        const end = Math.min(size, start + len)
        const out = nodePath.join(dir, `r${i++}`)
        const r = await run(restore({ dir: bdir, source: src.path, cipher, output: out, range: { start, end } }))
        expect(r.bytes).toBe(end - start)
        expect(fs.readFileSync(out).equals(src.bytes.subarray(start, end))).toBe(true)
      }),
      { numRuns: 40 }
    )
  })

  it("refuses a wrong key on restore with exit code 3 and leaves no output", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 2 * n)
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    const wrong = agcmCipher({ key: Buffer.alloc(32, 7) }, { workers: 1 })
    const err = await fail(restore({ dir: bdir, source: src.path, cipher: wrong, output: nodePath.join(dir, "o") }))
    expect((err as { exitCode: number }).exitCode).toBe(3)
    expect(fs.existsSync(nodePath.join(dir, "o"))).toBe(false)
  })
})

describe("resume", () => {
  it.for([[1, "direct"], [3, "direct"], [6, "direct"], [1, "in-memory"], [6, "in-memory"]] as const)("completes a backup interrupted at chunk %i (%s); it verifies and restores byte-identical", async ([at, path]) => {
    const dir = tempDir()
    const src = makeSource(dir, 7 * n + 9)
    const bdir = nodePath.join(dir, "b")
    // "in-memory": the interrupted run hashed in memory (as before direct-mode ciphers hashed
    // from the files); the resume, with a direct-mode cipher, must continue its checkpoint.
    const err = await fail(create({ source: src.path, dir: bdir, cipher: failingAt(at, path === "direct"), chunkManifest: true, hashWorkers: 0, segmentBytes: n, inFlight: 1, checkpointIntervalMs: 0 }))
    expect(err.message).toContain("simulated crash")
    const partial = await run(list({ dir: bdir }))
    expect(partial.map((g) => g.status)).toEqual(["partial"])
    expect(fs.existsSync(nodePath.join(bdir, `${partial[0].file}.partial`))).toBe(true)
    const done = await run(resume({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0, segmentBytes: n, inFlight: 1 }))
    expect(done.summary.resumedFrom).toBe(at)
    expect(done.generation.generation).toBe(1)
    await expectIntact(bdir, src)
  })

  it("has nothing to resume without an interrupted backup", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 10)
    const err = await fail(resume({ source: src.path, dir: nodePath.join(dir, "b"), cipher }))
    expect(err._tag).toBe("GenerationNotFound")
    expect((err as { exitCode: number }).exitCode).toBe(2)
  })

  it("an incomplete generation cannot be restored", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n)
    const bdir = nodePath.join(dir, "b")
    await fail(create({ source: src.path, dir: bdir, cipher: failingAt(1), hashWorkers: 0 }))
    const reg = await run(Registry.load(bdir))
    const err = await fail(findGeneration(reg, src.path, 1))
    expect(err.message).toContain("incomplete")
  })
})
