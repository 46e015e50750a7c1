/**
 * Runs {@link cipherSegment} over a segment either in-process or on the worker pool,
 * deciding per segment: small inputs never pay for spinning up a pool.
 */
import { Effect } from "effect"
import * as os from "node:os"
import type { SegmentWorkerError } from "../Error.js"
import { cipherSegment, type DerivedKeys, SEAL, TAG_BYTES } from "./cobblestone.js"
import { type DirectBuffers, type DirectJob, type DirectOutcome, directSegment } from "./direct.js"
import { type InjectedFault, poolSeam } from "./faults.js"
import { releaser, Scavenger } from "./memory.js"
import { SegmentPool } from "./pool.js"

/** Inputs smaller than this (bytes) run in-process even with workers: a pool costs ~30 ms to start. */
export const POOL_MIN_INPUT_BYTES = 8 * 1024 * 1024
/** Segments smaller than this (bytes) run in-process: the transfer would cost more than it saves. */
export const POOL_MIN_SEGMENT_BYTES = 128 * 1024

export interface SegmentCipherOptions {
  /** Worker threads; 1 runs in-process. Default `os.availableParallelism()`. */
  readonly workers?: number | undefined
  /** Total input bytes when known, to skip the pool for small inputs. */
  readonly inputBytes?: number | undefined
  readonly timeoutMs?: number | undefined
  readonly fault?: InjectedFault | undefined
  /**
   * True when the caller hands over segment buffers it will not touch again, so they can
   * be transferred to a worker uncopied (see `AgcmCommonOptions.transferInputs`).
   */
  readonly transferInputs?: boolean | undefined
}

/** The inputs as one view when they are back-to-back views over one buffer. */
const contiguous = (inputs: ReadonlyArray<Uint8Array>): Uint8Array | undefined => {
  const buffer = inputs[0].buffer
  let at = inputs[0].byteOffset
  for (const b of inputs) {
    if (b.buffer !== buffer || b.byteOffset !== at) return undefined
    at += b.length
  }
  return new Uint8Array(buffer, inputs[0].byteOffset, at - inputs[0].byteOffset)
}

/** True when the inputs are back-to-back views over one plain ArrayBuffer not much larger than them. */
const transferable = (inputs: ReadonlyArray<Uint8Array>, total: number): boolean =>
  inputs[0].buffer instanceof ArrayBuffer && inputs[0].buffer.byteLength <= total + 64 * 1024 && contiguous(inputs) !== undefined

export interface SegmentOutcome {
  readonly outputs: ReadonlyArray<Uint8Array>
  /** The inputs, readable after the run (they may have moved to a worker and back). */
  readonly inputs: ReadonlyArray<Uint8Array>
  /** -1, or the position in the segment of the first chunk that failed to open. */
  readonly failedAt: number
}

/** The default of `workers` (lanes, calling thread included): the machine's available cores. */
export const defaultWorkers = (): number =>
  typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length

/** Free buffers kept for reuse; more than this goes to the GC. */
const MAX_FREE_BUFFERS = 8

export class SegmentCipher {
  private pool: SegmentPool | undefined
  /** Bytes run so far: for streams of unknown size, the pool starts only after 8 MiB. */
  private processedBytes = 0
  /**
   * Segment-sized buffers for reuse: pool inputs, seal outputs. A fresh 1 MiB allocation
   * per segment costs page faults and kernel zeroing, and garbage buffers pile up between
   * GCs (RSS grows); a handful of recycled ones keep both flat.
   */
  private readonly free: Array<ArrayBuffer> = []
  /** Output buffers handed out by `run` that `release` may take back. */
  private readonly lent = new WeakSet<ArrayBuffer>()
  private largest = 0
  readonly workers: number
  constructor(private readonly keys: DerivedKeys, private readonly options: SegmentCipherOptions = {}) {
    this.workers = Math.max(1, Math.floor(options.workers ?? defaultWorkers()))
  }

  private pooledOnce = false
  /** True once a segment was handed to the worker pool. */
  get usesPool(): boolean {
    return this.pooledOnce
  }

  /** Whether a segment of `bytes` goes to the pool (counts it for streams of unknown size). */
  private usePool(bytes: number): boolean {
    const pooled = this.workers > 1 && bytes >= POOL_MIN_SEGMENT_BYTES &&
      ((this.options.inputBytes ?? this.processedBytes) >= POOL_MIN_INPUT_BYTES || this.options.fault !== undefined)
    this.processedBytes += bytes
    return pooled
  }

  private startPool(size: number): SegmentPool {
    // Set up first: workers started after it find ArrayBuffer transfer built in.
    releaser()
    this.pool ??= new SegmentPool({
      size,
      aeadKey: this.keys.aeadKey,
      baseNonce: this.keys.baseNonce,
      timeoutMs: this.options.timeoutMs,
      fault: this.options.fault
    })
    return this.pool
  }

  /** The calling thread scavenges every 2 MiB when it cannot free outputs at once (memory.ts). */
  private readonly scavenger = new Scavenger(2 * 1024 * 1024)

  /** A buffer of at least `bytes`, recycled when one is free. */
  private take(bytes: number): ArrayBuffer {
    for (let i = this.free.length - 1; i >= 0; i--) {
      if (this.free[i].byteLength >= bytes) return this.free.splice(i, 1)[0]
    }
    this.largest = Math.max(this.largest, bytes)
    // Not zero-filled: every byte handed out is overwritten before it is read.
    return Buffer.allocUnsafeSlow(this.largest).buffer as ArrayBuffer
  }

  private recycle(buffer: ArrayBuffer): void {
    if (buffer.byteLength > 0 && this.free.length < MAX_FREE_BUFFERS && !this.free.includes(buffer)) this.free.push(buffer)
  }

  private lend(buffer: ArrayBuffer): ArrayBuffer {
    this.lent.add(buffer)
    return buffer
  }

  /**
   * Takes back the memory of outputs returned by `run` once the caller is done with them
   * (written out). Outputs this cipher did not allocate are ignored.
   */
  release(outputs: ReadonlyArray<Uint8Array>): void {
    const buffer = outputs[0]?.buffer
    if (buffer instanceof ArrayBuffer && this.lent.has(buffer)) {
      this.lent.delete(buffer)
      this.recycle(buffer)
    }
  }

  /** Seals (`op` = SEAL) or opens a segment of chunks starting at chunk `first`. */
  run(op: number, first: number, inputs: ReadonlyArray<Uint8Array>): Effect.Effect<SegmentOutcome, SegmentWorkerError> {
    const lengths = inputs.map((b) => b.length)
    let inputBytes = 0
    for (const n of lengths) inputBytes += n
    const outLength = (n: number) => (op === SEAL ? n + TAG_BYTES : Math.max(0, n - TAG_BYTES))
    let outputBytes = 0
    for (const n of lengths) outputBytes += outLength(n)
    const split = (output: Uint8Array, failedAt: number, ins: ReadonlyArray<Uint8Array> = inputs): SegmentOutcome => {
      const outputs: Array<Uint8Array> = []
      let at = 0
      for (let k = 0; k < lengths.length && (failedAt < 0 || k < failedAt); k++) {
        const n = outLength(lengths[k])
        outputs.push(output.subarray(at, at + n))
        at += n
      }
      return { outputs, failedAt, inputs: ins }
    }
    const inProcess = () => {
      // The engine hands a segment as back-to-back views over one buffer: use it as is.
      const input = inputs.length === 1 ? inputs[0] : contiguous(inputs) ?? Buffer.concat(inputs)
      const output = new Uint8Array(this.lend(this.take(outputBytes)), 0, outputBytes)
      const failedAt = cipherSegment(op, this.keys.aeadKey, this.keys.baseNonce, first, input, lengths, output, releaser())
      this.scavenger.count(inputBytes)
      return split(output, failedAt)
    }
    if (!this.usePool(inputBytes)) return Effect.sync(inProcess)
    // As in runDirect, the calling thread is one of the `workers` lanes: it runs a segment
    // itself whenever the online workers' queues are full (see lanePool).
    const pool = this.lanePool()
    if (pool === undefined) return this.later(inProcess)
    return Effect.callback<SegmentOutcome, SegmentWorkerError>((resume) => {
      const owned = this.options.transferInputs === true && transferable(inputs, inputBytes)
      let buffer: ArrayBuffer
      let offset = 0
      if (owned) {
        // The caller gave up this buffer: move it, no copy.
        buffer = inputs[0].buffer as ArrayBuffer
        offset = inputs[0].byteOffset
      } else {
        buffer = this.take(inputBytes)
        const view = new Uint8Array(buffer)
        let at = 0
        // One copy into a transferable buffer: the caller may reuse the buffers it lent us.
        for (const b of inputs) {
          view.set(b, at)
          at += b.length
        }
      }
      // Sealing grows each chunk by its tag, so it needs its own output buffer; opening
      // writes plaintext over the ciphertext it came from.
      const output = op === SEAL ? this.take(outputBytes) : undefined
      pool.run(op, first, lengths, buffer, offset, inputBytes, outputBytes, output).then(
        (r) => {
          const ins: Array<Uint8Array> = []
          let at = offset
          for (const n of lengths) {
            ins.push(new Uint8Array(r.input, at, n))
            at += n
          }
          // The output's buffer is lent to the caller until `release`; an input buffer that
          // does not hold the output is free again (its bytes stay readable until reused,
          // which the trailing-data probe of a failed segment relies on: it runs first).
          this.lend(r.output.buffer as ArrayBuffer)
          if (!r.inPlace && r.failedAt < 0) this.recycle(r.input)
          resume(Effect.succeed(split(r.output, r.failedAt, ins)))
        },
        (e: SegmentWorkerError) => resume(Effect.fail(e))
      )
    })
  }

  /**
   * The pool for the next segment, or `undefined` when this thread should run it itself.
   * The calling thread is one of the `workers` lanes: the pool has one thread fewer, and a
   * segment runs here whenever the queues of the workers online are full (so every
   * segment, until the first worker is online). The engine's thread has little
   * else to do (its reads and writes wait on the kernel), and a thread fewer is ~15 MiB
   * less RSS. The caller runs it through `later`, after the poll phase and one per turn
   * of the event loop: a worker that finished must get its next job before this thread
   * spends a millisecond or more on a segment of its own. (Never with an injected fault,
   * which must reach a worker.)
   */
  private lanePool(): SegmentPool | undefined {
    const pool = this.startPool(this.options.fault ? this.workers : this.workers - 1)
    // Until a worker is online (tens of ms after the pool starts, more on a busy machine),
    // its jobs would only wait: this thread runs them meanwhile. On 2 cores a 9 MiB
    // `cage encrypt` took 0.29 s with the pool against 0.17 s without (see README.md,
    // "For the `cage` CLI"). A stopping pool takes the segment, so that its failure is
    // reported rather than hidden by in-process runs.
    const capacity = this.options.fault || poolSeam.routeBeforeOnline ? pool.capacity : pool.readyCapacity
    const usePool = this.options.fault !== undefined || pool.stopping || pool.outstanding < capacity
    if (usePool) this.pooledOnce = true
    return usePool ? pool : undefined
  }

  /** In-process runs waiting for their turn (see `later`), oldest first. */
  private readonly waiting: Array<() => void> = []
  /** An immediate that runs the next one is pending: never two (they would run in one turn). */
  private scheduled = false
  private schedule(): void {
    if (this.scheduled || this.waiting.length === 0) return
    this.scheduled = true
    // An immediate queued while immediates run waits for the next turn, after its poll phase.
    setImmediate(this.runNext)
  }
  private readonly runNext = () => {
    this.scheduled = false
    try {
      // Resuming its fiber can queue the next run at once (effect resumes synchronously).
      this.waiting.shift()?.()
    } finally {
      this.schedule()
    }
  }

  /**
   * `work` run on this thread after the event loop's poll phase, one per turn: a worker's
   * reply (and so its next job) is handled between any two runs here. Queued runs of one
   * turn would otherwise run back to back while the worker, its jobs done, waits for the
   * next. An interrupted run that has not started is dropped.
   */
  private later<A>(work: () => A): Effect.Effect<A> {
    return Effect.callback<A>((resume) => {
      const run = () => {
        poolSeam.onLaterRun?.()
        let value: A
        try {
          value = work()
        } catch (e) {
          return resume(Effect.die(e))
        }
        resume(Effect.succeed(value))
      }
      this.waiting.push(run)
      this.schedule()
      return Effect.sync(() => {
        const at = this.waiting.indexOf(run)
        if (at >= 0) this.waiting.splice(at, 1)
      })
    })
  }

  /** Reusable buffers of in-process direct jobs. */
  private readonly directBuffers: DirectBuffers = {}

  /**
   * Seals or opens a segment straight from `job.inFd` to `job.outFd` (direct mode): on the
   * pool for large inputs, in-process otherwise. Interrupting it waits until the job no
   * longer touches the descriptors.
   */
  runDirect(job: DirectJob): Effect.Effect<DirectOutcome, SegmentWorkerError> {
    const inProcess = () => {
      const outcome = directSegment(this.keys.aeadKey, this.keys.baseNonce, job, this.directBuffers, releaser())
      this.scavenger.count(job.inputBytes)
      return outcome
    }
    if (!this.usePool(job.inputBytes)) return Effect.sync(inProcess)
    const pool = this.lanePool()
    if (pool === undefined) return this.later(inProcess)
    return Effect.callback<DirectOutcome, SegmentWorkerError>((resume) => {
      const done = pool.runDirect(job)
      done.then((r) => resume(Effect.succeed(r)), (e: SegmentWorkerError) => resume(Effect.fail(e)))
      // On interruption, wait for the worker to finish this job: the caller closes the
      // descriptors (and may remove the output) right after.
      return Effect.promise(() => done.then(() => undefined, () => undefined))
    })
  }

  close(): Effect.Effect<void> {
    return Effect.promise(async () => {
      const pool = this.pool
      this.pool = undefined
      await pool?.close()
    })
  }
}
