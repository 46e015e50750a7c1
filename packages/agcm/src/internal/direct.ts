/**
 * Direct mode's unit of work: one segment read from the input file with pread, sealed or
 * opened, and written to the output file with pwrite, on whichever thread runs it (a
 * segment worker, or the calling thread). Segment bytes never cross threads.
 */
import * as fs from "node:fs"
import { cipherSegment, OPEN, TAG_BYTES } from "./cobblestone.js"

/** A segment to seal or open straight from one file to another. Plain data (posted to workers). */
export interface DirectJob {
  /** `SEAL` or `OPEN` (cobblestone.ts). */
  readonly op: number
  /** Index of the segment's first chunk. */
  readonly first: number
  /** Input length of each chunk, in bytes. */
  readonly lengths: ArrayLike<number>
  readonly inFd: number
  readonly inPos: number
  readonly outFd: number
  readonly outPos: number
  readonly inputBytes: number
  readonly outputBytes: number
}

/** What a direct job reports: `failedAt` as for `cipherSegment`, or where I/O went wrong. */
export interface DirectOutcome {
  readonly failedAt: number
  /** Bytes the input held at `inPos` when it ended early (the file shrank). */
  readonly short?: number
  /** A read or write failed: the syscall, errno code and message. */
  readonly ioError?: { readonly operation: "read" | "write"; readonly code: string; readonly message: string }
}

/** Buffers a thread reuses from one direct job to the next, grown on demand. */
export interface DirectBuffers {
  input?: Uint8Array
  output?: Uint8Array
}

const ioError = (operation: "read" | "write", e: unknown): DirectOutcome["ioError"] =>
  ({ operation, code: String((e as { code?: unknown }).code ?? ""), message: String((e as Error).message ?? e) })

/** Grows `buffers[which]` to at least `bytes` (not zero-filled: every byte used is overwritten first). */
const grown = (buffers: DirectBuffers, which: "input" | "output", bytes: number): Uint8Array => {
  const b = buffers[which]
  if (b && b.length >= bytes) return b
  return (buffers[which] = new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer, 0, bytes))
}

/**
 * Runs `job`: reads its input, seals or opens it with {@link cipherSegment} and writes the
 * output; opening writes only the chunks that authenticated. `release` as for
 * `cipherSegment`. Never throws: read and write failures come back in the outcome.
 */
export const directSegment = (
  aeadKey: Uint8Array,
  baseNonce: Uint8Array,
  job: DirectJob,
  buffers: DirectBuffers,
  release?: (consumed: Uint8Array) => void
): DirectOutcome => {
  const input = grown(buffers, "input", job.inputBytes).subarray(0, job.inputBytes)
  let got = 0
  try {
    while (got < job.inputBytes) {
      const n = fs.readSync(job.inFd, input, got, job.inputBytes - got, job.inPos + got)
      if (n === 0) return { failedAt: -1, short: got }
      got += n
    }
  } catch (e) {
    return { failedAt: -1, ioError: ioError("read", e) }
  }
  // Opening shrinks every chunk by its tag, so plaintext can overwrite its own ciphertext.
  const output = job.op === OPEN ? input : grown(buffers, "output", job.outputBytes)
  const failedAt = cipherSegment(job.op, aeadKey, baseNonce, job.first, input, job.lengths, output, release)
  let bytes = job.outputBytes
  if (failedAt >= 0) {
    bytes = 0
    for (let k = 0; k < failedAt; k++) bytes += job.op === OPEN ? job.lengths[k] - TAG_BYTES : job.lengths[k] + TAG_BYTES
  }
  try {
    let put = 0
    while (put < bytes) put += fs.writeSync(job.outFd, output, put, bytes - put, job.outPos + put)
  } catch (e) {
    return { failedAt, ioError: ioError("write", e) }
  }
  return { failedAt }
}
