import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { agcmEncrypt, decryptRange, decryptRangeTo, decryptRangeWithStats, MAX_HEADER_BYTES, type RangeStats } from "../src/index.js"
import { bytes, failureOf, key32 } from "./helpers.js"

const key = key32(31)
const CS = 16 * 1024
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "agcm-range-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const sealFile = async (name: string, plain: Uint8Array, cs = CS) => {
  const p = path.join(tmp, name)
  const out = ChunkOutput.toMemory()
  await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: out, pipeline: [agcmEncrypt({ key, chunkSize: cs, workers: 1 })], chunkBytes: cs }))
  fs.writeFileSync(p, out.bytes())
  return p
}
const stats = (): RangeStats => ({ chunksOpened: 0, bytesRead: 0, plaintextBytes: 0 })

describe("decryptRange", () => {
  const plain = bytes(10 * CS + 123, 8)
  let file = ""
  it("returns exactly the range, for any range (property)", async () => {
    file = await sealFile("a.agcm", plain)
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: plain.length }), fc.integer({ min: 0, max: plain.length }), async (a, b) => {
      const [start, end] = a <= b ? [a, b] : [b, a]
      const got = await Effect.runPromise(decryptRange(file, start, end, { key }))
      expect(Buffer.from(got).equals(Buffer.from(plain.subarray(start, end)))).toBe(true)
    }), { numRuns: 60 })
  })

  it("reads only the covering chunks plus the final chunk (counted)", async () => {
    const s = stats()
    // [CS+10, 3CS-5) covers chunks 1 and 2.
    const got = await Effect.runPromise(decryptRangeWithStats(file, CS + 10, 3 * CS - 5, { key }, s))
    expect(got.length).toBe(2 * CS - 15)
    expect(s.chunksOpened).toBe(3)
    // The header read asks for the longest header (MAX_HEADER_BYTES, 1109), then the three chunks.
    expect(s.bytesRead).toBe(MAX_HEADER_BYTES + 2 * (CS + 16) + (123 + 16))
    expect(s.plaintextBytes).toBe(plain.length)
    const inFinal = stats()
    await Effect.runPromise(decryptRangeWithStats(file, plain.length - 5, plain.length, { key }, inFinal))
    expect(inFinal.chunksOpened).toBe(1)
  })

  it("streams a range to a sink chunk by chunk", async () => {
    const slices: Array<Uint8Array> = []
    await Effect.runPromise(decryptRangeTo(file, 100, 5 * CS, { key }, (b) => Effect.sync(() => void slices.push(Uint8Array.from(b)))))
    expect(slices.length).toBe(5)
    expect(Buffer.concat(slices).equals(Buffer.from(plain.subarray(100, 5 * CS)))).toBe(true)
  })

  it("authenticates the final chunk first: a truncated file cannot pass as shorter", async () => {
    const full = fs.readFileSync(file)
    const cut = path.join(tmp, "cut.agcm")
    // Cut at a chunk boundary: the remaining chunks all open, but the final chunk is gone.
    fs.writeFileSync(cut, full.subarray(0, 66 + 5 * (CS + 16)))
    expect((await failureOf(decryptRange(cut, 0, 10, { key })) as { _tag: string })._tag).toBe("Truncated")
    // Cut inside a chunk: that piece is the "final chunk" and does not authenticate.
    fs.writeFileSync(cut, full.subarray(0, 66 + 5 * (CS + 16) + 500))
    expect(await failureOf(decryptRange(cut, 0, 10, { key }))).toMatchObject({ _tag: "ChunkAuthFailed", chunk: 5, final: true })
    fs.writeFileSync(cut, Buffer.concat([full, Buffer.alloc(7)]))
    expect(await failureOf(decryptRange(cut, 0, 10, { key }))).toMatchObject({ _tag: "TrailingData", bytes: 7 })
    const flipped = Buffer.from(full)
    flipped[66 + 2 * (CS + 16) + 9] ^= 1
    fs.writeFileSync(cut, flipped)
    expect(await failureOf(decryptRange(cut, 2 * CS, 2 * CS + 1, { key }))).toMatchObject({ _tag: "ChunkAuthFailed", chunk: 2 })
    // A range that avoids the damaged chunk still reads (range reads open only what they return).
    expect((await Effect.runPromise(decryptRange(cut, 0, CS, { key }))).length).toBe(CS)
  })

  it("refuses bad ranges and wrong keys", async () => {
    expect(await failureOf(decryptRange(file, 5, 4, { key }))).toMatchObject({ _tag: "AgcmUsageError", reason: "Range", exitCode: 2 })
    expect(await failureOf(decryptRange(file, 0, plain.length + 1, { key }))).toMatchObject({ _tag: "AgcmUsageError", reason: "Range" })
    expect(await failureOf(decryptRange(file, 0, 1, { key: key32(0) }))).toMatchObject({ _tag: "HeaderAuthFailed" })
    expect(await failureOf(decryptRange(path.join(tmp, "missing"), 0, 1, { key }))).toMatchObject({ _tag: "IoError", exitCode: 4 })
    expect((await Effect.runPromise(decryptRange(file, 7, 7, { key }))).length).toBe(0)
  })

  it.for([0, 1, CS - 1, CS, CS + 1])("whole-file range of a %i-byte plaintext", async (n) => {
    const p = bytes(n, 77)
    const f = await sealFile(`w${n}.agcm`, p)
    expect(Buffer.from(await Effect.runPromise(decryptRange(f, 0, n, { key }))).equals(p)).toBe(true)
  })
})
