/**
 * The plan-then-execute chunk engine.
 *
 * `runPipeline` plans the input (pure arithmetic for files; discovered while reading for
 * streams), then runs segments (runs of consecutive chunks, about `segmentBytes` each)
 * through the processors with at most `inFlight` segments alive at once, so memory is
 * bounded by `inFlight × segmentBytes` plus the processors' own output, never by file size.
 * Reads overlap processing and writing; ordered processors and the output see segments
 * strictly in order.
 *
 * With a `checkpoint`, the engine fdatasyncs the output and writes a checkpoint at a
 * segment boundary at most every `intervalMs`; an interrupted run resumes from it (see
 * `Checkpoint.ts` for what must match). On any failure or interruption the output is
 * aborted: `<out>.partial` is kept for resume when a checkpoint covers it, and removed
 * otherwise. Nothing is ever published under the final name until every chunk and every
 * `finalize` succeeded.
 *
 * Stages: a processor that frames its own input (`capabilities.framesInput`, a cipher)
 * after a transform with other output lengths (gzip) starts a new stage. Stages run at once,
 * each an engine run of its own, chained by bounded pipes ({@link STAGE_BUFFER_BYTES}); the
 * summary's `stages` says what each read and wrote. It resumes when the transforms before
 * the last stage are `deterministic` (they run again from the start, the last stage
 * continues from its checkpoint), and starts over otherwise.
 *
 * @module
 */
import { Effect, Exit, Option } from "effect"
import { randomUUID } from "node:crypto"
import type { ChunkInput } from "./ChunkInput.js"
import type { ChunkOutput } from "./ChunkOutput.js"
import type { ChunkProcessor, InitResult, JsonValue } from "./ChunkProcessor.js"
import { type ChunkPlan, type ChunkSpec, DEFAULT_CHUNK_BYTES, planRegion } from "./ChunkSpec.js"
import * as Checkpoint from "./Checkpoint.js"
import { type EngineError, UsageError } from "./Error.js"
import { checkpointTarget, checkResumedPlan, cleanUpAfterFailure, initialWritten, loadResume, makeCheckpointWriter, openOutput } from "./internal/checkpointing.js"
import { checkOutputChunkBytes, checkResumedLayout, chooseDirect, directCall } from "./internal/directMode.js"
import { checkFraming, checkPipeline } from "./internal/pipelineRules.js"
import { finalizeProcessors, initProcessors } from "./internal/processors.js"
import { makeBufferPool, makeSegmentSource, planInput } from "./internal/segments.js"
import { runStages, type StageSummary, stagesOf, stagesResume } from "./internal/stages.js"
import { runWorkers } from "./internal/workers.js"
import { type ProgressReporter, silent } from "./Progress.js"
import * as RateLimit from "./RateLimit.js"
import { Telemetry } from "./Telemetry.js"

/** Default target size of a segment, in bytes (1 MiB: large enough to amortise a read/write). */
export const DEFAULT_SEGMENT_BYTES = 1 << 20
export { STAGE_BUFFER_BYTES, type StageSummary, stagesOf, stagesResume } from "./internal/stages.js"

/** Chunks of `chunkBytes` in a segment of about `segmentBytes`: at least one. */
const chunksPerSegment = (segmentBytes: number, chunkBytes: number) => Math.max(1, Math.floor(segmentBytes / chunkBytes))

/** Default number of segments in flight. */
export const DEFAULT_IN_FLIGHT = 4
/** Default minimum time between two checkpoints, in ms. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000

/** Options of {@link runPipeline}. */
export interface RunOptions {
  readonly input: ChunkInput
  /** Where transformed bytes go; omit for observer-only pipelines (validate, verify). */
  readonly output?: ChunkOutput | undefined
  /** Processors in order; chunk bytes flow from each transform to the next processor. */
  readonly pipeline: ReadonlyArray<ChunkProcessor>
  /**
   * Size of plain chunks, in bytes, for a pipeline in which no processor declares a framing
   * (default 64 KiB; 1 byte to 1 GiB, else `UsageError` `"ChunkSize"`). A processor that
   * declares a framing owns its chunk size (a cipher's option, or its file header) and
   * checks it: `chunkBytes` then plays no part (leave it out).
   */
  readonly chunkBytes?: number | undefined
  /** Target bytes per segment (default 1 MiB; at least one chunk). */
  readonly segmentBytes?: number | undefined
  /** Segments in flight (default 4, at least 1). */
  readonly inFlight?: number | undefined
  /**
   * Checkpointing, for a file input and a resumable output only (ignored otherwise).
   * `mode: "resume"` continues from an existing checkpoint; `"fresh"` discards it.
   */
  readonly checkpoint?: { readonly path: string; readonly mode: "resume" | "fresh"; readonly intervalMs?: number } | undefined
  readonly progress?: ProgressReporter | undefined
  /**
   * Caps the input read rate, in bytes per second (see `RateLimit`): segments are admitted
   * on a smooth schedule, and made at most a tenth of a second of input each (at least one
   * chunk) so the rate holds over short windows too. Checkpoints and resume are unaffected.
   */
  readonly limitRate?: number | undefined
}

/** The result of a run. Byte counts are input bytes. */
export interface ChunkProcessingSummary {
  /** Chunks in the plan. */
  readonly totalChunks: number
  /** Chunks processed by this run (excluding those completed before a resume). */
  readonly processedChunks: number
  /** Input bytes processed by this run. */
  readonly bytesProcessed: number
  /** Chunks that failed (a failure ends the run with an error, so 0 in a summary). */
  readonly failedChunks: number
  /** First chunk index this run processed: > 0 when it resumed a checkpoint. */
  readonly resumedFrom: number
  /** Wall-clock duration of this run, in ms. */
  readonly durationMs: number
}

/** {@link ChunkProcessingSummary} plus output size and each processor's `finalize` result. */
export interface RunSummary extends ChunkProcessingSummary {
  /** Output bytes (0 without output). */
  readonly outputBytes: number
  /** `finalize` results keyed by processor name. */
  readonly results: { readonly [name: string]: JsonValue }
  /**
   * Per stage, when the pipeline was cut into stages (a processor that frames its input
   * after a transform): what each read and wrote. Absent for a one-stage run.
   */
  readonly stages?: ReadonlyArray<StageSummary>
}

/**
 * Runs `options.pipeline` over `options.input`. See the module documentation.
 *
 * Fails with `IoError` (source/sink), `ProcessorError` (a processor's failure, with the
 * chunk index), `ResumeRefused` (checkpoint does not match or is corrupt) or `UsageError`.
 */
export const runPipeline = (options: RunOptions): Effect.Effect<RunSummary, EngineError> => {
  const out = options.output
  // One writer per output: claimed before the checkpoint is read or a byte of input, so two
  // runs (or two resumes of one checkpoint) never write the same `.partial`.
  if (out?.claim === undefined) return runClaimed(options)
  return Effect.acquireUseRelease(out.claim(), () => runClaimed(options), () => out.release?.() ?? Effect.void)
}

const runClaimed = (options: RunOptions): Effect.Effect<RunSummary, EngineError> =>
  Effect.suspend(() => {
    const stages = stagesOf(options.pipeline)
    return stages.length > 1 ? runStaged(options, stages) : runStage(options)
  })

/**
 * A pipeline of several stages (see `internal/stages.ts`): each stage runs as its own run,
 * chained through bounded pipes. The last stage checkpoints when the earlier stages can be
 * run again to the same bytes (`stagesResume`); otherwise an interrupted staged run starts
 * over (an existing checkpoint is removed).
 */
const runStaged = (options: RunOptions, stages: ReadonlyArray<ReadonlyArray<ChunkProcessor>>): Effect.Effect<RunSummary, EngineError> =>
  Effect.gen(function*() {
    const started = Date.now()
    yield* checkPipeline(options.pipeline)
    const resumable = stagesResume(stages)
    if (options.checkpoint && !resumable) yield* (yield* Checkpoint.Checkpointer).remove(options.checkpoint.path)
    const summaries = yield* runStages(stages, { ...options, checkpoint: resumable ? options.checkpoint : undefined, runStage })
    const first = summaries[0]
    const last = summaries[summaries.length - 1]
    return {
      totalChunks: first.totalChunks,
      processedChunks: first.processedChunks,
      bytesProcessed: first.bytesProcessed,
      failedChunks: 0,
      // Where the output continued: the last stage's first chunk (the earlier ones start over).
      resumedFrom: last.resumedFrom,
      durationMs: Date.now() - started,
      outputBytes: last.outputBytes,
      results: Object.assign({}, ...summaries.map((s) => s.results)),
      stages: summaries.map((s, k) => ({
        processors: stages[k].map((p) => p.name),
        inputBytes: s.bytesProcessed,
        outputBytes: s.outputBytes,
        totalChunks: s.totalChunks
      }))
    }
  })

/** One stage: the whole run of a pipeline whose processors share one framing. */
const runStage = (
  options: RunOptions & { readonly recorded?: ReadonlyArray<ChunkProcessor>; readonly stage?: { readonly index: number; readonly of: number } }
): Effect.Effect<RunSummary, EngineError> =>
  Effect.gen(function*() {
    const started = Date.now()
    const runId = randomUUID()
    const telemetry = yield* Telemetry
    const store = yield* Checkpoint.Checkpointer
    const { input, output, pipeline } = options
    const progress = options.progress ?? silent
    yield* checkPipeline(pipeline)

    const cp = checkpointTarget(options.checkpoint, input, output, DEFAULT_CHECKPOINT_INTERVAL_MS, options.recorded ?? pipeline)
    const resumed = cp ? yield* loadResume(store, cp, pipeline) : undefined
    const { inits, headerRead } = yield* initProcessors(pipeline, input, options.chunkBytes ?? DEFAULT_CHUNK_BYTES, resumed, options.recorded ?? pipeline)
    const framing = yield* checkFraming(pipeline, inits, options.chunkBytes)
    if (cp && resumed) yield* Checkpoint.validateFraming(cp.path, resumed, framing)
    const cs = framing.chunkBytes
    const direct = yield* chooseDirect(pipeline, inits, input, output)
    // Output chunk i starts at (header bytes) + i × outputChunkBytes, resumed or not.
    const outputBase = inits.reduce((n, r) => n + (r.header?.length ?? 0), 0)
    const limiter = options.limitRate !== undefined ? RateLimit.make(options.limitRate) : undefined
    const segmentTarget = Math.min(options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, limiter ? limiter.bytesPerSecond / 10 : Infinity)
    const segChunks = chunksPerSegment(segmentTarget, cs)
    const inFlight = Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT)

    const plan = yield* planInput(input, framing)
    const startChunk = resumed ? Checkpoint.completedPrefix(resumed) : 0
    if (direct && resumed) yield* checkResumedLayout(direct, resumed, outputBase, startChunk, cp!.path)
    if (resumed && plan) yield* checkResumedPlan(startChunk, plan, cp!.path)
    if (output) yield* openOutput(output, resumed, cp)

    const written = initialWritten(pipeline, resumed, startChunk, framing.headerBytes)
    const checkpoints = cp ? makeCheckpointWriter({ store, cp, input, chunkBytes: cs, pipeline, written, startChunk }) : undefined

    const run = Effect.gen(function*() {
      yield* telemetry.publish({
        type: "run_start", runId, at: Date.now(), input: input.description, output: output?.description ?? null,
        pipeline: pipeline.map((p) => p.name), totalBytes: input.size ?? null, totalChunks: plan?.totalChunks ?? null,
        chunkBytes: cs, resumedFrom: startChunk, ...(options.stage ? { stage: options.stage } : {})
      })
      progress.start(input.size, written.inputAtCompleted)
      if (output && !resumed) {
        const headers = inits.flatMap((r) => (r.header ? [r.header] : []))
        yield* output.write(headers)
        written.outputAtCompleted = output.position()
      }

      // Replay: processors that cannot snapshot their state see the completed chunks again.
      const needsReplay = resumed !== undefined && startChunk > 0 && pipeline.some((p) => p.capabilities.resumable === false)
      // One buffer per segment in flight, plus the one being read.
      const buffers = makeBufferPool(inFlight + 1)
      const segments = yield* makeSegmentSource({ input, framing, plan, segChunks, startChunk, needsReplay, headerRead, limiter, buffers })
      const { processedChunks, bytesProcessed } = yield* runWorkers({
        pipeline, input, output, framing, direct, outputBase, startChunk, segChunks, inFlight, buffers,
        takeSegment: segments.take, written, checkpoints, progress, telemetry, runId
      })

      const finalPlan = plan ?? planRegion(segments.regionRead(), framing)
      const { results, trailers } = yield* finalizeProcessors(pipeline, finalPlan, written.inputAtCompleted)
      // Every byte was read: publish only if they all came from one version of the input.
      if (input.verifyUnchanged) yield* input.verifyUnchanged()
      if (output) {
        yield* output.write(trailers)
        yield* output.commit()
      }
      if (checkpoints) yield* checkpoints.remove
      const summary: RunSummary = {
        totalChunks: finalPlan.totalChunks,
        processedChunks,
        bytesProcessed,
        failedChunks: 0,
        resumedFrom: startChunk,
        durationMs: Date.now() - started,
        outputBytes: output?.position() ?? 0,
        results
      }
      return summary
    })

    return yield* run.pipe(
      Effect.onExit((exit) =>
        Effect.gen(function*() {
          progress.stop()
          if (Exit.isFailure(exit)) {
            const failure = Exit.findErrorOption(exit)
            const error = Option.isSome(failure) ? String((failure.value as Error).message ?? failure.value) : "interrupted"
            const chunk = Option.isSome(failure) ? (failure.value as { chunk?: unknown }).chunk : undefined
            if (typeof chunk === "number") yield* telemetry.publish({ type: "chunk_failed", runId, at: Date.now(), chunk, error })
            yield* cleanUpAfterFailure(failure, input, output, checkpoints)
            yield* telemetry.publish({ type: "run_complete", runId, at: Date.now(), ok: false, bytes: 0, outputBytes: 0, chunks: written.completed, durationMs: Date.now() - started, error })
          } else {
            yield* telemetry.publish({ type: "run_complete", runId, at: Date.now(), ok: true, bytes: exit.value.bytesProcessed, outputBytes: exit.value.outputBytes, chunks: exit.value.totalChunks, durationMs: exit.value.durationMs })
          }
          for (const p of pipeline) if (p.close) yield* p.close()
        })
      )
    )
  })

/** Options of {@link runDirectChunks}. */
export interface DirectChunksOptions {
  /** A processor with `processDirect`, already initialised: `init` is what its `init` returned (with `direct`). */
  readonly processor: ChunkProcessor
  readonly init: InitResult
  /**
   * The input file's plan. Chunk `c` is read at `plan.framing.headerBytes + c.start`: plan
   * the region after the input's header with that header's length (for a decrypt, the
   * framing `init` returned), or the whole file with `headerBytes: 0`.
   */
  readonly plan: ChunkPlan
  /** First chunk to run (inclusive) and the chunk to stop before (exclusive), `0 ≤ from ≤ to ≤ plan.totalChunks`. */
  readonly from: number
  readonly to: number
  /** The input file: an open descriptor (read positionally, never moved or closed) and how messages name it. */
  readonly input: { readonly fd: number; readonly description: string }
  /**
   * The output file: an open descriptor (written positionally, never closed), the path
   * messages name (the file actually written, `<out>.partial`), and `base`, the output
   * offset of chunk 0: chunk `i`'s output starts at `base + i × init.direct.outputChunkBytes`.
   */
  readonly output: { readonly fd: number; readonly path: string; readonly base: number }
  /** Input bytes per call of `processDirect` (default {@link DEFAULT_SEGMENT_BYTES}; at least one chunk). */
  readonly segmentBytes?: number | undefined
  /** Calls running at once (default {@link DEFAULT_IN_FLIGHT}). */
  readonly inFlight?: number | undefined
}

/**
 * Runs chunks `[from, to)` of one file through a processor's direct mode, in segments of
 * about `segmentBytes`, `inFlight` at once, as {@link runPipeline} runs a whole file in
 * direct mode: for a caller that owns a share of a file and its output (a cluster runner's
 * segment). Nothing else of a run happens here: no header is written, no checkpoint, no
 * progress, no fsync, no publication; the caller has opened both files and writes the
 * header itself.
 *
 * Fails with `UsageError` (`"Processor"`) when the processor or its `init` result has no
 * direct mode, its output chunk size is not a positive integer, or the range is not within
 * the plan; the processor's `IoError` or `InputChanged` as it reported them (naming
 * `input.description` or `output.path`); and `ProcessorError` (naming the processor and the
 * chunk) for anything else it failed with.
 * After a failure no later segment starts and the calls in flight are interrupted; what was
 * written stays (the caller's output is not published unless every call succeeded).
 */
export const runDirectChunks = (options: DirectChunksOptions): Effect.Effect<void, EngineError> =>
  Effect.suspend(() => {
    const { processor: p, init, plan, from, to } = options
    const process = p.processDirect
    const outputChunkBytes = init.direct?.outputChunkBytes
    if (process === undefined || outputChunkBytes === undefined) {
      return Effect.fail(new UsageError({ reason: "Processor", detail: `${p.name} has no direct mode (processDirect and init's direct are both needed)` }))
    }
    if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && 0 <= from && from <= to && to <= plan.totalChunks)) {
      return Effect.fail(new UsageError({ reason: "Processor", detail: `chunks ${from} to ${to} are not within the ${plan.totalChunks} chunks of ${options.input.description}` }))
    }
    const per = chunksPerSegment(options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, plan.framing.chunkBytes)
    const segments: Array<ReadonlyArray<ChunkSpec>> = []
    for (let a = from; a < to; a += per) segments.push(Array.from(plan.chunks(a, Math.min(to, a + per))))
    const files = {
      inputFd: options.input.fd,
      input: options.input.description,
      framing: plan.framing,
      outputFd: options.output.fd,
      output: options.output.path,
      outputBase: options.output.base,
      outputChunkBytes
    }
    return checkOutputChunkBytes(p, outputChunkBytes).pipe(Effect.andThen(
      Effect.forEach(segments, (chunks) => directCall(p, process, chunks, files), {
        concurrency: Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT),
        discard: true
      })
    ))
  })
