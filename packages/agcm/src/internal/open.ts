/**
 * The open path shared by the decrypt processor, the stream decryptor, range reads and
 * whole messages: checking sealed chunks, opening them, and telling apart why one failed
 * (tampering, a cut, bytes appended after the end).
 */
import type { ChunkSpec } from "@cage/core"
import { Effect } from "effect"
import { ChunkAuthFailed, TrailingData, Truncated } from "../Error.js"
import { type DerivedKeys, OPEN, openChunk, TAG_BYTES } from "./cobblestone.js"
import type { SegmentCipher } from "./segmentCipher.js"

/**
 * Most trailing bytes the decryptor looks for after a final chunk that fails to open.
 * Each candidate costs one GCM open of up to a chunk, so the probe is bounded; longer
 * appendages are reported as an authentication failure of the chunk they landed in.
 */
export const TRAILING_PROBE_BYTES = 256

/**
 * Trailing-data probe: `sealed` is chunk `index`'s bytes as laid out in the file (starting at
 * its chunk boundary), `bytesToEnd` the bytes from that boundary to the end of input. Tries
 * each shorter prefix as the short final chunk, for 1..TRAILING_PROBE_BYTES trailing bytes.
 * Returns the number of trailing bytes when a prefix opens, else undefined.
 */
export const probeTrailing = (
  keys: DerivedKeys,
  index: number,
  sealed: Uint8Array,
  bytesToEnd: number,
  chunkSize: number
): number | undefined => {
  for (let trailing = 1; trailing <= TRAILING_PROBE_BYTES; trailing++) {
    const length = bytesToEnd - trailing
    if (length < TAG_BYTES) break
    // A final chunk holds less than chunkSize plaintext bytes.
    if (length > chunkSize + TAG_BYTES - 1 || length > sealed.length) continue
    if (openChunk(keys, index, sealed.subarray(0, length)) !== undefined) return trailing
  }
  return undefined
}

/** The first sealed chunk that cannot be valid by its length alone, or `specs.length`. */
export const firstMalformed = (specs: ReadonlyArray<ChunkSpec.ChunkSpec>, lengthOf: (k: number) => number, chunkSize: number): number => {
  const sealedChunk = chunkSize + TAG_BYTES
  for (let k = 0; k < specs.length; k++) {
    const n = lengthOf(k)
    if (!(specs[k].final ? n >= TAG_BYTES && n < sealedChunk : n === sealedChunk)) return k
  }
  return specs.length
}

/** A chunk too short to hold its tag (or a missing final chunk), `length` bytes at its place. */
export const truncated = (headerBytes: number, spec: ChunkSpec.ChunkSpec, length: number) =>
  new Truncated({
    at: headerBytes + spec.start + length,
    detail: length === 0
      ? `the final chunk (chunk ${spec.index}) is missing`
      : `chunk ${spec.index} is ${length} bytes, shorter than its 16-byte tag`
  })

/**
 * Why chunk `spec` failed to open: bytes appended after a valid end (`TrailingData`, probed
 * only near the end, with the chunk's sealed bytes from `sealed`), else `ChunkAuthFailed`.
 * `regionBytes`: bytes of the chunked region (ciphertext after the header), when known.
 */
export const openFailure = <E>(keys: DerivedKeys, chunkSize: number, spec: ChunkSpec.ChunkSpec, regionBytes: number | undefined, sealed: Effect.Effect<Uint8Array, E>) =>
  Effect.gen(function*() {
    const bytesToEnd = regionBytes !== undefined ? regionBytes - spec.start : spec.final ? spec.length : undefined
    if (bytesToEnd !== undefined && bytesToEnd <= chunkSize + TAG_BYTES - 1 + TRAILING_PROBE_BYTES) {
      const trailing = probeTrailing(keys, spec.index, yield* sealed, bytesToEnd, chunkSize)
      if (trailing !== undefined) return yield* new TrailingData({ bytes: trailing })
    }
    return yield* new ChunkAuthFailed({ chunk: spec.index, final: spec.final })
  })

/**
 * Checks and opens a segment of sealed chunks; shared by the processor and the file readers.
 * Reports the first bad chunk: authentication failure (after probing for trailing data
 * when near the end), or a structurally impossible chunk (Truncated).
 */
export const openSegment = (
  cipher: SegmentCipher,
  keys: DerivedKeys,
  chunkSize: number,
  specs: ReadonlyArray<ChunkSpec.ChunkSpec>,
  data: ReadonlyArray<Uint8Array>,
  /** Bytes of the chunked region (ciphertext after the header), when known. */
  regionBytes: number | undefined,
  headerBytes: number
) =>
  Effect.gen(function*() {
    const bad = firstMalformed(specs, (k) => data[k].length, chunkSize)
    const out = bad > 0 ? yield* cipher.run(OPEN, specs[0].index, data.slice(0, bad)) : { outputs: [], inputs: [], failedAt: -1 }
    if (out.failedAt >= 0) {
      return yield* openFailure(keys, chunkSize, specs[out.failedAt], regionBytes, Effect.succeed(out.inputs[out.failedAt]))
    }
    if (bad < specs.length) return yield* truncated(headerBytes, specs[bad], data[bad].length)
    return out.outputs
  })
