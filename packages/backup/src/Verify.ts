/**
 * Verify of a backup generation: ciphertext digests against its manifest, without the key;
 * with `deep`, every chunk decrypted and its plaintext digest checked.
 *
 * @module
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { BackupDamaged, BackupUsageError, type Damage } from "./Error.js"
import { type BackupCipher, type CommonOptions, findGeneration, io } from "./internal/common.js"
import { HashPool, sha256 } from "./internal/hashPool.js"
import { openReader } from "./internal/reader.js"
import { chunkRanges, expectedSize, rootOf } from "./Manifest.js"
import * as Registry from "./Registry.js"

/** Options of {@link verify}. */
export interface VerifyOptions extends CommonOptions {
  readonly source: string
  /** Generation number; default the newest complete one. */
  readonly generation?: number
  /** Also decrypt every chunk and check plaintext digests (needs `cipher`). */
  readonly deep?: boolean
  readonly cipher?: BackupCipher
}

/** What verify found. Byte ranges are offsets in the backup file. */
export interface VerifyReport {
  readonly source: string
  readonly generation: number
  readonly file: string
  readonly ok: boolean
  readonly chunks: number
  /** Bytes hashed (the backup file's size). */
  readonly bytes: number
  /** True when the manifest has per-chunk digests (damage is located to chunks). */
  readonly chunked: boolean
  readonly deep: boolean
  readonly damage: ReadonlyArray<Damage>
  readonly durationMs: number
}

/**
 * Re-reads a generation and names every damaged chunk (index and byte range), without the
 * key: the ciphertext chunks are hashed on all cores and compared with the manifest. With
 * `deep`, every chunk is also decrypted and its plaintext digest checked.
 *
 * Returns the report whatever it found (see {@link verify} for the failing form). Fails
 * with `GenerationNotFound`, `RegistryCorrupt` (registry or manifest), `IoError`.
 */
export const verifyReport = (options: VerifyOptions) =>
  Effect.gen(function*() {
    const started = Date.now()
    const registry = yield* Registry.load(options.dir)
    const g = yield* findGeneration(registry, options.source, options.generation)
    const m = yield* Registry.loadManifest(options.dir, g.manifest!)
    const file = nodePath.join(options.dir, g.file)
    const size = yield* io("stat", file, () => fs.promises.stat(file).then((s) => s.size))
    const ranges = chunkRanges(m.layout)
    const damage: Array<Damage> = []
    const pool = new HashPool(options.hashWorkers)
    const digests = yield* io("read", file, () => pool.hashFileRanges(file, [[0, m.layout.headerBytes], ...ranges])).pipe(
      Effect.ensuring(Effect.promise(() => pool.close()))
    )
    const expected = expectedSize(m.layout)
    if (size !== expected) {
      damage.push({ kind: "size", start: Math.min(size, expected), end: Math.max(size, expected), detail: `the file has ${size} bytes, the manifest expects ${expected}` })
    }
    if (digests[0].toString("hex") !== m.headerSha256) {
      damage.push({ kind: "header", start: 0, end: m.layout.headerBytes, detail: "the header digest does not match" })
    }
    const cipherDigests = digests.slice(1)
    if (m.chunks) {
      cipherDigests.forEach((d, i) => {
        if (d.toString("hex") !== m.chunks!.cipher[i]) {
          damage.push({ kind: "chunk", chunk: i, start: ranges[i][0], end: ranges[i][0] + ranges[i][1], detail: "ciphertext digest mismatch" })
        }
      })
    } else if (rootOf(cipherDigests, digests[0]) !== g.cipherRoot && damage.length === 0) {
      damage.push({ kind: "file", start: 0, end: size, detail: "the whole-file digest does not match (no per-chunk manifest: the damage cannot be located)" })
    }
    if (options.deep) {
      if (!options.cipher) return yield* Effect.fail(new BackupUsageError({ reason: "Key", detail: "deep verify needs the key" }))
      yield* deepCheck(file, g, m, options.cipher, damage)
    }
    return {
      source: g.source,
      generation: g.generation,
      file,
      ok: damage.length === 0,
      chunks: m.layout.chunks,
      bytes: size,
      chunked: m.chunks !== null,
      deep: options.deep === true,
      damage,
      durationMs: Date.now() - started
    } satisfies VerifyReport
  }).pipe(Effect.withSpan("cage.backup.verify", { attributes: { source: nodePath.resolve(options.source), deep: options.deep === true } }))

/** Decrypts every chunk, compares plaintext digests; appends "plaintext" damage. */
const deepCheck = (file: string, g: Registry.Generation, m: Registry.Manifest, cipher: BackupCipher, damage: Array<Damage>) =>
  Effect.gen(function*() {
    const reader = yield* openReader(file, cipher.decrypt(), g.chunkBytes)
    const ranges = chunkRanges(m.layout)
    const plain: Array<Buffer> = []
    const bad = (i: number, detail: string) => {
      plain[i] = Buffer.alloc(32)
      damage.push({ kind: "plaintext", chunk: i, start: ranges[i]?.[0] ?? 0, end: (ranges[i]?.[0] ?? 0) + (ranges[i]?.[1] ?? 0), detail })
    }
    const BATCH = 32
    yield* Effect.gen(function*() {
      for (let from = 0; from < reader.plan.totalChunks; from += BATCH) {
        const to = Math.min(reader.plan.totalChunks, from + BATCH)
        const out = yield* Effect.result(reader.read(from, to))
        if (out._tag === "Success") {
          out.success.forEach((p, k) => {
            plain[from + k] = sha256(p)
          })
          continue
        }
        // A failed batch: decrypt chunk by chunk to name every bad one.
        for (let i = from; i < to; i++) {
          const one = yield* Effect.result(reader.read(i, i + 1))
          if (one._tag === "Success") plain[i] = sha256(one.success[0])
          else bad(i, `decryption failed: ${one.failure.message}`)
        }
      }
    }).pipe(Effect.ensuring(reader.close))
    if (m.chunks) {
      plain.forEach((d, i) => {
        if (d.toString("hex") !== m.chunks!.plain[i] && !damage.some((x) => x.kind === "plaintext" && x.chunk === i)) bad(i, "plaintext digest mismatch")
      })
    } else if (rootOf(plain) !== g.plainRoot && !damage.some((x) => x.kind === "plaintext")) {
      damage.push({ kind: "plaintext", start: 0, end: m.layout.headerBytes, detail: "the plaintext digest does not match" })
    }
  })

/** {@link verifyReport}, failing with `BackupDamaged` (exit code 3) when anything is damaged. */
export const verify = (options: VerifyOptions) =>
  verifyReport(options).pipe(Effect.flatMap((r) =>
    r.ok ? Effect.succeed(r) : Effect.fail(new BackupDamaged({ file: r.file, generation: r.generation, damage: r.damage }))
  ))
