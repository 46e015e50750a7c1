import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { makeDetector, medianMad, percentile } from "../src/index.js"

describe("median, MAD, percentiles", () => {
  it("computes known values", () => {
    expect(medianMad([1, 2, 3, 4, 100])).toEqual({ median: 3, mad: 1 })
    expect(medianMad([1, 2, 3, 4])).toEqual({ median: 2.5, mad: 1 })
    expect(medianMad([5])).toEqual({ median: 5, mad: 0 })
    expect(percentile([], 50)).toBeUndefined()
    expect(percentile([3, 1, 2], 0)).toBe(1)
    expect(percentile([3, 1, 2], 50)).toBe(2)
    expect(percentile([3, 1, 2], 100)).toBe(3)
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99)).toBe(99)
  })
})

describe("anomaly detector", () => {
  it("gives no verdict before minSamples", () => {
    const d = makeDetector({ minSamples: 16 })
    for (let i = 0; i < 15; i++) d.observe(100)
    expect(d.observe(1)).toBeUndefined()
    expect(d.observe(1)).toMatchObject({ direction: "slow", median: 100 })
  })

  it.for([[false, [[100, "slow"]]], [true, [[100, "slow"], [200, "fast"]]]] as const)("flagFast %s: flags the slow (and fast) chunk of a noisy but steady run, and nothing else", ([flagFast, want]) => {
    const d = makeDetector({ flagFast })
    const flagged: Array<[number, string]> = []
    for (let i = 0; i < 300; i++) {
      const x = i === 100 ? 20 : i === 200 ? 900 : 300 + ((i * 37) % 23) - 11
      const a = d.observe(x)
      if (a) flagged.push([i, a.direction])
    }
    expect(flagged).toEqual(want)
  })

  it("one outlier does not mask the next (median, not mean)", () => {
    const d = makeDetector()
    for (let i = 0; i < 50; i++) d.observe(100 + (i % 3))
    expect(d.observe(5)).toBeDefined()
    expect(d.observe(6)).toBeDefined()
  })

  it("never flags jitter within half the MAD floor (property)", () => {
    fc.assert(fc.property(fc.double({ min: 1, max: 1e5, noNaN: true }), fc.array(fc.double({ min: -0.025, max: 0.025, noNaN: true }), { minLength: 20, maxLength: 300 }), (m, jitter) => {
      const d = makeDetector({ flagFast: true })
      return jitter.every((j) => d.observe(m * (1 + j)) === undefined)
    }))
  })

  it("always flags a chunk at a tenth of a steady median (property)", () => {
    fc.assert(fc.property(fc.double({ min: 1, max: 1e5, noNaN: true }), fc.integer({ min: 16, max: 200 }), (m, n) => {
      const d = makeDetector()
      for (let i = 0; i < n; i++) d.observe(m)
      return d.observe(m / 10)?.direction === "slow"
    }))
  })
})
