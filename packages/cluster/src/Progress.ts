/**
 * Per-segment progress in the cluster's PostgreSQL: one row per segment of a job in
 * `cage_segments` (job id, segment, runner, state, bytes, error), written by the runner
 * working on it when it starts (`running`, once it holds one of the runner's segment slots)
 * and when it ends (`done` with its bytes, or `failed` with its error). `status` reads a
 * job's progress with two queries, whatever its size, instead of one workflow poll per
 * segment (150,000 for a 10 TB job), and can say what is running where.
 *
 * The rows are a view for people, not the job's truth: the job itself waits for its
 * segments' stored workflow results. A `done` row is final (a late write from a runner
 * that lost the segment's shard never turns it back), so the counts only grow, and a
 * segment's row is `done` before the job can see its result. A segment run again after its runner died is written
 * again by its new runner; until then its row names the dead runner as `running`.
 *
 * @module
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { type JobFailure, retryStorage } from "./Shared.js"

/** Creates `cage_segments` where missing (every runner and client layer, as it starts). Two processes racing to create it: the loser's error is ignored. */
export const ensureTable = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS cage_segments (
    job_id VARCHAR(64) NOT NULL,
    segment INT NOT NULL,
    runner TEXT NOT NULL,
    state VARCHAR(8) NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, segment)
  )`.pipe(Effect.ignore)
})

const write = (jobId: string, segment: number, runner: string, state: "running" | "done" | "failed" | "stopped", bytes: number, error: string | null) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const now = Date.now()
    yield* sql`INSERT INTO cage_segments (job_id, segment, runner, state, bytes, error, updated_at)
      VALUES (${jobId}, ${segment}, ${runner}, ${state}, ${bytes}, ${error}, ${now})
      ON CONFLICT (job_id, segment) DO UPDATE SET runner = EXCLUDED.runner, state = EXCLUDED.state, bytes = EXCLUDED.bytes, error = EXCLUDED.error, updated_at = EXCLUDED.updated_at
      WHERE cage_segments.state <> 'done'`
  }).pipe(Effect.orDie, retryStorage)

/**
 * Runs segment `segment` of job `jobId` on `runner`, recording it as running, then done
 * (with `bytes`), failed (with its error's message), or stopped (a failure that is
 * `stopped`: its job ended or was cancelled first). A storage error while recording is
 * retried (a segment whose progress cannot be written cannot store its result either).
 */
export const tracked = <A, R>(jobId: string, segment: number, runner: string, bytes: number, work: Effect.Effect<A, JobFailure, R>) =>
  Effect.gen(function*() {
    yield* write(jobId, segment, runner, "running", 0, null)
    const exit = yield* Effect.exit(work)
    if (exit._tag === "Success") yield* write(jobId, segment, runner, "done", bytes, null)
    else {
      const error = exit.cause.reasons.find((r) => r._tag === "Fail")
      if (error !== undefined) {
        const failure = (error as { error: JobFailure }).error
        yield* write(jobId, segment, runner, failure.stopped === true ? "stopped" : "failed", 0, failure.message)
      }
    }
    return yield* exit
  })

/**
 * A job's progress: per runner, its segments running, done (and their bytes), failed and
 * stopped; the failed segments with their errors (at most `maxFailed`, lowest first); when
 * the last segment was done (ms since the epoch, the runner's clock; undefined before one is).
 */
export const read = (jobId: string, maxFailed = 20) =>
  Effect.gen(function*() {
    // No `ensureTable` here: every client and runner layer creates the table as it starts.
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ runner: string; state: string; n: string; bytes: string; last: string }>`SELECT runner, state, count(*) AS n, coalesce(sum(bytes), 0) AS bytes, max(updated_at) AS last FROM cage_segments WHERE job_id = ${jobId} GROUP BY runner, state`
    const failed = yield* sql<{ segment: number; error: string | null }>`SELECT segment, error FROM cage_segments WHERE job_id = ${jobId} AND state = 'failed' ORDER BY segment LIMIT ${maxFailed}`
    const runners = new Map<string, { running: number; done: number; bytes: number; failed: number; stopped: number }>()
    for (const r of rows) {
      const at = runners.get(r.runner) ?? { running: 0, done: 0, bytes: 0, failed: 0, stopped: 0 }
      const n = Number(r.n)
      if (r.state === "running") at.running += n
      else if (r.state === "done") {
        at.done += n
        at.bytes += Number(r.bytes)
      } else if (r.state === "stopped") at.stopped += n
      else at.failed += n
      runners.set(r.runner, at)
    }
    // Done rows only: a segment left running after its job ended, stopping later, must not
    // move an ended job's rate.
    const lastDone = rows.filter((r) => r.state === "done").reduce<number | undefined>((t, r) => Math.max(t ?? 0, Number(r.last)), undefined)
    return { runners, failed: failed.map((f) => ({ segment: f.segment, error: f.error ?? "" })), lastDone }
  }).pipe(Effect.orDie, retryStorage)
