/**
 * Runs {@link cipherSegment} over a segment either in-process or on the worker pool,
 * deciding per segment: small inputs never pay for spinning up a pool.
 */
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as os from "node:os"
import type { SegmentWorkerError } from "../Error.js"
import { cipherSegment, type DerivedKeys, SEAL, TAG_BYTES } from "./cobblestone.js"
import { type PoolFault, SegmentPool } from "./pool.js"

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
  readonly fault?: { readonly kind: PoolFault; readonly atChunk: number } | undefined
  /**
   * True when the caller hands over segment buffers it will not touch again (the engine
   * allocates a fresh buffer per segment), so they can be transferred to a worker uncopied.
   */
  readonly transferInputs?: boolean | undefined
}

/** True when the inputs are back-to-back views over one plain ArrayBuffer not much larger than them. */
const transferable = (inputs: ReadonlyArray<Uint8Array>, total: number): boolean => {
  const buffer = inputs[0].buffer
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength > total + 64 * 1024) return false
  let at = inputs[0].byteOffset
  for (const b of inputs) {
    if (b.buffer !== buffer || b.byteOffset !== at) return false
    at += b.length
  }
  return true
}

export interface SegmentOutcome {
  readonly outputs: ReadonlyArray<Uint8Array>
  /** The inputs, readable after the run (they may have moved to a worker and back). */
  readonly inputs: ReadonlyArray<Uint8Array>
  /** -1, or the position in the segment of the first chunk that failed to open. */
  readonly failedAt: number
}

export const defaultWorkers = (): number =>
  typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length

export class SegmentCipher {
  private pool: SegmentPool | undefined
  /** Bytes run so far: for streams of unknown size, the pool starts only after 8 MiB. */
  private processedBytes = 0
  readonly workers: number
  constructor(private readonly keys: DerivedKeys, private readonly options: SegmentCipherOptions = {}) {
    this.workers = Math.max(1, Math.floor(options.workers ?? defaultWorkers()))
  }

  private pooledOnce = false
  /** True once a segment ran on the worker pool. */
  get usesPool(): boolean {
    return this.pooledOnce
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
    const pooled = this.workers > 1 && inputBytes >= POOL_MIN_SEGMENT_BYTES &&
      ((this.options.inputBytes ?? this.processedBytes) >= POOL_MIN_INPUT_BYTES || this.options.fault !== undefined)
    this.processedBytes += inputBytes
    if (!pooled) {
      return Effect.sync(() => {
        const input = inputs.length === 1 ? inputs[0] : Buffer.concat(inputs)
        const output = new Uint8Array(outputBytes)
        return split(output, cipherSegment(crypto, op, this.keys.aeadKey, this.keys.baseNonce, first, input, lengths, output))
      })
    }
    return Effect.callback<SegmentOutcome, SegmentWorkerError>((resume) => {
      this.pooledOnce = true
      this.pool ??= new SegmentPool({
        size: this.workers,
        aeadKey: this.keys.aeadKey,
        baseNonce: this.keys.baseNonce,
        timeoutMs: this.options.timeoutMs,
        fault: this.options.fault
      })
      const pool = this.pool
      const owned = this.options.transferInputs === true && transferable(inputs, inputBytes)
      let buffer: ArrayBuffer
      let offset = 0
      if (owned) {
        // The engine gives each segment a fresh buffer it never touches again: move it, no copy.
        buffer = inputs[0].buffer as ArrayBuffer
        offset = inputs[0].byteOffset
      } else {
        buffer = pool.buffer(inputBytes)
        const view = new Uint8Array(buffer)
        let at = 0
        // One copy into a transferable buffer: the caller may reuse the buffers it lent us.
        for (const b of inputs) {
          view.set(b, at)
          at += b.length
        }
      }
      pool.run(op, first, lengths, buffer, offset, inputBytes, outputBytes).then(
        (r) => {
          const ins: Array<Uint8Array> = []
          let at = offset
          for (const n of lengths) {
            ins.push(new Uint8Array(r.input, at, n))
            at += n
          }
          // A buffer that now holds the output is the caller's; otherwise it can carry a later copy.
          if (!owned && !r.inPlace && r.failedAt < 0) pool.recycle(r.input)
          resume(Effect.succeed(split(r.output, r.failedAt, ins)))
        },
        (e: SegmentWorkerError) => resume(Effect.fail(e))
      )
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
