import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ChunkSpec, Size } from "../src/index.js"

describe("ChunkSpec.planChunks", () => {
  for (const n of [1, 7, 16, 4096, 65536]) {
    const sizes = [0, 1, n - 1, n, n + 1, 2 * n - 1, 2 * n, 2 * n + 1].filter((s) => s >= 0)
    it.for(sizes)(`chunk size ${n}, size %i: chunks tile the input exactly`, (size) => {
      const plan = ChunkSpec.planChunks(size, n)
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
      const plan = ChunkSpec.planChunks(size, n, { shortFinal: true })
      expect(plan.totalChunks).toBe(Math.floor(size / n) + 1)
      const last = plan.chunkAt(plan.totalChunks - 1)
      expect(last.length).toBeLessThan(n)
      expect(last.end).toBe(size)
    })
  }
  it("any chunk is found by any offset in it", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 0, max: 1, noNaN: true }), (size, cs, f) => {
      const plan = ChunkSpec.planChunks(size, cs)
      const off = Math.min(size - 1, Math.floor(f * size))
      const c = plan.chunkAt(plan.chunkIndexOf(off))
      return c.start <= off && off < c.end
    }))
  })
  it("rejects bad sizes and indices", () => {
    expect(() => ChunkSpec.planChunks(-1, 4)).toThrow(RangeError)
    expect(() => ChunkSpec.planChunks(10, 0)).toThrow(RangeError)
    expect(() => ChunkSpec.planChunks(1.5, 4)).toThrow(RangeError)
    expect(() => ChunkSpec.planChunks(10, 4).chunkAt(3)).toThrow(RangeError)
  })
  it("is lazy for huge inputs", () => {
    const plan = ChunkSpec.planChunks(50e9, 65536)
    expect(plan.totalChunks).toBe(Math.ceil(50e9 / 65536))
    expect(plan.chunkAt(plan.totalChunks - 1).end).toBe(50e9)
  })
})

describe("sizes", () => {
  it.for([
    ["65536", 65536], ["64k", 65536], ["64KiB", 65536], ["64KB", 64000], ["4MiB", 4194304], ["1g", 1073741824]
  ] as const)("parses %s", ([text, n]) => expect(Size.parse(text)).toBe(n))
  it.for(["", "abc", "-1", "1.5k", "10 parsecs"])("rejects %j", (t) => expect(Size.parse(t)).toBeUndefined())
  it("formats", () => {
    expect(Size.format(65536)).toBe("64 KiB")
    expect(Size.format(12)).toBe("12 B")
  })
})

describe("ChunkSpec.checkChunkBytes: one check and one message for every owner's rule", () => {
  const agcmLike = { min: 16 * 1024, max: 4 * 1024 * 1024, powerOfTwo: true }
  it("accepts exactly the sizes of the rule", () => {
    for (const n of [16 * 1024, 64 * 1024, 4 * 1024 * 1024]) expect(ChunkSpec.checkChunkBytes(n, agcmLike)).toBeUndefined()
    for (const n of [1, 7, 65536, 2 ** 30]) expect(ChunkSpec.checkChunkBytes(n, ChunkSpec.PLAIN_CHUNKS)).toBeUndefined()
  })
  it("names the rule and the size given, in bytes or an exact unit", () => {
    expect(ChunkSpec.checkChunkBytes(8 * 1024, agcmLike)).toBe("a chunk size must be a power of two from 16 KiB to 4 MiB, got 8 KiB")
    expect(ChunkSpec.checkChunkBytes(65537, agcmLike)).toBe("a chunk size must be a power of two from 16 KiB to 4 MiB, got 65537 bytes")
    expect(ChunkSpec.checkChunkBytes(96 * 1024, agcmLike)).toBe("a chunk size must be a power of two from 16 KiB to 4 MiB, got 96 KiB")
    expect(ChunkSpec.checkChunkBytes(0, ChunkSpec.PLAIN_CHUNKS)).toBe("a chunk size must be a whole number of bytes from 1 B to 1 GiB, got 0 bytes")
  })
  it("agrees with the rule for any number", () => {
    fc.assert(fc.property(fc.oneof(fc.integer({ min: -10, max: 2 ** 31 }), fc.double()), (n) => {
      const ok = Number.isSafeInteger(n) && n >= 1 && n <= 2 ** 30
      expect(ChunkSpec.checkChunkBytes(n, ChunkSpec.PLAIN_CHUNKS) === undefined).toBe(ok)
    }))
  })
})

describe("Size.parseRange", () => {
  it("reads START:END with units, empty sides meaning 0 and the end", () => {
    expect(Size.parseRange("1MiB:2MiB")).toEqual({ start: 1 << 20, end: 2 << 20 })
    expect(Size.parseRange(" 0:100 ")).toEqual({ start: 0, end: 100 })
    expect(Size.parseRange(":64KiB")).toEqual({ start: 0, end: 65536 })
    expect(Size.parseRange("4096:")).toEqual({ start: 4096, end: undefined })
    expect(Size.parseRange(":")).toEqual({ start: 0, end: undefined })
  })
  it("returns undefined for anything else, and leaves the order of the ends to the caller", () => {
    for (const bad of ["", "12", "1:2:3", "a:b", "1:x", "-1:5", "1.5:2"]) expect(Size.parseRange(bad)).toBeUndefined()
    expect(Size.parseRange("9:3")).toEqual({ start: 9, end: 3 })
  })
})
