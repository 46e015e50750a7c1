// Job planning for scale-out (issue 16): segments tile every file's chunks and its output
// exactly, at every boundary size around the chunk size, for any files (fast-check), and the
// database estimate counts one activity per segment, not per chunk.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Plan } from "../src/index.js"

const layout = { headerBytes: 66, chunkBytes: 65536, overheadBytes: 16, shortFinal: true }
const MiB = 1 << 20

/** Every property a plan must have, checked from first principles. */
const checkPlan = (files: ReadonlyArray<Plan.JobFile>, segmentBytes: number) => {
  const plan = Plan.planJob(files, layout, segmentBytes)
  const cs = layout.chunkBytes
  files.forEach((f, i) => {
    const segs = plan.segments.filter((s) => s.file === i)
    // AGCM's rule: the final chunk is always short (0 to chunk − 1 bytes).
    const chunks = Math.floor(f.size / cs) + 1
    const out = layout.headerBytes + f.size + chunks * layout.overheadBytes
    expect(plan.files[i]).toEqual({ path: f.path, size: f.size, chunks, outputBytes: out })
    // Chunks, plaintext and output each tiled in order, without gaps or overlaps.
    let chunk = 0
    let plain = 0
    let at = layout.headerBytes
    segs.forEach((s, k) => {
      expect(s.index).toBe(k)
      expect(s.firstChunk).toBe(chunk)
      expect(s.plainStart).toBe(plain)
      expect(s.outStart).toBe(at)
      // Positional: chunk i starts at header + i × (chunk + 16).
      expect(s.outStart).toBe(layout.headerBytes + s.firstChunk * (cs + layout.overheadBytes))
      expect(s.chunks).toBeGreaterThanOrEqual(1)
      expect(s.chunks).toBeLessThanOrEqual(plan.segmentChunks)
      expect(s.final).toBe(k === segs.length - 1)
      chunk += s.chunks
      plain = s.plainEnd
      at = s.outEnd
    })
    expect(chunk).toBe(chunks)
    expect(plain).toBe(f.size)
    expect(at).toBe(out)
  })
  expect(plan.plainBytes).toBe(files.reduce((n, f) => n + f.size, 0))
  expect(plan.outputBytes).toBe(plan.files.reduce((n, f) => n + f.outputBytes, 0))
  return plan
}

describe("planJob", () => {
  it("tiles files of every boundary size around the chunk and segment sizes", () => {
    const cs = layout.chunkBytes
    const segment = 4 * cs
    const sizes = [0, 1, cs - 1, cs, cs + 1, 2 * cs, segment - 1, segment, segment + 1, 3 * segment, 3 * segment + cs - 1]
    const plan = checkPlan(sizes.map((size, i) => ({ path: `f${i}`, size })), segment)
    // An empty file is one empty final chunk, like a single-machine encrypt writes it.
    expect(plan.segments.filter((s) => s.file === 0)).toEqual([{ file: 0, index: 0, firstChunk: 0, chunks: 1, plainStart: 0, plainEnd: 0, outStart: 66, outEnd: 82, final: true }])
    // One byte short of a segment: one segment of 4 chunks; a whole segment: 4 chunks and an empty final one.
    expect(plan.segments.filter((s) => s.file === 6).map((s) => s.chunks)).toEqual([4])
    expect(plan.segments.filter((s) => s.file === 7).map((s) => s.chunks)).toEqual([4, 1])
    expect(plan.segments.filter((s) => s.file === 7).at(-1)).toMatchObject({ plainStart: segment, plainEnd: segment, final: true })
  })

  it("tiles any set of files at any segment size (fast-check)", () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 50 * MiB }), { maxLength: 8 }),
      fc.integer({ min: 1, max: 16 * MiB }),
      (sizes, segmentBytes) => {
        checkPlan(sizes.map((size, i) => ({ path: `f${i}`, size })), segmentBytes)
      }
    ), { numRuns: 150 })
  })

  it("refuses sizes that are not whole numbers of bytes", () => {
    expect(() => Plan.planJob([{ path: "a", size: -1 }], layout, MiB)).toThrow("a: size must be a whole number of bytes, got -1")
    expect(() => Plan.planJob([{ path: "a", size: 1.5 }], layout, MiB)).toThrow(RangeError)
    expect(() => Plan.planJob([], { ...layout, chunkBytes: 0 }, MiB)).toThrow("chunk bytes must be a whole number ≥ 1, got 0")
    expect(() => Plan.planJob([], layout, 0)).toThrow("segment bytes must be a whole number ≥ 1, got 0")
  })
})

describe("estimate", () => {
  it("a 10 TB job at 64 MiB segments: about 150,000 segments, messages per segment, never per chunk", () => {
    // 1,000 files of 10 GB each (10 TB), planned for real: the rows depend on segments only.
    const files = Array.from({ length: 1000 }, (_, i) => ({ path: `/data/f${i}`, size: 10_000_000_000 }))
    const plan = Plan.planJob(files, layout, 64 * MiB)
    const e = Plan.estimate(plan)
    expect(plan.segmentChunks).toBe(1024)
    expect(e.segments).toBe(1000 * Math.ceil((Math.floor(10_000_000_000 / 65536) + 1) / 1024))
    expect(e.segments).toBe(150_000)
    expect(e.messages).toBe(2 * 150_000 + 2)
    expect(e.replies).toBe(e.messages)
    // Per chunk it would be 152,588,000 rows: a thousand times more.
    expect(plan.files.reduce((n, f) => n + f.chunks, 0) / e.segments).toBeGreaterThan(1000)
  })
})

describe("planPieces (backup segments)", () => {
  /** Every property of a backup plan, from first principles: each file's bytes tiled once, in order; small files whole; large ones alone. */
  const checkPieces = (sizes: ReadonlyArray<number>, segmentBytes: number) => {
    const segments = Plan.planPieces(sizes, segmentBytes)
    const seen = sizes.map(() => 0)
    let last = -1
    for (const segment of segments) {
      expect(segment.length).toBeGreaterThanOrEqual(1)
      expect(segment.length).toBeLessThanOrEqual(Plan.MAX_PIECES)
      const bytes = segment.reduce((n, p) => n + p.end - p.start, 0)
      if (segment.length > 1) expect(bytes).toBeLessThanOrEqual(segmentBytes)
      for (const p of segment) {
        // In file order, each file's pieces in byte order without gaps.
        expect(p.file).toBeGreaterThanOrEqual(last)
        last = p.file
        expect(p.start).toBe(seen[p.file])
        expect(p.end).toBeGreaterThanOrEqual(p.start)
        expect(p.end - p.start).toBeLessThanOrEqual(Math.max(segmentBytes, 0))
        seen[p.file] = p.end
        // A file up to segmentBytes is never split; a larger one is one piece per segment.
        if (sizes[p.file] <= segmentBytes) expect(p.end - p.start).toBe(sizes[p.file])
        else expect(segment.length).toBe(1)
      }
    }
    expect(seen).toEqual([...sizes])
    // Every file appears, empty ones too.
    expect(new Set(segments.flat().map((p) => p.file)).size).toBe(sizes.length)
    return segments
  }

  it("tiles any files exactly (fast-check), at boundary sizes around the segment size", () => {
    const S = 1000
    for (const size of [0, 1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 3 * S + 7]) checkPieces([size], S)
    expect(Plan.planPieces([S + 1], S)).toEqual([[{ file: 0, start: 0, end: S }], [{ file: 0, start: S, end: S + 1 }]])
    expect(Plan.planPieces([400, 600, 1], S)).toEqual([[{ file: 0, start: 0, end: 400 }, { file: 1, start: 0, end: 600 }], [{ file: 2, start: 0, end: 1 }]])
    fc.assert(fc.property(fc.array(fc.nat({ max: 5000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 3000 }), (sizes, s) => {
      checkPieces(sizes, s)
    }), { numRuns: 150 })
  })

  it("gathers at most MAX_PIECES files in a segment, and refuses a segment size that is not a positive whole number", () => {
    const segments = checkPieces(new Array(2 * Plan.MAX_PIECES + 3).fill(0), 64 * MiB)
    expect(segments.map((s) => s.length)).toEqual([Plan.MAX_PIECES, Plan.MAX_PIECES, 3])
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => Plan.planPieces([1], bad)).toThrow(RangeError)
  })
})
