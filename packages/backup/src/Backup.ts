/**
 * Backup operations: create, resume, verify, restore, list and prune generations.
 *
 * Layout of a backup directory:
 * - `<name>.<tag>.g<N>.cage`: generation N of a source (`tag` = 8 hex digits of the SHA-256
 *   of the source's absolute path, so equal names from different directories never clash);
 *   `.partial` while being written.
 * - `.cage_backups.json` (+ `.bak`): the registry (see `Registry.ts`).
 * - `.cage_backups.d/<file>.manifest.json`: each complete generation's manifest (its
 *   registry entry, the chunk layout, digests); `<file>.checkpoint.json` while in progress.
 * - `.cage_backups.lock`: the registry lock (see `Lock.ts`).
 *
 * Concurrency: the lock is held only for registry read-modify-writes (allocating a
 * generation number, committing it, pruning), so concurrent creates encrypt in parallel and
 * every entry survives. Durability order: backup file committed (fsync + link), then
 * manifest (atomic), then registry (atomic); prune updates the registry durably before it
 * deletes any file.
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
  type RunSummary,
  runPipeline
} from "@cage/core"
import { Effect } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { BackupDamaged, BackupUsageError, type Damage, GenerationNotFound, type LockTimeout, type RegistryCorrupt } from "./Error.js"
import { HashPool, sha256 } from "./internal/hashPool.js"
import { fromSystemError, syncDirectoryOf } from "./internal/fs.js"
import { type LockOptions, withLock } from "./Lock.js"
import { chunkRanges, expectedSize, layoutOf, rootOf, withManifest } from "./Manifest.js"
import * as Registry from "./Registry.js"
import { DEFAULT_POLICY, kept, type RetentionPolicy } from "./Retention.js"

/** Sources at or above this size get per-chunk digests in their manifest: 500 MB (10^6). */
export const DEFAULT_MANIFEST_THRESHOLD = 500_000_000

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
  readonly progress?: Progress.ProgressReporter
}

/** Result of {@link create} and {@link resume}. */
export interface CreateResult {
  readonly generation: Registry.Generation
  readonly summary: RunSummary
}

/** Errors of create and resume. */
export type CreateError = EngineError | RegistryCorrupt | LockTimeout | GenerationNotFound | BackupUsageError

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
    const dir = options.dir
    const input = yield* ChunkInput.fromFile(entry.source)
    const pool = new HashPool(options.hashWorkers)
    const collector = withManifest(options.cipher.encrypt(), pool)
    const summary = yield* runPipeline({
      input,
      output: ChunkOutput.toFile(nodePath.join(dir, entry.file)),
      pipeline: [collector.processor],
      chunkBytes: options.chunkBytes ?? entry.chunkBytes,
      segmentBytes: options.segmentBytes,
      inFlight: options.inFlight,
      checkpoint: { path: checkpointPath(dir, entry), mode, ...(options.checkpointIntervalMs !== undefined ? { intervalMs: options.checkpointIntervalMs } : {}) },
      progress: options.progress
    }).pipe(Effect.ensuring(Effect.promise(() => pool.close())), Effect.ensuring(input.close()))

    const d = collector.collected()
    const layout = layoutOf(d.headerBytes, d.cipherLengths)
    const chunked = options.chunkManifest ?? entry.plainBytes >= (options.manifestThreshold ?? DEFAULT_MANIFEST_THRESHOLD)
    const done: Registry.Generation = {
      ...entry,
      status: "complete",
      completedAt: new Date().toISOString(),
      chunkBytes: d.chunkBytes,
      // The size actually read (the source may have changed since the entry was registered).
      plainBytes: input.size ?? entry.plainBytes,
      cipherBytes: summary.outputBytes,
      pipeline: Checkpoint.describePipeline([collector.processor]),
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
    // The manifest first: a crash before the registry update leaves a manifest recover can use.
    yield* Registry.writeAtomic(nodePath.join(dir, done.manifest!), JSON.stringify(manifest))
    yield* update(options, (r) => {
      const others = r.generations.filter((g) => g.id !== done.id)
      return { registry: { ...r, generations: [...others, done] }, value: undefined }
    })
    return { generation: done, summary } satisfies CreateResult
  })

/**
 * Backs up `options.source` as a new generation: numbers it (per source, from 1) under the
 * registry lock, encrypts it with a checkpoint, writes its manifest and commits the registry
 * entry. An interrupted create leaves a `"partial"` entry that {@link resume} completes.
 *
 * Fails with `IoError`, `ProcessorError` (the cipher), `RegistryCorrupt`, `LockTimeout`.
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
 * Completes the newest interrupted (`"partial"`) generation of `options.source` from its
 * checkpoint (same key required). Fails with `GenerationNotFound` when there is none, and
 * `ResumeRefused` (exit 5) when the source changed since.
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
  if (g.status !== "complete") return Effect.fail(new GenerationNotFound({ source, generation: n, detail: "it is incomplete: run `cage backup resume` first" }))
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
      const summary = yield* runPipeline({ input, output: sink, pipeline: [options.cipher.decrypt()], chunkBytes: g.chunkBytes, progress: options.progress }).pipe(
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
    yield* sink.open()
    const written = yield* Effect.gen(function*() {
      let bytes = 0
      for (let from = first; from <= last; from += BATCH) {
        const to = Math.min(last + 1, from + BATCH)
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
