import { ChunkInput, ChunkOutput, ChunkSpec, ExitCode, runPipeline } from "@cage/core"
import { boundarySizes, pseudoRandomBytes } from "@cage/testkit"
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import * as zlib from "node:zlib"
import { describe, expect, it } from "vitest"
import factory, { GUNZIP_NAME, gunzip, gunzipFactory, gzip, GZIP_NAME, GzipError, VERSION } from "../src/index.js"
import { END_MEMBER, HEADER_BYTES } from "../src/Member.js"
import { failureOf, gzipFile, runOne, runOneExit, textBytes } from "./helpers.js"

describe("gzip output is a standard gzip file", () => {
  for (const cs of [1, 13, 4096]) {
    it.for(boundarySizes(cs))(`chunk size ${cs}: %i bytes, read back by zlib.gunzipSync and gzip -dc`, async (size) => {
      const data = textBytes(size, size + cs)
      const out = await runOne(gzip(), data, cs)
      expect(zlib.gunzipSync(out)).toEqual(Buffer.from(data))
      // The real gzip(1): concatenated members with an extra field are one valid file.
      expect(execFileSync("gzip", ["-dc"], { input: out })).toEqual(Buffer.from(data))
      // One member per chunk (an empty input still gets one, so the file is valid).
      expect(out.length).toBeGreaterThanOrEqual((ChunkSpec.planChunks(size, cs).totalChunks + 1) * 30)
      expect(out.subarray(out.length - END_MEMBER.length)).toEqual(END_MEMBER)
    })
  }
  it("compresses compressible data, and level 9 is no larger than level 1", async () => {
    const data = textBytes(1 << 20)
    const l1 = await runOne(gzip({ level: 1 }), data, 64 * 1024)
    const l9 = await runOne(gzip({ level: 9 }), data, 64 * 1024)
    expect(l1.length).toBeLessThan(data.length / 2)
    expect(l9.length).toBeLessThanOrEqual(l1.length)
  })
})

describe("round trips", () => {
  it("gunzip reads any file gzip wrote, at any chunk size on either side (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 0, max: 9 }), async (data, csIn, csOut, level) => {
        const packed = await runOne(gzip({ level }), data, csIn)
        const back = await runOne(gunzip(), packed, csOut)
        expect(back).toEqual(Buffer.from(data))
      }),
      { numRuns: 60 }
    )
  })
  it("gunzip reads a file cut at any point into two chunks (property: any cut point)", async () => {
    const packed = await gzipFile(2000, 3, 300)
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: packed.length }), async (cut) => {
        expect(await runOne(gunzip(), packed, cut)).toEqual(Buffer.from(pseudoRandomBytes(2000, 3)))
      }),
      { numRuns: 80 }
    )
  })
})

describe("gunzip failures: exit code 3 with the chunk index, never wrong output", () => {
  const expectGzipError = (error: unknown, reason: string) => {
    expect(error).toMatchObject({ _tag: "ProcessorError", processor: GUNZIP_NAME })
    const cause = (error as { cause: unknown }).cause
    expect(cause).toBeInstanceOf(GzipError)
    expect((cause as GzipError).reason).toBe(reason)
    expect((error as { exitCode: number }).exitCode).toBe(ExitCode.Integrity)
  }
  it("flipping any bit of any byte never gives different output: exit code 3, or the same bytes", async () => {
    const packed = await gzipFile(300, 7, 100)
    const original = Buffer.from(pseudoRandomBytes(300, 7))
    let accepted = 0
    for (let at = 0; at < packed.length; at++) {
      for (const bit of [0x01, 0x10, 0x80]) {
        const bad = Buffer.from(packed)
        bad[at] ^= bit
        const exit = await runOneExit(gunzip(), bad, 64)
        if (Exit.isSuccess(exit)) {
          // Only the unused padding bits of a stored deflate block header carry no meaning.
          accepted++
          continue
        }
        const error = failureOf(exit) as { _tag: string; exitCode: number }
        expect(error._tag, `byte ${at} bit ${bit}`).toBe("ProcessorError")
        expect(error.exitCode, `byte ${at} bit ${bit}`).toBe(3)
      }
    }
    expect(accepted).toBeLessThan(packed.length / 20)
    expect(await runOne(gunzip(), packed, 64)).toEqual(original)
  })
  it("a flipped bit that gunzip accepts leaves the output unchanged", async () => {
    const packed = await gzipFile(300, 7, 100)
    const original = Buffer.from(pseudoRandomBytes(300, 7))
    for (let at = 0; at < packed.length; at++) {
      const bad = Buffer.from(packed)
      bad[at] ^= 0x10
      const exit = await Effect.runPromiseExit(Effect.gen(function*() {
        const sink = ChunkOutput.toMemory()
        yield* runPipeline({ input: ChunkInput.fromBytes(bad), output: sink, pipeline: [gunzip()], chunkBytes: 64 })
        return Buffer.from(sink.bytes())
      }))
      if (Exit.isSuccess(exit)) expect(exit.value, `byte ${at}`).toEqual(original)
    }
  })
  it("dropping, duplicating or swapping whole members is detected", async () => {
    const packed = await gzipFile(300, 7, 100)
    // Members of 100 pseudo-random bytes at level 1 are stored blocks of equal length.
    const m = (packed.length - END_MEMBER.length) / 3
    const [a, b, c] = [0, 1, 2].map((i) => packed.subarray(i * m, (i + 1) * m))
    const variants = {
      dropLast: Buffer.concat([a, b, END_MEMBER]),
      dropEnd: Buffer.concat([a, b, c]),
      endTwice: Buffer.concat([a, b, c, END_MEMBER, END_MEMBER]),
      dataAfterEnd: Buffer.concat([a, b, END_MEMBER, c])
    }
    for (const [name, bytes] of Object.entries(variants)) {
      const exit = await runOneExit(gunzip(), bytes, 64)
      if (name === "dropLast") {
        // A member removed before the end member is a valid, shorter file: gzip has no
        // member sequence numbers. Documented in the README; the round trip shows it.
        expect(Exit.isSuccess(exit), name).toBe(true)
        continue
      }
      expect((failureOf(exit) as { exitCode: number }).exitCode, name).toBe(3)
    }
  })
  it("truncation at every length, member boundaries included, is Truncated (or Corrupt), never success", async () => {
    const packed = await gzipFile(300, 8, 100)
    for (let len = 0; len < packed.length; len++) {
      const error = failureOf(await runOneExit(gunzip(), packed.subarray(0, len), 64)) as { exitCode: number; cause: GzipError }
      expect(error.exitCode, `length ${len}`).toBe(3)
      expect(["Truncated", "Corrupt"], `length ${len}`).toContain(error.cause.reason)
    }
  })
  it("a plain gzip file (no size field) is refused as NoSizeField", async () => {
    expectGzipError(failureOf(await runOneExit(gunzip(), zlib.gzipSync(Buffer.from("hello")), 64)), "NoSizeField")
  })
  it("bytes that are not gzip are NotGzip, with the chunk index", async () => {
    const error = failureOf(await runOneExit(gunzip(), Buffer.alloc(100, 0x41), 64))
    expectGzipError(error, "NotGzip")
    expect((error as { chunk: number }).chunk).toBe(0)
  })
  it("an empty input is Truncated", async () => {
    expectGzipError(failureOf(await runOneExit(gunzip(), new Uint8Array(0), 64)), "Truncated")
  })
  it("a member beyond maxMemberBytes is TooLarge before it is buffered", async () => {
    const packed = await gzipFile(5000, 9, 5000)
    const error = failureOf(await runOneExit(gunzip({ maxMemberBytes: 1000 }), packed, 64))
    expectGzipError(error, "TooLarge")
    expect((error as { chunk: number }).chunk).toBe(0)
  })
  it("trailing garbage after the last member is refused", async () => {
    const packed = await gzipFile(100, 10, 50)
    const error = failureOf(await runOneExit(gunzip(), Buffer.concat([packed, Buffer.alloc(HEADER_BYTES + 5)]), 64))
    expect((error as { exitCode: number }).exitCode).toBe(3)
  })
})

describe("options and the factory", () => {
  it.for([-1, 10, 1.5, "6"])("gzip refuses level %s with BadOption, exit code 2", (level) => {
    expect(() => gzip({ level: level as number })).toThrow(GzipError)
    try {
      gzip({ level: level as number })
    } catch (e) {
      expect((e as GzipError).reason).toBe("BadOption")
      expect((e as GzipError).exitCode).toBe(2)
      expect((e as GzipError).message).toContain("level")
    }
  })
  it("gunzip refuses a maxMemberBytes below the smallest member", () => {
    expect(() => gunzip({ maxMemberBytes: 10 })).toThrow(/maxMemberBytes/)
  })
  it("the default export is a ProcessorFactory named after the package, with its inverse", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    expect(factory.name).toBe(pkg.name)
    expect(GZIP_NAME).toBe(pkg.name)
    expect(VERSION).toBe(pkg.version)
    expect(factory.apiVersion).toBe(1)
    expect(factory.capabilities).toEqual({ kind: "transform", ordered: false, resumable: true, deterministic: true, reversible: true })
    const p = factory.make({ level: 3 })
    expect(p.name).toBe(factory.name)
    expect(p.options).toEqual({ level: 3 })
    expect(factory.inverse).toBe(gunzipFactory)
    expect(gunzipFactory.make({}).capabilities).toEqual(gunzipFactory.capabilities)
    // What lets agcm-decrypt check that a file's recorded gzip is undone.
    expect(gunzipFactory.capabilities.undoes).toBe(factory.name)
  })
  it("options and snapshots carry no data: gzip options are just the level", async () => {
    const p = gzip()
    expect(p.options).toEqual({ level: 6 })
    expect(p.snapshot).toBeUndefined()
    await Effect.runPromise(p.init({ input: "x", inputSize: 0, chunkBytes: 1, readHeader: () => Effect.succeed(new Uint8Array(0)), resume: undefined }))
  })
})
