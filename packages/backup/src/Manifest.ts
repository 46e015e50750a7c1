/**
 * Chunk manifests: per-chunk SHA-256 of plaintext and ciphertext, collected while the
 * backup is written.
 *
 * {@link withManifest} wraps the cipher's encrypt processor (the first processor of a
 * pipeline is the only one allowed to set the framing, so the hashing cannot be a separate
 * processor in front of it). Per segment it hands the plaintext to the hash pool before
 * the cipher sees it (a cipher may move its buffers to a worker thread), then hashes the
 * ciphertext the cipher returned. Digests are stored by chunk index, so segments may
 * complete in any order.
 *
 * Resume: the wrapper declares `resumable: false, deterministic: true`, so after a crash the engine replays the
 * completed chunks through it (reading the source again, writing nothing). The cipher is
 * restored from its own snapshot (AGCM: the header salt) and deterministic for a given
 * chunk index, so the replayed digests are those of the bytes already on disk; a
 * resumed backup gets a complete manifest without storing megabytes of digests in every
 * checkpoint.
 *
 * Whole-file digests are hash lists: `plainRoot = SHA-256(d_0 ‖ d_1 ‖ …)` over the
 * plaintext chunk digests, `cipherRoot = SHA-256(h ‖ c_0 ‖ c_1 ‖ …)` with the header
 * digest `h`: both parallel to compute and checkable from the manifest alone.
 *
 * @module
 */
import type { Chunk as ChunkSpec, ChunkProcessor } from "@cage/core"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { BackupUsageError } from "./Error.js"
import { type HashPool, sha256 } from "./internal/hashPool.js"
import type { Layout } from "./Registry.js"

/** What the wrapper collected once the run finished. */
export interface CollectedDigests {
  readonly headerBytes: number
  readonly headerSha256: string
  /** Plaintext chunk size from the cipher's framing, bytes. */
  readonly chunkBytes: number
  readonly plain: ReadonlyArray<Buffer>
  readonly cipher: ReadonlyArray<Buffer>
  readonly cipherLengths: ReadonlyArray<number>
}

/** The wrapping processor plus access to its digests. */
export interface ManifestCollector {
  readonly processor: ChunkProcessor
  /** Digests of every chunk; fails (defect) when a chunk was not seen. */
  readonly collected: () => CollectedDigests
}

const hashPromise = (pool: HashPool, data: ReadonlyArray<Uint8Array>) =>
  // The copy into shared memory happens synchronously inside hashBuffers, before we return.
  pool.hashBuffers(data)

/** Wraps `inner` (a transform that sets the framing, e.g. `agcmEncrypt`) to collect chunk digests. */
export const withManifest = (inner: ChunkProcessor, pool: HashPool): ManifestCollector => {
  const plain: Array<Buffer> = []
  const cipher: Array<Buffer> = []
  const lengths: Array<number> = []
  let header: Uint8Array = new Uint8Array(0)
  let chunkBytes = 0

  const segment = (chunks: ReadonlyArray<ChunkSpec>, data: ReadonlyArray<Uint8Array>) =>
    Effect.gen(function*() {
      const plainDigests = hashPromise(pool, data)
      // Keep the promise observed so a failure before we await it is not "unhandled".
      plainDigests.catch(() => undefined)
      const out = inner.processSegment
        ? yield* inner.processSegment(chunks, data)
        : yield* Effect.forEach(chunks, (c, k) => inner.process(c, data[k]))
      const bytes = out.map((o, k) => {
        if (o === undefined) throw new Error(`internal error: ${inner.name} returned no bytes for chunk ${chunks[k].index}`)
        return o
      })
      const [p, c] = yield* Effect.promise(() => Promise.all([plainDigests, hashPromise(pool, bytes)]))
      chunks.forEach((spec, k) => {
        plain[spec.index] = p[k]
        cipher[spec.index] = c[k]
        lengths[spec.index] = bytes[k].length
      })
      return bytes
    })

  const processor: ChunkProcessor = {
    name: "backup-manifest",
    version: "1.0.0",
    apiVersion: inner.apiVersion,
    capabilities: { kind: "transform", ordered: inner.capabilities.ordered, resumable: false, deterministic: true },
    options: { cipher: inner.name, cipherVersion: inner.version, ...inner.options },
    init: (context) =>
      Effect.gen(function*() {
        const r = (yield* inner.init(context)) ?? {}
        header = r.header ?? new Uint8Array(0)
        chunkBytes = r.framing?.chunkBytes ?? context.chunkBytes
        return r
      }),
    process: (chunk, data) => segment([chunk], [data]).pipe(Effect.map((o) => o[0])),
    processSegment: segment,
    finalize: (context) =>
      Effect.gen(function*() {
        const r = (yield* inner.finalize(context)) ?? {}
        if (r.trailer && r.trailer.length > 0) {
          return yield* Effect.fail(new BackupUsageError({ detail: `${inner.name} writes a trailer; backups support ciphers without trailers only` }))
        }
        return r
      }),
    ...(inner.snapshot ? { snapshot: inner.snapshot } : {}),
    ...(inner.close ? { close: inner.close } : {})
  }

  return {
    processor,
    collected: () => {
      for (let i = 0; i < plain.length; i++) {
        if (plain[i] === undefined) throw new Error(`internal error: chunk ${i} was never hashed`)
      }
      return { headerBytes: header.length, headerSha256: sha256(header).toString("hex"), chunkBytes, plain, cipher, cipherLengths: lengths }
    }
  }
}

/** SHA-256 (hex) of a hash list: optional prefix digest, then each digest in order. */
export const rootOf = (digests: ReadonlyArray<Uint8Array>, prefix?: Uint8Array): string => {
  const h = createHash("sha256")
  if (prefix) h.update(prefix)
  for (const d of digests) h.update(d)
  return h.digest("hex")
}

/** The layout of the ciphertext chunks: uniform (AGCM) or explicit lengths. */
export const layoutOf = (headerBytes: number, lengths: ReadonlyArray<number>): Layout => {
  const n = lengths.length
  const full = n > 1 ? lengths[0] : null
  const uniform = lengths.slice(0, Math.max(0, n - 1)).every((l) => l === full)
  return uniform
    ? { headerBytes, chunks: n, cipherChunkBytes: full ?? (n === 1 ? lengths[0] : null), finalCipherBytes: n > 0 ? lengths[n - 1] : null, cipherLengths: null }
    : { headerBytes, chunks: n, cipherChunkBytes: null, finalCipherBytes: null, cipherLengths: [...lengths] }
}

/** Byte range `[start, start + length)` of each chunk in the backup file. */
export const chunkRanges = (layout: Layout): Array<readonly [start: number, length: number]> => {
  const out: Array<readonly [number, number]> = []
  let at = layout.headerBytes
  for (let i = 0; i < layout.chunks; i++) {
    const len = layout.cipherLengths
      ? layout.cipherLengths[i]
      : i === layout.chunks - 1 ? layout.finalCipherBytes ?? 0 : layout.cipherChunkBytes ?? 0
    out.push([at, len])
    at += len
  }
  return out
}

/** Expected size of the backup file, bytes. */
export const expectedSize = (layout: Layout): number => {
  const r = chunkRanges(layout)
  return r.length === 0 ? layout.headerBytes : r[r.length - 1][0] + r[r.length - 1][1]
}
