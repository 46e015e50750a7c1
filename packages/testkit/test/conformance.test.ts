import { describe, expect, it } from "vitest"
import { boundarySizes, checks, describeProcessorConformance } from "../src/index.js"
import { runBytes } from "../src/internal/run.js"
import * as F from "./fixtures.js"

const small = { largeInputBytes: 32 * 1024 * 1024, timeoutMs: 10_000 } as const

// The kit passes correct processors of every shape.
describeProcessorConformance("fixture-xor (unordered transform with header and trailer)", () => F.xor(), { ...small, inverse: () => F.unxor() })
describeProcessorConformance("fixture-sha256 (ordered observer, not resumable)", () => F.sha256(), small)
describeProcessorConformance("fixture-count (ordered observer with snapshot)", () => F.byteCount(), small)
describeProcessorConformance("fixture-xor-direct (direct mode, file to file)", () => F.xorDirect(), { ...small, inverse: () => F.unxor() })
// A streaming transform whose output must not depend on where chunks are cut, with its reference.
const redactOptions = { ...small, largeInputBytes: 16 * 1024 * 1024, inputs: F.REDACT_SAMPLES, reference: F.redactAll, chunkSizeIndependent: true } as const
describeProcessorConformance("fixture-redact (ordered streaming transform, reference and samples)", () => F.redact(), redactOptions)
// What the contract lets a processor do with the buffers it is lent.
describeProcessorConformance("fixture-pass-through (returns its input unchanged)", () => F.passThrough(), { ...small, largeInputBytes: false, allowUnchangedOutput: true })
describeProcessorConformance("fixture-takes-segment (processSegment takes the segment's buffer)", () => F.takesSegment(), { ...small, largeInputBytes: false })

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
  it("a processor whose memory grows with the input, after garbage left by earlier work (a fresh clone's first full run)", async () => {
    // Garbage present at the baseline used to be collected during the run and hide the leak.
    let junk: Array<Buffer> | undefined = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1 << 20, i))
    expect(junk.length).toBe(40)
    junk = undefined
    const failure = await checks.memory(F.leaks, { largeInputBytes: 48 * 1024 * 1024, memoryLimitBytes: 32 * 1024 * 1024 }).then(() => undefined, (e: Error) => e)
    expect(failure?.message).toMatch(/live memory \(heap \+ external, after a full garbage collection\) grew by \d+ bytes on a 50331648-byte input/)
    // What it retains is the whole input, whatever garbage was around.
    expect(Number(/grew by (\d+)/.exec(failure!.message)![1])).toBeGreaterThan(48 * 1024 * 1024)
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
    expect(report.samples.map((m) => m.inputBytes)).toEqual([8, 16, 24, 32, 32].map((m) => m * 1024 * 1024))
  })
  it("counts only what is live: a transform allocating a fresh output per chunk stays under a bound below its garbage", async () => {
    // 64 MiB of garbage (segments read, outputs written); at any measure only the engine's 4
    // segments in flight (at most about 2 MiB each, input and output) are live.
    const report = await checks.memory(() => F.xor(), { largeInputBytes: 32 * 1024 * 1024, memoryLimitBytes: 24 * 1024 * 1024 })
    expect(report.peakGrowthBytes).toBeLessThan(24 * 1024 * 1024)
  })
})

// The redactor's broken copies: each fails a check with a message that names the problem.
describe("the kit catches a broken redactor", () => {
  const options = { inputs: F.REDACT_SAMPLES, reference: F.redactAll, chunkSizeIndependent: true } as const
  it("the correct redactor passes the reference and chunk-size checks", async () => {
    for (const n of [1, 7, 64]) await checks.reference(F.redact, n, options)
    await checks.chunkSizeIndependence(F.redact, options)
    await checks.inputChangesOutput(F.redact, options)
  })
  it("a redactor whose output depends on the chunk size (each chunk redacted alone)", async () => {
    await expect(checks.chunkSizeIndependence(F.redactPerChunk, options)).rejects.toThrow(/^output differs at chunk size 1 from chunk size 65536 at byte 3 \(sample 0 \(53 bytes\); 53 vs 53 bytes out; got 6d7920\|7365637265742069, expected 6d7920\|2a2a2a2a2a2a2069\)/)
    await expect(checks.reference(F.redactPerChunk, 7, options)).rejects.toThrow(/^chunk size 7, sample 0 \(53 bytes\): output differs from the reference at byte 3 /)
  })
  it("a redactor that drops its held-back bytes at the end of the input", async () => {
    await expect(checks.reference(F.redactDropsHeld, 64, options)).rejects.toThrow(/^chunk size 64, sample 0 \(53 bytes\): output is 5 bytes shorter than the reference \(48 vs 53 bytes, equal up to there\): bytes held back to match across chunks were dropped at the end of the input \(finalize must return them, in its trailer\)$/)
    // It drops the same bytes at every chunk size: only the reference sees it.
    await checks.chunkSizeIndependence(F.redactDropsHeld, options)
  })
  it("a redactor that changes its input buffer in place, driven by hand and through the engine (processSegment)", async () => {
    await expect(checks.boundary(F.redactInPlace, 200, 64, options)).rejects.toThrow(/^processor broken-redact-in-place modified its input buffer at chunk \d+: byte \d+ of 64 changed from 0x\w\w to 0x2a/)
    await expect(checks.byteByByte(F.redactInPlace, 64, options)).rejects.toThrow(/^processor broken-redact-in-place modified its input buffer at chunk \d+/)
    // Its output is right: no comparison of outputs would catch it.
    for (const sample of F.REDACT_SAMPLES) expect((await runBytes([F.redactInPlace()], sample, 7)).output).toEqual(Buffer.from(F.redactAll(sample)))
  })
  it("with only pseudo-random input, the redactor's logic is never exercised: the suite says so", async () => {
    await expect(checks.inputChangesOutput(F.redact)).rejects.toThrow(/^the default input does not change the output: 3 inputs of pseudo-random bytes .* came out of fixture-redact exactly as they went in.*options\.inputs.*allowUnchangedOutput/)
    // …and the in-place bug goes unseen on it, which is why the warning matters.
    await checks.boundary(F.redactInPlace, 200, 64)
    await checks.inputChangesOutput(F.redact, { allowUnchangedOutput: true })
  })
  it("reference and chunkSizeIndependent need a deterministic processor", () => {
    expect(() => describeProcessorConformance("x", () => F.redact(), { deterministic: false, inverse: () => F.redact(), reference: F.redactAll })).toThrow(/need a deterministic processor/)
  })
})

describe("the kit checks what a processor does with the buffers it is lent", () => {
  it("process must not detach its chunk's buffer (only processSegment may take a segment's)", async () => {
    await expect(checks.boundary(F.detachesInProcess, 200, 64)).rejects.toThrow(/detached the input buffer of chunk 0 in process/)
  })
  it("a processor with release must not return its input buffer", async () => {
    await expect(checks.boundary(F.releasesInput, 200, 64)).rejects.toThrow(/returned its input buffer .* declares release\(\)/)
  })
})

describe("inputs", () => {
  it("every check's inputs come from the samples when they are given without input", async () => {
    // The in-place redactor is caught by the boundary check once the samples feed it.
    await expect(checks.boundary(F.redactInPlace, 200, 64, { inputs: F.REDACT_SAMPLES })).rejects.toThrow(/modified its input buffer/)
  })
  it("as a function of the chunk size: exactly its inputs run at each chunk size", async () => {
    const asked: Array<number> = []
    // The pattern across the first chunk boundary, for a format that cannot be cut or joined.
    const inputs = (n: number) => (asked.push(n), [Buffer.concat([Buffer.alloc(Math.max(0, n - 3), 0x2e), F.PATTERN])])
    await expect(checks.reference(F.redactPerChunk, 64, { inputs, reference: F.redactAll })).rejects.toThrow(/^chunk size 64, options\.inputs\(64\)\[0\] \(67 bytes\): output differs from the reference at byte 61 /)
    await checks.reference(F.redact, 64, { inputs, reference: F.redactAll })
    expect(asked).toEqual([64, 64])
    await expect(checks.chunkSizeIndependence(F.redactPerChunk, { inputs })).rejects.toThrow(/^output differs at chunk size 1 from chunk size 65536 at byte \d+ \(options\.inputs\(1\)\[0\]/)
    // The other checks keep the pseudo-random input: the suite would still say it exercises nothing.
    await expect(checks.inputChangesOutput(F.redact, { inputs })).rejects.toThrow(/^the default input does not change the output: 3 inputs of pseudo-random bytes/)
  })
  it("an array without bytes is refused up front", () => {
    expect(() => describeProcessorConformance("x", () => F.redact(), { inputs: [new Uint8Array(0)] })).toThrow(/options.inputs holds no bytes/)
  })
})
