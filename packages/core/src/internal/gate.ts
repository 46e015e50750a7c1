/**
 * The turnstile that keeps ordered processors and the output seeing segments in order.
 *
 * @internal
 */
import { Effect } from "effect"

/** A turnstile: `wait(n)` completes once `open(n)` was called, in increasing order. */
export const makeGate = (start: number) => {
  let next = start
  const waiters = new Map<number, () => void>()
  return {
    wait: (n: number) =>
      Effect.callback<void>((resume) => {
        if (next >= n) return resume(Effect.void)
        waiters.set(n, () => resume(Effect.void))
        return Effect.sync(() => void waiters.delete(n))
      }),
    open: (n: number) =>
      Effect.sync(() => {
        next = n
        const w = waiters.get(n)
        if (w) {
          waiters.delete(n)
          w()
        }
      })
  }
}
