/**
 * Jobs as a user sees them (what `cage cluster submit|status|cancel` call): start an
 * encryption job, read its progress from the cluster's storage, cancel it.
 *
 * A job's id is its workflow execution id (a hex string the cluster derives from the job's
 * idempotency key). Everything here needs the client layer (`Cluster.clientLayer`), so a
 * `SqlClient` to the cluster's PostgreSQL.
 *
 * @module
 */
import { agcmDecrypt, DEFAULT_CHUNK_SIZE, MAX_HEADER_BYTES } from "@cage/agcm"
import { ChunkInput, exitCodeOf } from "@cage/core"
import { Data, Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { Workflow } from "effect/workflow"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { list as listCopies, Store } from "@cage/backup"
import { backupJobId, BackupJobWorkflow, BackupPayload, type BackupResult, backupSegmentId, BackupSegmentWorkflow, isDirectory, segmentCosts, segmentsOf } from "./Backup.js"
import * as Progress from "./Progress.js"
import { finalName, type JobFile, JobPayload, JobWorkflow, LOCK_SECONDS, planOf, plainBytesOf, readKey, retryStorage, segmentId, SegmentWorkflow } from "./Cluster.js"
import { interruptAsked } from "./Shared.js"
import { saltOf, shardOwners, spreadSalts } from "./Spread.js"
import { isStaged, removeStaged, stagedOf, startOutput } from "./Segment.js"

/**
 * A job request the user got wrong, or a job that does not exist. `exitCode` 2 (usage), 3
 * (not found, or a key that does not open the input), 4 (I/O), 6 (busy). `reason`
 * `NoSuchJob`: the cluster holds no job of that id (`findJob`).
 */
export class JobError extends Data.TaggedError("JobError")<{ readonly detail: string; readonly exitCode: number; readonly reason?: "NoSuchJob" }> {
  override get message() {
    return this.detail
  }
}

/** Default segment size: 64 MiB of plaintext, one activity each. */
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

/** A file of a job as the user names it: its source and output (`resume`: an AGCM snapshot whose salt to reuse, for tests and the demo). */
export interface FileRequest {
  readonly source: string
  readonly output: string
  readonly resume?: unknown
}

/**
 * Starts encrypting `files` (each `source` into its `output`, published once every segment
 * of the job is done; staged as `output.partial`, 0600, header written here) as one job.
 * `keyFile` is read here to write the headers, and by each runner for its segments: it
 * must be the same path on every machine. Refuses at once (JobError, exit 2), creating
 * nothing, when an output or its `.partial` exists, when two files name one output, or when
 * an output is a file the job reads: one writer per output. Returns the job id and its
 * payload (no secret in it).
 */
export const startEncrypt = (options: {
  readonly files: ReadonlyArray<FileRequest>
  readonly keyFile: string
  readonly chunkSize?: number
  readonly segmentBytes?: number
}) =>
  Effect.gen(function*() {
    const { files, keyFile } = yield* resolveJob(options)
    const key = yield* readKey(keyFile).pipe(Effect.mapError((detail) => new JobError({ detail: `--key ${detail}`, exitCode: 2 })))
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
    const staged = yield* stageAll(files, (f, partial) =>
      startOutput({ source: f.source, size: f.identity.size, output: partial, key: { key }, chunkSize, ...(f.resume === undefined ? {} : { resume: f.resume as never }) }).pipe(
        Effect.map((seal) => ({ staged: seal.staged, headerBytes: seal.headerBytes, snapshot: seal.snapshot as unknown }))
      )).pipe(Effect.ensuring(Effect.sync(() => key.fill(0))))
    const payload: JobPayload = { job: randomUUID(), op: "encrypt", files: staged, keyFile, chunkSize, segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, submittedAt: Date.now() }
    return yield* submitStaged(payload)
  })

/**
 * Creates every file's staged output with `start` (which creates `partial` exclusively), in
 * order; if one fails, the ones created before it are removed and nothing is left.
 */
const stageAll = <E>(
  files: ReadonlyArray<ResolvedFile>,
  start: (f: ResolvedFile, partial: string) => Effect.Effect<{ readonly staged: JobFile["staged"]; readonly headerBytes: number; readonly snapshot: unknown }, E>
) =>
  Effect.gen(function*() {
    const done: Array<JobFile> = []
    for (const f of files) {
      const partial = `${f.output}.partial`
      const r = yield* start(f, partial).pipe(
        Effect.mapError((e) => {
          if (e instanceof JobError) return e
          const exists = (e as { code?: unknown }).code === "EEXIST" || (e as { reason?: unknown }).reason === "AlreadyExists"
          return new JobError({
            detail: exists ? `${f.given}.partial exists: another job writes ${f.given} (or an earlier one was cancelled: remove it)` : `${f.given}: ${(e as Error).message}`,
            exitCode: exists ? 2 : exitCodeOf(e) === 1 ? 4 : exitCodeOf(e)
          })
        }),
        // Failed or interrupted (Ctrl-C): the files staged so far go too.
        Effect.onError(() => Effect.sync(() => {
          for (const d of done) removeStaged(d)
        }))
      )
      done.push({ source: f.source, identity: f.identity, output: partial, ...r })
    }
    return done
  })

/**
 * Starts the job whose outputs are staged: if the cluster does not take it (database down,
 * interrupted), the staged files go, so the same command can simply be run again.
 */
const submitStaged = (staged: JobPayload) =>
  Effect.gen(function*() {
    // The id hashes only the job's uuid: the same with the salts.
    const id = yield* JobWorkflow.executionId(staged)
    return yield* Effect.gen(function*() {
      const salts = yield* spreadSalts(SegmentWorkflow, staged.job, planOf(staged).segments.map((s) => plainBytesOf(staged, s)), LOCK_SECONDS)
      const payload: JobPayload = salts === undefined ? staged : { ...staged, salts }
      yield* JobWorkflow.execute(payload, { discard: true })
      return { id, payload }
    }).pipe(
      // Failed or interrupted after the request may have been stored: the files stay if the job exists.
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : findJob(id).pipe(
          Effect.matchEffect({
            onSuccess: () => Effect.void,
            onFailure: (e) => e.reason === "NoSuchJob" ? Effect.sync(() => {
              for (const f of staged.files) removeStaged(f)
            }) : Effect.void
          }),
          Effect.ignore
        )
      )
    )
  })

/** A file of a job, resolved: absolute paths (every runner gets them), the source's identity; `given` is the output as the user wrote it. */
interface ResolvedFile {
  readonly source: string
  readonly output: string
  readonly given: string
  readonly identity: JobFile["identity"]
  readonly resume?: unknown
}

/** Absolute paths, the output refusals (checked for every file before anything is created), the sources' identities. */
const resolveJob = (options: { readonly files: ReadonlyArray<FileRequest>; readonly keyFile: string }) =>
  Effect.gen(function*() {
    if (options.files.length === 0) return yield* new JobError({ detail: "no file to work on", exitCode: 2 })
    const keyFile = nodePath.resolve(options.keyFile)
    const sources = new Set(options.files.map((f) => nodePath.resolve(f.source)))
    const outputs = new Set<string>()
    const files: Array<ResolvedFile> = []
    for (const f of options.files) {
      const source = nodePath.resolve(f.source)
      const output = nodePath.resolve(f.output)
      if (fs.existsSync(output)) return yield* new JobError({ detail: `${f.output} exists (cluster jobs never replace a file)`, exitCode: 2 })
      if (sources.has(output) || output === keyFile) return yield* new JobError({ detail: `${f.output} is a file this job reads`, exitCode: 2 })
      if (outputs.has(output)) return yield* new JobError({ detail: `${f.output} is the output of two files of this job`, exitCode: 2 })
      outputs.add(output)
      const identity = yield* ChunkInput.statIdentity(source).pipe(Effect.mapError((e) => new JobError({ detail: e.message, exitCode: 4 })))
      files.push({ source, output, given: f.output, identity, ...(f.resume === undefined ? {} : { resume: f.resume }) })
    }
    return { files, keyFile }
  })

/**
 * Starts decrypting the AGCM v2 files `files` (each `source` into its `output`, staged as
 * `output.partial`, 0600, published once every segment of the job authenticated) as one
 * job. Each header is read and authenticated here with `keyFile` (another key: JobError
 * exit 3, nothing created). A chunk that fails authentication fails the job naming it; the
 * staged plaintext is then removed.
 */
export const startDecrypt = (options: {
  readonly files: ReadonlyArray<FileRequest>
  readonly keyFile: string
  readonly segmentBytes?: number
}) =>
  Effect.gen(function*() {
    const { files, keyFile } = yield* resolveJob(options)
    const key = yield* readKey(keyFile).pipe(Effect.mapError((detail) => new JobError({ detail: `--key ${detail}`, exitCode: 2 })))
    let chunkSize = 0
    const staged = yield* stageAll(files, (f, partial) =>
      Effect.gen(function*() {
        const framing = yield* headerOf(f, key, options.keyFile)
        if (chunkSize !== 0 && framing.chunkBytes - 16 !== chunkSize) return yield* new JobError({ detail: `${f.source}: its chunks are ${framing.chunkBytes - 16} bytes, the job's first file's ${chunkSize}: submit them as separate jobs`, exitCode: 2 })
        chunkSize = framing.chunkBytes - 16
        const created = yield* Effect.try({
          try: () => {
            const fd = fs.openSync(partial, "wx", 0o600)
            try {
              return stagedOf(fd)
            } finally {
              fs.closeSync(fd)
            }
          },
          catch: (e) => e
        })
        return { staged: created, headerBytes: framing.headerBytes, snapshot: null }
      })
    ).pipe(Effect.ensuring(Effect.sync(() => key.fill(0))))
    const payload: JobPayload = { job: randomUUID(), op: "decrypt", files: staged, keyFile, chunkSize, segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, submittedAt: Date.now() }
    return yield* submitStaged(payload)
  })

/** Reads and authenticates an AGCM v2 file's header with `key`: its framing (header and sealed chunk bytes). */
const headerOf = (f: ResolvedFile, key: Uint8Array, keyGiven: string) =>
  Effect.gen(function*() {
    const head = yield* Effect.try({
      try: () => {
        const fd = fs.openSync(f.source, "r")
        try {
          const b = Buffer.alloc(Math.min(MAX_HEADER_BYTES, f.identity.size))
          return new Uint8Array(b.buffer, b.byteOffset, fs.readSync(fd, b, 0, b.length, 0))
        } finally {
          fs.closeSync(fd)
        }
      },
      catch: (e) => new JobError({ detail: `${f.source}: ${(e as Error).message}`, exitCode: 4 })
    })
    // agcm-decrypt's own init parses the header and authenticates it with the key.
    const p = agcmDecrypt({ key: new Uint8Array(key), workers: 1 })
    const init = yield* p.init({ input: f.source, inputSize: f.identity.size, chunkBytes: 0, readHeader: (n) => Effect.succeed(head.subarray(0, n)), resume: undefined }).pipe(
      Effect.mapError((e) => new JobError({ detail: `${f.source}: ${(e as Error).message}${(e as { _tag?: string })._tag === "HeaderAuthFailed" ? ` (--key ${keyGiven})` : ""}`, exitCode: 3 })),
      Effect.ensuring(p.close?.() ?? Effect.void)
    )
    const framing = init?.framing
    if (framing === undefined) return yield* new JobError({ detail: `${f.source}: not an AGCM v2 file (cluster jobs do not read legacy v1 streams)`, exitCode: 2 })
    return framing
  })

/** Where a job stands. `done`/`failed` count segments; `result` is set once the job ended. */
export interface JobStatus {
  readonly id: string
  readonly kind: "file" | "backup"
  readonly source: string
  /** The output file, or for a backup the backup directory (several files: up to three, then how many more; see `files`). */
  readonly output: string
  /** A file job: each file's source and output. */
  readonly files?: ReadonlyArray<{ readonly source: string; readonly output: string }>
  /** Bytes the job reads (a file job: plaintext; a backup: the files not unchanged). */
  readonly bytes: number
  readonly segments: number
  readonly done: number
  readonly doneBytes: number
  /** Failed segments: which part of the job each was (`chunks 30..44`, `db/a.sql`), and why. */
  readonly failed: ReadonlyArray<{ readonly segment: number; readonly part: string; readonly error: string }>
  /** Segments that failed, all of them (`failed` lists the first 20). */
  readonly failedCount: number
  /**
   * Segments that stopped, or wrote nothing, because their job had ended or been cancelled
   * (their staged output gone, the store's lock handed back): not failures of their own.
   */
  readonly stoppedCount: number
  /** Segments running now (started on a runner, not ended). */
  readonly running: number
  /** Per runner (its listen address): segments done and their plaintext bytes, segments running, segments failed there (not those stopped). */
  readonly runners: ReadonlyArray<{ readonly runner: string; readonly segments: number; readonly bytes: number; readonly running: number; readonly failed: number }>
  /** Plaintext bytes per second from the job's submit to now, or for an ended job to when its last segment was done (0 before one is). */
  readonly bytesPerSecond: number
  /** Seconds left at that rate, while the job runs (not asked to stop) and the rate is known. */
  readonly etaSeconds: number | undefined
  /**
   * Whether `cancel` asked the job to stop (effect's stored interrupt signal for it). A job
   * asked but not ended yet (no runner has taken the request up) has no `result`.
   */
  readonly cancelRequested: boolean
  /** Once the job ended: its outcome; a failure carries the exit code `cage` uses for it (3 integrity, 4 I/O or a changed source, 2 usage, 130 cancelled). */
  readonly result: { readonly ok: true } | { readonly ok: false; readonly error: string; readonly exitCode: number } | undefined
  /** A file job: the header's public values (salt, key commitment), nothing secret. */
  readonly snapshot: unknown
  /** A finished backup job: the snapshot it wrote. */
  readonly backup?: BackupResult
}

const decodePayload = Schema.decodeUnknownEffect(Schema.fromJsonString(JobPayload))
const decodeBackupPayload = Schema.decodeUnknownEffect(Schema.fromJsonString(BackupPayload))

/** A job as submitted: a file job (encrypt, decrypt) or a backup job, with its payload. */
export type Found =
  | { readonly kind: "file"; readonly payload: JobPayload }
  | { readonly kind: "backup"; readonly payload: BackupPayload }

/** A job's entity type in the cluster's message table, by kind (effect 4.0.6's `ClusterWorkflowEngine` names it `Workflow/TAG`). */
const ENTITY: Record<Found["kind"], string> = { file: `Workflow/${JobWorkflow._tag}`, backup: `Workflow/${BackupJobWorkflow._tag}` }
/** The message id of a job's stored run request. */
const runMessage = (kind: Found["kind"], id: string) => `${ENTITY[kind]}/${id}/run/`
/** Any job's run request, as a WHERE clause (`recent`). */
const ANY_RUN = `(message_id LIKE '${ENTITY.file}/%/run/' OR message_id LIKE '${ENTITY.backup}/%/run/')`
const RUN_ID = new RegExp(`^(?:${ENTITY.file}|${ENTITY.backup})/([0-9a-f]+)/run/$`)

const tablesUnreadable = (e: { readonly message: string }) => new JobError({ detail: `reading the cluster's tables: ${e.message}`, exitCode: 4 })

/** A stored run request decoded: its kind from its message id. JobError (exit 3) when it is not a job this version reads. */
const decodeFound = (id: string, row: { readonly message_id: string; readonly payload: string }) =>
  Effect.gen(function*() {
    const unreadable = () => new JobError({ detail: `job ${id}: its stored request is not a Cage job this version reads`, exitCode: 3 })
    return row.message_id === runMessage("file", id)
      ? { kind: "file", payload: yield* decodePayload(row.payload).pipe(Effect.mapError(unreadable)) } satisfies Found
      : { kind: "backup", payload: yield* decodeBackupPayload(row.payload).pipe(Effect.mapError(unreadable)) } satisfies Found
  })

/**
 * The job `id` as it was submitted, read from the cluster's message table (the run request
 * of `Workflow/cage/job/ID` or `Workflow/cage/backup-job/ID`). Fails with JobError (exit 3)
 * when there is no such job.
 */
export const findJob = (id: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (!/^[0-9a-f]{8,64}$/.test(id)) return yield* new JobError({ detail: `${id} is not a job id (hex, as cage cluster submit printed it)`, exitCode: 2 })
    const rows = yield* sql<{ message_id: string; payload: string }>`SELECT message_id, payload FROM cluster_messages WHERE message_id IN (${runMessage("file", id)}, ${runMessage("backup", id)})`.pipe(
      Effect.mapError(tablesUnreadable)
    )
    if (rows.length === 0) return yield* new JobError({ detail: `no job ${id} in this cluster`, exitCode: 3, reason: "NoSuchJob" })
    return yield* decodeFound(id, rows[0])
  })

/** The payload of the file job `id` (encrypt, decrypt); JobError (exit 3) when there is none. */
export const payloadOf = (id: string) =>
  findJob(id).pipe(Effect.flatMap((f) => f.kind === "file" ? Effect.succeed(f.payload) : Effect.fail(new JobError({ detail: `job ${id} is a backup job`, exitCode: 2 }))))

/**
 * Starts backing up the directory `source` into the chunk store in `dir` (created when
 * absent) across the cluster: takes the store's lock for the job (another writer, or
 * another job, is refused at once: JobError exit 6), lists the tree (files unchanged since
 * the source's newest snapshot are not read, unless `rehash`), and submits the job. `keyFile`
 * is read here to open the store, and by each runner. The snapshot is written once every
 * file is stored; it is an ordinary store generation (`cage backup list|restore|verify`).
 */
export const startBackup = (options: {
  readonly source: string
  readonly dir: string
  readonly keyFile: string
  readonly segmentBytes?: number
  readonly rehash?: boolean
}) =>
  Effect.gen(function*() {
    const source = nodePath.resolve(options.source)
    const dir = nodePath.resolve(options.dir)
    const keyFile = nodePath.resolve(options.keyFile)
    if (!isDirectory(source)) return yield* new JobError({ detail: `${options.source} is not a directory (cluster backups take a directory; for one file use cage cluster submit encrypt, or cage backup create)`, exitCode: 2 })
    const key = yield* readKey(keyFile).pipe(Effect.mapError((detail) => new JobError({ detail: `--key ${detail}`, exitCode: 2 })))
    const store = yield* Store.open({ dir, key: { key } }).pipe(
      Effect.mapError((e) => new JobError({ detail: e._tag === "StoreRefused" && e.reason === "Key" ? `--key ${options.keyFile} does not open the backup store in ${options.dir}: ${e.detail}` : e.message, exitCode: e._tag === "StoreRefused" ? 3 : 4 })),
      Effect.ensuring(Effect.sync(() => key.fill(0)))
    )
    const job = randomUUID()
    const id = yield* backupJobId(job)
    return yield* Effect.gen(function*() {
      // The lock first: no prune or other backup can change the store between the plan and the snapshot.
      yield* Store.lockForJob(dir, id).pipe(Effect.mapError((e) => new JobError({ detail: e.message, exitCode: e._tag === "LockBusy" ? 6 : 4 })))
      const asJobError = (e: { readonly message: string }) => new JobError({ detail: e.message, exitCode: exitCodeOf(e) })
      const plan = yield* Store.planTree(store, source, { rehash: options.rehash === true }).pipe(Effect.mapError(asJobError))
      // After every generation of the source, full copies included (as `cage backup create`).
      const copies = yield* listCopies({ dir, source }).pipe(Effect.mapError(asJobError))
      const stored = (yield* Store.snapshots(store).pipe(Effect.mapError(asJobError))).filter((s) => s.source.path === source)
      const planned: BackupPayload = {
        job,
        dir,
        keyFile,
        plan: { ...plan, previous: plan.previous ?? null },
        firstGeneration: Math.max(0, ...copies.map((g) => g.generation), ...stored.map((s) => s.generation)) + 1,
        segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
        submittedAt: Date.now()
      }
      const salts = yield* spreadSalts(BackupSegmentWorkflow, job, segmentCosts(planned), LOCK_SECONDS)
      const payload: BackupPayload = salts === undefined ? planned : { ...planned, salts }
      yield* BackupJobWorkflow.execute(payload, { discard: true })
      return { id, payload }
    }).pipe(
      // Not submitted (database down, interrupted before the request was stored): the lock
      // goes, so the same command can be run again. A job whose request is stored keeps it.
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : findJob(id).pipe(
          Effect.matchEffect({
            onSuccess: () => Effect.void,
            onFailure: (e) => e.reason === "NoSuchJob" ? Effect.sync(() => Store.releaseJobLock(dir, id)) : Effect.void
          }),
          Effect.ignore
        )
      ),
      Effect.ensuring(Effect.sync(() => Store.close(store)))
    )
  })

/** A job's segments as status reads them: which part of the job each is, and its bytes. */
const segmentsOfJob = (f: Found) =>
  f.kind === "file"
    ? planOf(f.payload).segments.map((s) => ({ part: `${f.payload.files[s.file].source}, chunks ${s.firstChunk}..${s.firstChunk + s.chunks - 1}`, bytes: plainBytesOf(f.payload, s) }))
    : (() => {
      const { files, segments } = segmentsOf(f.payload)
      return segments.map((pieces) => ({
        part: pieces.length === 1 ? files[pieces[0].file].path : `${pieces.length} files from ${files[pieces[0].file].path}`,
        bytes: pieces.reduce((n, x) => n + x.end - x.start, 0)
      }))
    })()

/**
 * Whether the job `id` was asked to stop: effect's workflow engine stores `cancel`'s
 * interrupt as a deferred `Workflow/InterruptSignal` message of the job's entity (effect
 * 4.0.6, `ClusterWorkflowEngine`), whether or not a runner has acted on it yet.
 */
const interruptRequested = (kind: Found["kind"], id: string) =>
  interruptAsked(kind === "file" ? JobWorkflow._tag : BackupJobWorkflow._tag, id).pipe(Effect.mapError(tablesUnreadable))

/**
 * Reads a job's progress: its segments' rows in `cage_segments` (two queries, whatever the
 * job's size; see `Progress`), then the job's own stored result.
 */
export const status = (id: string, found?: Found) =>
  Effect.gen(function*() {
    const f = found ?? (yield* findJob(id))
    const segments = segmentsOfJob(f)
    const progress = yield* Progress.read(id)
    const runners = [...progress.runners].map(([runner, r]) => ({ runner, segments: r.done, bytes: r.bytes, running: r.running, failed: r.failed })).sort((a, b) => a.runner.localeCompare(b.runner))
    const done = runners.reduce((n, r) => n + r.segments, 0)
    const doneBytes = runners.reduce((n, r) => n + r.bytes, 0)
    const failed = progress.failed.map((x) => ({ segment: x.segment, part: segments[x.segment]?.part ?? "?", error: x.error }))
    const job: Option.Option<Workflow.Result<unknown, unknown>> = f.kind === "file" ? yield* retryStorage(JobWorkflow.poll(id)) : yield* retryStorage(BackupJobWorkflow.poll(id))
    const ended = Option.isSome(job) && job.value._tag === "Complete" ? job.value.exit : undefined
    const cancelRequested = yield* interruptRequested(f.kind, id)
    const result: JobStatus["result"] = ended === undefined ? undefined : ended._tag === "Success" ? { ok: true } : { ok: false, error: errorText(ended), exitCode: errorCode(ended) }
    const bytes = segments.reduce((n, s) => n + s.bytes, 0)
    // An ended job's rate is its own, up to its last segment done, not one that falls as time passes.
    const seconds = ((ended === undefined ? Date.now() : progress.lastDone ?? Date.now()) - f.payload.submittedAt) / 1000
    const bytesPerSecond = seconds > 0 ? doneBytes / seconds : 0
    return {
      id,
      kind: f.kind,
      source: f.kind === "file" ? listed(f.payload.files.map((x) => x.source)) : f.payload.plan.source.path,
      output: f.kind === "file" ? listed(f.payload.files.map((x) => finalName(x.output))) : f.payload.dir,
      ...(f.kind === "file" ? { files: f.payload.files.map((x) => ({ source: x.source, output: finalName(x.output) })) } : {}),
      bytes,
      runners,
      running: result === undefined ? runners.reduce((n, r) => n + r.running, 0) : 0,
      bytesPerSecond,
      etaSeconds: result === undefined && !cancelRequested && bytesPerSecond > 0 ? (bytes - doneBytes) / bytesPerSecond : undefined,
      segments: segments.length,
      done,
      doneBytes,
      failed,
      failedCount: [...progress.runners.values()].reduce((n, r) => n + r.failed, 0),
      stoppedCount: [...progress.runners.values()].reduce((n, r) => n + r.stopped, 0),
      cancelRequested,
      result,
      snapshot: f.kind === "file" ? (f.payload.files.length === 1 ? f.payload.files[0].snapshot : f.payload.files.map((x) => x.snapshot)) : null,
      ...(f.kind === "backup" && ended?._tag === "Success" ? { backup: ended.value as BackupResult } : {})
    } satisfies JobStatus
  })

/**
 * The cluster's most recent jobs, newest first (by when their request was stored): the
 * status of at most `limit` of them (default 20), how many jobs the cluster holds in all,
 * and among those `limit` the ones whose stored request this version cannot read (another
 * Cage version's, or damaged), with why: they are left out of `jobs`, not a reason to fail
 * the list. Two queries on `cluster_messages` (the jobs' stored requests, with their
 * payloads), then each job's {@link status}. Fails with JobError (exit 4) when the tables
 * cannot be read.
 */
export const recent = (limit = 20) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ message_id: string; payload: string }>`SELECT message_id, payload FROM cluster_messages WHERE ${sql.literal(ANY_RUN)} ORDER BY rowid DESC LIMIT ${limit}`.pipe(
      Effect.mapError(tablesUnreadable)
    )
    const [{ n }] = yield* sql<{ n: string | number }>`SELECT count(*) AS n FROM cluster_messages WHERE ${sql.literal(ANY_RUN)}`.pipe(Effect.mapError(tablesUnreadable))
    const jobs: Array<JobStatus> = []
    const unreadable: Array<{ readonly id: string; readonly detail: string }> = []
    for (const row of rows) {
      const id = RUN_ID.exec(row.message_id)?.[1]
      if (id === undefined) continue
      const found = yield* Effect.result(decodeFound(id, row))
      if (found._tag === "Failure") unreadable.push({ id, detail: found.failure.detail })
      else jobs.push(yield* status(id, found.success))
    }
    return { jobs, unreadable, total: Number(n) }
  })

/**
 * How many runners are up now: healthy in the cluster's runner table, with a heartbeat
 * within the runners' lock time ({@link LOCK_SECONDS}). Undefined when the table cannot be
 * read. A job submitted with none waits, stored, until one starts.
 */
export const runnersUp = () =>
  shardOwners({ lockSeconds: LOCK_SECONDS }).pipe(
    Effect.map((owners) => owners?.runners.length ?? 0),
    Effect.orElseSucceed(() => undefined)
  )

/** Paths for a line of text: up to three, then how many more. */
const listed = (paths: ReadonlyArray<string>) => paths.length <= 3 ? paths.join(", ") : `${paths.slice(0, 3).join(", ")} and ${paths.length - 3} more`

const errorText = (exit: { readonly _tag: "Failure"; readonly cause: unknown } | { readonly _tag: string; readonly cause?: unknown }): string => {
  const cause = exit.cause as { reasons?: ReadonlyArray<{ _tag: string; error?: unknown; defect?: unknown }> } | undefined
  const first = cause?.reasons?.[0]
  if (first === undefined) return "interrupted"
  if (first._tag === "Fail") return typeof first.error === "object" && first.error !== null && "message" in first.error ? String((first.error as { message: unknown }).message) : String(first.error)
  if (first._tag === "Interrupt") return "cancelled"
  return `internal error: ${String((first.defect as Error | undefined)?.message ?? first.defect)}`
}

/** The exit code of a failed workflow: its failure's own, 130 when cancelled, else 1. */
const errorCode = (exit: { readonly _tag: string; readonly cause?: unknown }): number => {
  const first = (exit.cause as { reasons?: ReadonlyArray<{ _tag: string; error?: unknown }> } | undefined)?.reasons?.[0]
  if (first?._tag === "Interrupt") return 130
  const code = (first?.error as { exitCode?: unknown } | undefined)?.exitCode
  return typeof code === "number" ? code : 1
}

/**
 * Cancels a job: interrupts the job and each of its segments (segments run detached, so
 * each is interrupted itself), then hands back what it holds: a file job's staged outputs
 * are removed (nothing is published), a backup job's store lock is released (no generation;
 * what its segments stored stays staged, unseen, until `cage backup prune`). While some
 * segment is not done this happens at once (the last step cannot be running); once all are
 * done, the job is waited for (up to 60 s): `outcome` `"finished"` if its publish or commit
 * ended first (the outputs or the generation are written), `"pending"` if it has not stopped
 * (its shard moving after a runner died): `cancel` run again later hands back what it holds
 * (`"released"`). A segment a runner is working on at that moment may still finish: into
 * the removed file, or into packs no snapshot uses. Refuses (JobError exit 2) a job that
 * already ended.
 */
export const cancel = (id: string) =>
  Effect.gen(function*() {
    const f = yield* findJob(id)
    const ended: Option.Option<Workflow.Result<unknown, unknown>> = f.kind === "file" ? yield* JobWorkflow.poll(id) : yield* BackupJobWorkflow.poll(id)
    const what = f.kind === "file" ? `published ${listed(f.payload.files.map((x) => finalName(x.output)))}` : `wrote its snapshot to ${f.payload.dir}`
    // A job cancelled while it could not stop yet (`"pending"`), ended since: what it held goes now.
    if (Option.isSome(ended) && ended.value._tag === "Complete" && ended.value.exit._tag === "Failure") {
      if (f.kind === "backup" && Store.heldBy(f.payload.dir) === id) {
        yield* Effect.sync(() => Store.releaseJobLock(f.payload.dir, id))
        return { kind: f.kind, removed: undefined, outcome: "released" as const }
      }
      const left = f.kind === "file" ? f.payload.files.filter((x) => isStaged(x.output, x.staged)) : []
      if (left.length > 0) {
        yield* Effect.sync(() => {
          for (const x of left) removeStaged(x)
        })
        return { kind: f.kind, removed: listed(left.map((x) => x.output)), outcome: "released" as const }
      }
    }
    if (Option.isSome(ended) && ended.value._tag === "Complete") {
      const how = ended.value.exit._tag === "Success" ? `finished and ${what}` : `ended (${errorText(ended.value.exit)})`
      return yield* new JobError({ detail: `job ${id} already ${how}: nothing to cancel`, exitCode: 2 })
    }
    if (f.kind === "file") {
      yield* JobWorkflow.interrupt(id)
      for (const [index] of planOf(f.payload).segments.entries()) yield* SegmentWorkflow.interrupt(yield* segmentId(f.payload.job, index, saltOf(f.payload.salts, index)))
    } else {
      yield* BackupJobWorkflow.interrupt(id)
      for (const [index] of segmentsOf(f.payload).segments.entries()) yield* BackupSegmentWorkflow.interrupt(yield* backupSegmentId(f.payload.job, index, saltOf(f.payload.salts, index)))
    }
    // The job's last step (publish; a backup's commit) starts only once every segment is
    // done, and is uninterruptible. While a segment is not done (its row says so before the
    // job can see its result) that step cannot be running: what the job holds goes at once.
    // Otherwise the job is waited for, so a publish or commit in progress ends first.
    const progress = yield* Progress.read(id)
    const done = [...progress.runners.values()].reduce((n, r) => n + r.done, 0)
    if (done >= segmentsOfJob(f).length) {
      let stopped = false
      for (let waited = 0; waited < cancelWaitMs && !stopped; waited += 250) {
        const now: Option.Option<Workflow.Result<unknown, unknown>> = f.kind === "file" ? yield* retryStorage(JobWorkflow.poll(id)) : yield* retryStorage(BackupJobWorkflow.poll(id))
        if (Option.isSome(now) && now.value._tag === "Complete") {
          if (now.value.exit._tag === "Success") return { kind: f.kind, removed: undefined, outcome: "finished" as const }
          stopped = true
        } else yield* Effect.sleep(250)
      }
      if (!stopped) return { kind: f.kind, removed: undefined, outcome: "pending" as const }
    }
    if (f.kind === "file") {
      // Segments not started yet see the job ended and write nothing; any still writing write
      // into this job's staged files only (checked on their descriptor), which go now.
      yield* Effect.sync(() => {
        for (const x of f.payload.files) removeStaged(x)
      })
      return { kind: f.kind, removed: listed(f.payload.files.map((x) => x.output)), outcome: "cancelled" as const }
    }
    yield* Effect.sync(() => Store.releaseJobLock(f.payload.dir, id))
    return { kind: f.kind, removed: undefined, outcome: "cancelled" as const }
  })

/** How long `cancel` waits for a job whose segments are all done to stop (ms); past it, what the job holds stays until `cancel` runs again. */
const cancelWaitMs = 60_000
