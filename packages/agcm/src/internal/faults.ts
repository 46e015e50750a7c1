/**
 * Test seam: a worker fault injected into the pool a processor or stream creates. Not part
 * of the package's API (`internal/` is hidden by its exports); options carry it under a
 * symbol that only this module (and the tests importing it) can name.
 *
 * @module
 */
/** How a worker fails: throws, exits, or stops answering. */
export type PoolFault = "throw" | "exit" | "hang"

/** Where and how a pool's worker fails: at the segment starting at chunk `atChunk`. */
export interface InjectedFault {
  readonly kind: PoolFault
  readonly atChunk: number
}

const FAULT = Symbol("@cage/agcm/fault")

/** `options` with a fault to inject (tests). */
export const withFault = <O extends object>(options: O, fault: InjectedFault): O => ({ ...options, [FAULT]: fault })

/** The fault `options` carry, if any. */
export const faultOf = (options: object): InjectedFault | undefined => (options as { [FAULT]?: InjectedFault })[FAULT]

/**
 * Test seam: route segments to the pool from its start, as if its workers were online at
 * once (their jobs wait in the pool's queue until they are). By default the calling thread
 * runs segments itself until a worker is online (`SegmentCipher`), so whether a short input
 * reaches the pool depends on how fast a thread starts; tests that check the pool's own
 * behaviour set this (test/setup.ts) to get the same routing every run.
 */
export const poolSeam: {
  routeBeforeOnline: boolean
  /** Called as each in-process run of a pooled cipher starts (tests: which event-loop turn). */
  onLaterRun: (() => void) | undefined
} = { routeBeforeOnline: false, onLaterRun: undefined }
