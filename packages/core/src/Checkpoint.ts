/**
 * Checkpoints: what a run has durably completed, so `kill -9` costs at most the segments in
 * flight.
 *
 * A checkpoint is a small JSON document (under 1 KB even for a 10 GB run: completed chunks
 * are stored as compact ranges) written atomically (temp file + fsync + rename + directory
 * fsync) with mode 0600. It records the source's identity, the chunk size, the pipeline
 * (processor names, versions and non-secret options), the completed chunks, the output
 * bytes that are durable, and each processor's `snapshot()`. Never payload, keys or
 * passphrases: processors are responsible for their snapshots, and options are declared
 * non-secret by the `ChunkProcessor` contract.
 *
 * The store is an Effect service ({@link Checkpointer}); {@link layerFile} is the file
 * backend and the default.
 *
 * @module
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import type { ChunkProcessor, JsonValue, SourceIdentity } from "./ChunkProcessor.js"
import type { Framing } from "./ChunkSpec.js"
import { fromSystemError, type IoError, ResumeRefused } from "./Error.js"
import { syncDirectory } from "./ChunkOutput.js"

/** Checkpoint document format version. */
export const CHECKPOINT_VERSION = 1

/** A source's identity as recorded in checkpoints (see `SourceIdentity`): sizes in bytes, times in ns (decimal strings). */
export const SourceIdentitySchema = Schema.Struct({
  path: Schema.String,
  size: Schema.Number,
  mtimeNs: Schema.String,
  ctimeNs: Schema.String,
  ino: Schema.String,
  dev: Schema.String
})

const ProcessorRecord = Schema.Struct({
  name: Schema.String,
  version: Schema.String,
  options: Schema.Record(Schema.String, Schema.Json)
})

/** The checkpoint document (JSON), decoded with Schema. */
export const CheckpointSchema = Schema.Struct({
  format: Schema.Literal("cage-checkpoint"),
  version: Schema.Literal(CHECKPOINT_VERSION),
  source: SourceIdentitySchema,
  output: Schema.String,
  /** The chunk size the run planned with, in bytes (the framing's). */
  chunkBytes: Schema.Number,
  pipeline: Schema.Array(ProcessorRecord),
  /** Completed chunk indices as half-open ranges `[from, to)`, sorted and disjoint. */
  completed: Schema.Array(Schema.Tuple([Schema.Number, Schema.Number])),
  /** Output bytes durable on disk (fdatasync'ed before this checkpoint was written). */
  outputBytes: Schema.Number,
  /** Input bytes covered by the completed chunks (including any header). */
  inputBytes: Schema.Number,
  /** Per-processor snapshots keyed by pipeline position and name, e.g. `"0:agcm-encrypt"`. */
  state: Schema.Record(Schema.String, Schema.Json),
  updatedAt: Schema.String
})
export type Checkpoint = typeof CheckpointSchema.Type

const CheckpointJson = Schema.fromJsonString(CheckpointSchema)

/** The store behind checkpoints. */
export interface CheckpointStore {
  /** Reads a checkpoint; `None` when there is none; `ResumeRefused(CheckpointCorrupt)` when unreadable. */
  readonly load: (path: string) => Effect.Effect<Option.Option<Checkpoint>, ResumeRefused | IoError>
  /** Writes atomically with mode 0600. */
  readonly save: (path: string, checkpoint: Checkpoint) => Effect.Effect<void, IoError>
  /** Removes it; a missing checkpoint is not an error. */
  readonly remove: (path: string) => Effect.Effect<void, IoError>
}

/** The temporary a checkpoint is written to before it is renamed into place. */
const tmpPath = (path: string) => `${path}.tmp`

/** Reads, writes and removes checkpoint documents at paths. */
export const makeFileStore = (): CheckpointStore => ({
  load: (path) =>
    Effect.gen(function*() {
      const text = yield* Effect.tryPromise({
        try: () => fs.promises.readFile(path, "utf8").then((t): string | undefined => t),
        catch: (e) => fromSystemError("read", path, e)
      }).pipe(Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(undefined)))
      if (text === undefined) return Option.none()
      const decoded = yield* Schema.decodeUnknownEffect(CheckpointJson)(text).pipe(
        Effect.mapError((e) =>
          new ResumeRefused({ reason: "CheckpointCorrupt", checkpoint: path, detail: `the checkpoint is corrupt: ${e.message.split("\n").slice(0, 2).join(" ")}` })
        )
      )
      return Option.some(decoded)
    }),
  save: (path, checkpoint) =>
    Effect.tryPromise({
      try: async () => {
        // One name, not one per pid: the output's lock makes this process its only writer,
        // and a temporary left by kill -9 is overwritten here and removed with the checkpoint.
        const tmp = tmpPath(path)
        try {
          const h = await fs.promises.open(tmp, "w", 0o600)
          try {
            await h.writeFile(JSON.stringify(checkpoint), "utf8")
            await h.sync()
          } finally {
            await h.close()
          }
          await fs.promises.rename(tmp, path)
        } catch (e) {
          // A full disk must not leave an empty temporary beside the output.
          await fs.promises.rm(tmp, { force: true })
          throw e
        }
      },
      catch: (e) => fromSystemError("write checkpoint", path, e)
    }).pipe(Effect.andThen(syncDirectory(nodePath.dirname(nodePath.resolve(path))))),
  remove: (path) =>
    Effect.tryPromise({
      try: () => Promise.all([fs.promises.rm(path, { force: true }), fs.promises.rm(tmpPath(path), { force: true })]),
      catch: (e) => fromSystemError("remove checkpoint", path, e)
    })
})

/** The checkpoint service; defaults to the file store. */
export const Checkpointer = Context.Reference<CheckpointStore>("@cage/core/Checkpointer", {
  defaultValue: makeFileStore
})

/** The file-backed layer (the default; provided explicitly for clarity in applications). */
export const layerFile: Layer.Layer<never> = Layer.succeed(Checkpointer, makeFileStore())

/** An in-memory store (tests). */
export const makeMemoryStore = (): CheckpointStore & { readonly documents: Map<string, Checkpoint> } => {
  const documents = new Map<string, Checkpoint>()
  return {
    documents,
    load: (path) => Effect.sync(() => Option.fromNullishOr(documents.get(path))),
    save: (path, c) => Effect.sync(() => void documents.set(path, c)),
    remove: (path) => Effect.sync(() => void documents.delete(path))
  }
}

/** The pipeline as recorded in a checkpoint. */
export const describePipeline = (pipeline: ReadonlyArray<ChunkProcessor>) =>
  pipeline.map((p) => ({ name: p.name, version: p.version, options: p.options as { readonly [k: string]: JsonValue } }))

/** Key of a processor's snapshot in `state`. */
export const stateKey = (position: number, p: ChunkProcessor) => `${position}:${p.name}`

/** Number of chunks completed from index 0 without a gap. */
export const completedPrefix = (c: Checkpoint): number => {
  const first = c.completed[0]
  return first !== undefined && first[0] === 0 ? first[1] : 0
}

/**
 * Checks that a checkpoint belongs to this run. Fails with `ResumeRefused` naming what
 * changed: the source (size, mtime, ctime, inode, device), the output, or the pipeline
 * (processors, versions, options). Resuming over a changed source would re-encrypt different
 * plaintext under nonces already used, so every identity field must match exactly. The chunk
 * size is checked once the processors declared the run's framing ({@link validateFraming}).
 */
export const validate = (
  path: string,
  c: Checkpoint,
  run: { readonly source: SourceIdentity; readonly output: string; readonly pipeline: ReadonlyArray<ChunkProcessor> }
): Effect.Effect<void, ResumeRefused> => {
  const refuse = (reason: ResumeRefused["reason"], detail: string) => Effect.fail(new ResumeRefused({ reason, checkpoint: path, detail }))
  const fields: ReadonlyArray<[keyof SourceIdentity, string]> = [
    ["path", "path"],
    ["size", "size"],
    ["mtimeNs", "modification time"],
    ["ctimeNs", "status change time"],
    ["ino", "inode"],
    ["dev", "device"]
  ]
  for (const [k, label] of fields) {
    if (String(c.source[k]) !== String(run.source[k])) {
      return refuse("SourceChanged", `the source ${run.source.path} changed since the checkpoint (${label}: was ${c.source[k]}, now ${run.source[k]})`)
    }
  }
  if (nodePath.resolve(c.output) !== nodePath.resolve(run.output)) {
    return refuse("OutputChanged", `the checkpoint is for output ${c.output}, not ${run.output}`)
  }
  const now = describePipeline(run.pipeline)
  const was = c.pipeline
  if (was.length !== now.length) {
    return refuse("PipelineChanged", `the pipeline changed (was ${was.map((p) => p.name).join(" → ")}, now ${now.map((p) => p.name).join(" → ")})`)
  }
  for (let i = 0; i < now.length; i++) {
    const a = was[i]
    const b = now[i]
    if (a.name !== b.name || a.version !== b.version) {
      return refuse("PipelineChanged", `processor ${i + 1} changed (was ${a.name}@${a.version}, now ${b.name}@${b.version})`)
    }
    if (JSON.stringify(a.options) !== JSON.stringify(b.options)) {
      return refuse("PipelineChanged", `the options of ${b.name} changed (was ${JSON.stringify(a.options)}, now ${JSON.stringify(b.options)})`)
    }
  }
  return Effect.void
}

/**
 * Checks that the run plans with the chunk size the checkpoint recorded (the framing's, as
 * declared by the processor that owns it, or the plain chunk size). Fails with
 * `ResumeRefused` (`"ChunkSizeChanged"`).
 */
export const validateFraming = (path: string, c: Checkpoint, framing: Framing): Effect.Effect<void, ResumeRefused> =>
  c.chunkBytes === framing.chunkBytes
    ? Effect.void
    : Effect.fail(new ResumeRefused({ reason: "ChunkSizeChanged", checkpoint: path, detail: `the chunk size changed (was ${c.chunkBytes} bytes, now ${framing.chunkBytes})` }))
