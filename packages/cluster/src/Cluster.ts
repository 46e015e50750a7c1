/**
 * The cluster side of a distributed AGCM encryption (issue 16, first cut): a job workflow
 * that plans the file into segments and runs each as its own child workflow (so segments
 * spread over runners: a workflow's activities all run on the runner owning its shard), and
 * a segment workflow whose one activity seals the segment in place ({@link encryptSegment}).
 *
 * Payloads are plain JSON in PostgreSQL: paths, sizes, the source's identity, the header's
 * non-secret snapshot (salt, key commitment), never a key. Each runner reads the key file
 * named in the payload itself.
 *
 * @module
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { ChunkOutput, exitCodeOf } from "@cage/core"
import { PgClient } from "@effect/sql-pg"
import { Cause, Effect, Layer, Option, Schema, Semaphore } from "effect"
import { ClusterWorkflowEngine, RunnerAddress } from "effect/cluster"
import { Activity, Workflow } from "effect/workflow"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Backup from "./Backup.js"
import { awaitSegments, fail, JobFailure, readKey, retryIo, retryStorage, type RunnerOptions } from "./Shared.js"
import { segmentActivity, slotsOf } from "./SegmentActivity.js"

export { awaitSegments, JobFailure, readKey, retryStorage, type RunnerOptions } from "./Shared.js"
import * as Plan from "./Plan.js"
import * as Progress from "./Progress.js"
import { coresShare, saltOf, segmentKey, shardOwners } from "./Spread.js"
import { decryptSegment, encryptSegment, failureText, isStaged, outputGone, removeStaged, type SegmentCpu, sourceUnchanged, syncFile } from "./Segment.js"

const Identity = Schema.Struct({ path: Schema.String, size: Schema.Number, mtimeNs: Schema.String, ctimeNs: Schema.String, ino: Schema.String, dev: Schema.String })

/** One file of a job: its source, the staged output, and (encrypt) the header's public values. */
export const JobFile = Schema.Struct({
  source: Schema.String,
  identity: Identity,
  /** `OUT.partial`, published as `OUT`. */
  output: Schema.String,
  /** The staged file `output` as the job created it (inode, birth time): see `Segment.StagedFile`. */
  staged: Schema.Struct({ ino: Schema.String, birthtimeNs: Schema.String }),
  /** Encrypt: the header the job wrote; decrypt: the source's header. */
  headerBytes: Schema.Number,
  /** Encrypt: the header's public values (salt, key commitment) every runner seals with; decrypt: null. */
  snapshot: Schema.Unknown
})
export type JobFile = typeof JobFile.Type

/** What a job carries: everything a runner needs to seal any of its segments, and no secret. */
export const JobPayload = Schema.Struct({
  job: Schema.String,
  /** `encrypt`: plaintext → AGCM v2 (the job wrote the headers); `decrypt`: AGCM v2 → plaintext. */
  op: Schema.Literals(["encrypt", "decrypt"]),
  files: Schema.Array(JobFile),
  keyFile: Schema.String,
  chunkSize: Schema.Number,
  segmentBytes: Schema.Number,
  /** When the job was submitted (ms since the epoch, the client's clock): status's throughput and ETA. */
  submittedAt: Schema.Number,
  /**
   * Each segment's salt, one base-36 digit per segment in order, chosen at submit to spread
   * the segments evenly over the runners (see `Spread.ts`); absent: every salt is 0.
   */
  salts: Schema.optional(Schema.String)
})
export type JobPayload = typeof JobPayload.Type

const SegmentSchema = Schema.Struct({
  file: Schema.Number,
  index: Schema.Number,
  firstChunk: Schema.Number,
  chunks: Schema.Number,
  plainStart: Schema.Number,
  plainEnd: Schema.Number,
  outStart: Schema.Number,
  outEnd: Schema.Number,
  final: Schema.Boolean
})

/** One segment's request: its own file and chunk range only (a job of 1,000 files does not repeat them in every segment). */
const SegmentPayload = Schema.Struct({
  job: Schema.String,
  /** The job's execution id: a segment of a job that has ended does nothing. */
  jobId: Schema.String,
  index: Schema.Number,
  /** The segment's salt (part of its idempotency key, so of the runner it lands on); absent: 0. */
  salt: Schema.optional(Schema.Number),
  op: JobPayload.fields.op,
  file: JobFile,
  keyFile: Schema.String,
  chunkSize: Schema.Number,
  segment: SegmentSchema
})

/** A job's segments, rebuilt from its payload (the same on every runner), file by file. */
export const planOf = (p: JobPayload) =>
  p.op === "encrypt"
    // Every file's header has the same length (one key, one format): checked at submit.
    ? Plan.planJob(p.files.map((f) => ({ path: f.source, size: f.identity.size })), { headerBytes: p.files[0]?.headerBytes ?? 0, chunkBytes: p.chunkSize, overheadBytes: 16, shortFinal: true }, p.segmentBytes)
    // Decrypt: segments of each source's chunk region, in ciphertext chunks (chunk + tag).
    : Plan.planJob(p.files.map((f) => ({ path: f.source, size: f.identity.size - f.headerBytes })), { headerBytes: 0, chunkBytes: p.chunkSize + 16, overheadBytes: 0, shortFinal: true }, p.segmentBytes)

/** Plaintext bytes of a segment (the unit of progress for both directions). */
export const plainBytesOf = (p: { readonly op: JobPayload["op"] }, s: Plan.Segment) =>
  p.op === "encrypt" ? s.plainEnd - s.plainStart : s.plainEnd - s.plainStart - 16 * s.chunks

/** What a segment reports: its plaintext bytes and the runner that did it. */
export const SegmentResult = Schema.Struct({ bytes: Schema.Number, runner: Schema.String })

/** One segment: sealed by one activity, on whichever runner owns the segment's shard. */
export const SegmentWorkflow = Workflow.make("cage/segment", {
  payload: SegmentPayload,
  success: SegmentResult,
  error: JobFailure,
  idempotencyKey: (p) => segmentKey(p.job, p.index, p.salt ?? 0)
})

/** The execution id of segment `index` (with `salt`) of the job with uuid `job` (the id hashes only the workflow's name and its key; `executionId` validates a whole payload, so the rest is a stand-in). */
export const segmentId = (job: string, index: number, salt: number) =>
  SegmentWorkflow.executionId({
    job,
    jobId: "",
    index,
    salt,
    op: "encrypt",
    file: { source: "", identity: { path: "", size: 0, mtimeNs: "0", ctimeNs: "0", ino: "0", dev: "0" }, output: "", staged: { ino: "0", birthtimeNs: "0" }, headerBytes: 0, snapshot: null },
    keyFile: "",
    chunkSize: 0,
    segment: { file: 0, index: 0, firstChunk: 0, chunks: 0, plainStart: 0, plainEnd: 0, outStart: 0, outEnd: 0, final: true }
  })

/** A job: its segments, each a child workflow, all at once, then the output published; succeeds with the segment count. */
export const JobWorkflow = Workflow.make("cage/job", {
  payload: JobPayload,
  success: Schema.Number,
  error: JobFailure,
  idempotencyKey: (p) => p.job
})


const segmentLayer = (options: RunnerOptions) => {
  // Each running segment holds a cipher and its buffers.
  const slots = slotsOf(options)
  // One segment at a time reads and seals (on every core: Segment.ts cuts it into pieces);
  // the others of the runner's slots wait for the disk (their fdatasync) meanwhile.
  const cpu = Semaphore.makeUnsafe(1).withPermits(1)
  return SegmentWorkflow.toLayer((p) => {
    const { segment, file: f } = p
    return segmentActivity({
      name: "seal",
      success: SegmentResult,
      runner: options,
      slots,
      jobId: p.jobId,
      index: p.index,
      bytes: plainBytesOf(p, segment),
      where: `segment ${p.index} (${f.source}, chunks ${segment.firstChunk}..${segment.firstChunk + segment.chunks - 1})`,
      jobResult: JobWorkflow.poll(p.jobId),
      jobTag: JobWorkflow._tag,
      work: (where) => sealSegment(p, options, where, cpu)
    })
  })
}

/**
 * The threads a segment runs on: the runner's `workers` when given, else its host's share
 * of the machine's cores ({@link coresShare} over the healthy runners, looked up for each
 * segment: runners come and go); undefined (every core) without a listen address, or when
 * the runners cannot be read.
 */
export const segmentWorkers = (options: RunnerOptions) => {
  const { listen } = options
  if (options.workers !== undefined || listen === undefined) return Effect.succeed<number | undefined>(options.workers)
  return shardOwners({ lockSeconds: LOCK_SECONDS }).pipe(
    Effect.map((owners): number | undefined => coresShare(os.availableParallelism(), owners?.runners ?? [], listen)),
    // A failed read or an undecodable row (a defect): every core, as before.
    Effect.exit,
    Effect.map((exit) => (exit._tag === "Success" ? exit.value : undefined))
  )
}

/** One segment's work: sealed (or opened) in place; `where` names it in failures. */
const sealSegment = (p: typeof SegmentPayload.Type, options: RunnerOptions, where: string, cpu: SegmentCpu) =>
  Effect.gen(function*() {
    const { segment, file: f } = p
    const workers = yield* segmentWorkers(options)
    const key = yield* readKey(p.keyFile).pipe(Effect.mapError((e): JobFailure => ({ message: `${where}: ${e}`, exitCode: 2 })))
    const work = p.op === "encrypt"
      ? encryptSegment({ source: f.source, identity: f.identity, output: f.output, key: { key }, seal: { snapshot: f.snapshot as never, chunkSize: p.chunkSize, headerBytes: f.headerBytes }, segment, staged: f.staged, cpu, workers })
      : decryptSegment({ source: f.source, identity: f.identity, output: f.output, key: { key }, headerBytes: f.headerBytes, segment, staged: f.staged, cpu, workers })
    yield* retryIo(work as Effect.Effect<void, unknown>).pipe(
      Effect.mapError((e): JobFailure => ({ message: `${where}: ${failureText(e, f.output)}`, exitCode: exitCodeOf(e), ...(outputGone(e, f.output) ? { stopped: true } : {}) })),
      Effect.ensuring(Effect.sync(() => key.fill(0)))
    )
    return { bytes: plainBytesOf(p, segment), runner: options.name ?? "?" }
  })

/**
 * Publishes a job's outputs once every segment is done, all or none as far as a check can
 * tell, and uninterruptibly (a cancel waits for it): first every source must still be the
 * file the job planned, every final name free (or already this job's, after a crash), every
 * `OUT.partial` the file this job staged, and each is fsynced; only then is each linked to
 * its final name (never over an existing file), its partial name removed, and each directory
 * fsynced. Idempotent: run again after a crash, it finds the outputs already published.
 */
const publish = (p: JobPayload) =>
  Activity.make({
    name: "publish",
    success: Schema.Array(Schema.String),
    error: JobFailure,
    execute: Effect.uninterruptible(Effect.gen(function*() {
      for (const f of p.files) {
        if (finalName(f.output) === f.output) return yield* fail(`the job's output ${f.output} must be named OUT.partial (it is published as OUT)`, 2)
        yield* sourceUnchanged(f.source, f.identity).pipe(
          Effect.mapError((e): JobFailure => ({ message: e._tag === "InputChanged" ? `${f.source} changed while the job ran (${e.detail}): nothing published` : e.message, exitCode: 4 }))
        )
      }
      const pending = yield* Effect.forEach(p.files, prepareFile)
      return yield* Effect.forEach(p.files, (f, i) => pending[i] ? linkFile(f) : Effect.succeed(finalName(f.output)))
    }))
  })

/** Phase one of {@link publish} for one file: false when it is already published; else checked and fsynced (true). */
const prepareFile = (f: JobFile) => {
  const final = finalName(f.output)
  const failure = (e: unknown): JobFailure => ({ message: `publish ${final}: ${(e as Error).message}`, exitCode: 4 })
  return Effect.gen(function*() {
    const pending = yield* Effect.try({
      try: () => {
        // Run again after a crash: already published (the partial name gone), or crashed
        // between link and unlink (both names, one file).
        if (!fs.existsSync(f.output) && isStaged(final, f.staged)) return false
        if (fs.existsSync(final) && !isStaged(final, f.staged)) throw new Error(`${final} exists: it is not this job's output, and is left as it is; nothing published`)
        if (!isStaged(f.output, f.staged)) throw new Error(`${f.output} is not the file this job staged (replaced, or removed by a cancel): nothing published`)
        return true
      },
      catch: failure
    })
    if (pending) yield* syncFile(f.output).pipe(Effect.mapError(failure))
    return pending
  })
}

/** Phase two of {@link publish} for one file: linked to its final name, the partial name removed, the directory fsynced. */
const linkFile = (f: JobFile) => {
  const final = finalName(f.output)
  return Effect.try({
    try: () => {
      if (!fs.existsSync(final)) fs.linkSync(f.output, final)
      fs.unlinkSync(f.output)
    },
    catch: (e): JobFailure => ({ message: `publish ${final}: ${(e as Error).message}`, exitCode: 4 })
  }).pipe(Effect.andThen(ChunkOutput.syncDirectory(nodePath.dirname(final))), Effect.as(final))
}

/** The final name of a job output staged as `OUT.partial`. */
export const finalName = (output: string) => output.replace(/\.partial$/, "")


const jobLayer = JobWorkflow.toLayer((p, jobId) =>
  Effect.gen(function*() {
    const segments = planOf(p).segments
    const ids = yield* Effect.forEach(segments, (segment, index) =>
      retryStorage(SegmentWorkflow.execute({ job: p.job, jobId, index, salt: saltOf(p.salts, index), op: p.op, file: p.files[segment.file], keyFile: p.keyFile, chunkSize: p.chunkSize, segment }, { discard: true, detached: true })), { concurrency: 16 })
    yield* awaitSegments(ids, (id) => SegmentWorkflow.poll(id))
    yield* publish(p)
    return segments.length
  }).pipe(
    // A job that failed cannot be resumed: its staged output goes (for a decrypt, plaintext),
    // whatever the failure (a defect too); a cancelled job's goes with `Job.cancel`.
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : discard(p))
  )
)


/** Removes a failed job's staged outputs (`OUT.partial`). */
const discard = (p: JobPayload) =>
  Activity.make({
    name: "discard",
    success: Schema.Void,
    error: JobFailure,
    execute: Effect.sync(() => {
      for (const f of p.files) removeStaged(f)
    })
  })

/** The workflows every process registers (runners execute them; clients only submit). */
const workflows = (options: RunnerOptions = {}) => Layer.mergeAll(jobLayer, segmentLayer(options), Backup.backupJobLayer, Backup.backupSegmentLayer(options), Layer.effectDiscard(Progress.ensureTable))

/** How long a dead runner's shard locks (and its place among the runners) last, in seconds. */
export const LOCK_SECONDS = 5

/**
 * Settings every process shares. Locks: a dead runner's shards move after about 5 s.
 * `entityMessagePollInterval`: how often a runner looks in storage for messages nobody told
 * it about. With the default 10 s, 5 of 42 1 GiB jobs here started 4 to 9 s late (one job's
 * first segment was done at 6.7 s against 0.4 s); with 500 ms, none of the next 49. Likely
 * (effect 4.0.6's Sharding.ts, not traced): a client that submits before it knows the job
 * shard's owner only stores the message, and the owner finds it at its next poll. A poll
 * is one indexed query per runner.
 */
const sharding = { shardLockRefreshInterval: "1 second", shardLockExpiration: `${LOCK_SECONDS} seconds`, entityMessagePollInterval: "500 millis" } as const

/** PostgreSQL at `db` (`{ host, port, username, database }`). */
const pg = (db: { readonly host: string; readonly port: number; readonly username: string; readonly database: string }) => PgClient.layer(db)

/** A runner listening on `listen` (host, port), storing shards, messages and runners in PostgreSQL. */
export const runnerLayer = (listen: { readonly host: string; readonly port: number }, db: Parameters<typeof pg>[0], options: RunnerOptions = {}) =>
  workflows({ name: `${listen.host}:${listen.port}`, ...options, listen: `${listen.host}:${listen.port}` }).pipe(
    Layer.provideMerge(ClusterWorkflowEngine.layer),
    Layer.provideMerge(NodeClusterSocket.layer({ storage: "sql", shardingConfig: { runnerAddress: Option.some(RunnerAddress.make(listen.host, listen.port)), ...sharding } })),
    Layer.provide(pg(db))
  )

/** A client: submits jobs and waits for them; runs no segment itself. */
export const clientLayer = (db: Parameters<typeof pg>[0]) =>
  workflows().pipe(
    Layer.provideMerge(ClusterWorkflowEngine.layer),
    Layer.provideMerge(NodeClusterSocket.layer({ storage: "sql", clientOnly: true, shardingConfig: sharding })),
    // Kept in the output: status reads a job's request from the cluster's tables.
    Layer.provideMerge(pg(db))
  )

/**
 * Starts `payload`'s job (or joins it: the job id is its idempotency key) and returns its
 * execution id at once, for {@link waitFor} or a later status query.
 */
export const submit = (payload: JobPayload) => JobWorkflow.execute(payload, { discard: true })

/**
 * Waits for a job by polling its durable result every `intervalMs` (default 500): each poll
 * is a fresh request to whichever runner owns the job now, so a runner that dies while
 * the job runs cannot strand the wait. Succeeds with the segment count, fails with the
 * job's error.
 */
export const waitFor = (executionId: string, intervalMs = 500) =>
  Effect.gen(function*() {
    for (;;) {
      const result = yield* JobWorkflow.poll(executionId)
      if (Option.isSome(result) && result.value._tag === "Complete") return yield* result.value.exit
      yield* Effect.sleep(intervalMs)
    }
  })
