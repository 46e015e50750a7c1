/**
 * Seekable range decryption: return plaintext bytes `[start, end)` of an AGCM v2 file,
 * reading and opening only the chunks that cover them.
 *
 * Before any plaintext is returned, the final chunk is read and authenticated at its index
 * (as age's `DecryptReaderAt` does): the file size then fixes the plaintext length, so a
 * truncated file cannot pass as a shorter one and a range past the end is refused.
 *
 * @module
 */
import { fromSystemError, type IoError } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import { AgcmUsageError, ChunkAuthFailed, type AgcmError, TrailingData, Truncated } from "./Error.js"
import { type KeyMaterial, MAX_HEADER_BYTES, openHeader, parseHeader } from "./Format.js"
import { type DerivedKeys, openChunk, TAG_BYTES, wipeKeys } from "./internal/cobblestone.js"
import { probeTrailing } from "./internal/open.js"

/** Counters of one range read, for tests and benchmarks. */
export interface RangeStats {
  /** Chunks opened (including the final chunk checked first). */
  chunksOpened: number
  /** Ciphertext bytes read, header included. */
  bytesRead: number
  /** Plaintext length of the whole file, in bytes. */
  plaintextBytes: number
}

const readAt = (fd: number, path: string, position: number, length: number, stats: RangeStats) =>
  Effect.callback<Buffer, IoError>((resume) => {
    const buffer = Buffer.allocUnsafe(length)
    const loop = (got: number) => {
      fs.read(fd, buffer, got, length - got, position + got, (err, n) => {
        if (err) return resume(Effect.fail(fromSystemError("read", path, err)))
        stats.bytesRead += n
        if (n === 0 || got + n === length) return resume(Effect.succeed(buffer.subarray(0, got + n)))
        loop(got + n)
      })
    }
    loop(0)
  })

/**
 * Decrypts plaintext bytes `[start, end)` (0 <= start <= end <= plaintext length) of the
 * file at `path`, filling `stats` when given.
 *
 * Errors: AgcmUsageError (bad range, out of bounds), the header errors of `agcmDecrypt`,
 * Truncated, TrailingData, ChunkAuthFailed{chunk}, IoError.
 */
export const decryptRangeWithStats = (
  path: string,
  start: number,
  end: number,
  key: KeyMaterial,
  stats: RangeStats = { chunksOpened: 0, bytesRead: 0, plaintextBytes: 0 }
): Effect.Effect<Uint8Array, AgcmError | IoError> => {
  let out: Uint8Array | undefined
  let at = 0
  return decryptRangeTo(path, start, end, key, (bytes) =>
    Effect.sync(() => {
      out ??= new Uint8Array(end - start)
      out.set(bytes, at)
      at += bytes.length
    }), stats).pipe(Effect.map(() => out ?? new Uint8Array(0)))
}

/**
 * Streaming form of {@link decryptRangeWithStats}: hands the range to `sink` one chunk's
 * worth at a time (each slice only after its chunk authenticated), in order, in constant
 * memory. `sink` errors pass through.
 */
export const decryptRangeTo = <E>(
  path: string,
  start: number,
  end: number,
  key: KeyMaterial,
  sink: (bytes: Uint8Array) => Effect.Effect<void, E>,
  stats: RangeStats = { chunksOpened: 0, bytesRead: 0, plaintextBytes: 0 }
): Effect.Effect<void, AgcmError | IoError | E> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => fs.promises.open(path, "r"), catch: (e) => fromSystemError("open", path, e) }),
    (handle) =>
      Effect.gen(function*() {
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
          return yield* new AgcmUsageError({ reason: "Range", detail: `invalid range ${start}:${end} (need 0 <= START <= END)` })
        }
        const size = (yield* Effect.tryPromise({ try: () => handle.stat(), catch: (e) => fromSystemError("stat", path, e) })).size
        const fd = handle.fd
        const header = yield* parseHeader(yield* readAt(fd, path, 0, Math.min(MAX_HEADER_BYTES, size), stats))
        const keys: DerivedKeys = yield* openHeader(header, key)
        return yield* Effect.gen(function*() {
          const cs = header.chunkSize
          const sealed = cs + TAG_BYTES
          const region = size - header.headerBytes
          const finalIndex = Math.floor(region / sealed)
          const finalStart = finalIndex * sealed
          const finalLength = region - finalStart
          if (finalLength < TAG_BYTES) {
            // A final chunk is at least its tag; what is left is a cut, or bytes appended after a final chunk that is now mid-file.
            if (finalIndex > 0) {
              const prev = yield* readAt(fd, path, header.headerBytes + finalStart - sealed, sealed, stats)
              stats.chunksOpened++
              const trailing = openChunk(keys, finalIndex - 1, prev) === undefined
                ? probeTrailing(keys, finalIndex - 1, prev, sealed + finalLength, cs)
                : undefined
              if (trailing !== undefined) return yield* new TrailingData({ bytes: trailing })
            }
            return yield* new Truncated({ at: size, detail: finalLength === 0 ? `the final chunk (chunk ${finalIndex}) is missing` : `the final chunk is ${finalLength} bytes, shorter than its tag` })
          }
          const finalSealed = yield* readAt(fd, path, header.headerBytes + finalStart, finalLength, stats)
          stats.chunksOpened++
          const finalPlain = openChunk(keys, finalIndex, finalSealed)
          if (!finalPlain) {
            const trailing = probeTrailing(keys, finalIndex, finalSealed, finalLength, cs)
            if (trailing !== undefined) return yield* new TrailingData({ bytes: trailing })
            return yield* new ChunkAuthFailed({ chunk: finalIndex, final: true })
          }
          const plaintextBytes = finalIndex * cs + finalPlain.length
          stats.plaintextBytes = plaintextBytes
          if (end > plaintextBytes) {
            return yield* new AgcmUsageError({ reason: "Range", detail: `range ${start}:${end} ends past the plaintext (${plaintextBytes} bytes)` })
          }
          if (end === start) return
          const first = Math.floor(start / cs)
          const last = Math.floor((end - 1) / cs)
          for (let i = first; i <= last; i++) {
            const plain = i === finalIndex
              ? finalPlain
              : yield* Effect.gen(function*() {
                const bytes = yield* readAt(fd, path, header.headerBytes + i * sealed, sealed, stats)
                stats.chunksOpened++
                const p = openChunk(keys, i, bytes)
                if (!p) return yield* new ChunkAuthFailed({ chunk: i, final: false })
                return p
              })
            const from = Math.max(start, i * cs) - i * cs
            const to = Math.min(end, i * cs + plain.length) - i * cs
            yield* sink(plain.subarray(from, to))
          }
        }).pipe(Effect.ensuring(Effect.sync(() => wipeKeys(keys))))
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/**
 * Decrypts plaintext bytes `[start, end)` of the AGCM v2 file at `path` (byte offsets,
 * end exclusive), opening only the covering chunks and the final chunk.
 * Errors: see {@link decryptRangeWithStats}.
 */
export const decryptRange = (path: string, start: number, end: number, key: KeyMaterial): Effect.Effect<Uint8Array, AgcmError | IoError> =>
  decryptRangeWithStats(path, start, end, key)
