/**
 * Chunk manifests: per-chunk SHA-256 of plaintext and ciphertext. Two ways to compute them,
 * chosen by `create` per cipher; both give the same digests, layout and roots.
 *
 * **File ranges (ciphers with direct mode, e.g. AGCM).** {@link withLayoutRecord} wraps the
 * cipher's encrypt processor in a spy that changes nothing the engine sees (same name,
 * version, options, capabilities and methods, so the engine still runs it in direct mode
 * and checkpoints record the cipher itself); it only observes `init`'s result and hands the
 * {@link CipherLayout} (header bytes, plaintext chunk bytes, ciphertext chunk bytes) to a
 * callback that stores it durably before any chunk is written. Once the engine has
 * committed the backup file, {@link hashFromFiles} hashes the source's plaintext chunk
 * ranges and the backup file's ciphertext chunk ranges with the pool's `hashFileRanges`
 * (each worker reads its own ranges: no byte crosses threads), in bounded batches.
 *
 * **In memory (ciphers without direct mode).** {@link withManifest} wraps the cipher's
 * encrypt processor (the first processor of a pipeline is the only one allowed to set the
 * framing, so the hashing cannot be a separate processor in front of it). Per segment it
 * hands the plaintext to the hash pool before the cipher sees it (a cipher may move its
 * buffers to a worker thread), then hashes the ciphertext the cipher returned. Digests are
 * stored by chunk index, so segments may complete in any order. Resume: the wrapper
 * declares `resumable: false, deterministic: true`, so after a crash the engine replays
 * the completed chunks through it (reading the source again, writing nothing). The cipher
 * is restored from its own snapshot (AGCM: the header salt) and deterministic for a given
 * chunk index, so the replayed digests are those of the bytes already on disk; a resumed
 * backup gets a complete manifest without storing megabytes of digests in every
 * checkpoint. The wrapper keeps the engine out of direct mode.
 *
 * Whole-file digests are hash lists: `plainRoot = SHA-256(d_0 ‖ d_1 ‖ …)` over the
 * plaintext chunk digests, `cipherRoot = SHA-256(h ‖ c_0 ‖ c_1 ‖ …)` with the header
 * digest `h`: both parallel to compute and checkable from the manifest alone.
 *
 * @module
 */
import { type ChunkProcessor, ChunkSpec, type FinalizeContext } from "@cage/core"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { BackupUsageError } from "./Error.js"
import { type HashPool, sha256 } from "./internal/hashPool.js"
import { fromSystemError, type IoError } from "./internal/fs.js"
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

/** The name of {@link withManifest}'s wrapper, as checkpoints and registry entries record it. */
export const MANIFEST_PROCESSOR = "backup-manifest"

/** Wraps `inner` (a transform that sets the framing, e.g. `agcmEncrypt`) to collect chunk digests. */
export const withManifest = (inner: ChunkProcessor, pool: HashPool): ManifestCollector => {
  const plain: Array<Buffer> = []
  const cipher: Array<Buffer> = []
  const lengths: Array<number> = []
  let header: Uint8Array = new Uint8Array(0)
  let chunkBytes = 0

  const segment = (chunks: ReadonlyArray<ChunkSpec.ChunkSpec>, data: ReadonlyArray<Uint8Array>) =>
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
    name: MANIFEST_PROCESSOR,
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
    finalize: refusingTrailer(inner),
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

/** `inner.finalize`, failing with `BackupUsageError` when it returns a trailer (a backup's chunks must end the file). */
const refusingTrailer = (inner: ChunkProcessor) => (context: FinalizeContext) =>
  Effect.gen(function*() {
    const r = (yield* inner.finalize(context)) ?? {}
    if (r.trailer && r.trailer.length > 0) {
      return yield* Effect.fail(new BackupUsageError({ reason: "Cipher", detail: `${inner.name} writes a trailer; backups support ciphers without trailers only` }))
    }
    return r
  })

/**
 * Where a direct-mode cipher puts each chunk, from its `init` result. Bytes.
 * Plaintext chunk i is `[framing.headerBytes + i × framing.chunkBytes, + its length)` of the
 * source; its ciphertext is at `headerBytes + i × outputChunkBytes` of the backup file, with
 * length `outputChunkBytes`, or for the final chunk its plaintext length plus
 * `outputChunkBytes - framing.chunkBytes`.
 */
export interface CipherLayout {
  /** How the source is cut (for an encryptor: no header, the cipher's chunk size, its final-chunk rule). */
  readonly framing: ChunkSpec.Framing
  /** Bytes of the cipher's header at the start of the backup file. */
  readonly headerBytes: number
  /** Ciphertext bytes of every non-final chunk (`InitResult.direct.outputChunkBytes`). */
  readonly outputChunkBytes: number
}

/**
 * Wraps `inner` (an encryptor with `processDirect`) in a spy for `create`: name, version,
 * apiVersion, options, capabilities, `process`, `processSegment`, `processDirect`,
 * `release`, `snapshot` and `close` are `inner`'s own (the same references), so the engine
 * runs it exactly as it runs `inner` (direct mode included) and checkpoints describe
 * `inner`. `init` runs `inner.init`, then `record`s the layout it declared before returning
 * its result unchanged; `finalize` refuses a trailer. `init` fails with `BackupUsageError`
 * when `inner` declares no `direct` output chunks, and with `record`'s error (`inner` is
 * closed first in both cases).
 */
export const withLayoutRecord = <E>(inner: ChunkProcessor, record: (layout: CipherLayout) => Effect.Effect<void, E>): ChunkProcessor => ({
  name: inner.name,
  version: inner.version,
  apiVersion: inner.apiVersion,
  capabilities: inner.capabilities,
  options: inner.options,
  init: (context) =>
    Effect.gen(function*() {
      const r = (yield* inner.init(context)) ?? {}
      yield* Effect.gen(function*() {
        if (!r.direct) {
          return yield* Effect.fail(new BackupUsageError({ reason: "Cipher", detail: `${inner.name} has processDirect but declared no direct output chunks in init; backups need its ciphertext chunk layout` }))
        }
        yield* record({
          framing: r.framing ?? { headerBytes: 0, chunkBytes: context.chunkBytes, shortFinal: false },
          headerBytes: r.header?.length ?? 0,
          outputChunkBytes: r.direct.outputChunkBytes
        })
      }).pipe(Effect.tapError(() => (inner.close ? inner.close() : Effect.void)))
      return r
    }),
  process: inner.process,
  finalize: refusingTrailer(inner),
  ...(inner.processSegment ? { processSegment: inner.processSegment } : {}),
  ...(inner.processDirect ? { processDirect: inner.processDirect } : {}),
  ...(inner.release ? { release: inner.release } : {}),
  ...(inner.snapshot ? { snapshot: inner.snapshot } : {}),
  ...(inner.close ? { close: inner.close } : {})
})

/** Byte range `[start, length]` of plaintext chunk `c`'s ciphertext in the backup file (the direct-mode rule). */
const cipherRange = (layout: CipherLayout, c: ChunkSpec.ChunkSpec): readonly [number, number] =>
  [layout.headerBytes + c.index * layout.outputChunkBytes, c.final ? c.length + layout.outputChunkBytes - layout.framing.chunkBytes : layout.outputChunkBytes]

/** Byte range `[start, length]` of each chunk `[from, to)`: plaintext in the source, ciphertext in the backup file. */
const rangesOf = (layout: CipherLayout, plan: ChunkSpec.ChunkPlan, from: number, to: number) => {
  const plain: Array<readonly [number, number]> = []
  const cipher: Array<readonly [number, number]> = []
  for (const c of plan.chunks(from, to)) {
    plain.push([layout.framing.headerBytes + c.start, c.length])
    cipher.push(cipherRange(layout, c))
  }
  return { plain, cipher }
}

/** The chunk plan of a source of `sourceBytes` bytes and the backup file's expected size, bytes. */
export const planOf = (layout: CipherLayout, sourceBytes: number): { readonly plan: ChunkSpec.ChunkPlan; readonly cipherBytes: number } => {
  const plan = ChunkSpec.planRegion(sourceBytes - layout.framing.headerBytes, layout.framing)
  const last = plan.totalChunks > 0 ? cipherRange(layout, plan.chunkAt(plan.totalChunks - 1)) : undefined
  return { plan, cipherBytes: last ? last[0] + last[1] : layout.headerBytes }
}

/** Plaintext bytes hashed per batch: memory holds one or two batches' tasks, never the file's. */
export const HASH_BATCH_BYTES = 128 << 20

/**
 * Hashes a written backup for its manifest from the files themselves: the header and every
 * ciphertext chunk of `backupFile`, every plaintext chunk of `source` (its first
 * `sourceBytes` bytes, the size that was encrypted), on the pool's workers. Chunks go in
 * batches of about `batchBytes` plaintext bytes (default {@link HASH_BATCH_BYTES}), the
 * source's and the backup's ranges of a batch together and two batches at a time, so both
 * workers stay busy and memory holds the digests (64 bytes a chunk), not the data. The
 * caller checks the backup file's size first (see {@link planOf}): a short file hashes
 * what exists. Fails with `IoError` naming the file that could not be read.
 */
export const hashFromFiles = (
  pool: HashPool,
  source: string,
  sourceBytes: number,
  backupFile: string,
  layout: CipherLayout,
  options: {
    /** Plaintext bytes per batch. Default {@link HASH_BATCH_BYTES}. */
    readonly batchBytes?: number
    /** Called after each batch with the plaintext bytes hashed so far. */
    readonly onProgress?: (plainBytesHashed: number) => void
  } = {}
): Effect.Effect<CollectedDigests, IoError> =>
  Effect.gen(function*() {
    const { batchBytes = HASH_BATCH_BYTES, onProgress = () => undefined } = options
    const read = (path: string, ranges: ReadonlyArray<readonly [number, number]>) =>
      Effect.tryPromise({ try: () => pool.hashFileRanges(path, ranges), catch: (e) => fromSystemError("read", path, e) })
    const { plan } = planOf(layout, sourceBytes)
    const per = Math.max(1, Math.floor(batchBytes / layout.framing.chunkBytes))
    const starts = Array.from({ length: Math.ceil(plan.totalChunks / per) }, (_, k) => k * per)
    const [header] = yield* read(backupFile, [[0, layout.headerBytes]])
    let hashed = 0
    const batches = yield* Effect.forEach(starts, (from) => {
      const r = rangesOf(layout, plan, from, Math.min(plan.totalChunks, from + per))
      return Effect.all([read(source, r.plain), read(backupFile, r.cipher), Effect.succeed(r.cipher.map((c) => c[1]))], { concurrency: 2 }).pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            for (const [, length] of r.plain) hashed += length
            onProgress(hashed)
          })
        )
      )
    }, { concurrency: 2 })
    return {
      headerBytes: layout.headerBytes,
      headerSha256: header.toString("hex"),
      chunkBytes: layout.framing.chunkBytes,
      plain: batches.flatMap((b) => b[0]),
      cipher: batches.flatMap((b) => b[1]),
      cipherLengths: batches.flatMap((b) => b[2])
    }
  })

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
