/**
 * Decrypt-only reader for harpocrates' AGCM v1 streams, for rescue and migration.
 *
 * v1 layout: `"AGCM"` | version u32 LE = 1 | 12-byte nonce N | chunk size u32 LE, then
 * frames `u32 LE length` | AES-256-GCM(key, N, chunk, no AAD) ciphertext ‖ tag, where
 * length = plaintext + 16; a zero-length frame ends the stream early.
 *
 * v1 is insecure (one nonce for every chunk; nothing binds position or end), so this reader
 * can only check each frame on its own: a reordered, dropped or truncated v1 stream cannot
 * be detected. Every use prints {@link LEGACY_V1_WARNING}.
 *
 * @module
 */
import type { ChunkProcessor, JsonValue } from "@cage/core"
import { PROCESSOR_API_VERSION } from "@cage/core"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { Transform, type TransformCallback } from "node:stream"
import { AgcmUsageError, LegacyFrameError, TrailingData, Truncated } from "./Error.js"
import { LEGACY_HEADER_BYTES, LEGACY_V1_WARNING, type LegacyHeader, parseLegacyHeader } from "./Format.js"

const FRAME_PREFIX = 4
const TAG = 16

/** Opens one v1 frame body (ciphertext ‖ tag) under the stream's shared nonce; undefined on failure. */
export const openLegacyFrame = (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | undefined => {
  if (sealed.length < TAG) return undefined
  const d = crypto.createDecipheriv("aes-256-gcm", key, nonce)
  d.setAuthTag(sealed.subarray(sealed.length - TAG))
  const body = d.update(sealed.subarray(0, sealed.length - TAG))
  try {
    d.final()
  } catch {
    return undefined
  }
  return body
}

const defaultWarn = (m: string) => {
  process.stderr.write(`${m}\n`)
}

const checkKey = (key: Uint8Array) =>
  key.length === 32 ? Effect.void : Effect.fail(new AgcmUsageError({ reason: "Key", detail: `the v1 key must be 32 bytes, got ${key.length}` }))

/** Options of the v1 reader. */
export interface LegacyV1Options {
  /** The raw 32-byte AES-256 key. */
  readonly key: Uint8Array
  /** Where {@link LEGACY_V1_WARNING} goes. Default: standard error. */
  readonly onWarning?: ((message: string) => void) | undefined
}

/**
 * The v1 reader as a chunk processor (`"agcm-decrypt-v1"`, ordered transform). Framing
 * `{ headerBytes: 24, chunkBytes: chunkSize + 20, shortFinal: false }`: harpocrates writes
 * full frames except the last, which this relies on (a short frame in the middle fails with
 * LegacyFrameError; the stream reader {@link createLegacyDecryptStream} accepts any framing).
 */
export const legacyV1Processor = (options: LegacyV1Options): ChunkProcessor => {
  let header: LegacyHeader | undefined
  let ended = false
  let frames = 0
  return {
    name: "agcm-decrypt-v1",
    version: "1.0.0",
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "transform", ordered: true, resumable: true, framesInput: true },
    options: { legacyV1: true },
    init: (context) =>
      Effect.gen(function*() {
        yield* checkKey(options.key)
        header = yield* parseLegacyHeader(yield* context.readHeader(LEGACY_HEADER_BYTES))
        ;(options.onWarning ?? defaultWarn)(LEGACY_V1_WARNING)
        return { framing: { headerBytes: LEGACY_HEADER_BYTES, chunkBytes: header.chunkSize + TAG + FRAME_PREFIX, shortFinal: false } }
      }),
    process: (chunk, data) =>
      Effect.gen(function*() {
        if (!header) return yield* Effect.die(new Error("internal error: v1 reader used before init"))
        if (ended) return yield* new TrailingData({ bytes: data.length })
        if (data.length < FRAME_PREFIX) return yield* new Truncated({ at: LEGACY_HEADER_BYTES + chunk.start + data.length, detail: `inside the length prefix of frame ${chunk.index}` })
        const length = Buffer.from(data.buffer, data.byteOffset, data.length).readUInt32LE(0)
        if (length === 0) {
          // Harpocrates' early end marker: nothing may follow it.
          ended = true
          if (data.length > FRAME_PREFIX) return yield* new TrailingData({ bytes: data.length - FRAME_PREFIX })
          return new Uint8Array(0)
        }
        if (length !== data.length - FRAME_PREFIX) {
          return yield* (length > data.length - FRAME_PREFIX && chunk.final
            ? new Truncated({ at: LEGACY_HEADER_BYTES + chunk.end, detail: `frame ${chunk.index} declares ${length} bytes, ${data.length - FRAME_PREFIX} remain` })
            : new LegacyFrameError({ frame: chunk.index, detail: `length prefix ${length} does not match the ${data.length - FRAME_PREFIX}-byte frame (only full frames before the last are supported here; use the stream reader)` }))
        }
        if (length < TAG || length > header.chunkSize + TAG) return yield* new LegacyFrameError({ frame: chunk.index, detail: `frame length ${length} is outside ${TAG}..${header.chunkSize + TAG}` })
        const plain = openLegacyFrame(options.key, header.nonce, data.subarray(FRAME_PREFIX))
        if (!plain) return yield* new LegacyFrameError({ frame: chunk.index, detail: "failed authentication" })
        frames++
        return plain
      }),
    finalize: () => Effect.succeed({ result: { format: "agcm", version: 1, framesOpened: frames, warning: LEGACY_V1_WARNING } as JsonValue }),
    snapshot: () => null
  }
}

/** An incremental v1 reader: bytes in, plaintext out; any framing, one frame of memory. */
export interface LegacyDecryptor {
  /** Feeds bytes; returns plaintext of the frames completed so far. Throws an AgcmError. */
  readonly write: (bytes: Uint8Array) => Array<Uint8Array>
  /** Ends input. Throws Truncated when input ended inside the header or a frame. */
  readonly end: () => Array<Uint8Array>
}

/**
 * Makes an incremental v1 reader. Emits {@link LEGACY_V1_WARNING} once, when the header is
 * read. Throws NotAgcm, UnsupportedVersion, InvalidHeader, Truncated, TrailingData,
 * LegacyFrameError or AgcmUsageError; once it failed it keeps failing.
 */
export const makeLegacyDecryptor = (options: LegacyV1Options): LegacyDecryptor => {
  let pending: Buffer = Buffer.alloc(0)
  let header: LegacyHeader | undefined
  let ended = false
  let frame = 0
  let consumed = 0
  let failure: unknown
  const drain = (out: Array<Uint8Array>): void => {
    for (;;) {
      if (!header) {
        if (pending.length < LEGACY_HEADER_BYTES) return
        const parsed = Effect.runSync(Effect.result(parseLegacyHeader(pending.subarray(0, LEGACY_HEADER_BYTES))))
        if (parsed._tag === "Failure") throw parsed.failure
        header = parsed.success
        ;(options.onWarning ?? defaultWarn)(LEGACY_V1_WARNING)
        pending = pending.subarray(LEGACY_HEADER_BYTES)
        consumed += LEGACY_HEADER_BYTES
        continue
      }
      if (ended) {
        if (pending.length > 0) throw new TrailingData({ bytes: pending.length })
        return
      }
      if (pending.length < FRAME_PREFIX) return
      const length = pending.readUInt32LE(0)
      if (length === 0) {
        ended = true
        pending = pending.subarray(FRAME_PREFIX)
        consumed += FRAME_PREFIX
        continue
      }
      if (length < TAG || length > header.chunkSize + TAG) throw new LegacyFrameError({ frame, detail: `frame length ${length} is outside ${TAG}..${header.chunkSize + TAG}` })
      if (pending.length < FRAME_PREFIX + length) return
      const plain = openLegacyFrame(options.key, header.nonce, pending.subarray(FRAME_PREFIX, FRAME_PREFIX + length))
      if (!plain) throw new LegacyFrameError({ frame, detail: "failed authentication" })
      out.push(plain)
      pending = pending.subarray(FRAME_PREFIX + length)
      consumed += FRAME_PREFIX + length
      frame++
    }
  }
  const guard = (f: (out: Array<Uint8Array>) => void): Array<Uint8Array> => {
    if (failure) throw failure
    const out: Array<Uint8Array> = []
    try {
      if (options.key.length !== 32) throw new AgcmUsageError({ reason: "Key", detail: `the v1 key must be 32 bytes, got ${options.key.length}` })
      f(out)
      return out
    } catch (e) {
      failure = e
      throw e
    }
  }
  return {
    write: (bytes) =>
      guard((out) => {
        pending = pending.length === 0 ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length) : Buffer.concat([pending, bytes])
        drain(out)
        // Copy the leftover so we never pin the caller's large buffers.
        if (pending.length > 0 && pending.buffer === bytes.buffer) pending = Buffer.from(pending)
      }),
    end: () =>
      guard((out) => {
        drain(out)
        if (!header) {
          const parsed = Effect.runSync(Effect.result(parseLegacyHeader(pending)))
          throw parsed._tag === "Failure" ? parsed.failure : new Truncated({ at: pending.length, detail: "inside the v1 header" })
        }
        if (pending.length > 0) throw new Truncated({ at: consumed + pending.length, detail: `inside frame ${frame}` })
      })
  }
}

/**
 * A Node transform that decrypts a v1 stream of any framing, in constant memory (one
 * frame). Emits {@link LEGACY_V1_WARNING} once, when the header is read. Fails (destroys)
 * with NotAgcm, UnsupportedVersion, InvalidHeader, Truncated, TrailingData or
 * LegacyFrameError.
 */
export const createLegacyDecryptStream = (options: LegacyV1Options): Transform => {
  const d = makeLegacyDecryptor(options)
  const stream: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        for (const p of d.write(chunk)) stream.push(p)
        cb()
      } catch (e) {
        cb(e as Error)
      }
    },
    flush(cb) {
      try {
        for (const p of d.end()) stream.push(p)
        cb()
      } catch (e) {
        cb(e as Error)
      }
    }
  })
  return stream
}
