/**
 * Random access to a backup file's plaintext, for deep verify and range restore.
 *
 * @internal
 */
import { ChunkInput, type ChunkProcessor, ChunkSpec, type IoError, ProcessorError } from "@cage/core"
import { Effect } from "effect"

/** A backup file opened for random chunk access. @internal */
export interface Reader {
  readonly plan: ChunkSpec.ChunkPlan
  readonly framing: ChunkSpec.Framing
  /** Decrypts chunks `[from, to)`; fails with ProcessorError naming the chunk. */
  readonly read: (from: number, to: number) => Effect.Effect<Array<Uint8Array>, ProcessorError | IoError>
  readonly close: Effect.Effect<void>
}

/** Opens a backup file with a decrypt processor driven directly (random chunk access). @internal */
export const openReader = (path: string, decrypt: ChunkProcessor, chunkBytes: number): Effect.Effect<Reader, ProcessorError | IoError> =>
  Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(path)
    const wrap = (phase: ProcessorError["phase"], chunk?: number) => (cause: unknown) =>
      new ProcessorError({ processor: decrypt.name, phase, chunk: typeof (cause as { chunk?: unknown })?.chunk === "number" ? (cause as { chunk: number }).chunk : chunk, cause })
    const r = (yield* decrypt.init({
      input: path,
      inputSize: input.size,
      chunkBytes,
      readHeader: (n) => Effect.gen(function*() {
        const buf = new Uint8Array(n)
        const got = yield* input.read(0, buf, 0, n)
        return buf.subarray(0, got)
      }),
      resume: undefined
    }).pipe(Effect.mapError(wrap("init")))) ?? {}
    const framing: ChunkSpec.Framing = r.framing ?? { headerBytes: 0, chunkBytes, shortFinal: false }
    const plan = ChunkSpec.planRegion(input.size! - framing.headerBytes, framing)
    /** Decrypts chunks `[from, to)`; fails with ProcessorError naming the chunk. */
    const read = (from: number, to: number) =>
      Effect.gen(function*() {
        const specs = [...plan.chunks(from, to)]
        if (specs.length === 0) return [] as Array<Uint8Array>
        const start = specs[0].start
        const length = specs[specs.length - 1].end - start
        const buf = Buffer.allocUnsafeSlow(length)
        const n = yield* input.read(framing.headerBytes + start, buf, 0, length)
        const data = specs.map((c) => buf.subarray(c.start - start, Math.min(n, c.end - start)))
        const out = decrypt.processSegment
          ? yield* decrypt.processSegment(specs, data).pipe(Effect.mapError(wrap("process", from)))
          : yield* Effect.forEach(specs, (c, k) => decrypt.process(c, data[k]).pipe(Effect.mapError(wrap("process", c.index))))
        return out.map((o, k) => o ?? data[k])
      })
    const close = Effect.gen(function*() {
      if (decrypt.close) yield* decrypt.close()
      yield* input.close()
    })
    return { plan, framing, read, close }
  })
