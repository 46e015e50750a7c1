import { Effect, Exit } from "effect"
import fsDefault from "node:fs"
import * as fs from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { ChunkInput, ChunkOutput, runPipeline } from "../src/index.js"
import { pseudoRandom, xorReference, xorTransform } from "./helpers.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-wb-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const runTo = (out: ChunkOutput.ChunkOutput, data: Uint8Array) =>
  Effect.runPromiseExit(Effect.gen(function*() {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    const input = yield* ChunkInput.fromFile(src)
    return yield* runPipeline({ input, output: out, pipeline: [xorTransform()], chunkBytes: 1000, segmentBytes: 4000, inFlight: 3 }).pipe(Effect.ensuring(input.close()))
  }))

/** Replaces fs.fdatasync (for the module's live bindings too) while `body` runs. */
const withFdatasync = async <A>(fake: typeof fs.fdatasync, body: () => Promise<A>) => {
  const real = fsDefault.fdatasync
  fsDefault.fdatasync = fake
  syncBuiltinESMExports()
  try {
    return await body()
  } finally {
    fsDefault.fdatasync = real
    syncBuiltinESMExports()
  }
}

describe("background write-back of file outputs", () => {
  it("starts an fdatasync every writebackBytes while writing, one at a time, and the output is unchanged", async () => {
    const data = pseudoRandom(200_000, 7)
    let calls = 0
    let inFlight = 0
    let maxInFlight = 0
    const exit = await withFdatasync(((_fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => {
      calls++
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      setTimeout(() => {
        inFlight--
        cb(null)
      }, 2)
    }) as typeof fs.fdatasync, () => runTo(ChunkOutput.toFile(path.join(dir, "out"), { writebackBytes: 10_000 }), data))
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(fs.readFileSync(path.join(dir, "out"))).toEqual(xorReference(data, 1000))
    expect(calls).toBeGreaterThan(2)
    expect(maxInFlight).toBe(1)
  })

  it("a background fdatasync failure fails the commit (it would be lost to the final fsync), naming the file; nothing is published", async () => {
    const data = pseudoRandom(200_000, 8)
    let failed = false
    const exit = await withFdatasync(((_fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => {
      if (!failed) {
        failed = true
        return setImmediate(() => cb(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })))
      }
      setImmediate(() => cb(null))
    }) as typeof fs.fdatasync, () => runTo(ChunkOutput.toFile(path.join(dir, "out"), { writebackBytes: 10_000 }), data))
    expect(failed).toBe(true)
    expect(Exit.isFailure(exit)).toBe(true)
    const e = Exit.isFailure(exit) ? (Exit.findErrorOption(exit) as { value?: { _tag: string; message: string } }).value : undefined
    expect(e?._tag).toBe("IoError")
    expect(e?.message).toContain(`${path.join(dir, "out")}.partial: sync failed`)
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false)
  })

  it("without fsync there is no write-back", async () => {
    let calls = 0
    const exit = await withFdatasync(((_fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => {
      calls++
      setImmediate(() => cb(null))
    }) as typeof fs.fdatasync, () => runTo(ChunkOutput.toFile(path.join(dir, "out"), { fsync: false, writebackBytes: 1 }), pseudoRandom(50_000, 9)))
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(calls).toBe(0)
  })
})
