/**
 * Chunk plans: how a byte source is cut into chunks before any data is read.
 *
 * A plan is pure arithmetic over sizes (bytes); planning never touches the source.
 * Plans are lazy (a 50 GB file at 64 KiB is ~800k chunks, so nothing is materialised):
 * `chunkAt(i)` computes one {@link ChunkSpec} in O(1).
 *
 * @module
 */
import { Effect } from "effect"
import { UsageError } from "./Error.js"
import { format as formatBytes } from "./Size.js"

/** One chunk of a source. All fields are byte offsets into the *input* of the pipeline. */
export interface ChunkSpec {
  /** 0-based chunk index. */
  readonly index: number
  /** First byte (inclusive), in bytes from the start of the chunked region. */
  readonly start: number
  /** One past the last byte (exclusive). */
  readonly end: number
  /** `end - start`, in bytes. May be 0 only for a terminating empty chunk. */
  readonly length: number
  /** True for the last chunk of the plan. */
  readonly final: boolean
}

/**
 * The chunk sizes a framing accepts, in bytes. The processor that declares a framing owns
 * its chunk size and its rule (AGCM: powers of two from 16 KiB to 4 MiB, per its FORMAT.md);
 * {@link checkChunkBytes} is the one check and the one message for every rule.
 */
export interface ChunkSizeRule {
  /** Smallest accepted size, in bytes. */
  readonly min: number
  /** Largest accepted size, in bytes. */
  readonly max: number
  /** True when only powers of two are accepted. */
  readonly powerOfTwo?: boolean
}

/**
 * Plain chunks (no processor declares a framing): any size from 1 byte to 1 GiB, so a
 * chunk always fits one Buffer.
 */
export const PLAIN_CHUNKS: ChunkSizeRule = { min: 1, max: 1 << 30 }

/** The chunk size of plain chunks when the caller names none: 64 KiB. */
export const DEFAULT_CHUNK_BYTES = 64 * 1024

/**
 * Checks a chunk size against the rule of its owner. Returns `undefined` when `bytes` is
 * acceptable, else the reason in words (the owner wraps it in its own tagged error with
 * reason `"ChunkSize"`), e.g. `"a chunk size must be a power of two from 16 KiB to 4 MiB, got 100 bytes"`.
 */
export const checkChunkBytes = (bytes: number, rule: ChunkSizeRule): string | undefined => {
  const pow2 = rule.powerOfTwo === true
  if (Number.isSafeInteger(bytes) && bytes >= rule.min && bytes <= rule.max && (!pow2 || (bytes & (bytes - 1)) === 0)) return undefined
  const exact = Number.isSafeInteger(bytes) && bytes >= 1024 && !formatBytes(bytes).includes(".")
  const got = exact ? formatBytes(bytes) : `${bytes} bytes`
  return `a chunk size must be ${pow2 ? "a power of two" : "a whole number of bytes"} from ${formatBytes(rule.min)} to ${formatBytes(rule.max)}, got ${got}`
}

/**
 * How the chunked region of a source is laid out.
 *
 * - `headerBytes`: bytes before the first chunk that belong to no chunk (a format header).
 * - `chunkBytes`: the size of every full chunk, in bytes.
 * - `shortFinal`: when true the final chunk is always *shorter* than `chunkBytes`; a region
 *   whose length is a multiple of `chunkBytes` ends with an extra empty chunk. This is the
 *   C2SP chunked-encryption rule (c2sp.org/chunked-encryption) that makes truncation at a
 *   chunk boundary detectable. When false, the final chunk is 1..chunkBytes bytes and an
 *   empty region has no chunks at all.
 */
export interface Framing {
  readonly headerBytes: number
  readonly chunkBytes: number
  readonly shortFinal: boolean
}

/** A lazy chunk plan over a region of known size. */
export interface ChunkPlan {
  readonly framing: Framing
  /** Size of the chunked region (source size minus `headerBytes`), in bytes. */
  readonly regionBytes: number
  /** Number of chunks. */
  readonly totalChunks: number
  /** The i-th chunk. Throws `RangeError` outside `[0, totalChunks)`. */
  chunkAt(index: number): ChunkSpec
  /** The chunk covering a region byte offset (clamped to the final chunk). */
  chunkIndexOf(offset: number): number
  /** Iterates chunks `from` (inclusive) to `to` (exclusive, default all). */
  chunks(from?: number, to?: number): IterableIterator<ChunkSpec>
}

const assertSize = (what: string, n: number, min: number, max: number) => {
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`${what} must be an integer from ${min} to ${max}, got ${n}`)
  }
}

/**
 * The framing of plain chunks of `chunkBytes` bytes (default 64 KiB) without a header: what a
 * run uses when no processor declares a framing. Fails with `UsageError` (`"ChunkSize"`)
 * outside {@link PLAIN_CHUNKS}.
 */
export const plainFraming = (chunkBytes: number = DEFAULT_CHUNK_BYTES): Effect.Effect<Framing, UsageError> => {
  const problem = checkChunkBytes(chunkBytes, PLAIN_CHUNKS)
  return problem === undefined
    ? Effect.succeed({ headerBytes: 0, chunkBytes, shortFinal: false })
    : Effect.fail(new UsageError({ reason: "ChunkSize", detail: problem }))
}

/**
 * Plans a region of `regionBytes` bytes laid out with `framing`.
 *
 * @throws RangeError when a size is negative, fractional or beyond 2^53-1.
 */
export const planRegion = (regionBytes: number, framing: Framing): ChunkPlan => {
  assertSize("region size", regionBytes, 0, Number.MAX_SAFE_INTEGER)
  // An invariant, not the user's check: the framing's owner validated its chunk size.
  assertSize("chunk size", framing.chunkBytes, PLAIN_CHUNKS.min, PLAIN_CHUNKS.max)
  const cs = framing.chunkBytes
  const totalChunks = framing.shortFinal
    ? Math.floor(regionBytes / cs) + 1
    : Math.ceil(regionBytes / cs)
  const chunkAt = (index: number): ChunkSpec => {
    if (!Number.isInteger(index) || index < 0 || index >= totalChunks) {
      throw new RangeError(`chunk index ${index} outside plan of ${totalChunks} chunks`)
    }
    const start = index * cs
    const end = Math.min(start + cs, regionBytes)
    return { index, start, end, length: end - start, final: index === totalChunks - 1 }
  }
  return {
    framing,
    regionBytes,
    totalChunks,
    chunkAt,
    chunkIndexOf: (offset) => Math.max(0, Math.min(totalChunks - 1, Math.floor(offset / cs))),
    *chunks(from = 0, to = totalChunks) {
      for (let i = from; i < Math.min(to, totalChunks); i++) yield chunkAt(i)
    }
  }
}

/**
 * Plans a source of `size` bytes into chunks of `chunkSize` bytes with no header.
 * The final chunk holds the remainder (1..chunkSize bytes); an empty source has no chunks
 * unless `options.shortFinal` is set (see {@link Framing}).
 *
 * @example planChunks(10, 4).chunkAt(2) // { index: 2, start: 8, end: 10, length: 2, final: true }
 */
export const planChunks = (
  size: number,
  chunkSize: number,
  options: { readonly shortFinal?: boolean } = {}
): ChunkPlan => planRegion(size, { headerBytes: 0, chunkBytes: chunkSize, shortFinal: options.shortFinal ?? false })
