/**
 * What the cluster's workflows share (file jobs in `Cluster.ts`, backup jobs in
 * `Backup.ts`): the failure every job and segment reports, the key file reader, runner
 * options, the storage retry, and the wait for detached segments.
 *
 * @module
 */
import { parseKeyText } from "@cage/agcm"
import { Cause, Effect, Option, Schema } from "effect"
import type { Workflow } from "effect/workflow"
import * as fs from "node:fs"

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

/**
 * Why a segment or a job failed: a message in the user's terms (segment, chunk range,
 * runner, file) and the exit code `cage` uses for that kind of failure (3 integrity, 4 I/O
 * or a changed source, 2 usage).
 */
export const JobFailure = Schema.Struct({ message: Schema.String, exitCode: Schema.Number })
export type JobFailure = typeof JobFailure.Type
export const fail = (message: string, exitCode = 1) => Effect.fail<JobFailure>({ message, exitCode })

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

/**
 * How often a job looks at its segments' results (ms). The job starts every segment as a
 * detached child workflow and then polls their stored results instead of awaiting them:
 * a job waiting on children could not be interrupted when its shard moved to another
 * runner (effect 4.0.6), so the old owner never released the shard and the job stalled.
 * Once at most `closingPending` segments are left (the last ones running), every
 * `closingIntervalMs`: the job's end (publish, commit) then waits ~12 ms on average, not
 * ~250 (a quarter of a 1 GiB job on two runners, measured by `bench/cluster.mjs`), for at
 * most `closingPending` storage reads each time (each well under a millisecond of the
 * database's time).
 */
const pollIntervalMs = 500
const closingIntervalMs = 25
const closingPending = 8
/** Segment results read per poll (one storage read each). */
const pollBatch = 64

/**
 * Waits for detached segment workflows `ids` by polling their stored results (`pollBatch`
 * per poll, in order); succeeds with their results in order, fails with the first failed
 * segment's `JobFailure` (a cancel or a defect named after the segment).
 */
export const awaitSegments = <A, E, R>(ids: ReadonlyArray<string>, poll: (id: string) => Effect.Effect<Option.Option<Workflow.Result<A, JobFailure>>, E, R>) =>
  Effect.gen(function*() {
    const results = new Array<A>(ids.length)
    // Pending segments in plan order; each poll reads the first `pollBatch` of them.
    let pending = ids.map((id, index) => ({ id, index }))
    while (pending.length > 0) {
      const batch = pending.slice(0, pollBatch)
      const done = new Set<number>()
      for (const { id, index } of batch) {
        const result = yield* retryStorage(poll(id)).pipe(Effect.orDie)
        if (Option.isNone(result) || result.value._tag !== "Complete") continue
        const exit = result.value.exit
        if (exit._tag === "Failure") {
          const error = Cause.findErrorOption(exit.cause)
          return yield* Option.isSome(error) ? Effect.fail(error.value) : fail(`segment ${index}: ${Cause.hasInterruptsOnly(exit.cause) ? "cancelled" : `internal error: ${(Cause.squash(exit.cause) as Error)?.message ?? "unknown"}`}`)
        }
        results[index] = exit.value
        done.add(index)
      }
      pending = pending.filter(({ index }) => !done.has(index))
      if (done.size < batch.length) yield* Effect.sleep(pending.length <= closingPending ? closingIntervalMs : pollIntervalMs)
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
