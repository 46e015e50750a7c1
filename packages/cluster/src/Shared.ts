/**
 * What the cluster's workflows share (file jobs in `Cluster.ts`, backup jobs in
 * `Backup.ts`): the failure every job and segment reports, the key file reader, runner
 * options, the storage retry, and the wait for detached segments.
 *
 * @module
 */
import { parseKeyText } from "@cage/agcm"
import { fromSystemError } from "@cage/core"
import { Cause, Clock, Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { Workflow } from "effect/workflow"
import * as fs from "node:fs"

/** Reads a Cage key file (as `cage keygen` writes it). The key never leaves this runner; the caller zeroes it. Fails with a message naming the file (`FILE: open failed: no such file or directory`, `FILE: not a key file`). */
export const readKey = (path: string) =>
  Effect.try({
    try: () => {
      const key = parseKeyText(fs.readFileSync(path, "utf8"))
      if (key === undefined) throw new Error(`${path}: not a key file`)
      return key
    },
    catch: (e) => typeof (e as { code?: unknown }).code === "string" ? fromSystemError("read", path, e).message : (e as Error).message
  })

/**
 * Why a segment or a job failed: a message in the user's terms (segment, chunk range,
 * runner, file) and the exit code `cage` uses for that kind of failure (3 integrity, 4 I/O
 * or a changed source, 2 usage). `stopped`: a segment that stopped, or wrote nothing,
 * because its job had ended or been cancelled (its staged output gone, its store's lock
 * handed back), not for a fault of its own; `cage_segments` records it as `stopped`, and
 * status counts it apart from the failed ones.
 */
export const JobFailure = Schema.Struct({ message: Schema.String, exitCode: Schema.Number, stopped: Schema.optionalKey(Schema.Boolean) })
export type JobFailure = typeof JobFailure.Type
export const fail = (message: string, exitCode = 1) => Effect.fail<JobFailure>({ message, exitCode })
/** A segment's {@link JobFailure} that is `stopped`: its job ended, or was cancelled, first. */
export const stop = (message: string, exitCode = 1) => Effect.fail<JobFailure>({ message, exitCode, stopped: true })

/** An error's own message, else its text. */
export const messageOf = (e: unknown): string => (e as { readonly message?: string } | null)?.message ?? String(e)

/**
 * Whether `cancel` asked job `jobId` (of the workflow tagged `tag`) to stop: effect's
 * workflow engine stores the interrupt as a deferred `Workflow/InterruptSignal` message of
 * the job's entity (effect 4.0.6, `ClusterWorkflowEngine`), whether or not a runner has
 * acted on it yet. Fails with the storage's error.
 */
export const interruptAsked = (tag: string, jobId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ n: number }>`SELECT 1 AS n FROM cluster_messages WHERE message_id = ${`Workflow/${tag}/${jobId}/deferred/Workflow/InterruptSignal`}`
    return rows.length > 0
  })

/**
 * Runner options. `name`: how failures name this runner (its listen address by default).
 * `segmentDelayMs`: a pause before each segment, for tests that must kill a runner while
 * segments run.
 */
export interface RunnerOptions {
  readonly name?: string
  /** The address this runner listens on, `HOST:PORT` as given to `--listen` (set by `runnerLayer`): runners with the same HOST string share a machine's cores. */
  readonly listen?: string
  /** Segments this runner seals or opens at once (default: its cores); the others wait, costing no buffers. */
  readonly maxSegments?: number
  /**
   * Threads a file job's segment seals or opens on (agcm's `workers`: this runner's own
   * thread and `workers − 1` pool threads). Default: the machine's cores split among the
   * healthy runners listening on the same host string (`Spread.coresShare`, looked up per
   * segment): two runners on 2 cores took 17 to 19% less time for a 1 GiB job with one
   * thread each than each sealing on both (docs/scale-out.md).
   */
  readonly workers?: number
  readonly segmentDelayMs?: number
}

/**
 * How a job watches its segments. The job starts every segment as a detached child
 * workflow and then polls their stored results instead of awaiting them: a job waiting on
 * children could not be interrupted when its shard moved to another runner (effect 4.0.6),
 * so the old owner never released the shard and the job stalled.
 *
 * Every `fullScanMs` it reads the first `pollBatch` pending results (segments end out of
 * order, and a failed one fails the job at the next scan). In between, every
 * `headIntervalMs`, it reads the pending results in plan order only up to the first one not
 * complete: one storage read (well under a millisecond of the database's time) when nothing
 * ended, so the job sees its last segment done within `headIntervalMs`, whenever that is.
 * Before, the job read the batch every 500 ms, and every 25 ms only once at most 8 segments
 * were left: a job with more than 8 segments left at one look, all of which ended soon
 * after, waited up to 500 ms for the next (`test/await.test.ts`: 17 segments ending
 * between 320 and 720 ms were seen done at 1000 ms). On 1 GiB jobs on two runners here the
 * time from the last segment's end to the client's exit did not change (medians 52 and
 * 57 ms, 12 jobs each, 2026-12-06): their last segments ended after that threshold. The
 * cost: up to 40 reads a second more while a job runs.
 */
const fullScanMs = 500
const headIntervalMs = 25
/** Segment results read per full scan (one storage read each). */
const pollBatch = 64

/**
 * Waits for detached segment workflows `ids` by polling their stored results (see
 * {@link fullScanMs}); succeeds with their results in order, fails with the first failed
 * segment's `JobFailure` (a cancel or a defect named after the segment) that a read finds.
 */
export const awaitSegments = <A, E, R>(ids: ReadonlyArray<string>, poll: (id: string) => Effect.Effect<Option.Option<Workflow.Result<A, JobFailure>>, E, R>) =>
  Effect.gen(function*() {
    const results = new Array<A>(ids.length)
    // Pending segments in plan order.
    let pending = ids.map((id, index) => ({ id, index }))
    let lastFullScan = Number.NEGATIVE_INFINITY
    while (pending.length > 0) {
      const now = yield* Clock.currentTimeMillis
      const full = now - lastFullScan >= fullScanMs
      if (full) lastFullScan = now
      const batch = pending.slice(0, pollBatch)
      const done = new Set<number>()
      for (const { id, index } of batch) {
        const result = yield* retryStorage(poll(id)).pipe(Effect.orDie)
        if (Option.isNone(result) || result.value._tag !== "Complete") {
          if (full) continue
          break
        }
        const exit = result.value.exit
        if (exit._tag === "Failure") {
          const error = Cause.findErrorOption(exit.cause)
          return yield* Option.isSome(error) ? Effect.fail(error.value) : fail(`segment ${index}: ${Cause.hasInterruptsOnly(exit.cause) ? "cancelled" : `internal error: ${(Cause.squash(exit.cause) as Error)?.message ?? "unknown"}`}`)
        }
        results[index] = exit.value
        done.add(index)
      }
      pending = pending.filter(({ index }) => !done.has(index))
      if (done.size < batch.length) yield* Effect.sleep(headIntervalMs)
    }
    return results
  })

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


/** The `IoError` reasons a rerun can get past (see {@link retryIo}). */
const passing = new Set(["Unknown", "NoSpace", "Busy"])

/**
 * Runs a segment's work again when it fails with an I/O error that can pass (`IoError` of
 * reason `Unknown`, `NoSpace` or `Busy`: a network filesystem's hiccup, a full disk freed
 * meanwhile; never a missing file, a permission or a directory), after `delayMs` and then twice that,
 * up to `attempts` runs in all; any other failure (a changed source, a damaged chunk, a
 * store the job no longer holds) is final at once. Segments are idempotent (positional
 * writes; a backup segment removes its packs on failure), so a rerun is safe. The final
 * I/O error says how many runs were made.
 */
export const retryIo = <A, E, R>(effect: Effect.Effect<A, E, R>, options: { readonly attempts?: number; readonly delayMs?: number } = {}): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const attempts = options.attempts ?? 3
    for (let attempt = 1; ; attempt++) {
      const exit = yield* Effect.exit(effect)
      if (exit._tag === "Success") return exit.value
      const error = Cause.findErrorOption(exit.cause)
      const e = Option.isSome(error) ? error.value as { readonly _tag?: unknown; readonly reason?: unknown } : undefined
      // Only what can pass: not a missing file, a permission or a directory where a file should be.
      if (e?._tag !== "IoError" || !passing.has(e.reason as string)) return yield* exit
      if (attempt >= attempts) {
        const last = e as { readonly message: string; readonly exitCode?: number }
        return yield* Effect.fail({ _tag: "IoError", message: `${last.message} (${attempt} attempts)`, exitCode: last.exitCode } as E)
      }
      yield* Effect.sleep((options.delayMs ?? 1000) * 2 ** (attempt - 1))
    }
  })
