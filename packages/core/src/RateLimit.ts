/**
 * A smooth input rate limit (`--limit-rate`), as `rsync --bwlimit`, `curl --limit-rate` or
 * `pv -L` do it, so a run on a busy server does not starve other I/O.
 *
 * The generic cell rate algorithm (a token bucket kept as one timestamp): each request of
 * `n` bytes is scheduled `n / rate` seconds after the previous one; a request may start up
 * to `burstMs` ahead of that schedule and otherwise waits. Bytes admitted in any window of
 * `w` ms therefore stay under `rate × (w + burstMs) / 1000` plus one request, and a run
 * that was slowed by something else does not bank credit for a later burst.
 *
 * @module
 */
import { Effect } from "effect"

/** Default time a request may run ahead of the schedule, in ms. */
export const DEFAULT_BURST_MS = 50

/** A limiter: `take(n)` completes when `n` more bytes may be read. */
export interface RateLimiter {
  /** Bytes per second. */
  readonly bytesPerSecond: number
  readonly take: (bytes: number) => Effect.Effect<void>
}

/**
 * A limiter of `bytesPerSecond` (a positive number). Requests are admitted in call order;
 * concurrent callers must serialize their calls (the engine takes segments under a lock).
 */
export const make = (
  bytesPerSecond: number,
  options: {
    readonly burstMs?: number
    /** The clock in ms (tests); default `performance.now`. */
    readonly now?: () => number
    /** How to wait `ms` (tests); default `Effect.sleep`. */
    readonly sleep?: (ms: number) => Effect.Effect<void>
  } = {}
): RateLimiter => {
  if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`a rate limit must be a positive number of bytes per second, got ${bytesPerSecond}`)
  const burstMs = options.burstMs ?? DEFAULT_BURST_MS
  const now = options.now ?? (() => performance.now())
  const sleep = options.sleep ?? ((ms: number) => Effect.sleep(ms))
  // Theoretical arrival time: when the next request would start on a perfect schedule.
  let tat: number | undefined
  return {
    bytesPerSecond,
    take: (bytes) =>
      Effect.suspend(() => {
        const t = now()
        const start = Math.max(tat ?? t, t)
        tat = start + (bytes * 1000) / bytesPerSecond
        const wait = start - burstMs - t
        return wait > 0 ? sleep(wait) : Effect.void
      })
  }
}
