import { describe, expect, it } from "vitest"
import { boundarySizes, checks, describeProcessorConformance } from "../src/index.js"
import * as F from "./fixtures.js"

const small = { largeInputBytes: 32 * 1024 * 1024, timeoutMs: 10_000 } as const

// The kit passes correct processors of every shape.
describeProcessorConformance("fixture-xor (unordered transform with header and trailer)", () => F.xor(), { ...small, inverse: () => F.unxor() })
describeProcessorConformance("fixture-sha256 (ordered observer, not resumable)", () => F.sha256(), small)
describeProcessorConformance("fixture-count (ordered observer with snapshot)", () => F.byteCount(), small)
describeProcessorConformance("fixture-xor-direct (direct mode, file to file)", () => F.xorDirect(), { ...small, inverse: () => F.unxor() })

// Regression: with several segments in flight the checkpoint must hold the snapshot of the
// last *written* segment (an earlier engine stored one taken ahead of it).
it("resume of a snapshotting processor with 3 segments in flight", () => checks.resume(F.byteCount, 64, 3))

describe("boundarySizes", () => {
  it("lists 0, 1, n-1, n, n+1, 2n-1, 2n, 2n+1 without duplicates", () => {
    expect(boundarySizes(64)).toEqual([0, 1, 63, 64, 65, 127, 128, 129])
    expect(boundarySizes(1)).toEqual([0, 1, 2, 3])
  })
})

// The kit rejects processors that break the contract: each check can fail.
describe("the kit catches broken processors", () => {
  it("a processor that keeps references to data gives a wrong result", async () => {
    await expect(checks.boundary(F.keepsReferences, 200, 64)).rejects.toThrow(/results/)
  })
  it("a transform that claims ordered: false but counts calls", async () => {
    await expect(checks.outOfOrder(F.fakeUnordered, 64)).rejects.toThrow(/shuffled/)
  })
  it("a processor that fails on an empty input", async () => {
    await expect(checks.boundary(F.failsOnEmpty, 0, 64)).rejects.toThrow()
  })
  it("a processor that never completes a chunk is reported as hung", async () => {
    await expect(checks.boundary(F.hangs, 640, 64, { timeoutMs: 500 })).rejects.toThrow(/did not finish/)
  })
  it("a processor whose memory grows with the input", async () => {
    await expect(checks.memory(F.leaks, { largeInputBytes: 48 * 1024 * 1024, memoryLimitBytes: 32 * 1024 * 1024 })).rejects.toThrow(/grew by/)
  })
  it.for(["read", "process"] as const)("a processor that ignores its snapshot on resume (%s failure)", async (how) => {
    await expect(checks.resume(F.forgetsOnResume, 64, 1, {}, how)).rejects.toThrow(/resumed vs one run/)
  })
  it("a direct-mode processor that writes a chunk at the wrong offset", async () => {
    await expect(checks.directMode(() => F.xorDirect(1), 64, { inverse: () => F.unxor() })).rejects.toThrow(/direct mode vs in memory/)
  })
  it("an inverse that does not detect tampering", async () => {
    await expect(checks.tampering(() => F.xor(), 64, { inverse: () => F.unxor() })).rejects.toThrow(/accepted/)
  })
  it("a non-deterministic transform without an inverse is refused up front", () => {
    expect(() => describeProcessorConformance("x", () => F.xor(), { deterministic: false })).toThrow(/needs options.inverse/)
  })
})

describe("memory check on correct processors", () => {
  it("reports growth well under the bound for a stateless transform", async () => {
    const report = await checks.memory(() => F.xor(), { largeInputBytes: 32 * 1024 * 1024 })
    expect(report.inputBytes).toBe(32 * 1024 * 1024)
    expect(report.outputBytes).toBeGreaterThan(report.inputBytes)
    expect(report.peakGrowthBytes).toBeLessThan(64 * 1024 * 1024)
  })
})
