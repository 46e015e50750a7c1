/**
 * The backup registry `<dir>/.cage_backups.json` and the per-generation manifests in
 * `<dir>/.cage_backups.d/`.
 *
 * The registry lists every generation of every source file (Schema-validated). It is
 * written atomically: temp file + fsync + rename + directory fsync, mode 0600, and the
 * previous good registry is kept as `.cage_backups.json.bak`. A registry that fails to
 * parse is never overwritten: every operation fails with `RegistryCorrupt` until the user
 * runs {@link recoverRegistry}, which rebuilds it from the `.bak` and the manifests (each
 * complete generation's manifest embeds its registry entry).
 *
 * @module
 */
import { fromSystemError, type IoError, syncDirectoryOf } from "./internal/fs.js"
import { Checkpoint } from "@cage/core"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { RegistryCorrupt } from "./Error.js"

/** Registry file name. */
export const REGISTRY_FILE = ".cage_backups.json"
/** Directory of per-generation manifests, beside the registry. */
export const MANIFEST_DIR = ".cage_backups.d"
/** Registry and manifest format version. */
export const REGISTRY_VERSION = 1

const ProcessorRecord = Schema.Struct({
  name: Schema.String,
  version: Schema.String,
  options: Schema.Record(Schema.String, Schema.Json)
})

/** One generation in the registry. Sizes in bytes, times ISO 8601 UTC. */
export const GenerationSchema = Schema.Struct({
  /** Random id of the generation. */
  id: Schema.String,
  /** Absolute path of the source file. */
  source: Schema.String,
  /** Generation number, per source, from 1. */
  generation: Schema.Number,
  /** Backup file name, relative to the backup directory. */
  file: Schema.String,
  /** `"partial"` while being written (resume with `resume`), `"complete"` once committed. */
  status: Schema.Literals(["partial", "complete"]),
  createdAt: Schema.String,
  completedAt: Schema.NullOr(Schema.String),
  /** Plaintext chunk size, bytes. */
  chunkBytes: Schema.Number,
  /** Source size, bytes (at creation). */
  plainBytes: Schema.Number,
  /** Backup file size, bytes; null while partial. */
  cipherBytes: Schema.NullOr(Schema.Number),
  /** The processors that wrote the backup (names, versions, non-secret options). */
  pipeline: Schema.Array(ProcessorRecord),
  /** Manifest file, relative to the backup directory; null while partial. */
  manifest: Schema.NullOr(Schema.String),
  /** True when the manifest holds per-chunk digests (source at or above the threshold, or asked for). */
  chunked: Schema.Boolean,
  /** SHA-256 (hex) over the concatenated plaintext chunk digests; null while partial. */
  plainRoot: Schema.NullOr(Schema.String),
  /** SHA-256 (hex) over the header digest and the concatenated ciphertext chunk digests. */
  cipherRoot: Schema.NullOr(Schema.String)
})
export type Generation = typeof GenerationSchema.Type

/** The registry document. */
export const RegistrySchema = Schema.Struct({
  format: Schema.Literal("cage-backups"),
  version: Schema.Literal(REGISTRY_VERSION),
  updatedAt: Schema.String,
  generations: Schema.Array(GenerationSchema)
})
export type Registry = typeof RegistrySchema.Type

/** Where ciphertext chunks lie in the backup file. */
export const LayoutSchema = Schema.Struct({
  /** Bytes before chunk 0 (the cipher's header). */
  headerBytes: Schema.Number,
  /** Number of chunks. */
  chunks: Schema.Number,
  /** Size of every non-final ciphertext chunk when uniform (AGCM: chunk size + 16), else null. */
  cipherChunkBytes: Schema.NullOr(Schema.Number),
  /** Final chunk's ciphertext size when uniform. */
  finalCipherBytes: Schema.NullOr(Schema.Number),
  /** Every chunk's ciphertext size when not uniform, else null. */
  cipherLengths: Schema.NullOr(Schema.Array(Schema.Number))
})
export type Layout = typeof LayoutSchema.Type

/** A generation's manifest: its registry entry, the chunk layout and digests. */
export const ManifestSchema = Schema.Struct({
  format: Schema.Literal("cage-backup-manifest"),
  version: Schema.Literal(REGISTRY_VERSION),
  entry: GenerationSchema,
  layout: LayoutSchema,
  /** SHA-256 (hex) of the header bytes. */
  headerSha256: Schema.String,
  /** Per-chunk SHA-256 (hex) of plaintext and ciphertext; null below the threshold. */
  chunks: Schema.NullOr(Schema.Struct({ plain: Schema.Array(Schema.String), cipher: Schema.Array(Schema.String) }))
})
export type Manifest = typeof ManifestSchema.Type

/**
 * `<file>.layout.json`: written (0600, atomically) when a direct-mode cipher's `init` ran,
 * removed once the manifest is written. It lets a `resume` after the backup file was
 * committed, but before its manifest was, hash the files without running the cipher again.
 * Nothing secret: sizes, the source's identity and the cipher's public description.
 */
export const LayoutRecordSchema = Schema.Struct({
  format: Schema.Literal("cage-backup-layout"),
  version: Schema.Literal(REGISTRY_VERSION),
  /** The generation's `id` (a record of another generation is never used). */
  id: Schema.String,
  /** The source as it was encrypted: size in bytes, times in ns since the epoch (decimal strings), inode, device. */
  source: Checkpoint.SourceIdentitySchema,
  /** How the source is cut: bytes before chunk 0, plaintext chunk bytes, final-chunk rule. */
  framing: Schema.Struct({ headerBytes: Schema.Number, chunkBytes: Schema.Number, shortFinal: Schema.Boolean }),
  /** Bytes of the cipher's header at the start of the backup file. */
  headerBytes: Schema.Number,
  /** Ciphertext bytes of every non-final chunk. */
  outputChunkBytes: Schema.Number,
  /** The cipher, as recorded in checkpoints and in the registry entry. */
  pipeline: Schema.Array(ProcessorRecord)
})
export type LayoutRecord = typeof LayoutRecordSchema.Type

/** Path of the layout record of backup file `file` in `dir`. */
export const layoutRecordPath = (dir: string, file: string) => nodePath.join(dir, MANIFEST_DIR, `${file}.layout.json`)

const RegistryJson = Schema.fromJsonString(RegistrySchema)
const ManifestJson = Schema.fromJsonString(ManifestSchema)
const LayoutRecordJson = Schema.fromJsonString(LayoutRecordSchema)

export const registryPath = (dir: string) => nodePath.join(dir, REGISTRY_FILE)
export const emptyRegistry = (): Registry => ({ format: "cage-backups", version: REGISTRY_VERSION, updatedAt: new Date().toISOString(), generations: [] })

const firstLines = (e: { message: string }) => e.message.split("\n").slice(0, 3).join(" ")

const readText = (path: string) =>
  Effect.tryPromise({
    try: () => fs.promises.readFile(path, "utf8").then((t): string | undefined => t),
    catch: (e) => fromSystemError("read", path, e)
  }).pipe(Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(undefined)))

/** Reads the registry of `dir`; an absent registry is empty. Fails with `RegistryCorrupt` or `IoError`. */
export const load = (dir: string): Effect.Effect<Registry, RegistryCorrupt | IoError> =>
  Effect.gen(function*() {
    const path = registryPath(dir)
    const text = yield* readText(path)
    if (text === undefined) return emptyRegistry()
    return yield* Schema.decodeUnknownEffect(RegistryJson)(text).pipe(
      Effect.mapError((e) => new RegistryCorrupt({ path, detail: firstLines(e) }))
    )
  })

/** Writes `text` to `path` atomically (temp + fsync + rename + directory fsync), mode 0600. */
export const writeAtomic = (path: string, text: string): Effect.Effect<void, IoError> =>
  Effect.tryPromise({
    try: async () => {
      const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
      const h = await fs.promises.open(tmp, "w", 0o600)
      try {
        await h.writeFile(text, "utf8")
        await h.sync()
      } finally {
        await h.close()
      }
      await fs.promises.rename(tmp, path)
    },
    catch: (e) => fromSystemError("write", path, e)
  }).pipe(Effect.andThen(syncDirectoryOf(path)))

/**
 * Saves the registry (caller holds the lock). The current file, when it parses, first
 * becomes `.bak`, so one good previous version always exists.
 */
export const save = (dir: string, registry: Registry): Effect.Effect<void, IoError> =>
  Effect.gen(function*() {
    const path = registryPath(dir)
    const current = yield* readText(path)
    if (current !== undefined && Schema.is(RegistrySchema)(safeParse(current))) {
      yield* writeAtomic(`${path}.bak`, current)
    }
    yield* writeAtomic(path, JSON.stringify({ ...registry, updatedAt: new Date().toISOString() }, null, 1))
  })

const safeParse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Reads a manifest. Fails with `RegistryCorrupt` (naming the manifest) or `IoError`. */
export const loadManifest = (dir: string, relative: string): Effect.Effect<Manifest, RegistryCorrupt | IoError> =>
  Effect.gen(function*() {
    const path = nodePath.join(dir, relative)
    const text = yield* readText(path)
    if (text === undefined) return yield* Effect.fail(fromSystemError("read", path, Object.assign(new Error("missing"), { code: "ENOENT" })))
    return yield* Schema.decodeUnknownEffect(ManifestJson)(text).pipe(
      Effect.mapError((e) => new RegistryCorrupt({ path, detail: firstLines(e) }))
    )
  })

/**
 * Reads a layout record (see {@link LayoutRecordSchema}); `undefined` when there is none.
 * Fails with `RegistryCorrupt` (naming the file) or `IoError`.
 */
export const loadLayoutRecord = (path: string): Effect.Effect<LayoutRecord | undefined, RegistryCorrupt | IoError> =>
  Effect.gen(function*() {
    const text = yield* readText(path)
    if (text === undefined) return undefined
    return yield* Schema.decodeUnknownEffect(LayoutRecordJson)(text).pipe(
      Effect.mapError((e) => new RegistryCorrupt({ path, detail: firstLines(e) }))
    )
  })

/** What {@link recoverRegistry} did. */
export interface RecoveryReport {
  /** Generations in the rebuilt registry. */
  readonly generations: number
  /** Generations taken from manifests. */
  readonly fromManifests: number
  /** Partial generations kept from the registry or its `.bak` (their `.partial` file, or their backup file and layout record, exist). */
  readonly fromBackup: number
  /** Where the corrupt registry was moved (null when there was none). */
  readonly corruptMovedTo: string | null
}

/**
 * Rebuilds the registry from the manifests (every complete generation) and the registry
 * or its `.bak` (partial generations that can still be resumed: their `.partial` file
 * exists, or their backup file and its layout record do). The corrupt registry
 * is kept as `.cage_backups.json.corrupt-<time>`. Caller holds the lock.
 */
export const recoverRegistry = (dir: string): Effect.Effect<RecoveryReport, IoError> =>
  Effect.gen(function*() {
    const mdir = nodePath.join(dir, MANIFEST_DIR)
    const names = yield* Effect.tryPromise({ try: () => fs.promises.readdir(mdir), catch: (e) => fromSystemError("list", mdir, e) }).pipe(
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed([] as Array<string>))
    )
    const byId = new Map<string, Generation>()
    for (const n of names.filter((n) => n.endsWith(".manifest.json")).sort()) {
      const m = yield* Effect.option(loadManifest(dir, nodePath.join(MANIFEST_DIR, n)))
      if (m._tag === "Some") byId.set(m.value.entry.id, m.value.entry)
    }
    const fromManifests = byId.size
    let fromBackup = 0
    // Partial generations have no manifest yet: take them from the current registry (when it
    // parses) and the .bak, as long as their staged file still exists.
    for (const candidate of [registryPath(dir), `${registryPath(dir)}.bak`]) {
      const text = yield* readText(candidate)
      const doc = text === undefined ? undefined : safeParse(text)
      if (doc === undefined || !Schema.is(RegistrySchema)(doc)) continue
      for (const g of doc.generations) {
        // Still resumable: being written (.partial), or written and awaiting its manifest.
        const resumable = fs.existsSync(nodePath.join(dir, `${g.file}.partial`)) ||
          (fs.existsSync(nodePath.join(dir, g.file)) && fs.existsSync(layoutRecordPath(dir, g.file)))
        if (g.status === "partial" && !byId.has(g.id) && resumable) {
          byId.set(g.id, g)
          fromBackup++
        }
      }
    }
    let corruptMovedTo: string | null = null
    const path = registryPath(dir)
    if (fs.existsSync(path)) {
      const current = safeParse((yield* readText(path)) ?? "")
      if (!Schema.is(RegistrySchema)(current)) {
        corruptMovedTo = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`
        yield* Effect.tryPromise({ try: () => fs.promises.rename(path, corruptMovedTo!), catch: (e) => fromSystemError("rename", path, e) })
      }
    }
    const generations = [...byId.values()].sort((a, b) => a.source.localeCompare(b.source) || a.generation - b.generation)
    yield* save(dir, { ...emptyRegistry(), generations })
    return { generations: generations.length, fromManifests, fromBackup, corruptMovedTo }
  })
