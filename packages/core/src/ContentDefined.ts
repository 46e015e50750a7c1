/**
 * Content-defined chunking: cut points chosen by the bytes themselves, so inserting or
 * deleting bytes moves only the chunks around the edit and every later chunk keeps its
 * bytes (what lets a backup store each chunk once across versions of a file).
 *
 * The algorithm is FastCDC (Xia et al., "FastCDC: a Fast and Efficient Content-Defined
 * Chunking Approach for Data Deduplication", USENIX ATC 2016) with normalized chunking at
 * level 2: a gear rolling hash `fp = (fp << 1) + GEAR[byte]` (32 bits here, so a cut depends
 * on the last 32 bytes), a stricter mask (log2(avg) + 2 bits) until the chunk reaches the
 * average size and a looser one (log2(avg) − 2 bits) after it, which narrows the size
 * distribution around the average. No cut falls before `minBytes` (those bytes are not even
 * hashed) and one is forced at `maxBytes`.
 *
 * A chunk of length L ends after its byte L − 1 when L = `maxBytes`, or when L ≥ `minBytes`
 * and the hash after that byte has its top mask bits all zero. The hash restarts at 0 at
 * chunk offset `minBytes − 1`, so a cut depends only on the bytes of its own chunk: two
 * streams that agree from a common cut on agree on every later cut.
 *
 * The cut points are part of every store made with them (a different cut re-stores the
 * data): {@link GEAR} and the rule above never change; a new rule gets a new name.
 *
 * @module
 */
import { createHash } from "node:crypto"
import { UsageError } from "./Error.js"

/** Chunk size bounds, in bytes. */
export interface Params {
  /** No chunk but the last is shorter (at least 64: the hash needs its window). */
  readonly minBytes: number
  /** The target average: a power of two from 256 B to 256 MiB, above `minBytes`. */
  readonly avgBytes: number
  /** Every chunk is at most this long (above `avgBytes`, at most 1 GiB). */
  readonly maxBytes: number
}

/** restic's bounds: 512 KiB minimum, 1 MiB average, 8 MiB maximum. */
export const DEFAULT_PARAMS: Params = { minBytes: 512 * 1024, avgBytes: 1024 * 1024, maxBytes: 8 * 1024 * 1024 }

/**
 * The gear table: 256 32-bit values, entry i the first 4 bytes (big-endian) of
 * SHA-256("cage.dev/cdc/gear/v1" ‖ i as one byte). Fixed forever (see the module note).
 */
export const GEAR: Readonly<Int32Array> = (() => {
  const table = new Int32Array(256)
  for (let i = 0; i < 256; i++) table[i] = createHash("sha256").update("cage.dev/cdc/gear/v1").update(Uint8Array.of(i)).digest().readInt32BE(0)
  return table
})()

/** What is wrong with `p`, in the user's terms, or `undefined` when it is usable. */
export const checkParams = (p: Params): string | undefined => {
  const { minBytes: min, avgBytes: avg, maxBytes: max } = p
  if (![min, avg, max].every(Number.isSafeInteger)) return `chunk bounds must be whole numbers of bytes, got ${min}/${avg}/${max}`
  if (avg < 256 || avg > 2 ** 28 || (avg & (avg - 1)) !== 0) return `the average chunk size must be a power of two from 256 B to 256 MiB, got ${avg}`
  if (min < 64 || min >= avg) return `the minimum chunk size must be at least 64 bytes and below the average (${avg}), got ${min}`
  if (max <= avg || max > 2 ** 30) return `the maximum chunk size must be above the average (${avg}) and at most 1 GiB, got ${max}`
  return undefined
}

/** A mask of the top `bits` bits of a 32-bit hash, as an int32. */
const topBits = (bits: number): number => (bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1)) | 0

/** A streaming chunker: feed it the input in pieces of any size; it reports where chunks end. */
export interface Chunker {
  /**
   * Feeds the next bytes of the input. Returns the lengths, in order, of the chunks that
   * end inside them (each counted from the end of the previous chunk, possibly in earlier
   * pieces). Keeps no reference to `bytes`.
   */
  readonly push: (bytes: Uint8Array) => ReadonlyArray<number>
  /** Ends the input: the length of the final chunk, or nothing when the input ended on a cut. */
  readonly end: () => ReadonlyArray<number>
  /** Bytes fed since the last cut (at most `maxBytes − 1`): what a caller must still hold. */
  readonly pending: () => number
}

/**
 * A chunker for `params` (default {@link DEFAULT_PARAMS}). Any way of cutting the input into
 * pieces for `push` gives the same chunks as one `push` of all of it.
 *
 * @throws UsageError (`"ChunkSize"`) when `params` are unusable (see {@link checkParams}).
 */
export const make = (params: Params = DEFAULT_PARAMS): Chunker => {
  const problem = checkParams(params)
  if (problem !== undefined) throw new UsageError({ reason: "ChunkSize", detail: problem })
  const { minBytes: min, avgBytes: avg, maxBytes: max } = params
  const bits = Math.log2(avg)
  const maskS = topBits(bits + 2)
  const maskL = topBits(bits - 2)
  const gear = GEAR
  // State between pushes: bytes in the current chunk, and the hash over its bytes from
  // offset min − 1 on.
  let length = 0
  let fp = 0
  return {
    push: (bytes) => {
      const cuts: Array<number> = []
      const n = bytes.length
      let i = 0
      while (i < n) {
        if (length < min - 1) {
          // Bytes before offset min − 1 are never hashed: no cut can fall there.
          const skip = Math.min(min - 1 - length, n - i)
          length += skip
          i += skip
          continue
        }
        // Hash until a cut or the end of this piece: the strict mask while the chunk is at
        // most the average length, the loose one after it (two loops: no per-byte choice).
        let h = fp
        let k = i
        let cut = false
        if (length < avg) {
          const stop = Math.min(n, i + (avg - length))
          while (k < stop) {
            h = ((h << 1) + gear[bytes[k]]) | 0
            k++
            if ((h & maskS) === 0) {
              cut = true
              break
            }
          }
        }
        if (!cut && length + (k - i) >= avg) {
          const stop = Math.min(n, i + (max - length))
          while (k < stop) {
            h = ((h << 1) + gear[bytes[k]]) | 0
            k++
            if ((h & maskL) === 0) {
              cut = true
              break
            }
          }
          if (length + (k - i) === max) cut = true
        }
        length += k - i
        i = k
        if (cut) {
          cuts.push(length)
          length = 0
          fp = 0
        } else {
          fp = h
        }
      }
      return cuts
    },
    end: () => {
      const last = length
      length = 0
      fp = 0
      return last > 0 ? [last] : []
    },
    pending: () => length
  }
}

/** The chunk lengths of all of `bytes` (a whole input), in order. */
export const lengths = (bytes: Uint8Array, params: Params = DEFAULT_PARAMS): ReadonlyArray<number> => {
  const c = make(params)
  return [...c.push(bytes), ...c.end()]
}
