/**
 * Stages: a pipeline cut where a processor that frames its own input (a cipher cutting fixed
 * chunks, `capabilities.framesInput`) comes after a transform whose output has other
 * lengths (gzip, a redactor). Each stage is an engine run of its own; the bytes of one flow
 * into the next through a bounded in-memory pipe, which the next stage reads as a stream and
 * cuts into its own framing. Order is kept (a stream has one), memory is bounded by the pipe
 * ({@link STAGE_BUFFER_BYTES}) and each stage's own segments, and backpressure reaches the
 * first stage's reader: a full pipe holds its writes back.
 *
 * Where no such cut is needed the run is one stage and nothing is copied (direct mode and
 * segment passing stay as they are).
 *
 * Resume: only the last stage checkpoints (against the run's source and the whole
 * pipeline). When every transform before it is `deterministic`, a resumed run starts the
 * earlier stages over (they write nothing durable), and the last stage reads past the
 * bytes it had completed and continues its output where the checkpoint left it: the result
 * is byte-identical to an uninterrupted run. Otherwise the run starts over.
 *
 * @internal
 */
import { Effect } from "effect"
import { PassThrough } from "node:stream"
import type { ChunkProcessor } from "../ChunkProcessor.js"
import * as ChunkInput from "../ChunkInput.js"
import * as ChunkOutput from "../ChunkOutput.js"
import type { EngineError } from "../Error.js"
import type { RunOptions, RunSummary } from "../Engine.js"
import type { ProgressReporter, StageProgress } from "../Progress.js"

/** Bytes the pipe between two stages holds at most before the earlier stage waits: 4 MiB. */
export const STAGE_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * The pipeline's stages, in order: it is cut before every processor that frames its input
 * and follows a transform (of the same stage). One stage when there is no such processor.
 */
export const stagesOf = (pipeline: ReadonlyArray<ChunkProcessor>): ReadonlyArray<ReadonlyArray<ChunkProcessor>> => {
  const stages: Array<Array<ChunkProcessor>> = [[]]
  for (const p of pipeline) {
    const current = stages[stages.length - 1]
    if (p.capabilities.framesInput === true && current.some((q) => q.capabilities.kind === "transform")) stages.push([p])
    else current.push(p)
  }
  return stages
}

/**
 * True when a staged run can resume: every transform of the stages before the last is
 * `deterministic`, so running them again from the start gives the same bytes, and the last
 * stage continues from its checkpoint after the bytes it already completed.
 */
export const stagesResume = (stages: ReadonlyArray<ReadonlyArray<ChunkProcessor>>): boolean =>
  stages.slice(0, -1).every((s) => s.every((p) => p.capabilities.kind === "observer" || p.capabilities.deterministic === true))

/** What one stage did, in bytes: what it read and what it wrote, and its chunks. */
export interface StageSummary {
  /** The stage's processors, by name. */
  readonly processors: ReadonlyArray<string>
  /** Bytes the stage read: the run's input for the first stage, the previous stage's output otherwise. */
  readonly inputBytes: number
  /** Bytes the stage wrote. */
  readonly outputBytes: number
  /** Chunks of the stage's own framing. */
  readonly totalChunks: number
}

/** A staged run: the run's options (its `checkpoint` is the last stage's) and how to run one stage. */
export interface StagedRun extends RunOptions {
  /** Runs one stage (the engine's own run, with its output already claimed); `recorded` is what its checkpoint describes. */
  readonly runStage: (options: RunOptions & { readonly recorded: ReadonlyArray<ChunkProcessor>; readonly stage: { readonly index: number; readonly of: number } }) => Effect.Effect<RunSummary, EngineError>
}

/**
 * Runs `stages` one after the other at once, each feeding the next through a pipe. The
 * first stage reads the run's input (with its rate limit and progress), the last writes the
 * run's output; a failure of any stage interrupts the others. Returns every stage's summary.
 */
export const runStages = (stages: ReadonlyArray<ReadonlyArray<ChunkProcessor>>, run: StagedRun): Effect.Effect<ReadonlyArray<RunSummary>, EngineError> =>
  Effect.suspend(() => {
    const pipes = stages.slice(1).map(() => new PassThrough({ highWaterMark: STAGE_BUFFER_BYTES }))
    const names = stages.map((s) => s.map((p) => p.name).join(" → "))
    const last = stages.length - 1
    const all = stages.flat()
    // Every stage's bytes so far, handed to the run's reporter whenever one advances.
    const progress: Array<StageProgress> = stages.map((s) => ({ processors: s.map((p) => p.name), inputBytes: 0, outputBytes: 0 }))
    const reporter = (k: number): ProgressReporter => ({
      start: (total, done) => {
        if (k === 0) run.progress?.start(total, done)
      },
      update: (done, written) => {
        progress[k] = { ...progress[k], inputBytes: done, outputBytes: written }
        if (k === 0) run.progress?.update(done, written)
        run.progress?.stages?.(progress)
      },
      stop: () => {
        if (k === 0) run.progress?.stop()
      }
    })
    // The last stage checkpoints against the run's source: its identity, and the check that
    // it did not change, are the source's (its bytes come from the source, transformed).
    const stageInput = (k: number): ChunkInput.ChunkInput => {
      const stream = ChunkInput.fromStream(pipes[k - 1], `the output of ${names[k - 1]}`)
      return k === last && run.checkpoint ? { ...stream, identity: run.input.identity, verifyUnchanged: run.input.verifyUnchanged } : stream
    }
    const runs = stages.map((pipeline, k) =>
      run.runStage({
        input: k === 0 ? run.input : stageInput(k),
        output: k === last ? run.output : ChunkOutput.toStream(pipes[k], `the input of ${names[k + 1]}`),
        pipeline,
        // Plain chunks are the first stage's; a later stage starts with the processor that frames its input.
        chunkBytes: k === 0 ? run.chunkBytes : undefined,
        segmentBytes: run.segmentBytes,
        inFlight: run.inFlight,
        limitRate: k === 0 ? run.limitRate : undefined,
        progress: reporter(k),
        checkpoint: k === last ? run.checkpoint : undefined,
        recorded: all,
        stage: { index: k, of: stages.length }
      }).pipe(
        // A stage that stops early must not leave the next one waiting for bytes.
        Effect.onExit((exit) => Effect.sync(() => {
          if (exit._tag === "Failure" && k < pipes.length) pipes[k].destroy(new Error(`${names[k]} stopped`))
        }))
      )
    )
    return Effect.all(runs, { concurrency: "unbounded" })
  })
