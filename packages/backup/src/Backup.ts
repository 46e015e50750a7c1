/**
 * Backup operations: create, resume, verify, restore, list and prune generations.
 *
 * Layout of a backup directory:
 * - `<name>.<tag>.g<N>.cage`: generation N of a source (`tag` = 8 hex digits of the SHA-256
 *   of the source's absolute path, so equal names from different directories never clash);
 *   `.partial` while being written.
 * - `.cage_backups.json` (+ `.bak`): the registry (see `Registry.ts`).
 * - `.cage_backups.d/<file>.manifest.json`: each complete generation's manifest (its
 *   registry entry, the chunk layout, digests); `<file>.checkpoint.json` while in progress;
 *   `<file>.layout.json` (direct-mode ciphers) from the cipher's `init` until the manifest
 *   is written; `<file>.lock` while a process writes that generation.
 * - `.cage_backups.lock`: the registry lock (see `Lock.ts`).
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
 * Concurrency: the lock is held only for registry read-modify-writes (allocating a
 * generation number, committing it, pruning), so concurrent creates encrypt in parallel and
 * every entry survives. Durability order: registry entry `"partial"`, backup file committed
 * (fsync + link), then manifest (atomic), layout record removed, then registry (atomic);
 * prune updates the registry durably before it deletes any file.
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
  type Framing,
  type IoError,
  parseSize,
  planRegion,
  ProcessorError,
  ResumeRefused,
  RateLimit,
  type RunSummary,
  runPipeline
} from "@cage/core"
import { Effect } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { BackupDamaged, BackupUsageError, type Damage, GenerationNotFound, type LockTimeout, type RegistryCorrupt, SourceChanged } from "./Error.js"
import { HashPool, sha256 } from "./internal/hashPool.js"
import { fromSystemError, syncDirectoryOf } from "./internal/fs.js"
import { type LockOptions, withLock } from "./Lock.js"
import { chunkRanges, type CollectedDigests, expectedSize, hashFromFiles, layoutOf, MANIFEST_PROCESSOR, planOf, rootOf, withLayoutRecord, withManifest } from "./Manifest.js"
import * as Registry from "./Registry.js"
import { DEFAULT_POLICY, kept, type RetentionPolicy } from "./Retention.js"

/**
 * Sources at or above this size get per-chunk digests in their manifest: 0, every source.
 * The roots are computed from the per-chunk digests anyway, so storing them costs only
 * 64 bytes per chunk (0.1% at 64 KiB chunks) and lets verify name every damaged chunk.
 */
export const DEFAULT_MANIFEST_THRESHOLD = 0

/**
 * How a backup is encrypted and decrypted: processor factories (a fresh processor per run).
 * `encrypt()` must be a transform that sets the framing (first processor), `decrypt()` its
 * inverse; both carry their key inside, never in `options`. `@cage/backup`'s `agcmCipher`
 * is the default; any pipeline fits when wrapped as one processor.
 */
export interface BackupCipher {
  /** Short name for messages, e.g. `"agcm"`. */
  readonly name: string
  readonly encrypt: () => ChunkProcessor
  readonly decrypt: () => ChunkProcessor
}

/** Options shared by the operations. */
export interface CommonOptions {
  /** The backup directory (created when missing). */
  readonly dir: string
  /** Hash worker threads; default available cores; 0 hashes on the calling thread. */
  readonly hashWorkers?: number
  /** Registry lock timing. */
  readonly lock?: LockOptions
}

/** Options of {@link create} and {@link resume}. */
export interface CreateOptions extends CommonOptions {
  /** The file to back up. */
  readonly source: string
  readonly cipher: BackupCipher
  /** Write per-chunk digests when the source has at least this many bytes. Default {@link DEFAULT_MANIFEST_THRESHOLD}. */
  readonly manifestThreshold?: number
  /** Force (true) or suppress (false) per-chunk digests regardless of size. */
  readonly chunkManifest?: boolean
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

const io = <A>(operation: string, path: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => fromSystemError(operation, path, e) })

const ensureDirs = (dir: string) =>
  io("create directory", dir, () => fs.promises.mkdir(nodePath.join(dir, Registry.MANIFEST_DIR), { recursive: true, mode: 0o700 }))

/** The backup file name of generation `n` of `source` (absolute). */
export const backupFileName = (source: string, n: number) =>
  `${nodePath.basename(source)}.${createHash("sha256").update(source).digest("hex").slice(0, 8)}.g${n}.cage`

const checkpointPath = (dir: string, g: Registry.Generation) => nodePath.join(dir, Registry.MANIFEST_DIR, `${g.file}.checkpoint.json`)
const manifestName = (g: Registry.Generation) => nodePath.join(Registry.MANIFEST_DIR, `${g.file}.manifest.json`)

/** Reads, changes and saves the registry under the lock. */
const update = <A>(options: CommonOptions, f: (r: Registry.Registry) => { readonly registry: Registry.Registry; readonly value: A }) =>
  withLock(options.dir, Effect.gen(function*() {
    const current = yield* Registry.load(options.dir)
    const { registry, value } = f(current)
    yield* Registry.save(options.dir, registry)
    return value
  }), options.lock)

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

const exists = (path: string) => io("stat", path, () => fs.promises.lstat(path).then(() => true, (e) => (e?.code === "ENOENT" ? false : Promise.reject(e))))
const remove = (path: string) => io("remove", path, () => fs.promises.rm(path, { force: true }))

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
      const digests = yield* hashFromFiles(pool, entry.source, layout.source.size, file, layout, { onProgress: bar.update }).pipe(
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
      const n = Math.max(0, ...r.generations.filter((g) => g.source === source).map((g) => g.generation)) + 1
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

/** Generations in the registry, optionally of one source, ordered by source then number. */
export const list = (options: { readonly dir: string; readonly source?: string }): Effect.Effect<ReadonlyArray<Registry.Generation>, RegistryCorrupt | IoError> =>
  Registry.load(options.dir).pipe(Effect.map((r) => {
    const source = options.source === undefined ? undefined : nodePath.resolve(options.source)
    return r.generations
      .filter((g) => source === undefined || g.source === source)
      .sort((a, b) => a.source.localeCompare(b.source) || a.generation - b.generation)
  }))

/** Picks generation `n` of `source`, or its newest complete generation. */
export const findGeneration = (registry: Registry.Registry, sourcePath: string, n?: number) => {
  const source = nodePath.resolve(sourcePath)
  const all = registry.generations.filter((g) => g.source === source)
  const g = n === undefined
    ? all.filter((x) => x.status === "complete").sort((a, b) => b.generation - a.generation)[0]
    : all.find((x) => x.generation === n)
  if (!g) return Effect.fail(new GenerationNotFound({ source, generation: n }))
  if (g.status !== "complete") return Effect.fail(new GenerationNotFound({ source, generation: n, detail: "it is incomplete" }))
  return Effect.succeed(g)
}

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

/** Opens a backup file with a decrypt processor driven directly (random chunk access). @internal */
const openReader = (path: string, decrypt: ChunkProcessor, chunkBytes: number) =>
  Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(path)
    const wrap = (phase: ProcessorError["phase"], chunk?: number) => (cause: unknown) =>
      new ProcessorError({ processor: decrypt.name, phase, chunk: typeof (cause as { chunk?: unknown })?.chunk === "number" ? (cause as { chunk: number }).chunk : chunk, cause })
    const r = (yield* decrypt.init({
      input: path,
      inputSize: input.size,
      chunkBytes,
      readHeader: (n) => Effect.gen(function*() {
        const buf = new Uint8Array(n)
        const got = yield* input.read(0, buf, 0, n)
        return buf.subarray(0, got)
      }),
      resume: undefined
    }).pipe(Effect.mapError(wrap("init")))) ?? {}
    const framing: Framing = r.framing ?? { headerBytes: 0, chunkBytes, shortFinal: false }
    const plan = planRegion(input.size! - framing.headerBytes, framing)
    /** Decrypts chunks `[from, to)`; fails with ProcessorError naming the chunk. */
    const read = (from: number, to: number) =>
      Effect.gen(function*() {
        const specs = [...plan.chunks(from, to)]
        if (specs.length === 0) return [] as Array<Uint8Array>
        const start = specs[0].start
        const length = specs[specs.length - 1].end - start
        const buf = Buffer.allocUnsafeSlow(length)
        const n = yield* input.read(framing.headerBytes + start, buf, 0, length)
        const data = specs.map((c) => buf.subarray(c.start - start, Math.min(n, c.end - start)))
        const out = decrypt.processSegment
          ? yield* decrypt.processSegment(specs, data).pipe(Effect.mapError(wrap("process", from)))
          : yield* Effect.forEach(specs, (c, k) => decrypt.process(c, data[k]).pipe(Effect.mapError(wrap("process", c.index))))
        return out.map((o, k) => o ?? data[k])
      })
    const close = Effect.gen(function*() {
      if (decrypt.close) yield* decrypt.close()
      yield* input.close()
    })
    return { plan, framing, read, close }
  })

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
      if (!options.cipher) return yield* Effect.fail(new BackupUsageError({ detail: "deep verify needs the key" }))
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
          out.success.forEach((p, k) => (plain[from + k] = sha256(p)))
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

/** A plaintext byte range `[start, end)`. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

/**
 * Parses `START:END` (half-open, bytes; sizes like `64KiB` accepted; an empty END means the
 * end of the file). Fails with `BackupUsageError`.
 */
export const parseRange = (text: string): Effect.Effect<{ readonly start: number; readonly end: number | undefined }, BackupUsageError> => {
  const m = /^([^:]*):([^:]*)$/.exec(text.trim())
  const start = m ? (m[1] === "" ? 0 : parseSize(m[1])) : undefined
  const end = m && m[2] !== "" ? parseSize(m[2]) : undefined
  if (!m || start === undefined || (m[2] !== "" && end === undefined) || (end !== undefined && end <= start)) {
    return Effect.fail(new BackupUsageError({ detail: `bad range "${text}": use START:END with END > START (bytes, e.g. 0:1MiB)` }))
  }
  return Effect.succeed({ start, end })
}

/** Options of {@link restore}. */
export interface RestoreOptions extends CommonOptions {
  readonly source: string
  readonly generation?: number
  readonly cipher: BackupCipher
  /** Output file (written as `<output>.partial`, published on success; never clobbers unless `overwrite`). */
  readonly output: string
  readonly overwrite?: boolean
  /** Restore only plaintext bytes `[start, end)`: only the chunks covering it are read and decrypted. */
  readonly range?: { readonly start: number; readonly end?: number | undefined }
  readonly progress?: Progress.ProgressReporter
  /** Caps the backup file's read rate, in bytes per second (see core `RateLimit`). Default: none. */
  readonly limitRate?: number | undefined
}

/** Result of {@link restore}. */
export interface RestoreResult {
  readonly generation: number
  readonly output: string
  /** Plaintext bytes written. */
  readonly bytes: number
  /** Chunks decrypted. */
  readonly chunks: number
}

/**
 * Decrypts a generation (or a byte range of it) to `output`. A range touches only its own
 * chunks, so it restores even when other chunks are damaged. Fails with
 * `ProcessorError` (exit 3 on authentication failure, naming the chunk), `IoError`,
 * `GenerationNotFound`, `BackupUsageError` (range outside the file).
 */
export const restore = (options: RestoreOptions): Effect.Effect<RestoreResult, EngineError | RegistryCorrupt | GenerationNotFound | BackupUsageError> =>
  Effect.gen(function*() {
    const registry = yield* Registry.load(options.dir)
    const g = yield* findGeneration(registry, options.source, options.generation)
    const file = nodePath.join(options.dir, g.file)
    const sink = ChunkOutput.toFile(options.output, { overwrite: options.overwrite ?? false })
    if (!options.range) {
      const input = yield* ChunkInput.fromFile(file)
      const summary = yield* runPipeline({ input, output: sink, pipeline: [options.cipher.decrypt()], chunkBytes: g.chunkBytes, progress: options.progress, limitRate: options.limitRate }).pipe(
        Effect.ensuring(input.close())
      )
      return { generation: g.generation, output: options.output, bytes: summary.outputBytes, chunks: summary.totalChunks }
    }
    const start = options.range.start
    const end = options.range.end ?? g.plainBytes
    if (end > g.plainBytes || start >= end) {
      return yield* Effect.fail(new BackupUsageError({ detail: `range ${start}:${end} is outside the backup's ${g.plainBytes} bytes` }))
    }
    const cs = g.chunkBytes
    const reader = yield* openReader(file, options.cipher.decrypt(), cs)
    const first = Math.floor(start / cs)
    const last = Math.floor((end - 1) / cs)
    const BATCH = 16
    const limiter = options.limitRate !== undefined ? RateLimit.make(options.limitRate) : undefined
    yield* sink.open()
    const written = yield* Effect.gen(function*() {
      let bytes = 0
      for (let from = first; from <= last; from += BATCH) {
        const to = Math.min(last + 1, from + BATCH)
        if (limiter) yield* limiter.take((to - from) * cs)
        const out = yield* reader.read(from, to)
        const pieces = out.map((p, k) => {
          const at = (from + k) * cs
          return p.subarray(Math.max(0, start - at), Math.min(p.length, end - at))
        })
        yield* sink.write(pieces)
        for (const p of pieces) bytes += p.length
      }
      yield* sink.commit()
      return bytes
    }).pipe(
      Effect.onError(() => sink.abort({ keepPartial: false })),
      Effect.ensuring(reader.close)
    )
    return { generation: g.generation, output: options.output, bytes: written, chunks: last - first + 1 }
  })

/** Options of {@link prune}. */
export interface PruneOptions extends CommonOptions {
  /** Default `keep_last:3`. */
  readonly policy?: RetentionPolicy
  /** Report what would be deleted, delete nothing. */
  readonly dryRun?: boolean
  /** Only this source (default: every source in the registry). */
  readonly source?: string
  /** Clock, ms since the epoch (tests). */
  readonly now?: number
}

/** What {@link prune} did (or would do). */
export interface PruneReport {
  readonly dryRun: boolean
  readonly deleted: ReadonlyArray<Registry.Generation>
  readonly kept: ReadonlyArray<Registry.Generation>
  /** Per source, the newest generation that verifies (never deleted), when there is one. */
  readonly protectedGenerations: ReadonlyArray<Registry.Generation>
  /** Generations that failed verification during the search for the newest good one. */
  readonly damaged: ReadonlyArray<Registry.Generation>
}

/**
 * Applies a retention policy. Per source, the newest generation that verifies (ciphertext
 * digests against its manifest) is kept whatever the policy says. The registry update is
 * made durable before any file is deleted; a crash in between leaves only unlisted files.
 * Partial generations are left alone.
 */
export const prune = (options: PruneOptions) =>
  Effect.gen(function*() {
    const policy = options.policy ?? DEFAULT_POLICY
    const now = options.now ?? Date.now()
    const registry = yield* Registry.load(options.dir)
    const only = options.source === undefined ? undefined : nodePath.resolve(options.source)
    const sources = [...new Set(registry.generations.map((g) => g.source))].filter((s) => only === undefined || s === only)
    const deleted: Array<Registry.Generation> = []
    const keptList: Array<Registry.Generation> = []
    const protectedGenerations: Array<Registry.Generation> = []
    const damaged: Array<Registry.Generation> = []
    for (const source of sources) {
      const gens = registry.generations.filter((g) => g.source === source && g.status === "complete").sort((a, b) => b.generation - a.generation)
      const keep = kept(policy, gens, now)
      for (const g of gens) {
        const r = yield* Effect.result(verifyReport({ dir: options.dir, source, generation: g.generation, hashWorkers: options.hashWorkers }))
        if (r._tag === "Success" && r.success.ok) {
          protectedGenerations.push(g)
          keep.add(g.id)
          break
        }
        damaged.push(g)
      }
      for (const g of gens) (keep.has(g.id) ? keptList : deleted).push(g)
    }
    if (!options.dryRun && deleted.length > 0) {
      const gone = new Set(deleted.map((g) => g.id))
      yield* update(options, (r) => ({ registry: { ...r, generations: r.generations.filter((g) => !gone.has(g.id)) }, value: undefined }))
      // The registry no longer lists them (durable): now the files may go.
      for (const g of deleted) {
        const paths = [nodePath.join(options.dir, g.file), ...(g.manifest ? [nodePath.join(options.dir, g.manifest)] : [])]
        for (const p of paths) yield* io("remove", p, () => fs.promises.rm(p, { force: true }))
      }
      yield* syncDirectoryOf(nodePath.join(options.dir, "x"))
    }
    return { dryRun: options.dryRun === true, deleted, kept: keptList, protectedGenerations, damaged } satisfies PruneReport
  })

/** Rebuilds a corrupt registry under the lock; see `Registry.recoverRegistry`. */
export const recover = (options: CommonOptions) =>
  Effect.gen(function*() {
    yield* ensureDirs(options.dir)
    return yield* withLock(options.dir, Registry.recoverRegistry(options.dir), options.lock)
  })
