/**
 * Chunk throughput anomaly detection: robust z-scores over a sliding window.
 *
 * For each sample x (MB/s) the detector compares it with the window of preceding samples:
 * `score = 0.6745 × (x − median) / MAD` (Iglewicz and Hoaglin's modified z-score; 0.6745
 * makes MAD comparable to a standard deviation for normal data). `|score| > threshold`
 * (default 3.5, their recommendation) marks an anomaly (by default only slow ones, see
 * `flagFast`). Median and MAD ignore the outliers
 * themselves, unlike mean and standard deviation, so one stall does not hide the next.
 *
 * Guards: no verdict before `minSamples` samples; MAD is floored at `madFloor` × median
 * (default 5%), because a steady run has MAD near 0 and would flag any jitter; the engine's
 * millisecond clock quantises chunk durations, so small level shifts are not anomalies.
 * With the defaults a chunk must be about 26% off the median to be flagged.
 *
 * @module
 */

/** Options of {@link makeDetector}. */
export interface AnomalyOptions {
  /** Samples in the sliding window. Default 256. */
  readonly window?: number
  /** Samples needed before any verdict. Default 16. */
  readonly minSamples?: number
  /** Modified z-score beyond which a sample is anomalous. Default 3.5. */
  readonly threshold?: number
  /** Lower bound of MAD as a fraction of the median. Default 0.05. */
  readonly madFloor?: number
  /**
   * Also flag samples far above the median. Default false: a fast outlier is almost always
   * the end of the run's warm-up (workers starting, cold page cache), not a problem.
   */
  readonly flagFast?: boolean
}

/** A verdict on one sample. */
export interface Anomaly {
  readonly value: number
  readonly median: number
  readonly mad: number
  readonly score: number
  readonly direction: "slow" | "fast"
}

/** The median of a non-empty sorted array. */
export const medianSorted = (sorted: ReadonlyArray<number>): number => {
  const n = sorted.length
  const mid = n >> 1
  return n % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Median and median absolute deviation of `values` (non-empty). */
export const medianMad = (values: ReadonlyArray<number>): { readonly median: number; readonly mad: number } => {
  const sorted = [...values].sort((a, b) => a - b)
  const median = medianSorted(sorted)
  const mad = medianSorted(sorted.map((v) => Math.abs(v - median)).sort((a, b) => a - b))
  return { median, mad }
}

/** A stateful detector: `observe(x)` returns an {@link Anomaly} or undefined, then adds x to the window. */
export const makeDetector = (options: AnomalyOptions = {}) => {
  const window = options.window ?? 256
  const minSamples = options.minSamples ?? 16
  const threshold = options.threshold ?? 3.5
  const madFloor = options.madFloor ?? 0.05
  const flagFast = options.flagFast ?? false
  const samples: Array<number> = []
  return {
    observe: (x: number): Anomaly | undefined => {
      let verdict: Anomaly | undefined
      if (samples.length >= minSamples) {
        const { median, mad } = medianMad(samples)
        const scale = Math.max(mad, madFloor * Math.abs(median), Number.EPSILON)
        const score = (0.6745 * (x - median)) / scale
        if (score < -threshold || (flagFast && score > threshold)) verdict = { value: x, median, mad, score, direction: score < 0 ? "slow" : "fast" }
      }
      samples.push(x)
      if (samples.length > window) samples.shift()
      return verdict
    }
  }
}

/** Nearest-rank percentile `p` (0..100) of `values`; undefined when empty. */
export const percentile = (values: ReadonlyArray<number>, p: number): number | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]
}
