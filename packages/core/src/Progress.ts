/**
 * Progress reporting: bytes, percent, MB/s and ETA on stderr when it is a terminal.
 *
 * Rendering is delegated to `cli-progress`; Cage only decides when to show it (a TTY on
 * stderr and not `quiet`) and feeds it byte counts.
 *
 * @module
 */
import cliProgress from "cli-progress"

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

const mb = (bytes: number) => (bytes / 1e6).toFixed(1)

/**
 * A live progress bar on `stream` (default stderr), or {@link silent} when the stream is not
 * a terminal or `quiet` is set. Redraws at most every 100 ms.
 */
export const terminal = (options: { readonly quiet?: boolean; readonly label?: string; readonly stream?: NodeJS.WriteStream } = {}): ProgressReporter => {
  const stream = options.stream ?? process.stderr
  if (options.quiet || !stream.isTTY) return silent
  const label = options.label ?? "cage"
  let bar: cliProgress.SingleBar | undefined
  let startedAt = 0
  let base = 0
  let known = true
  return {
    start: (totalBytes, doneBytes) => {
      startedAt = Date.now()
      base = doneBytes
      known = totalBytes !== undefined
      bar = new cliProgress.SingleBar(
        {
          stream,
          fps: 10,
          hideCursor: true,
          clearOnComplete: false,
          format: known
            ? `${label} {bar} {percentage}% | {doneMB}/{totalMB} MB | {speed} MB/s | ETA {eta_formatted}`
            : `${label} {doneMB} MB | {speed} MB/s`,
          formatValue: (v, _o, type) => (type === "percentage" ? String(v).padStart(3) : String(v))
        },
        cliProgress.Presets.shades_classic
      )
      bar.start(totalBytes ?? 0, doneBytes, { doneMB: mb(doneBytes), totalMB: mb(totalBytes ?? 0), speed: "0.0" })
    },
    update: (doneBytes) => {
      const seconds = (Date.now() - startedAt) / 1000
      const speed = seconds > 0 ? mb((doneBytes - base) / seconds) : "0.0"
      bar?.update(doneBytes, { doneMB: mb(doneBytes), speed })
    },
    stop: () => {
      bar?.stop()
      bar = undefined
    }
  }
}
