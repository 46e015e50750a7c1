import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { formatBytes, parseSize, planChunks } from "../src/index.js"

describe("planChunks", () => {
  for (const n of [1, 7, 16, 4096, 65536]) {
    const sizes = [0, 1, n - 1, n, n + 1, 2 * n - 1, 2 * n, 2 * n + 1].filter((s) => s >= 0)
    it.for(sizes)(`chunk size ${n}, size %i: chunks tile the input exactly`, (size) => {
      const plan = planChunks(size, n)
      const chunks = Array.from(plan.chunks())
      expect(chunks.length).toBe(Math.ceil(size / n))
      let at = 0
      for (const c of chunks) {
        expect(c.start).toBe(at)
        expect(c.length).toBe(c.end - c.start)
        expect(c.length).toBeGreaterThan(0)
        expect(c.length).toBeLessThanOrEqual(n)
        at = c.end
      }
      expect(at).toBe(size)
      if (chunks.length) expect(chunks.at(-1)!.final).toBe(true)
      expect(chunks.filter((c) => c.final).length).toBe(chunks.length ? 1 : 0)
    })
    it.for(sizes)(`chunk size ${n}, size %i, shortFinal: the final chunk is shorter than a full chunk`, (size) => {
      const plan = planChunks(size, n, { shortFinal: true })
      expect(plan.totalChunks).toBe(Math.floor(size / n) + 1)
      const last = plan.chunkAt(plan.totalChunks - 1)
      expect(last.length).toBeLessThan(n)
      expect(last.end).toBe(size)
    })
  }
  it("any chunk is found by any offset in it", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 0, max: 1, noNaN: true }), (size, cs, f) => {
      const plan = planChunks(size, cs)
      const off = Math.min(size - 1, Math.floor(f * size))
      const c = plan.chunkAt(plan.chunkIndexOf(off))
      return c.start <= off && off < c.end
    }))
  })
  it("rejects bad sizes and indices", () => {
    expect(() => planChunks(-1, 4)).toThrow(RangeError)
    expect(() => planChunks(10, 0)).toThrow(RangeError)
    expect(() => planChunks(1.5, 4)).toThrow(RangeError)
    expect(() => planChunks(10, 4).chunkAt(3)).toThrow(RangeError)
  })
  it("is lazy for huge inputs", () => {
    const plan = planChunks(50e9, 65536)
    expect(plan.totalChunks).toBe(Math.ceil(50e9 / 65536))
    expect(plan.chunkAt(plan.totalChunks - 1).end).toBe(50e9)
  })
})

describe("sizes", () => {
  it.for([
    ["65536", 65536], ["64k", 65536], ["64KiB", 65536], ["64KB", 64000], ["4MiB", 4194304], ["1g", 1073741824]
  ] as const)("parses %s", ([text, n]) => expect(parseSize(text)).toBe(n))
  it.for(["", "abc", "-1", "1.5k", "10 parsecs"])("rejects %j", (t) => expect(parseSize(t)).toBeUndefined())
  it("formats", () => {
    expect(formatBytes(65536)).toBe("64 KiB")
    expect(formatBytes(12)).toBe("12 B")
  })
})
