/**
 * `cage migrate`: rewrite a harpocrates AGCM v1 stream as AGCM v2 in constant memory
 * (v1 stream reader → v2 stream encryptor), without ever writing plaintext to disk.
 *
 * @module
 */
import { ChunkInput, ChunkOutput, fromSystemError, InputChanged, type IoError, type LockBusy, RateLimit } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import { type Readable, Transform, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import type { AgcmError } from "./Error.js"
import { createLegacyDecryptStream } from "./LegacyV1.js"
import type { AgcmEncryptOptions } from "./Options.js"
import { createEncryptStream } from "./Stream.js"

/** Options of {@link migrateV1ToV2}. */
export interface MigrateOptions {
  /** The v1 stream's raw 32-byte key. */
  readonly v1Key: Uint8Array
  /** Key and parameters of the new v2 file (may reuse the v1 key as `{ key }`). */
  readonly encrypt: AgcmEncryptOptions
  /** Where the v1 warning goes. Default: standard error. */
  readonly onWarning?: (message: string) => void
  /** Caps the v1 file's read rate, in bytes per second (see core `RateLimit`). Default: none. */
  readonly limitRate?: number | undefined
}

/** A pass-through stream that admits each chunk through `limiter` (backpressure does the rest). */
const throttled = (limiter: RateLimit.RateLimiter) =>
  new Transform({
    transform(chunk: Buffer, _enc, cb) {
      Effect.runPromise(limiter.take(chunk.length)).then(() => cb(null, chunk), cb)
    }
  })

/** Decrypts v1 from `input` and writes v2 to `output`. Rejects with the first AgcmError or stream error. */
export const migrateV1ToV2 = (input: Readable, output: Writable, options: MigrateOptions): Effect.Effect<void, AgcmError | IoError> =>
  Effect.tryPromise({
    try: () => pipeline(input, createLegacyDecryptStream({ key: options.v1Key, onWarning: options.onWarning }), createEncryptStream(options.encrypt), output),
    catch: (e) => (typeof (e as { _tag?: unknown })._tag === "string" ? (e as AgcmError) : fromSystemError("migrate", "stream", e))
  })

/**
 * Migrates the v1 file at `inPath` to a new v2 file at `outPath`, staged as
 * `<outPath>.partial` (0600) and published only on success (never replacing an existing file).
 * One writer per output (`LockBusy` when another process writes `outPath`); `InputChanged`
 * (nothing published) when `inPath` changed while it was read.
 */
export const migrateV1File = (inPath: string, outPath: string, options: MigrateOptions): Effect.Effect<void, AgcmError | IoError | LockBusy | InputChanged> =>
  Effect.gen(function*() {
    const out = ChunkOutput.toFile(outPath)
    yield* out.open()
    const before = yield* ChunkInput.statIdentity(inPath).pipe(Effect.tapError(() => out.abort({ keepPartial: false })))
    // Route the v2 bytes through the engine's staged file sink, honouring backpressure.
    const writer = new Writable({
      write(chunk: Buffer, _enc, cb) {
        Effect.runPromise(Effect.result(out.write([chunk]))).then((r) => cb(r._tag === "Failure" ? (r.failure as unknown as Error) : null))
      }
    })
    const file = fs.createReadStream(inPath, { highWaterMark: options.limitRate !== undefined ? Math.max(16 * 1024, Math.min(1024 * 1024, Math.floor(options.limitRate / 10))) : 1024 * 1024 })
    const input = options.limitRate !== undefined ? file.pipe(throttled(RateLimit.make(options.limitRate))) : file
    const unchanged = ChunkInput.statIdentity(inPath).pipe(Effect.flatMap((now) => {
      const change = ChunkInput.changeOf(before, now)
      return change === undefined ? Effect.void : Effect.fail(new InputChanged({ path: inPath, detail: change }))
    }))
    yield* migrateV1ToV2(input, writer, options).pipe(
      Effect.andThen(unchanged),
      Effect.tapError(() => out.abort({ keepPartial: false }))
    )
    yield* out.commit()
  })
