import { ChunkInput, ChunkOutput, type ChunkProcessor, ChunkSpec, type JsonValue, runPipeline } from "@cage/core"
import { pseudoRandomBytes } from "@cage/testkit"
import { Effect } from "effect"

/** The specification, written the obvious way over the whole input: left to right, no overlaps. */
export const reference = (input: Uint8Array, pattern: string): Buffer => {
  const p = Buffer.from(pattern, "utf8")
  const out = Buffer.from(input)
  for (let i = 0; i + p.length <= out.length;) {
    if (out.subarray(i, i + p.length).equals(p)) {
      out.fill("*", i, i + p.length)
      i += p.length
    } else i++
  }
  return out
}

/** Runs `processor` alone through the engine over `input` in memory, at `chunkBytes`. */
export const runEngine = (processor: ChunkProcessor, input: Uint8Array, chunkBytes: number) =>
  Effect.runPromise(Effect.gen(function*() {
    const sink = ChunkOutput.toMemory()
    const summary = yield* runPipeline({ input: ChunkInput.fromBytes(input), output: sink, pipeline: [processor], chunkBytes, segmentBytes: chunkBytes * 3, inFlight: 3 })
    return { output: Buffer.from(sink.bytes()), results: summary.results }
  }))

/**
 * Drives a processor by hand over `pieces` (chunks of any sizes, which the engine never
 * produces), as the engine would: init, process in order, finalize. Each piece is
 * overwritten once its `process` completed, as the engine reuses its buffers. With
 * `resumeAt`, the processor is replaced after that many pieces by a fresh one restored from
 * the JSON of its snapshot, as on resume.
 */
export const driveByHand = async (make: () => ChunkProcessor, pieces: ReadonlyArray<Uint8Array>, resumeAt?: number) => {
  const total = pieces.reduce((n, p) => n + p.length, 0)
  const start = async (resume: JsonValue | undefined) => {
    const p = make()
    await Effect.runPromise(p.init({ input: "pieces", inputSize: total, chunkBytes: 64, readHeader: () => Effect.succeed(new Uint8Array(0)), resume }))
    return p
  }
  let processor = await start(undefined)
  const out: Array<Uint8Array> = []
  let at = 0
  for (const [index, piece] of pieces.entries()) {
    if (index === resumeAt) processor = await start(JSON.parse(JSON.stringify(processor.snapshot?.() ?? null)))
    const data = Buffer.from(piece)
    const chunk: ChunkSpec.ChunkSpec = { index, start: at, end: at + data.length, length: data.length, final: index === pieces.length - 1 }
    const bytes = await Effect.runPromise(processor.process(chunk, data))
    out.push(Buffer.from(bytes!))
    data.fill(0xee)
    at += piece.length
  }
  const plan = ChunkSpec.planChunks(total, Math.max(1, ...pieces.map((p) => p.length)))
  const done = await Effect.runPromise(processor.finalize({ plan, inputBytes: total }))
  if (done?.trailer) out.push(done.trailer)
  return { output: Buffer.concat(out), result: done?.result }
}

/** Cuts `input` at the given offsets (any order, duplicates allowed: empty pieces). */
export const cut = (input: Uint8Array, at: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [0, ...[...at].sort((a, b) => a - b), input.length]
  return points.slice(1).map((end, i) => input.subarray(points[i], end))
}

/**
 * Text of about `size` bytes in which `pattern`, its halves and near misses are frequent,
 * so chunk boundaries fall inside occurrences at every chunk size (for the kit's `input`).
 */
export const textWith = (pattern: string) => (size: number, seed: number): Uint8Array => {
  const half = pattern.length >> 1
  const words = [pattern, pattern.slice(0, half), pattern.slice(half), pattern.slice(0, -1), " ", "\n", "x", pattern + pattern].filter((w) => w !== "")
  const r = pseudoRandomBytes(size, seed)
  const out = Buffer.alloc(size, " ")
  // `+ i`: a different word each time even when `size` is tiny and `r` repeats.
  for (let i = 0, at = 0, n = 1; at < size && n > 0; i++) at += n = out.write(words[(r[i % size] + i) % words.length], at)
  return out
}
