/**
 * ChunkInput.fromPipe: a real pipe (a FIFO made by the test, written by a child process in
 * pieces of chosen sizes), read through the engine: every byte once, in order, at boundary
 * sizes around the 64 KiB read buffer, the engine's segments and its one byte of lookahead.
 */
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { ChunkInput, ChunkOutput, type ChunkProcessor, runPipeline } from "../src/index.js"
import { pseudoRandom, xorReference, xorTransform } from "./helpers.js"

let dir = ""
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-pipe-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Writes `file` into `fifo` in pieces of `pieces` bytes (cycled), a pause after each. */
const WRITER = `
const fs = require("node:fs")
const [file, fifo, pieces] = process.argv.slice(1)
const data = fs.readFileSync(file)
const sizes = pieces.split(",").map(Number)
const fd = fs.openSync(fifo, "w")
let at = 0, k = 0
const next = () => {
  if (at >= data.length) return fs.closeSync(fd)
  const n = Math.min(sizes[k++ % sizes.length], data.length - at)
  fs.writeSync(fd, data, at, n)
  at += n
  setImmediate(next)
}
next()
`

/** Runs the engine (`processors`, default one xor transform) over `data` written into a FIFO in `pieces`; returns the output. */
const throughPipe = async (data: Uint8Array, pieces: ReadonlyArray<number>, options: { chunkBytes: number; segmentBytes?: number; processors?: ReadonlyArray<ChunkProcessor> }) => {
  const file = path.join(dir, "data")
  const fifo = path.join(dir, `fifo-${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(file, data)
  expect(spawnSync("mkfifo", [fifo]).status).toBe(0)
  const writer = spawn(process.execPath, ["-e", WRITER, file, fifo, pieces.join(",")], { stdio: "ignore" })
  const exited = new Promise<number | null>((resolve) => writer.on("exit", resolve))
  // Non-blocking open: the reader does not wait here for the writer to open its end.
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const input = ChunkInput.fromPipe(fd, "the pipe")
  const out = ChunkOutput.toMemory()
  const { processors, ...sizes } = options
  await Effect.runPromise(runPipeline({ input, output: out, pipeline: processors ?? [xorTransform()], ...sizes }).pipe(Effect.ensuring(input.close())))
  expect(await exited).toBe(0)
  return Buffer.from(out.bytes())
}

describe("ChunkInput.fromPipe", () => {
  it("every byte once, in order, at sizes around the read buffer, the segment and the lookahead", async () => {
    const K64 = 64 * 1024
    for (const size of [0, 1, 63, 64, 65, K64 - 1, K64, K64 + 1, 2 * K64 + 5, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1]) {
      const data = pseudoRandom(size, size + 7)
      const got = await throughPipe(data, [K64], { chunkBytes: 64 })
      expect(got.equals(xorReference(data, 64)), `${size} bytes`).toBe(true)
    }
  })

  it("pieces of any size: single bytes, pieces larger than the read buffer, segments smaller than a read", async () => {
    const data = pseudoRandom(300_000, 3)
    for (const [pieces, segmentBytes] of [[[1, 2, 3], 1 << 20], [[70_000, 1, 130_001], 1 << 20], [[65_536, 7], 100], [[200_000], 64]] as const) {
      const small = pieces[0] === 1 ? data.subarray(0, 3000) : data
      const got = await throughPipe(small, pieces, { chunkBytes: 64, segmentBytes })
      expect(got.equals(xorReference(small, 64)), `pieces ${pieces.join(",")}, ${segmentBytes}-byte segments`).toBe(true)
    }
  })

  it("a slow pipeline: the pipe is not read while nobody asks, and no byte is lost meanwhile", async () => {
    const data = pseudoRandom(600_000, 5)
    const base = xorTransform()
    // Each segment waits, so the writer runs ahead and reads arrive while no read is asked for.
    const slow = { ...base, process: (chunk: Parameters<typeof base.process>[0], bytes: Uint8Array) => Effect.sleep("2 millis").pipe(Effect.andThen(base.process(chunk, bytes))) }
    const got = await throughPipe(data, [65_536], { chunkBytes: 4096, segmentBytes: 8192, processors: [slow] })
    expect(got.equals(xorReference(data, 4096))).toBe(true)
  })

  it("a descriptor that is not a pipe or socket is refused when the source is made", () => {
    const file = path.join(dir, "plain")
    fs.writeFileSync(file, "x")
    const fd = fs.openSync(file, "r")
    try {
      expect(() => ChunkInput.fromPipe(fd)).toThrow()
    } finally {
      fs.closeSync(fd)
    }
  })
})
