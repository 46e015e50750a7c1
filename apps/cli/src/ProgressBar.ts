/**
 * The live progress bar of a run: bytes, percent, MiB/s and ETA on stderr when it is a
 * terminal. Units are 1024-based throughout (MiB, MiB/s), as in the run's summary line.
 *
 * Rendering is delegated to `cli-progress`; the CLI only decides when to show it (a TTY on
 * stderr and not `quiet`) and feeds it the byte counts core's engine reports.
 *
 * @module
 */
import { Progress } from "@cage/core"
import cliProgress from "cli-progress"

const mib = (bytes: number) => (bytes / 1048576).toFixed(1)

/** `1m05s`, or `--` before there is a rate to estimate from. */
const eta = (seconds: number | undefined): string => {
  if (seconds === undefined || !Number.isFinite(seconds)) return "--"
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`
}

/**
 * A live progress bar on `stream` (default stderr), or `Progress.silent` when the stream is not
 * a terminal or `quiet` is set. Redraws at most every 100 ms.
 */
export const terminal = (options: { readonly quiet?: boolean; readonly label?: string; readonly stream?: NodeJS.WriteStream } = {}): Progress.ProgressReporter => {
  const stream = options.stream ?? process.stderr
  if (options.quiet || !stream.isTTY) return Progress.silent
  const label = options.label ?? "cage"
  let bar: cliProgress.SingleBar | undefined
  let startedAt = 0
  let base = 0
  let known = true
  let total: number | undefined
  // A staged run (gzip → agcm-encrypt): input, then each stage's output so far, in MiB.
  let flow = ""
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
            ? `${label} {bar} {percentage}% | {doneMiB}/{totalMiB} MiB | {speed} MiB/s | ETA {etaText}{flow}`
            : `${label} {doneMiB} MiB | {speed} MiB/s{flow}`,
          formatValue: (v, _o, type) => (type === "percentage" ? String(v).padStart(3) : String(v))
        },
        cliProgress.Presets.shades_classic
      )
      total = totalBytes
      bar.start(totalBytes ?? 0, doneBytes, { doneMiB: mib(doneBytes), totalMiB: mib(totalBytes ?? 0), speed: "0.0", etaText: eta(undefined), flow })
    },
    update: (doneBytes) => {
      const seconds = (Date.now() - startedAt) / 1000
      const rate = seconds > 0 ? (doneBytes - base) / seconds : 0
      // No estimate until this run has processed something: "ETA 0s" at 0% would be a lie.
      const left = total !== undefined && rate > 0 ? (total - doneBytes) / rate : undefined
      bar?.update(doneBytes, { doneMiB: mib(doneBytes), speed: mib(rate), etaText: eta(left), flow })
    },
    stages: (stages) => {
      flow = ` | stages ${[stages[0].inputBytes, ...stages.map((s) => s.outputBytes)].map(mib).join(" → ")} MiB`
      bar?.update({ flow })
    },
    stop: () => {
      bar?.stop()
      bar = undefined
    }
  }
}
