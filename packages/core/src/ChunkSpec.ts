/**
 * Chunk plans: how a byte source is cut into chunks before any data is read.
 *
 * A plan is pure arithmetic over sizes (bytes); planning never touches the source.
 * Plans are lazy (a 50 GB file at 64 KiB is ~800k chunks, so nothing is materialised):
 * `chunkAt(i)` computes one {@link ChunkSpec} in O(1).
 *
 * @module
 */

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

/** Smallest chunk size accepted by {@link planChunks}, in bytes. */
export const MIN_CHUNK_SIZE = 1
/** Largest chunk size accepted by {@link planChunks}: 1 GiB, so a chunk always fits one Buffer. */
export const MAX_CHUNK_SIZE = 1 << 30

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
 * Plans a region of `regionBytes` bytes laid out with `framing`.
 *
 * @throws RangeError when a size is negative, fractional or beyond 2^53-1.
 */
export const planRegion = (regionBytes: number, framing: Framing): ChunkPlan => {
  assertSize("region size", regionBytes, 0, Number.MAX_SAFE_INTEGER)
  assertSize("chunk size", framing.chunkBytes, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
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

const SIZE_RE = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i
const UNIT: Record<string, number> = { b: 1, k: 1024, kb: 1000, kib: 1024, m: 1 << 20, mb: 1e6, mib: 1 << 20, g: 1 << 30, gb: 1e9, gib: 1 << 30 }

/**
 * Parses a human size: `65536`, `64k`, `64KiB` (1024-based), `64KB` (1000-based), `4MiB`, `1G`.
 * Returns bytes, or `undefined` when the text is not a size.
 */
export const parseSize = (text: string): number | undefined => {
  const m = SIZE_RE.exec(text.trim())
  if (!m) return undefined
  const n = Number(m[1]) * UNIT[(m[2] ?? "b").toLowerCase()]
  return Number.isSafeInteger(n) ? n : undefined
}

/** Formats bytes with binary units for humans: `65536` → `64 KiB`. */
export const formatBytes = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${n} B` : `${Number.isInteger(v) ? v : v.toFixed(2)} ${units[u]}`
}
