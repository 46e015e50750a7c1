/**
 * Progress events of a run: what the engine reports (input bytes done), not how it is shown.
 * Applications render it; the `cage` CLI draws a terminal bar (apps/cli `ProgressBar.ts`).
 *
 * @module
 */

/** What the engine reports progress to. */
export interface ProgressReporter {
  /** Called once; `totalBytes` is undefined for streams of unknown length. `doneBytes` > 0 when resuming. */
  readonly start: (totalBytes: number | undefined, doneBytes: number) => void
  /**
   * Called with the cumulative input bytes processed and, second, the output bytes written
   * so far (header included; 0 without output).
   */
  readonly update: (doneBytes: number, outputBytes: number) => void
  /**
   * Optional: called, in a run cut into stages (see `runPipeline`), whenever a stage
   * advances, with every stage's input and output bytes so far, in pipeline order.
   */
  readonly stages?: (stages: ReadonlyArray<StageProgress>) => void
  /** Called once at the end of the run, whatever its outcome. */
  readonly stop: () => void
}

/** How far one stage of a staged run got, in bytes. */
export interface StageProgress {
  /** The stage's processors, by name. */
  readonly processors: ReadonlyArray<string>
  /** Bytes the stage read so far (the run's input for the first stage). */
  readonly inputBytes: number
  /** Bytes the stage wrote so far (into the next stage, or the run's output for the last). */
  readonly outputBytes: number
}

/** A reporter that shows nothing. */
export const silent: ProgressReporter = { start: () => {}, update: () => {}, stop: () => {} }

