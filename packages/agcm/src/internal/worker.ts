/**
 * A segment worker thread of the pool (pool.ts), which starts it from this package's built
 * `dist/worker.js`: it seals or opens the segments it is posted, one at a time, in order.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads"
import { cipherSegment, OPEN } from "./cobblestone.js"
import { type DirectBuffers, type DirectJob, type DirectOutcome, directSegment } from "./direct.js"
import type { InjectedFault } from "./faults.js"
import { minorGc, releaser, Scavenger } from "./memory.js"

/** What the pool hands each worker at start. */
export interface WorkerSetup {
  readonly aeadKey: Uint8Array
  readonly baseNonce: Uint8Array
  /** Tests only: fail on purpose (faults.ts). */
  readonly fault?: InjectedFault | undefined
}

/** A segment whose bytes travel with the message (transferred). */
export interface SegmentJob {
  readonly op: number
  readonly first: number
  readonly lengths: ReadonlyArray<number>
  readonly input: ArrayBuffer
  readonly inputOffset: number
  readonly inputBytes: number
  readonly outputBytes: number
  /** Where a seal writes its output, when the pool lends one; else the worker allocates it. */
  readonly output?: ArrayBuffer | undefined
  readonly direct?: undefined
}

/** A job: a segment, or a direct job (the worker reads and writes the files itself). */
export type WorkerJob = SegmentJob | (DirectJob & { readonly direct: true })

/** What a worker is posted: a job (`id` orders the replies), or the order to wipe its keys and stop. */
export type WorkerMessage = (WorkerJob & { readonly id: number; readonly close?: undefined }) | { readonly close: true }

/** A worker's answer to a {@link SegmentJob}. */
export interface SegmentReply {
  readonly id: number
  /** -1, or the position within the job of the first chunk that failed authentication. */
  readonly failedAt: number
  /** The opened plaintext overwrote `input` (no `output`). */
  readonly inPlace?: boolean
  readonly output?: ArrayBuffer
  /** The job's input buffer, transferred back. */
  readonly input: ArrayBuffer
}

/** What a worker answers, one reply per job, in the order posted. */
export type WorkerReply = SegmentReply | { readonly id: number; readonly direct: DirectOutcome }

if (!parentPort) throw new Error("@cage/agcm's worker.js runs only as a worker thread of its segment pool")
const port = parentPort
const setup = workerData as WorkerSetup
const aeadKey = new Uint8Array(setup.aeadKey)
const baseNonce = new Uint8Array(setup.baseNonce)
// workerData is this thread's own copy: wiped once copied, so the only copies left are the
// two above, which the close message wipes.
setup.aeadKey.fill(0)
setup.baseNonce.fill(0)
const fault = setup.fault
// Direct jobs read and write through these, reused from job to job.
const buffers: DirectBuffers = {}
// Set up before the first job: outputs freed at once where possible; where not, a scavenge
// every MiB and glibc's thresholds raised now (README.md, "Memory").
const release = releaser()
minorGc()
const scavenger = new Scavenger(1024 * 1024)

port.on("message", (job: WorkerMessage) => {
  if (job.close) {
    aeadKey.fill(0)
    baseNonce.fill(0)
    process.exit(0)
  }
  if (fault && fault.atChunk === job.first) {
    if (fault.kind === "throw") throw new Error("injected fault")
    if (fault.kind === "exit") process.exit(7)
    if (fault.kind === "hang") return
  }
  if (job.direct) {
    const outcome = directSegment(aeadKey, baseNonce, job, buffers, release)
    port.postMessage({ id: job.id, direct: outcome } satisfies WorkerReply)
  } else {
    const input = new Uint8Array(job.input, job.inputOffset, job.inputBytes)
    // Opening shrinks every chunk by its tag, so plaintext can overwrite the ciphertext it
    // came from (each chunk's output starts at or before its input): no output allocation.
    const inPlace = job.op === OPEN
    const output = inPlace
      ? new Uint8Array(job.input, job.inputOffset, job.outputBytes)
      : new Uint8Array(job.output ?? Buffer.allocUnsafeSlow(job.outputBytes).buffer, 0, job.outputBytes)
    const failedAt = cipherSegment(job.op, aeadKey, baseNonce, job.first, input, job.lengths, output, release)
    if (inPlace) port.postMessage({ id: job.id, failedAt, inPlace: true, input: job.input } satisfies WorkerReply, [job.input])
    else port.postMessage({ id: job.id, failedAt, output: output.buffer as ArrayBuffer, input: job.input } satisfies WorkerReply, [output.buffer as ArrayBuffer, job.input])
  }
  scavenger.count(job.inputBytes)
})
