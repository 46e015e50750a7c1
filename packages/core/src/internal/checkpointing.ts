/**
 * Checkpoints of a run: loading and validating the one to resume, opening the output
 * where it left off, saving new ones as segments are written, and what a failure leaves
 * behind (see `Checkpoint.ts` for what must match).
 *
 * @internal
 */
import { Effect, Exit, Option } from "effect"
import type { ChunkInput } from "../ChunkInput.js"
import type { ChunkOutput } from "../ChunkOutput.js"
import type { ChunkProcessor, JsonValue, SourceIdentity } from "../ChunkProcessor.js"
import type { ChunkPlan } from "../ChunkSpec.js"
import * as Checkpoint from "../Checkpoint.js"
import { ExitCode, exitCodeOf, ResumeRefused } from "../Error.js"

/** Where a run checkpoints, when it does. */
export interface CheckpointTarget {
  readonly path: string
  readonly mode: "resume" | "fresh"
  readonly intervalMs: number
  readonly source: SourceIdentity
  readonly output: ChunkOutput
  /**
   * The processors the checkpoint describes and a resume must find unchanged: the run's
   * pipeline, or for the last stage of a staged run the whole pipeline (an earlier stage's
   * options decide the bytes this stage reads).
   */
  readonly recorded: ReadonlyArray<ChunkProcessor>
}

/** Checkpointing applies to a file input and a resumable output only; `undefined` otherwise. */
export const checkpointTarget = (
  checkpoint: { readonly path: string; readonly mode: "resume" | "fresh"; readonly intervalMs?: number } | undefined,
  input: ChunkInput,
  output: ChunkOutput | undefined,
  defaultIntervalMs: number,
  recorded: ReadonlyArray<ChunkProcessor>
): CheckpointTarget | undefined =>
  checkpoint !== undefined && input.identity !== undefined && output?.resumable
    ? { path: checkpoint.path, mode: checkpoint.mode, intervalMs: checkpoint.intervalMs ?? defaultIntervalMs, source: input.identity, output, recorded }
    : undefined

/**
 * With `mode: "resume"`, the checkpoint to continue (validated against this run), or
 * `undefined` when there is none; with `"fresh"`, removes any checkpoint.
 */
export const loadResume = (store: Checkpoint.CheckpointStore, cp: CheckpointTarget, pipeline: ReadonlyArray<ChunkProcessor>) =>
  Effect.gen(function*() {
    if (cp.mode !== "resume") {
      yield* store.remove(cp.path)
      return undefined
    }
    const loaded = yield* store.load(cp.path)
    if (Option.isNone(loaded)) return undefined
    yield* Checkpoint.validate(cp.path, loaded.value, { source: cp.source, output: cp.output.description, pipeline: cp.recorded })
    // Replaying chunks through a transform that cannot snapshot itself would rebuild its
    // state, but not necessarily its output (an age stream picks a new file key per run).
    const stuck = pipeline.find((p) => p.capabilities.kind === "transform" && p.capabilities.resumable === false && p.capabilities.deterministic !== true)
    if (stuck && Checkpoint.completedPrefix(loaded.value) > 0) {
      return yield* Effect.fail(new ResumeRefused({ reason: "NotResumable", checkpoint: cp.path, detail: `${stuck.name} cannot continue an interrupted output` }))
    }
    return loaded.value
  })

/** Refuses a checkpoint that claims more chunks than the file's plan has. */
export const checkResumedPlan = (startChunk: number, plan: ChunkPlan, checkpoint: string) =>
  startChunk > plan.totalChunks
    ? Effect.fail(new ResumeRefused({ reason: "CheckpointCorrupt", checkpoint, detail: `the checkpoint claims ${startChunk} chunks, the plan has ${plan.totalChunks}` }))
    : Effect.void

/** Sink: a resumed run continues the .partial at the checkpoint's durable length. */
export const openOutput = (output: ChunkOutput, resumed: Checkpoint.Checkpoint | undefined, cp: CheckpointTarget | undefined) =>
  output.open(resumed ? { resumeAt: resumed.outputBytes } : {}).pipe(
    Effect.mapError((e) =>
      resumed && e._tag === "IoError" && (e.reason === "NotFound" || e.operation === "resume")
        ? new ResumeRefused({ reason: "OutputMissing", checkpoint: cp!.path, detail: `the partial output is missing or shorter than the checkpoint says (${e.message})` })
        : e
    )
  )

/** What the run has written so far, in order: what a checkpoint may record. */
export interface Written {
  /** Chunks before this index are written. */
  completed: number
  outputAtCompleted: number
  inputAtCompleted: number
  /** Snapshots of the state after the last *written* segment: only those may be checkpointed. */
  readonly snapshots: Array<JsonValue | undefined>
}

/** What is written when the run starts: nothing, or what the resumed checkpoint covers. */
export const initialWritten = (pipeline: ReadonlyArray<ChunkProcessor>, resumed: Checkpoint.Checkpoint | undefined, startChunk: number, headerBytes: number): Written => ({
  completed: startChunk,
  outputAtCompleted: resumed?.outputBytes ?? 0,
  inputAtCompleted: resumed?.inputBytes ?? headerBytes,
  snapshots: pipeline.map((p, i) => resumed?.state[Checkpoint.stateKey(i, p)] as JsonValue | undefined)
})

export interface CheckpointWriterOptions {
  readonly store: Checkpoint.CheckpointStore
  readonly cp: CheckpointTarget
  readonly input: ChunkInput
  readonly chunkBytes: number
  readonly pipeline: ReadonlyArray<ChunkProcessor>
  readonly written: Written
  readonly startChunk: number
}

export type CheckpointWriter = ReturnType<typeof makeCheckpointWriter>

/**
 * Saves `written` as the checkpoint: `save` whenever it moved, `saveIfDue` at most every
 * `intervalMs` (counted from now); `remove` deletes the checkpoint.
 */
export const makeCheckpointWriter = ({ store, cp, input, chunkBytes, pipeline, written, startChunk }: CheckpointWriterOptions) => {
  const output = cp.output
  let lastSaved = Date.now()
  let savedCompleted = startChunk
  // Uninterruptible: an interrupted save's promise would still rename its document into
  // place, possibly after a permanent failure removed the checkpoint.
  const save = Effect.uninterruptible(Effect.gen(function*() {
    if (written.completed === savedCompleted) return
    // A checkpoint vouches for the bytes read so far: never for a source that changed.
    if (input.verifyUnchanged) yield* input.verifyUnchanged()
    yield* output.sync()
    const state: Record<string, JsonValue> = {}
    pipeline.forEach((p, i) => {
      if (written.snapshots[i] !== undefined) state[Checkpoint.stateKey(i, p)] = written.snapshots[i]!
    })
    yield* store.save(cp.path, {
      format: "cage-checkpoint",
      version: Checkpoint.CHECKPOINT_VERSION,
      source: cp.source,
      output: output.description,
      chunkBytes,
      pipeline: Checkpoint.describePipeline(cp.recorded),
      completed: [[0, written.completed]],
      outputBytes: written.outputAtCompleted,
      inputBytes: written.inputAtCompleted,
      state,
      updatedAt: new Date().toISOString()
    })
    savedCompleted = written.completed
    lastSaved = Date.now()
  }))
  return {
    save,
    saveIfDue: Effect.suspend(() => (Date.now() - lastSaved >= cp.intervalMs ? save : Effect.void)),
    remove: Effect.suspend(() => store.remove(cp.path)),
    /** Chunks the last saved checkpoint covers. */
    savedCompleted: () => savedCompleted
  }
}

/**
 * Failures after which the partial output and the checkpoint are worthless: an input that
 * changed while it was read, or an integrity failure (a tampered or truncated input fails
 * the same way however often it is resumed). Interruptions and I/O errors stay resumable.
 */
export const isPermanent = (error: unknown): boolean =>
  (error as { _tag?: unknown } | undefined)?._tag === "InputChanged" || exitCodeOf(error) === ExitCode.Integrity

/**
 * After a failed run (`failure` is `None` for an interruption): a permanent failure removes
 * the partial output and the checkpoint; a resumable one saves a last checkpoint and keeps
 * the partial output when a checkpoint covers it.
 */
export const cleanUpAfterFailure = (failure: Option.Option<unknown>, input: ChunkInput, output: ChunkOutput | undefined, checkpoints: CheckpointWriter | undefined) =>
  Effect.gen(function*() {
    // An interrupted run over an input that changed meanwhile is as worthless as one
    // that noticed the change itself.
    const changed = Option.isNone(failure) && input.verifyUnchanged
      ? Exit.isFailure(yield* Effect.exit(input.verifyUnchanged()))
      : false
    if (changed || (Option.isSome(failure) && isPermanent(failure.value))) {
      // The partial output first: a checkpoint without it would refuse the next run.
      if (output) yield* output.abort({ keepPartial: false })
      if (checkpoints) yield* Effect.ignore(checkpoints.remove)
    } else {
      // Record what is durably done so a resume redoes as little as possible.
      if (checkpoints) yield* Effect.ignore(checkpoints.save)
      const keepPartial = checkpoints !== undefined && checkpoints.savedCompleted() > 0
      if (output) yield* output.abort({ keepPartial })
    }
  })
