/**
 * What every segment's activity does around its own work, for file jobs (`Cluster.ts`:
 * seal or open a chunk range) and backup jobs (`Backup.ts`: store pieces) alike: it waits
 * for one of its runner's segment slots, records itself in `cage_segments` (running, then
 * done or failed), and does nothing when its job has already ended (a segment left over
 * from a cancelled or failed job).
 *
 * @module
 */
import { Effect, Option, Semaphore, type Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { Activity } from "effect/workflow"
import type { Workflow } from "effect/workflow"
import * as os from "node:os"
import * as Progress from "./Progress.js"
import { fail, interruptAsked, JobFailure, retryStorage, type RunnerOptions, stop } from "./Shared.js"

/**
 * A runner's segment slots: `maxSegments` (default: its cores) segments of any kind run at
 * once, the others wait without holding buffers, so memory stays flat whatever the job's
 * size. One per segment workflow type.
 */
export const slotsOf = (options: RunnerOptions) => Semaphore.makeUnsafe(Math.max(1, options.maxSegments ?? os.availableParallelism()))

/** How often, and how long apart (ms), a segment that says it stopped looks for its job's end or cancel. */
const STOP_LOOKS = 50
const STOP_LOOK_MS = 100

/**
 * Segment `index` of job `jobId` as an activity named `name`: in one of `slots`, tracked in
 * `cage_segments` with `bytes` (plaintext bytes, counted when done), after the runner's
 * test delay, and only while `jobResult` (the job's stored result) is not complete; then
 * `work`. `where` names the segment in failures (`segment 3 (FILE, chunks …)`); the
 * runner's name is added here. A failure of `work` that says it `stopped` (its output gone,
 * its store handed back) is recorded as stopped only once the job has ended or `cancel`
 * asked it to stop (its interrupt signal, looked up by `jobTag`), within about 5 s: an
 * `OUT.partial` someone else removed while the job ran is this segment's failure, and
 * fails the job.
 */
export const segmentActivity = <S extends Schema.Constraint, R>(options: {
  readonly name: string
  readonly success: S
  readonly runner: RunnerOptions
  readonly slots: Semaphore.Semaphore
  readonly jobId: string
  readonly index: number
  readonly bytes: number
  readonly where: string
  readonly jobResult: Effect.Effect<Option.Option<Workflow.Result<unknown, unknown>>, never, R>
  readonly jobTag: string
  readonly work: (where: string) => Effect.Effect<S["Type"], JobFailure, R | SqlClient.SqlClient>
}) => {
  const runner = options.runner.name ?? "?"
  const where = `${options.where} on runner ${runner}`
  return Activity.make({
    name: options.name,
    success: options.success,
    error: JobFailure,
    execute: Progress.tracked(options.jobId, options.index, runner, options.bytes, Effect.gen(function*() {
      if (options.runner.segmentDelayMs !== undefined) yield* Effect.sleep(options.runner.segmentDelayMs)
      const ended = yield* retryStorage(options.jobResult)
      if (Option.isSome(ended) && ended.value._tag === "Complete") return yield* stop(`${where}: the job has ended; this segment writes nothing`)
      return yield* options.work(where).pipe(
        Effect.catchIf((f) => f.stopped === true, (f) =>
          Effect.gen(function*() {
            // A job that fails removes its OUT.partial (or hands its store back) before its
            // result is stored: a segment that saw that waits up to 5 s for the result.
            for (let look = 0; look < STOP_LOOKS; look++) {
              if (look > 0) yield* Effect.sleep(STOP_LOOK_MS)
              const now = yield* retryStorage(options.jobResult)
              if (Option.isSome(now) && now.value._tag === "Complete") return yield* Effect.fail(f)
              if (yield* retryStorage(Effect.orDie(interruptAsked(options.jobTag, options.jobId)))) return yield* Effect.fail(f)
            }
            return yield* fail(f.message, f.exitCode)
          }))
      )
    })).pipe(Semaphore.withPermits(options.slots, 1))
  })
}
