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
import { parseKeyText } from "@cage/agcm"
import { NodeClusterSocket } from "@effect/platform-node"
import { exitCodeOf } from "@cage/core"
import { PgClient } from "@effect/sql-pg"
import { Cause, Effect, Layer, Option, Schema, Semaphore } from "effect"
import { ClusterWorkflowEngine, RunnerAddress } from "effect/cluster"
import { Activity, Workflow } from "effect/workflow"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Plan from "./Plan.js"
import { decryptSegment, encryptSegment, isStaged, removeStaged, sourceUnchanged } from "./Segment.js"

const Identity = Schema.Struct({ path: Schema.String, size: Schema.Number, mtimeNs: Schema.String, ctimeNs: Schema.String, ino: Schema.String, dev: Schema.String })

/** What a job carries: everything a runner needs to seal any of its segments, and no secret. */
export const JobPayload = Schema.Struct({
  job: Schema.String,
  /** `encrypt`: plaintext → AGCM v2 (the job wrote the header); `decrypt`: AGCM v2 → plaintext (`headerBytes` is the source's header). */
  op: Schema.Literals(["encrypt", "decrypt"]),
  source: Schema.String,
  identity: Identity,
  output: Schema.String,
  /** The staged file `output` as the job created it (inode, birth time): see `Segment.StagedFile`. */
  staged: Schema.Struct({ ino: Schema.String, birthtimeNs: Schema.String }),
  keyFile: Schema.String,
  chunkSize: Schema.Number,
  headerBytes: Schema.Number,
  snapshot: Schema.Unknown,
  segmentBytes: Schema.Number,
  /** When the job was submitted (ms since the epoch, the client's clock): status's throughput and ETA. */
  submittedAt: Schema.Number
})
export type JobPayload = typeof JobPayload.Type

const SegmentPayload = Schema.Struct({ ...JobPayload.fields, index: Schema.Number })

/** Reads a Cage key file (as `cage keygen` writes it). The key never leaves this runner; the caller zeroes it. Fails with a message naming the file. */
export const readKey = (path: string) =>
  Effect.try({
    try: () => {
      const key = parseKeyText(fs.readFileSync(path, "utf8"))
      if (key === undefined) throw new Error(`${path}: not a key file`)
      return key
    },
    catch: (e) => (e as Error).message
  })

/** A job's segments, rebuilt from its payload (the same on every runner). */
export const planOf = (p: JobPayload) =>
  p.op === "encrypt"
    ? Plan.planJob([{ path: p.source, size: p.identity.size }], { headerBytes: p.headerBytes, chunkBytes: p.chunkSize, overheadBytes: 16, shortFinal: true }, p.segmentBytes)
    // Decrypt: segments of the source's chunk region, in ciphertext chunks (chunk + tag).
    : Plan.planJob([{ path: p.source, size: p.identity.size - p.headerBytes }], { headerBytes: 0, chunkBytes: p.chunkSize + 16, overheadBytes: 0, shortFinal: true }, p.segmentBytes)

/** Plaintext bytes of a segment (the unit of progress for both directions). */
export const plainBytesOf = (p: JobPayload, s: Plan.Segment) =>
  p.op === "encrypt" ? s.plainEnd - s.plainStart : s.plainEnd - s.plainStart - 16 * s.chunks

/**
 * Why a segment or a job failed: a message in the user's terms (segment, chunk range,
 * runner, file) and the exit code `cage` uses for that kind of failure (3 integrity, 4 I/O
 * or a changed source, 2 usage).
 */
export const JobFailure = Schema.Struct({ message: Schema.String, exitCode: Schema.Number })
export type JobFailure = typeof JobFailure.Type
const fail = (message: string, exitCode = 1) => Effect.fail<JobFailure>({ message, exitCode })

/** What a segment reports: its plaintext bytes and the runner that did it. */
export const SegmentResult = Schema.Struct({ bytes: Schema.Number, runner: Schema.String })

/** One segment: sealed by one activity, on whichever runner owns the segment's shard. */
export const SegmentWorkflow = Workflow.make("cage/segment", {
  payload: SegmentPayload,
  success: SegmentResult,
  error: JobFailure,
  idempotencyKey: (p) => `${p.job}/${p.index}`
})

/** A job: its segments, each a child workflow, all at once, then the output published; succeeds with the segment count. */
export const JobWorkflow = Workflow.make("cage/job", {
  payload: JobPayload,
  success: Schema.Number,
  error: JobFailure,
  idempotencyKey: (p) => p.job
})

/**
 * Runner options. `name`: how failures name this runner (its listen address by default).
 * `segmentDelayMs`: a pause before each segment, for tests that must kill a runner while
 * segments run.
 */
export interface RunnerOptions {
  readonly name?: string
  /** Segments this runner seals or opens at once (default: its cores); the others wait, costing no buffers. */
  readonly maxSegments?: number
  readonly segmentDelayMs?: number
}

const segmentLayer = (options: RunnerOptions) => {
  // Bounded memory whatever the job's size: each running segment holds a cipher and its
  // buffers; a runner owning 1,000 segments' shards runs `maxSegments` of them at a time.
  const slots = Semaphore.makeUnsafe(Math.max(1, options.maxSegments ?? os.availableParallelism()))
  return SegmentWorkflow.toLayer((p) =>
    Activity.make({
      name: "seal",
      success: SegmentResult,
      error: JobFailure,
      execute: Effect.gen(function*() {
        if (options.segmentDelayMs !== undefined) yield* Effect.sleep(options.segmentDelayMs)
        const segment = planOf(p).segments[p.index]
        const where = `segment ${p.index} (chunks ${segment.firstChunk}..${segment.firstChunk + segment.chunks - 1}) on runner ${options.name ?? "?"}`
        // A segment left over from a job that already ended (failed, cancelled) does nothing.
        const { index: _, ...job } = p
        const ended = yield* JobWorkflow.poll(yield* JobWorkflow.executionId(job))
        if (Option.isSome(ended) && ended.value._tag === "Complete") return yield* fail(`${where}: the job has ended; this segment writes nothing`)
        const key = yield* readKey(p.keyFile).pipe(Effect.mapError((e): JobFailure => ({ message: `${where}: ${e}`, exitCode: 2 })))
        const work = p.op === "encrypt"
          ? encryptSegment({ source: p.source, identity: p.identity, output: p.output, key: { key }, seal: { snapshot: p.snapshot as never, chunkSize: p.chunkSize, headerBytes: p.headerBytes }, segment, staged: p.staged })
          : decryptSegment({ source: p.source, identity: p.identity, output: p.output, key: { key }, headerBytes: p.headerBytes, segment, staged: p.staged })
        yield* (work as Effect.Effect<void, unknown>).pipe(
          Effect.mapError((e): JobFailure => ({ message: `${where}: ${(e as { message?: string }).message ?? String(e)}`, exitCode: exitCodeOf(e) })),
          Effect.ensuring(Effect.sync(() => key.fill(0)))
        )
        return { bytes: plainBytesOf(p, segment), runner: options.name ?? "?" }
      }).pipe(Semaphore.withPermits(slots, 1))
    })
  )
}

/**
 * Publishes a job's output once every segment is done: the source must still be the file
 * the job planned, then `OUT.partial` is fsynced and linked to its final name (never over
 * an existing file), the partial name removed and the directory fsynced. Idempotent: run
 * again after a crash, it finds the output already published.
 */
const publish = (p: JobPayload) =>
  Activity.make({
    name: "publish",
    success: Schema.String,
    error: JobFailure,
    execute: Effect.gen(function*() {
      const final = finalName(p.output)
      if (final === p.output) return yield* fail(`the job's output ${p.output} must be named OUT.partial (it is published as OUT)`, 2)
      yield* sourceUnchanged(p.source, p.identity).pipe(
        Effect.mapError((e): JobFailure => ({ message: e._tag === "InputChanged" ? `${p.source} changed while the job ran (${e.detail}): nothing published` : e.message, exitCode: 4 }))
      )
      return yield* Effect.try({
        try: () => {
          // Run again after a crash: already published (the partial name gone), or crashed
          // between link and unlink (both names, one file).
          if (!fs.existsSync(p.output) && isStaged(final, p.staged)) return final
          if (fs.existsSync(final)) {
            if (!isStaged(final, p.staged)) throw new Error(`${final} exists: it is not this job's output, and is left as it is`)
            fs.unlinkSync(p.output)
            return final
          }
          if (!isStaged(p.output, p.staged)) throw new Error(`${p.output} is not the file this job staged (replaced, or removed by a cancel): nothing published`)
          const fd = fs.openSync(p.output, "r")
          try {
            fs.fsyncSync(fd)
          } finally {
            fs.closeSync(fd)
          }
          fs.linkSync(p.output, final)
          fs.unlinkSync(p.output)
          const d = fs.openSync(nodePath.dirname(final), "r")
          try {
            fs.fsyncSync(d)
          } finally {
            fs.closeSync(d)
          }
          return final
        },
        catch: (e): JobFailure => ({ message: `publish ${final}: ${(e as Error).message}`, exitCode: 4 })
      })
    })
  })

/** The final name of a job output staged as `OUT.partial`. */
export const finalName = (output: string) => output.replace(/\.partial$/, "")

/**
 * How often a job looks at its segments' results (ms). The job starts every segment as a
 * detached child workflow and then polls their stored results instead of awaiting them:
 * a job waiting on children could not be interrupted when its shard moved to another
 * runner (effect 4.0.6), so the old owner never released the shard and the job stalled.
 */
const pollIntervalMs = 500
/** Segment results read per poll (one storage read each). */
const pollBatch = 64

const jobLayer = JobWorkflow.toLayer((p) =>
  Effect.gen(function*() {
    const segments = planOf(p).segments
    const ids = yield* Effect.forEach(segments, (_, index) => retryStorage(SegmentWorkflow.execute({ ...p, index }, { discard: true, detached: true })), { concurrency: 16 })
    // Pending segments in plan order; each poll reads the first `pollBatch` of them.
    let pending = ids.map((id, index) => ({ id, index }))
    while (pending.length > 0) {
      const batch = pending.slice(0, pollBatch)
      const done = new Set<number>()
      for (const { id, index } of batch) {
        const result = yield* retryStorage(SegmentWorkflow.poll(id))
        if (Option.isNone(result) || result.value._tag !== "Complete") continue
        const exit = result.value.exit
        if (exit._tag === "Failure") {
          const error = Cause.findErrorOption(exit.cause)
          return yield* Option.isSome(error) ? Effect.fail(error.value) : fail(`segment ${index}: ${Cause.hasInterruptsOnly(exit.cause) ? "cancelled" : `internal error: ${(Cause.squash(exit.cause) as Error)?.message ?? "unknown"}`}`)
        }
        done.add(index)
      }
      pending = pending.filter(({ index }) => !done.has(index))
      if (done.size < batch.length) yield* Effect.sleep(pollIntervalMs)
    }
    yield* publish(p)
    return segments.length
  }).pipe(
    // A job that failed cannot be resumed: its staged output goes (for a decrypt, plaintext),
    // whatever the failure (a defect too); a cancelled job's goes with `Job.cancel`.
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : discard(p))
  )
)

/**
 * Effect's cluster turns a storage error in `execute` or `poll` into a defect, which the
 * engine would record as the job's final failure: a database restart would fail every
 * running job. Retried every second for up to 5 minutes first.
 */
export const retryStorage = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    for (let attempt = 1; ; attempt++) {
      const exit = yield* Effect.exit(effect)
      if (exit._tag === "Success") return exit.value
      if (Cause.hasInterruptsOnly(exit.cause) || Option.isSome(Cause.findErrorOption(exit.cause)) || attempt >= 300) return yield* exit
      yield* Effect.sleep(1000)
    }
  })

/** Removes a failed job's `OUT.partial`. */
const discard = (p: JobPayload) =>
  Activity.make({
    name: "discard",
    success: Schema.Void,
    error: JobFailure,
    execute: Effect.sync(() => removeStaged(p))
  })

/** The workflows every process registers (runners execute them; clients only submit). */
const workflows = (options: RunnerOptions = {}) => Layer.mergeAll(jobLayer, segmentLayer(options))

/** Lock settings every process must share: a dead runner's shards move after about 5 s. */
const sharding = { shardLockRefreshInterval: "1 second", shardLockExpiration: "5 seconds" } as const

/** PostgreSQL at `db` (`{ host, port, username, database }`). */
const pg = (db: { readonly host: string; readonly port: number; readonly username: string; readonly database: string }) => PgClient.layer(db)

/** A runner listening on `listen` (host, port), storing shards, messages and runners in PostgreSQL. */
export const runnerLayer = (listen: { readonly host: string; readonly port: number }, db: Parameters<typeof pg>[0], options: RunnerOptions = {}) =>
  workflows({ name: `${listen.host}:${listen.port}`, ...options }).pipe(
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
