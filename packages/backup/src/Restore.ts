/**
 * Restore of a backup generation, whole or a plaintext byte range of it.
 *
 * @module
 */
import { ChunkInput, ChunkOutput, type EngineError, type Progress, RateLimit, runPipeline, Size } from "@cage/core"
import { Effect } from "effect"
import * as nodePath from "node:path"
import { BackupUsageError, type GenerationNotFound, type RegistryCorrupt } from "./Error.js"
import { type BackupCipher, type CommonOptions, findGeneration } from "./internal/common.js"
import { openReader } from "./internal/reader.js"
import * as Registry from "./Registry.js"

/** A plaintext byte range `[start, end)`. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

/**
 * Parses `START:END` (half-open, bytes; sizes like `64KiB` accepted; an empty END means the
 * end of the file). Fails with `BackupUsageError`.
 */
export const parseRange = (text: string): Effect.Effect<{ readonly start: number; readonly end: number | undefined }, BackupUsageError> => {
  const r = Size.parseRange(text)
  if (r === undefined || (r.end !== undefined && r.end <= r.start)) {
    return Effect.fail(new BackupUsageError({ reason: "Range", detail: `bad range "${text}": use START:END with END > START (bytes, e.g. 0:1MiB)` }))
  }
  return Effect.succeed(r)
}

/** Options of {@link restore}. */
export interface RestoreOptions extends CommonOptions {
  readonly source: string
  readonly generation?: number
  readonly cipher: BackupCipher
  /** Output file (written as `<output>.partial`, published on success; never clobbers unless `overwrite`), or `-` for standard output. */
  readonly output: string
  readonly overwrite?: boolean
  /** Restore only plaintext bytes `[start, end)`: only the chunks covering it are read and decrypted. */
  readonly range?: { readonly start: number; readonly end?: number | undefined }
  readonly progress?: Progress.ProgressReporter
  /** Caps the backup file's read rate, in bytes per second (see core `RateLimit`). Default: none. */
  readonly limitRate?: number | undefined
}

/** Result of {@link restore}. */
export interface RestoreResult {
  readonly generation: number
  readonly output: string
  /** Plaintext bytes written. */
  readonly bytes: number
  /** Chunks decrypted. */
  readonly chunks: number
}

/**
 * Decrypts a generation (or a byte range of it) to `output`. A range touches only its own
 * chunks, so it restores even when other chunks are damaged. Fails with
 * `ProcessorError` (exit 3 on authentication failure, naming the chunk), `IoError`,
 * `GenerationNotFound`, `BackupUsageError` (range outside the file).
 */
export const restore = (options: RestoreOptions): Effect.Effect<RestoreResult, EngineError | RegistryCorrupt | GenerationNotFound | BackupUsageError> =>
  Effect.gen(function*() {
    const registry = yield* Registry.load(options.dir)
    const g = yield* findGeneration(registry, options.source, options.generation)
    const file = nodePath.join(options.dir, g.file)
    const sink = options.output === "-" ? ChunkOutput.toStream(process.stdout) : ChunkOutput.toFile(options.output, { overwrite: options.overwrite ?? false })
    if (!options.range) {
      const input = yield* ChunkInput.fromFile(file)
      const summary = yield* runPipeline({ input, output: sink, pipeline: [options.cipher.decrypt()], chunkBytes: g.chunkBytes, progress: options.progress, limitRate: options.limitRate }).pipe(
        Effect.ensuring(input.close())
      )
      return { generation: g.generation, output: options.output, bytes: summary.outputBytes, chunks: summary.totalChunks }
    }
    const start = options.range.start
    const end = options.range.end ?? g.plainBytes
    if (end > g.plainBytes || start >= end) {
      return yield* Effect.fail(new BackupUsageError({ reason: "Range", detail: `range ${start}:${end} is outside the backup's ${g.plainBytes} bytes` }))
    }
    const cs = g.chunkBytes
    const reader = yield* openReader(file, options.cipher.decrypt(), cs)
    const first = Math.floor(start / cs)
    const last = Math.floor((end - 1) / cs)
    const BATCH = 16
    const limiter = options.limitRate !== undefined ? RateLimit.make(options.limitRate) : undefined
    yield* sink.open()
    const written = yield* Effect.gen(function*() {
      let bytes = 0
      for (let from = first; from <= last; from += BATCH) {
        const to = Math.min(last + 1, from + BATCH)
        if (limiter) yield* limiter.take((to - from) * cs)
        const out = yield* reader.read(from, to)
        const pieces = out.map((p, k) => {
          const at = (from + k) * cs
          return p.subarray(Math.max(0, start - at), Math.min(p.length, end - at))
        })
        yield* sink.write(pieces)
        for (const p of pieces) bytes += p.length
      }
      yield* sink.commit()
      return bytes
    }).pipe(
      Effect.onError(() => sink.abort({ keepPartial: false })),
      Effect.ensuring(reader.close)
    )
    return { generation: g.generation, output: options.output, bytes: written, chunks: last - first + 1 }
  })
