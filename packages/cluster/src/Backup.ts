/**
 * Distributed backups into the chunk store (`cage cluster submit backup DIR`, issue 16).
 *
 * The client lists the directory (`Store.planTree`: lstat only; files unchanged since the
 * source's newest snapshot are marked and never read), takes the store's writer lock for
 * the job (`Store.lockForJob`: other writers are refused at once, naming the job), and
 * submits one job workflow. The job cuts the files to read into segments of pieces
 * (`Plan.planPieces`: small files gathered, large ones cut at `segmentBytes`), starts each
 * segment as a detached child workflow, and waits for their stored results. A segment's one
 * activity opens the store with the key file (each runner reads it itself), cuts its pieces
 * into content-defined chunks, seals the new ones into packs and writes one *staged* index
 * file, which nobody else reads (`Store.storePieces`). Once every segment is done, the
 * `commit` activity renames the job's index files into place and writes the snapshot
 * (`Store.commitTree`: uninterruptible, idempotent, only while the lock is the job's, and
 * only when every chunk it references is indexed in a pack that exists), then releases the
 * lock. A failed or cancelled job releases it too; what its segments stored stays staged,
 * unseen, until `cage backup prune` removes it. The result is an ordinary store
 * snapshot: `cage backup list|restore|verify` read it as any other.
 *
 * Payloads hold paths, sizes, identities and chunk ids (keyed HMACs, which confirm nothing
 * without the key), never a key or file contents.
 *
 * @module
 */
import { Store } from "@cage/backup"
import { exitCodeOf } from "@cage/core"
import { Cause, Effect, Schema } from "effect"
import { Activity, Workflow } from "effect/workflow"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { awaitSegments, fail, JobFailure, messageOf, readKey, retryIo, retryStorage, type RunnerOptions, stop } from "./Shared.js"
import * as Plan from "./Plan.js"
import { segmentActivity, slotsOf } from "./SegmentActivity.js"
import { saltOf, segmentKey } from "./Spread.js"

const Meta = {
  size: Schema.Number,
  mtimeNs: Schema.String,
  ctimeNs: Schema.String,
  ino: Schema.String,
  dev: Schema.String,
  mode: Schema.Number
}

const PlannedEntry = Schema.Struct({
  ...Meta,
  path: Schema.String,
  type: Schema.Literals(["file", "dir", "symlink"]),
  target: Schema.optional(Schema.String),
  reuse: Schema.optional(Schema.Boolean)
})

/** What a backup job carries: the directory's plan and where the store is; no secret, no file contents. */
export const BackupPayload = Schema.Struct({
  job: Schema.String,
  /** The backup directory holding the store (absolute; the same path on every runner). */
  dir: Schema.String,
  keyFile: Schema.String,
  plan: Schema.Struct({
    source: Schema.Struct({ ...Meta, path: Schema.String }),
    previous: Schema.NullOr(Schema.String),
    entries: Schema.Array(PlannedEntry),
    skipped: Schema.Array(Schema.String)
  }),
  /** The lowest generation number the snapshot may get (after the source's full copies). */
  firstGeneration: Schema.Number,
  segmentBytes: Schema.Number,
  submittedAt: Schema.Number,
  /** Each segment's salt, one base-36 digit per segment, chosen at submit to spread the segments over the runners (`Spread.ts`); absent: every salt is 0. */
  salts: Schema.optional(Schema.String)
})
export type BackupPayload = typeof BackupPayload.Type

const PieceSchema = Schema.Struct({ path: Schema.String, start: Schema.Number, end: Schema.Number })

const BackupSegmentPayload = Schema.Struct({
  job: Schema.String,
  /** The job's execution id: a segment of a job that has ended does nothing. */
  jobId: Schema.String,
  index: Schema.Number,
  /** The segment's salt (part of its idempotency key); absent: 0. */
  salt: Schema.optional(Schema.Number),
  dir: Schema.String,
  keyFile: Schema.String,
  pieces: Schema.Array(PieceSchema)
})

const PieceResult = Schema.Struct({
  chunks: Schema.optional(Schema.Array(Schema.Tuple([Schema.String, Schema.Number]))),
  identity: Schema.optional(Schema.Struct({ ...Meta, path: Schema.String })),
  changed: Schema.optional(Schema.String)
})

/** What a backup segment reports: each piece's chunks (or what changed), what it added to the store, its bytes and runner. */
export const BackupSegmentResult = Schema.Struct({
  pieces: Schema.Array(PieceResult),
  bytes: Schema.Number,
  addedChunks: Schema.Number,
  addedBytes: Schema.Number,
  storedBytes: Schema.Number,
  runner: Schema.String
})

/** A finished backup job: the snapshot written (as `cage backup create` reports it). `changed`: files not stored because they changed while read. */
export const BackupResult = Schema.Struct({
  snapshot: Schema.String,
  generation: Schema.Number,
  files: Schema.Number,
  filesRead: Schema.Number,
  bytes: Schema.Number,
  chunks: Schema.Number,
  addedChunks: Schema.Number,
  addedBytes: Schema.Number,
  storedBytes: Schema.Number,
  changed: Schema.Array(Schema.String),
  skipped: Schema.Array(Schema.String)
})
export type BackupResult = typeof BackupResult.Type

export const BackupSegmentWorkflow = Workflow.make("cage/backup-segment", {
  payload: BackupSegmentPayload,
  success: BackupSegmentResult,
  error: JobFailure,
  idempotencyKey: (p) => segmentKey(p.job, p.index, p.salt ?? 0)
})

export const BackupJobWorkflow = Workflow.make("cage/backup-job", {
  payload: BackupPayload,
  success: BackupResult,
  error: JobFailure,
  idempotencyKey: (p) => p.job
})

// A workflow's execution id hashes its name and idempotency key (the job's uuid, and the
// segment's index), but `executionId` validates a whole payload first: these stand-ins
// carry the key and nothing else.
const stub = { path: "", size: 0, mtimeNs: "0", ctimeNs: "0", ino: "0", dev: "0", mode: 0 }

/** The execution id (the job id users see) of the backup job with uuid `job`. */
export const backupJobId = (job: string) =>
  BackupJobWorkflow.executionId({ job, dir: "", keyFile: "", plan: { source: stub, previous: null, entries: [], skipped: [] }, firstGeneration: 0, segmentBytes: 1, submittedAt: 0 })

/** The execution id of segment `index` (with `salt`) of the backup job with uuid `job`. */
export const backupSegmentId = (job: string, index: number, salt: number) =>
  BackupSegmentWorkflow.executionId({ job, jobId: "", index, salt, dir: "", keyFile: "", pieces: [] })

/** The files a job reads (not `reuse`d), in plan order, and its segments of pieces of them. */
export const segmentsOf = (p: BackupPayload) => {
  const files = p.plan.entries.filter((e) => e.type === "file" && e.reuse !== true)
  return { files, segments: Plan.planPieces(files.map((f) => f.size), p.segmentBytes) }
}

/**
 * What each segment of a backup job costs, in bytes, for spreading them over the runners:
 * its bytes, plus 64 KiB per piece (opening, reading and indexing a small file costs about
 * what reading 64 KiB does), so a segment of 512 empty files is not free.
 */
export const segmentCosts = (p: BackupPayload) => segmentsOf(p).segments.map((pieces) => pieces.reduce((n, x) => n + x.end - x.start + 65536, 0))

/** Bytes a backup job reads: its files' planned sizes. */
export const bytesOf = (p: BackupPayload) => segmentsOf(p).files.reduce((n, f) => n + f.size, 0)

/** Opens the store in `dir` with the key in `keyFile` for `use`, then wipes the key; `where` prefixes failures. */
const withStore = <A>(dir: string, keyFile: string, where: string, use: (store: Store.Store) => Effect.Effect<A, unknown>) =>
  Effect.gen(function*() {
    // Never created here: a runner that does not see the store at this path must not start an empty one.
    if (!Store.exists(dir)) return yield* fail(`${where}: no backup store in ${dir} on this runner (every runner must see the same directory)`, 4)
    const key = yield* readKey(keyFile).pipe(Effect.mapError((e): JobFailure => ({ message: `${where}: ${e}`, exitCode: 2 })))
    return yield* Effect.acquireUseRelease(
      Store.open({ dir, key: { key } }).pipe(Effect.ensuring(Effect.sync(() => key.fill(0)))),
      use,
      (store) => Effect.sync(() => Store.close(store))
    ).pipe(Effect.mapError((e: unknown): JobFailure => ({ message: `${where}: ${messageOf(e)}`, exitCode: exitCodeOf(e), ...((e as { readonly stopped?: unknown }).stopped === true ? { stopped: true } : {}) })))
  })

export const backupSegmentLayer = (options: RunnerOptions) => {
  // Each running segment holds a chunker's staging buffer and up to four packs (about 35 MiB).
  const slots = slotsOf(options)
  return BackupSegmentWorkflow.toLayer((p) => {
    const first = p.pieces[0]
    const bytes = p.pieces.reduce((n, x) => n + x.end - x.start, 0)
    return segmentActivity({
      name: "store",
      success: BackupSegmentResult,
      runner: options,
      slots,
      jobId: p.jobId,
      index: p.index,
      bytes,
      where: `segment ${p.index} (${p.pieces.length === 1 ? first.path : `${p.pieces.length} files from ${first.path}`})`,
      jobResult: BackupJobWorkflow.poll(p.jobId),
      jobTag: BackupJobWorkflow._tag,
      work: (where) =>
        Effect.gen(function*() {
          const r = yield* withStore(p.dir, p.keyFile, where, (store) =>
            retryIo(Store.storePieces(store, p.pieces, { job: p.jobId })).pipe(
              // (withStore prefixes the message with `where`.)
              Effect.catchTag("LockBusy", () => stop(`the job no longer holds the store in ${p.dir} (cancelled or ended); this segment stores nothing`, 6))
            ))
          return { pieces: r.pieces, bytes, addedChunks: r.addedChunks, addedBytes: r.addedBytes, storedBytes: r.storedBytes, runner: options.name ?? "?" }
        })
    })
  })
}

/** The snapshot, written once every segment is done; releases the job's lock. */
const commit = (p: BackupPayload, jobId: string, results: ReadonlyArray<typeof BackupSegmentResult.Type>) =>
  Activity.make({
    name: "commit",
    success: BackupResult,
    error: JobFailure,
    execute: Effect.gen(function*() {
      const { files, segments } = segmentsOf(p)
      const pieces = files.map((): Array<Store.PieceResult> => [])
      for (const [s, segment] of segments.entries()) for (const [i, piece] of segment.entries()) pieces[piece.file].push(results[s].pieces[i] as Store.PieceResult)
      const sum = (k: "addedChunks" | "addedBytes" | "storedBytes") => results.reduce((n, r) => n + r[k], 0)
      const r = yield* withStore(p.dir, p.keyFile, `commit of ${p.plan.source.path}`, (store) =>
        Store.commitTree(store, {
          job: jobId,
          plan: { ...p.plan, previous: p.plan.previous ?? undefined },
          files: files.map((f, i) => ({ path: f.path, pieces: pieces[i] })),
          firstGeneration: p.firstGeneration,
          added: { chunks: sum("addedChunks"), bytes: sum("addedBytes"), storedBytes: sum("storedBytes") }
        }).pipe(Effect.catchTag("LockBusy", () => fail(`the job no longer holds the store in ${p.dir} (cancelled); no generation written`, 6)))
      )
      yield* Effect.sync(() => Store.releaseJobLock(p.dir, jobId))
      return {
        snapshot: r.snapshot,
        generation: r.generation,
        files: r.files ?? 0,
        filesRead: r.filesRead ?? 0,
        bytes: r.bytes,
        chunks: r.chunks,
        addedChunks: r.addedChunks,
        addedBytes: r.addedBytes,
        storedBytes: r.storedBytes,
        changed: r.changed ?? [],
        skipped: r.skipped ?? []
      }
    })
  })

/** Releases a failed job's lock (the packs its segments wrote are in staged index files only: the next `cage backup prune` removes them). */
const release = (p: BackupPayload, jobId: string) =>
  Activity.make({ name: "release", success: Schema.Void, error: JobFailure, execute: Effect.sync(() => Store.releaseJobLock(p.dir, jobId)) })

export const backupJobLayer = BackupJobWorkflow.toLayer((p, jobId) =>
  Effect.gen(function*() {
    const { files, segments } = segmentsOf(p)
    const ids = yield* Effect.forEach(segments, (pieces, index) =>
      retryStorage(BackupSegmentWorkflow.execute({ job: p.job, jobId, index, salt: saltOf(p.salts, index), dir: p.dir, keyFile: p.keyFile, pieces: pieces.map((x) => ({ path: nodePath.join(p.plan.source.path, files[x.file].path), start: x.start, end: x.end })) }, { discard: true, detached: true })), { concurrency: 16 })
    const results = yield* awaitSegments(ids, (id) => BackupSegmentWorkflow.poll(id))
    return yield* commit(p, jobId, results)
  }).pipe(
    // Failed: the lock goes at once. Segments still running can only add packs and staged
    // index files nobody sees (`Store.storePieces`); the next prune removes them. Not on an
    // interrupt: the job's shard moving to another runner interrupts it here too, and the
    // job goes on there; `Job.cancel` hands the store back once a cancelled job has stopped.
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : release(p, jobId))
  )
)

/** Whether `dir` exists as a directory (a cheap check before listing it). */
export const isDirectory = (dir: string) => fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true
