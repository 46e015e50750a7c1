/**
 * Create and resume of a backup generation.
 *
 * Create, for a cipher whose encrypt processor has `processDirect` (AGCM):
 * 1. the engine encrypts file to file in direct mode (the processor is wrapped only in a
 *    spy, see `withLayoutRecord`, so checkpoints and the registry describe the cipher
 *    itself); its `init` durably records the layout (header bytes, plaintext and
 *    ciphertext chunk bytes) and the source's identity in `<file>.layout.json`;
 * 2. once the backup file is committed, its size is checked against the layout (else
 *    `BackupDamaged` "size"), the source's and the backup's chunks are hashed from the
 *    files on the hash pool (`hashFromFiles`), and the source is checked to be the bytes
 *    that were encrypted: same size, mtime, ctime, inode and device as when it was opened.
 *    Otherwise `SourceChanged`: that generation is removed (it could never be completed)
 *    and no manifest is written, so deep verify can never report damage that is only a
 *    changed source.
 * A cipher without `processDirect` is wrapped in `withManifest` instead, which hashes every
 * segment in memory while the engine runs (no direct mode). Both give the same digests, layout and roots.
 *
 * Resume (after `kill -9` anywhere) continues from what is on disk: a manifest of the
 * generation → commit the registry entry; the backup file under its final name (the engine
 * committed) → phase 2 from `<file>.layout.json`; otherwise the engine resumes from the
 * checkpoint (or starts over when there is none), then phase 2. A checkpoint written by
 * the in-memory wrapper is continued with that wrapper.
 *
 * @module
 */
import {
  Checkpoint,
  Progress,
  type ChunkProcessor,
  ChunkInput,
  ChunkOutput,
  type EngineError,
  ResumeRefused,
  type RunSummary,
  runPipeline
} from "@cage/core"
import { Effect } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { BackupDamaged, type BackupUsageError, GenerationNotFound, type LockTimeout, type RegistryCorrupt, SourceChanged } from "./Error.js"
import { type BackupCipher, type CommonOptions, ensureDirs, exists, io, remove, update } from "./internal/common.js"
import { HashPool } from "./internal/hashPool.js"
import { syncDirectoryOf } from "./internal/fs.js"
import { withLock } from "./Lock.js"
import { type CollectedDigests, hashFromFiles, layoutOf, MANIFEST_PROCESSOR, planOf, rootOf, withLayoutRecord, withManifest } from "./Manifest.js"
import * as Registry from "./Registry.js"

/**
 * Sources at or above this size get per-chunk digests in their manifest: 0, every source.
 * The roots are computed from the per-chunk digests anyway, so storing them costs only
 * 64 bytes per chunk (0.1% at 64 KiB chunks) and lets verify name every damaged chunk.
 */
export const DEFAULT_MANIFEST_THRESHOLD = 0

/** Options of {@link create} and {@link resume}. */
export interface CreateOptions extends CommonOptions {
  /** The file to back up. */
  readonly source: string
  readonly cipher: BackupCipher
  /** Write per-chunk digests when the source has at least this many bytes. Default {@link DEFAULT_MANIFEST_THRESHOLD}. */
  readonly manifestThreshold?: number
  /** Force (true) or suppress (false) per-chunk digests regardless of size. */
  readonly chunkManifest?: boolean
  /**
   * The lowest number the new generation may get (a caller that numbers the source's
   * generations kept elsewhere, such as the chunk store's, continues after them).
   */
  readonly firstGeneration?: number
  /** Chunk size passed to the engine, bytes (the cipher's own framing wins; AGCM: its `chunkSize`). */
  readonly chunkBytes?: number
  /** Engine tuning (see `runPipeline`). */
  readonly segmentBytes?: number
  readonly inFlight?: number
  /** Minimum ms between checkpoints. Default: the engine's (1000). */
  readonly checkpointIntervalMs?: number
  /** Caps the source read rate while encrypting, in bytes per second (see core `RateLimit`). Default: none. */
  readonly limitRate?: number | undefined
  readonly progress?: Progress.ProgressReporter
  /**
   * Progress of the manifest hashing that follows a direct-mode encryption (plaintext bytes
   * hashed of the source's size): a second bar, since that phase reads both files again.
   */
  readonly hashProgress?: Progress.ProgressReporter
}

/** Result of {@link create} and {@link resume}. */
export interface CreateResult {
  readonly generation: Registry.Generation
  readonly summary: RunSummary
}

/** Errors of create and resume. */
export type CreateError = EngineError | RegistryCorrupt | LockTimeout | GenerationNotFound | BackupUsageError | BackupDamaged | SourceChanged

/** The backup file name of generation `n` of `source` (absolute). */
export const backupFileName = (source: string, n: number) =>
  `${nodePath.basename(source)}.${createHash("sha256").update(source).digest("hex").slice(0, 8)}.g${n}.cage`

const checkpointPath = (dir: string, g: Registry.Generation) => nodePath.join(dir, Registry.MANIFEST_DIR, `${g.file}.checkpoint.json`)
const manifestName = (g: Registry.Generation) => nodePath.join(Registry.MANIFEST_DIR, `${g.file}.manifest.json`)

/**
 * Runs (or resumes) the encryption of one registered generation and commits it, holding the
 * generation's own lock so a `resume` cannot write a `.partial` that a live create is
 * still writing (it fails at once with `LockTimeout` naming the holder).
 */
const runGeneration = (options: CreateOptions, entry: Registry.Generation, mode: "fresh" | "resume") =>
  withLock(nodePath.join(options.dir, Registry.MANIFEST_DIR), runGenerationLocked(options, entry, mode), { ...options.lock, name: `${entry.file}.lock`, waitMs: 0 })

const runGenerationLocked = (options: CreateOptions, entry: Registry.Generation, mode: "fresh" | "resume") =>
  Effect.gen(function*() {
    const started = Date.now()
    const dir = options.dir
    const file = nodePath.join(dir, entry.file)
    if (mode === "resume") {
      // Stopped between the manifest and the registry update: the manifest is the result.
      const m = yield* Effect.option(Registry.loadManifest(dir, manifestName(entry)))
      if (m._tag === "Some" && m.value.entry.id === entry.id && m.value.entry.status === "complete") {
        yield* remove(layoutPath(dir, entry))
        yield* commitEntry(options, m.value.entry)
        return { generation: m.value.entry, summary: hashOnlySummary(m.value.layout.chunks, m.value.entry.cipherBytes ?? 0, started) } satisfies CreateResult
      }
      // Stopped after the engine committed the backup file: only the hashing is left.
      if (yield* exists(file)) return yield* resumeCommitted(options, entry, started)
    }
    const encrypt = options.cipher.encrypt()
    const cp = checkpointPath(dir, entry)
    const store = yield* Checkpoint.Checkpointer
    const saved = mode === "resume" ? yield* Effect.option(store.load(cp)) : undefined
    // A checkpoint written by the in-memory path (before direct-mode ciphers hashed from
    // the files) describes its wrapper: continue it with the same wrapper.
    const inMemoryCheckpoint = saved?._tag === "Some" && saved.value._tag === "Some" && saved.value.value.pipeline[0]?.name === MANIFEST_PROCESSOR
    if (!encrypt.processDirect || inMemoryCheckpoint) return yield* runInMemory(options, entry, mode, encrypt)

    // Phase 1: the engine runs the cipher itself (direct mode); the spy records its layout.
    const input = yield* ChunkInput.fromFile(entry.source)
    const pipeline = Checkpoint.describePipeline([encrypt])
    let layout: Registry.LayoutRecord | undefined
    const spy = withLayoutRecord(encrypt, (l) => {
      const record: Registry.LayoutRecord = {
        format: "cage-backup-layout",
        version: Registry.REGISTRY_VERSION,
        id: entry.id,
        // fstat of the descriptor the engine reads (a file input always has it).
        source: input.identity!,
        framing: l.framing,
        headerBytes: l.headerBytes,
        outputChunkBytes: l.outputChunkBytes,
        pipeline
      }
      layout = record
      return Registry.writeAtomic(layoutPath(dir, entry), JSON.stringify(record))
    })
    const summary = yield* encryptGeneration(options, entry, mode, input, spy).pipe(Effect.ensuring(input.close()))
    // Phase 2: hash the committed backup file and the source.
    const generation = yield* hashCommitted(options, entry, layout!)
    return { generation, summary } satisfies CreateResult
  })

const layoutPath = (dir: string, g: Registry.Generation) => Registry.layoutRecordPath(dir, g.file)

/** The engine run of a generation (either path): `processor` encrypts `input` into the backup file, with its checkpoint. */
const encryptGeneration = (options: CreateOptions, entry: Registry.Generation, mode: "fresh" | "resume", input: ChunkInput.ChunkInput, processor: ChunkProcessor) =>
  runPipeline({
    input,
    output: ChunkOutput.toFile(nodePath.join(options.dir, entry.file)),
    pipeline: [processor],
    chunkBytes: options.chunkBytes ?? entry.chunkBytes,
    segmentBytes: options.segmentBytes,
    inFlight: options.inFlight,
    checkpoint: { path: checkpointPath(options.dir, entry), mode, ...(options.checkpointIntervalMs !== undefined ? { intervalMs: options.checkpointIntervalMs } : {}) },
    progress: options.progress,
    limitRate: options.limitRate
  }).pipe(
    // The engine saw the source change while it read it: this generation can never be
    // completed (the same as a change found while hashing).
    Effect.catchTag("InputChanged", (e) =>
      discardGeneration(options, entry).pipe(Effect.andThen(Effect.fail(new SourceChanged({ source: entry.source, generation: entry.generation, detail: e.detail })))))
  )

/** The summary of a resume that had no chunk left to encrypt. */
const hashOnlySummary = (totalChunks: number, outputBytes: number, started: number): RunSummary => ({
  totalChunks,
  processedChunks: 0,
  bytesProcessed: 0,
  failedChunks: 0,
  resumedFrom: totalChunks,
  durationMs: Date.now() - started,
  outputBytes,
  results: {}
})

/** Resume of a generation whose backup file the engine already committed: phase 2 only, from the layout record. */
const resumeCommitted = (options: CreateOptions, entry: Registry.Generation, started: number) =>
  Effect.gen(function*() {
    const path = layoutPath(options.dir, entry)
    const layout = yield* Registry.loadLayoutRecord(path)
    if (!layout || layout.id !== entry.id) {
      return yield* Effect.fail(new ResumeRefused({
        reason: "CheckpointCorrupt",
        checkpoint: path,
        detail: `${entry.file} was written but its manifest was not, and ${
          layout ? "this layout record belongs to another generation" : "there is no layout record"
        } to build it from (only ciphers with direct mode leave one): back the source up again`
      }))
    }
    // Left by a crash between the engine's commit and its clean-up.
    yield* Checkpoint.Checkpointer.pipe(Effect.flatMap((store) => store.remove(checkpointPath(options.dir, entry))))
    yield* remove(ChunkOutput.partialPath(nodePath.join(options.dir, entry.file)))
    const generation = yield* hashCommitted(options, entry, layout)
    return { generation, summary: hashOnlySummary(planOf(layout, layout.source.size).plan.totalChunks, generation.cipherBytes ?? 0, started) } satisfies CreateResult
  })

/**
 * Phase 2: checks the committed backup file's size against the layout, hashes it and the
 * source from the files, checks that the source is still what was encrypted, then writes
 * the manifest and commits the entry.
 */
const hashCommitted = (options: CreateOptions, entry: Registry.Generation, layout: Registry.LayoutRecord) =>
  Effect.gen(function*() {
    const file = nodePath.join(options.dir, entry.file)
    const { cipherBytes } = planOf(layout, layout.source.size)
    const size = yield* io("stat", file, () => fs.promises.stat(file).then((s) => s.size))
    if (size !== cipherBytes) {
      return yield* Effect.fail(new BackupDamaged({
        file,
        generation: entry.generation,
        damage: [{ kind: "size", start: Math.min(size, cipherBytes), end: Math.max(size, cipherBytes), detail: `the file has ${size} bytes, its layout (${layout.source.size} source bytes) makes ${cipherBytes}` }]
      }))
    }
    // Checked before hashing (fail fast) and after (the bytes hashed are the bytes encrypted).
    const d = yield* Effect.gen(function*() {
      yield* sourceUnchanged(entry, layout)
      const pool = new HashPool(options.hashWorkers)
      const bar = options.hashProgress ?? Progress.silent
      bar.start(layout.source.size, 0)
      const digests = yield* hashFromFiles(pool, entry.source, layout.source.size, file, layout, { onProgress: (hashed) => bar.update(hashed, 0) }).pipe(
        Effect.ensuring(Effect.sync(() => bar.stop())),
        Effect.ensuring(Effect.promise(() => pool.close()))
      )
      yield* sourceUnchanged(entry, layout)
      return digests
    }).pipe(Effect.tapError((e) => e._tag === "SourceChanged" ? discardGeneration(options, entry) : Effect.void))
    return yield* commitGeneration(options, entry, d, { plainBytes: layout.source.size, cipherBytes: size, pipeline: layout.pipeline })
  })

/**
 * Removes a generation that can never be completed (its source changed after it was
 * encrypted): its backup file, layout record and checkpoint, then its registry entry. These
 * are this generation's own files, never complete; keeping them would leave a full-size
 * copy behind on every attempt, which neither resume nor prune could ever clear.
 */
const discardGeneration = (options: CreateOptions, entry: Registry.Generation) =>
  Effect.gen(function*() {
    const file = nodePath.join(options.dir, entry.file)
    for (const p of [file, ChunkOutput.partialPath(file), layoutPath(options.dir, entry), checkpointPath(options.dir, entry)]) yield* remove(p)
    yield* syncDirectoryOf(file)
    yield* update(options, (r) => ({ registry: { ...r, generations: r.generations.filter((g) => g.id !== entry.id) }, value: undefined }))
  })

/**
 * Fails with `SourceChanged` unless the source still has the identity it was encrypted
 * with: size, mtime, ctime (ns), inode and device from the fstat of the descriptor the
 * engine read, as the engine checks on resume. A metadata-only change after that (chmod,
 * rename) also changes ctime and is refused: the check cannot tell it from a write.
 */
const sourceUnchanged = (entry: Registry.Generation, layout: Registry.LayoutRecord) =>
  Effect.gen(function*() {
    const now = yield* ChunkInput.statIdentity(entry.source)
    const was = layout.source
    const changed = (detail: string) => Effect.fail(new SourceChanged({ source: entry.source, generation: entry.generation, detail }))
    if (now.size !== was.size) return yield* changed(`size in bytes: was ${was.size}, now ${now.size}`)
    for (const [k, label] of [["mtimeNs", "modification time (ns)"], ["ctimeNs", "status change time (ns)"], ["ino", "inode"], ["dev", "device"]] as const) {
      if (now[k] !== was[k]) return yield* changed(`${label}: was ${was[k]}, now ${now[k]}`)
    }
  })

/** Writes the registry entry `done` (replacing the entry with its id) under the lock. */
const commitEntry = (options: CommonOptions, done: Registry.Generation) =>
  update(options, (r) => {
    const others = r.generations.filter((g) => g.id !== done.id)
    return { registry: { ...r, generations: [...others, done] }, value: undefined }
  })

/**
 * Writes the manifest (atomic), removes the layout record, then commits the registry entry
 * (atomic). A crash before the registry update leaves a manifest that `resume` (and
 * `recover`) completes from.
 */
const commitGeneration = (
  options: CreateOptions,
  entry: Registry.Generation,
  d: CollectedDigests,
  run: { readonly plainBytes: number; readonly cipherBytes: number; readonly pipeline: Registry.Generation["pipeline"] }
) =>
  Effect.gen(function*() {
    const layout = layoutOf(d.headerBytes, d.cipherLengths)
    const chunked = options.chunkManifest ?? entry.plainBytes >= (options.manifestThreshold ?? DEFAULT_MANIFEST_THRESHOLD)
    const done: Registry.Generation = {
      ...entry,
      status: "complete",
      completedAt: new Date().toISOString(),
      chunkBytes: d.chunkBytes,
      plainBytes: run.plainBytes,
      cipherBytes: run.cipherBytes,
      pipeline: run.pipeline,
      manifest: manifestName(entry),
      chunked,
      plainRoot: rootOf(d.plain),
      cipherRoot: rootOf(d.cipher, Buffer.from(d.headerSha256, "hex"))
    }
    const manifest: Registry.Manifest = {
      format: "cage-backup-manifest",
      version: Registry.REGISTRY_VERSION,
      entry: done,
      layout,
      headerSha256: d.headerSha256,
      chunks: chunked ? { plain: d.plain.map((b) => b.toString("hex")), cipher: d.cipher.map((b) => b.toString("hex")) } : null
    }
    yield* Registry.writeAtomic(nodePath.join(options.dir, done.manifest!), JSON.stringify(manifest))
    yield* remove(layoutPath(options.dir, entry))
    yield* commitEntry(options, done)
    return done
  })

/** The in-memory path (ciphers without direct mode): {@link withManifest} hashes segments as the engine runs. */
const runInMemory = (options: CreateOptions, entry: Registry.Generation, mode: "fresh" | "resume", encrypt: ChunkProcessor) =>
  Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(entry.source)
    const pool = new HashPool(options.hashWorkers)
    const collector = withManifest(encrypt, pool)
    const summary = yield* encryptGeneration(options, entry, mode, input, collector.processor).pipe(
      Effect.ensuring(Effect.promise(() => pool.close())),
      Effect.ensuring(input.close())
    )
    const generation = yield* commitGeneration(options, entry, collector.collected(), {
      // The size actually read (the source may have changed since the entry was registered).
      plainBytes: input.size ?? entry.plainBytes,
      cipherBytes: summary.outputBytes,
      pipeline: Checkpoint.describePipeline([collector.processor])
    })
    return { generation, summary } satisfies CreateResult
  })

/**
 * Backs up `options.source` as a new generation: numbers it (per source, from 1) under the
 * registry lock, encrypts it with a checkpoint, writes its manifest (hashed from the files
 * for a direct-mode cipher, in memory otherwise; see the module documentation) and commits
 * the registry entry. An interrupted create leaves a `"partial"` entry that {@link resume}
 * completes.
 *
 * Fails with `IoError` (4), `ProcessorError` (the cipher), `RegistryCorrupt` (3),
 * `LockTimeout` (4), `SourceChanged` (4: the source changed before it was hashed; that
 * generation is removed), `BackupDamaged` (3: the written file does not have its layout's size).
 */
export const create = (options: CreateOptions): Effect.Effect<CreateResult, CreateError> =>
  Effect.gen(function*() {
    const source = nodePath.resolve(options.source)
    yield* ensureDirs(options.dir)
    const st = yield* ChunkInput.statIdentity(source)
    const entry = yield* update(options, (r) => {
      const n = Math.max(options.firstGeneration ?? 1, ...r.generations.filter((g) => g.source === source).map((g) => g.generation + 1))
      const g: Registry.Generation = {
        id: randomUUID(),
        source,
        generation: n,
        file: backupFileName(source, n),
        status: "partial",
        createdAt: new Date().toISOString(),
        completedAt: null,
        chunkBytes: options.chunkBytes ?? 0,
        plainBytes: st.size,
        cipherBytes: null,
        pipeline: [],
        manifest: null,
        chunked: false,
        plainRoot: null,
        cipherRoot: null
      }
      return { registry: { ...r, generations: [...r.generations, g] }, value: g }
    })
    return yield* runGeneration(options, entry, "fresh")
  }).pipe(Effect.withSpan("cage.backup.create", { attributes: { source: nodePath.resolve(options.source) } }))

/**
 * Completes the newest interrupted (`"partial"`) generation of `options.source`: from its
 * checkpoint (same key required), or, when the backup file was already committed, by
 * hashing it and the source (no key used), or from its manifest when only the registry
 * update was missing. Fails with `GenerationNotFound` when there is none, `ResumeRefused`
 * (exit 5) when the source changed before the encryption finished, `SourceChanged` (exit 4)
 * when it changed after, and as {@link create}.
 */
export const resume = (options: CreateOptions): Effect.Effect<CreateResult, CreateError> =>
  Effect.gen(function*() {
    const source = nodePath.resolve(options.source)
    const r = yield* Registry.load(options.dir)
    const partial = r.generations.filter((g) => g.source === source && g.status === "partial").sort((a, b) => b.generation - a.generation)[0]
    if (!partial) return yield* Effect.fail(new GenerationNotFound({ source, detail: "no interrupted backup to resume" }))
    return yield* runGeneration({ ...options, chunkBytes: options.chunkBytes ?? (partial.chunkBytes || undefined) }, partial, "resume")
  }).pipe(Effect.withSpan("cage.backup.resume", { attributes: { source: nodePath.resolve(options.source) } }))
