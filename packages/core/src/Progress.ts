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
  /** Called with the cumulative input bytes processed. */
  readonly update: (doneBytes: number) => void
  /** Called once at the end of the run, whatever its outcome. */
  readonly stop: () => void
}

/** A reporter that shows nothing. */
export const silent: ProgressReporter = { start: () => {}, update: () => {}, stop: () => {} }

