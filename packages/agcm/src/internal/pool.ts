/**
 * A pool of worker threads that seal or open whole segments (runs of consecutive chunks)
 * with {@link cipherSegment}. Inputs and outputs move by transfer (the caller copies engine
 * buffers once into a transferable ArrayBuffer, since the engine reuses its own); results
 * come back per job, and the caller keeps them in chunk order.
 *
 * Failure model: a worker that throws, exits or exceeds `timeoutMs` on a job fails that
 * job and every other job in flight with a {@link SegmentWorkerError} naming its chunks,
 * and the pool stays failed (no silent respawn in the middle of a file).
 */
import { Worker } from "node:worker_threads"
import { SegmentWorkerError } from "../Error.js"
import { bufferReleaser, cipherSegment, type DirectJob, type DirectOutcome, directSegment, raiseMallocThresholds } from "./cobblestone.js"

/** Fault injection for tests of the failure paths (never set in production). */
export type PoolFault = "throw" | "exit" | "hang"

export interface PoolOptions {
  readonly size: number
  readonly aeadKey: Uint8Array
  readonly baseNonce: Uint8Array
  /** A job not answered within this many ms fails the run (default 120000). */
  readonly timeoutMs?: number
  /** Tests only: make the worker fail on the job whose first chunk is `atChunk`. */
  readonly fault?: { readonly kind: PoolFault; readonly atChunk: number }
}

export interface SegmentResult {
  readonly output: Uint8Array
  /** -1, or the position within the job of the first chunk that failed authentication. */
  readonly failedAt: number
  /** The input buffer, transferred back (the trailing-data probe rereads a failed chunk). */
  readonly input: ArrayBuffer
  /** True when `output` overwrote the input (opening): chunks before `failedAt` no longer hold ciphertext. */
  readonly inPlace: boolean
}

const WORKER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const nodeCrypto = require("node:crypto");
const nodeFs = require("node:fs");
const cipherSegment = ${cipherSegment.toString()};
const directSegment = ${directSegment.toString()};
// Direct jobs read and write through these, reused from job to job.
const buffers = {};
const aeadKey = new Uint8Array(workerData.aeadKey);
const baseNonce = new Uint8Array(workerData.baseNonce);
const fault = workerData.fault;
// Every chunk's cipher.update() allocates its output outside the V8 heap, and V8 collects
// those only after tens of MiB of growth. Each output is freed right after its copy where
// ArrayBuffers can be detached (see bufferReleaser); else they all die young, and a
// scavenge every MiB (well under a millisecond) keeps each worker's RSS flat. With release,
// a rare scavenge still collects the cipher objects. V8's gc() is enabled at run time.
const bufferReleaser = ${bufferReleaser.toString()};
const release = bufferReleaser(require("node:v8"), require("node:vm"));
let scavenge = null;
try {
  if (typeof globalThis.gc !== "function") require("node:v8").setFlagsFromString("--expose-gc");
  scavenge = typeof globalThis.gc === "function" ? globalThis.gc : require("node:vm").runInNewContext("gc");
} catch {}
let sinceGc = 0;
// Rare scavenges only while outputs are really being detached (see BufferReleaser.healthy).
const gcEvery = () => (release && release.healthy ? 16777216 : 1048576);
const raiseMallocThresholds = ${raiseMallocThresholds.toString()};
if (scavenge) raiseMallocThresholds(() => scavenge({ type: "minor" }));
parentPort.on("message", (job) => {
  if (job.close) { aeadKey.fill(0); baseNonce.fill(0); process.exit(0); }
  if (fault && fault.atChunk === job.first) {
    if (fault.kind === "throw") throw new Error("injected fault");
    if (fault.kind === "exit") process.exit(7);
    if (fault.kind === "hang") return;
  }
  if (job.direct) {
    const outcome = directSegment(nodeFs, nodeCrypto, cipherSegment, aeadKey, baseNonce, job, buffers, release);
    parentPort.postMessage({ id: job.id, direct: outcome });
  } else {
  const input = new Uint8Array(job.input, job.inputOffset, job.inputBytes);
  // Opening shrinks every chunk by its tag, so plaintext can overwrite the ciphertext it
  // came from (each chunk's output starts at or before its input): no output allocation.
  const inPlace = job.op === 1;
  const output = inPlace ? new Uint8Array(job.input, job.inputOffset, job.outputBytes) : new Uint8Array(job.output || Buffer.allocUnsafeSlow(job.outputBytes).buffer, 0, job.outputBytes);
  const failedAt = cipherSegment(nodeCrypto, job.op, aeadKey, baseNonce, job.first, input, job.lengths, output, release);
  if (inPlace) parentPort.postMessage({ id: job.id, failedAt, inPlace: true, input: job.input }, [job.input]);
  else parentPort.postMessage({ id: job.id, failedAt, output: output.buffer, input: job.input }, [output.buffer, job.input]);
  }
  sinceGc += job.inputBytes;
  if (scavenge && sinceGc >= gcEvery()) { sinceGc = 0; scavenge({ type: "minor" }); }
});
`

/** What a worker answers. */
interface Reply {
  readonly id: number
  readonly failedAt: number
  readonly inPlace?: boolean
  readonly output?: ArrayBuffer
  readonly input: ArrayBuffer
  readonly direct?: DirectOutcome
}

interface Job {
  readonly id: number
  readonly first: number
  readonly chunks: number
  /** The message posted to the worker, and what it transfers. */
  readonly message: object
  readonly transfer: ReadonlyArray<ArrayBuffer>
  readonly settle: (reply: Reply) => void
  readonly reject: (e: SegmentWorkerError) => void
}

/**
 * Jobs posted to a worker ahead of time: with two, a worker that finishes one starts the
 * next at once instead of idling until the main thread (busy on a loaded machine) answers.
 */
const JOBS_PER_WORKER = 2

interface Slot {
  readonly worker: Worker
  /** Jobs posted to this worker, oldest first (it answers in order). */
  readonly jobs: Array<Job>
  timer: NodeJS.Timeout | undefined
  online: boolean
  /** The uncaught error the worker died of, reported once it has exited. */
  crash?: string | undefined
}

export class SegmentPool {
  private readonly slots: Array<Slot> = []
  private readonly queue: Array<Job> = []
  private failure: SegmentWorkerError | undefined
  private closed = false
  /** Settles once close() has stopped every worker and rejected what was in flight. */
  private stopped: Promise<void> | undefined
  private nextId = 0
  private readonly timeoutMs: number

  constructor(options: PoolOptions) {
    this.timeoutMs = options.timeoutMs ?? 120_000
    const workerData = {
      aeadKey: Uint8Array.from(options.aeadKey),
      baseNonce: Uint8Array.from(options.baseNonce),
      fault: options.fault
    }
    for (let i = 0; i < options.size; i++) {
      // Workers hold no long-lived objects: a small young generation keeps their RSS down.
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } })
      // Workers must not keep the process alive once the run is over.
      worker.unref()
      const slot: Slot = { worker, jobs: [], timer: undefined, online: false }
      // Worker start-up (tens of ms, more under load) is not "stopped answering".
      worker.once("online", () => {
        slot.online = true
        if (slot.jobs.length > 0) this.arm(slot)
      })
      worker.on("message", (m: Reply) => {
        const job = slot.jobs[0]
        if (!job || job.id !== m.id) return
        clearTimeout(slot.timer)
        slot.jobs.shift()
        // The timeout covers the job the worker is on now.
        if (slot.jobs.length > 0 && slot.online) this.arm(slot)
        job.settle(m)
        this.dispatch()
      })
      // A crash is judged at "exit", not at "error": replies the worker posted before it
      // threw may still be queued behind the error event, and until they are handled the
      // oldest job in `jobs` could be one the worker had finished, not the one it died on.
      worker.on("error", (e) => {
        slot.crash = e.message
      })
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(slot, slot.crash !== undefined ? "Crashed" : "Exited", slot.crash ?? `worker exited with code ${code}`)
      })
      this.slots.push(slot)
    }
    workerData.aeadKey.fill(0)
  }

  /**
   * Runs one segment. `input` (and `output`, a buffer of at least `outputBytes` for a seal
   * to write into) are transferred (detached) and must not be used afterwards; both come
   * back in the result.
   */
  run(op: number, first: number, lengths: ReadonlyArray<number>, input: ArrayBuffer, inputOffset: number, inputBytes: number, outputBytes: number, output?: ArrayBuffer): Promise<SegmentResult> {
    return new Promise((resolve, reject) => {
      this.submit({
        id: this.nextId++,
        first,
        chunks: lengths.length,
        message: { op, first, lengths, input, inputOffset, inputBytes, outputBytes, output },
        transfer: output ? [input, output] : [input],
        settle: (m) => resolve({
          output: m.inPlace ? new Uint8Array(m.input, inputOffset, outputBytes) : new Uint8Array(m.output!, 0, outputBytes),
          failedAt: m.failedAt,
          input: m.input,
          inPlace: m.inPlace === true
        }),
        reject
      })
    })
  }

  /**
   * Runs a direct job: the worker reads the segment from `job.inFd` and writes its output
   * to `job.outFd` itself. The promise settles only once the worker no longer touches
   * either descriptor (a failed pool rejects after its workers have stopped).
   */
  runDirect(job: DirectJob): Promise<DirectOutcome> {
    return new Promise((resolve, reject) => {
      this.submit({
        id: this.nextId++,
        first: job.first,
        chunks: job.lengths.length,
        message: { ...job, lengths: Array.from(job.lengths), direct: true },
        transfer: [],
        settle: (m) => resolve(m.direct!),
        reject
      })
    })
  }

  /** Jobs queued or running. */
  get outstanding(): number {
    let n = this.queue.length
    for (const slot of this.slots) n += slot.jobs.length
    return n
  }

  /** Jobs the workers can hold at once (two each). */
  get capacity(): number {
    return this.slots.length * JOBS_PER_WORKER
  }

  private submit(job: Job) {
    // Refused only once every worker has stopped (as close() does for the jobs in flight):
    // a caller that closes its descriptors on this rejection must find no worker using them.
    if (this.failure || this.closed) {
      const why = this.failure ?? new SegmentWorkerError({ reason: "Closed", firstChunk: job.first, chunks: job.chunks, detail: "pool closed" })
      return void (this.stopped ?? Promise.resolve()).then(() => job.reject(why))
    }
    this.queue.push(job)
    this.dispatch()
  }

  private dispatch() {
    for (let depth = 1; depth <= JOBS_PER_WORKER; depth++) {
      for (const slot of this.slots) {
        if (this.queue.length === 0) return
        if (slot.jobs.length >= depth) continue
        const job = this.queue.shift()!
        slot.jobs.push(job)
        if (slot.online && slot.jobs.length === 1) this.arm(slot)
        slot.worker.postMessage({ id: job.id, ...job.message }, job.transfer as Array<ArrayBuffer>)
      }
    }
  }

  private arm(slot: Slot) {
    clearTimeout(slot.timer)
    slot.timer = setTimeout(() => {
      this.fail(slot, "Timeout", `no answer within ${this.timeoutMs} ms`)
      void slot.worker.terminate()
    }, this.timeoutMs)
    slot.timer.unref()
  }

  private fail(slot: Slot, reason: SegmentWorkerError["reason"], detail: string) {
    if (this.failure || this.closed) return
    const job = slot.jobs[0]
    const failure = new SegmentWorkerError({ reason, firstChunk: job?.first ?? -1, chunks: job?.chunks ?? 0, detail })
    this.failure = failure
    // close() rejects what is in flight once every worker has stopped; name the real cause.
    void this.close((j) =>
      j === job ? failure : new SegmentWorkerError({ reason, firstChunk: j.first, chunks: j.chunks, detail: `aborted: another worker failed on chunk ${failure.firstChunk} (${detail})` })
    )
  }

  /**
   * Stops the workers (they wipe their key copies first), then rejects whatever was still
   * in flight or queued: only after the threads are gone, so a direct job's promise never
   * settles while its worker may still read or write the caller's descriptors. Idempotent.
   */
  close(why?: (job: Job) => SegmentWorkerError): Promise<void> {
    if (this.stopped) return this.stopped
    this.closed = true
    this.stopped = this.stop(why)
    return this.stopped
  }

  private async stop(why?: (job: Job) => SegmentWorkerError): Promise<void> {
    const pending = [...this.slots.flatMap((s) => s.jobs.splice(0)), ...this.queue.splice(0)]
    for (const s of this.slots) clearTimeout(s.timer)
    await Promise.all(this.slots.map((s) => {
      s.worker.postMessage({ close: true })
      return s.worker.terminate().catch(() => undefined)
    }))
    for (const j of pending) {
      j.reject(why?.(j) ?? new SegmentWorkerError({ reason: "Closed", firstChunk: j.first, chunks: j.chunks, detail: "pool closed" }))
    }
  }
}
