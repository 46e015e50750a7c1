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
import { cipherSegment } from "./cobblestone.js"

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
const cipherSegment = ${cipherSegment.toString()};
const aeadKey = new Uint8Array(workerData.aeadKey);
const baseNonce = new Uint8Array(workerData.baseNonce);
const fault = workerData.fault;
// Every chunk's cipher.update() allocates its output outside the V8 heap, and V8 collects
// those only after tens of MiB of growth; they all die young, so a scavenge every few MiB
// (well under a millisecond) keeps each worker's RSS flat. V8's gc() is enabled at run time.
let scavenge = null;
try {
  if (typeof globalThis.gc !== "function") require("node:v8").setFlagsFromString("--expose-gc");
  scavenge = typeof globalThis.gc === "function" ? globalThis.gc : require("node:vm").runInNewContext("gc");
} catch {}
let sinceGc = 0;
const GC_EVERY = 4194304;
parentPort.on("message", (job) => {
  if (job.close) { aeadKey.fill(0); baseNonce.fill(0); process.exit(0); }
  if (fault && fault.atChunk === job.first) {
    if (fault.kind === "throw") throw new Error("injected fault");
    if (fault.kind === "exit") process.exit(7);
    if (fault.kind === "hang") return;
  }
  const input = new Uint8Array(job.input, job.inputOffset, job.inputBytes);
  // Opening shrinks every chunk by its tag, so plaintext can overwrite the ciphertext it
  // came from (each chunk's output starts at or before its input): no output allocation.
  const inPlace = job.op === 1;
  const output = inPlace ? new Uint8Array(job.input, job.inputOffset, job.outputBytes) : new Uint8Array(Buffer.allocUnsafeSlow(job.outputBytes).buffer, 0, job.outputBytes);
  const failedAt = cipherSegment(nodeCrypto, job.op, aeadKey, baseNonce, job.first, input, job.lengths, output);
  if (inPlace) parentPort.postMessage({ id: job.id, failedAt, inPlace: true, input: job.input }, [job.input]);
  else parentPort.postMessage({ id: job.id, failedAt, output: output.buffer, input: job.input }, [output.buffer, job.input]);
  sinceGc += job.inputBytes;
  if (scavenge && sinceGc >= GC_EVERY) { sinceGc = 0; scavenge({ type: "minor" }); }
});
`

interface Job {
  readonly id: number
  readonly op: number
  readonly first: number
  readonly lengths: ReadonlyArray<number>
  readonly input: ArrayBuffer
  readonly inputOffset: number
  readonly inputBytes: number
  readonly outputBytes: number
  readonly resolve: (r: SegmentResult) => void
  readonly reject: (e: SegmentWorkerError) => void
}

interface Slot {
  readonly worker: Worker
  job: Job | undefined
  timer: NodeJS.Timeout | undefined
  online: boolean
}

export class SegmentPool {
  private readonly slots: Array<Slot> = []
  private readonly queue: Array<Job> = []
  private readonly spare: Array<ArrayBuffer> = []
  private failure: SegmentWorkerError | undefined
  private closed = false
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
      const slot: Slot = { worker, job: undefined, timer: undefined, online: false }
      // Worker start-up (tens of ms, more under load) is not "stopped answering".
      worker.once("online", () => {
        slot.online = true
        if (slot.job) this.arm(slot)
      })
      worker.on("message", (m: { id: number; failedAt: number; inPlace?: boolean; output?: ArrayBuffer; input: ArrayBuffer }) => {
        const job = slot.job
        if (!job || job.id !== m.id) return
        clearTimeout(slot.timer)
        slot.job = undefined
        const output = m.inPlace ? new Uint8Array(m.input, job.inputOffset, job.outputBytes) : new Uint8Array(m.output!, 0, job.outputBytes)
        job.resolve({ output, failedAt: m.failedAt, input: m.input, inPlace: m.inPlace === true })
        this.dispatch()
      })
      worker.on("error", (e) => this.fail(slot, "Crashed", e.message))
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(slot, "Exited", `worker exited with code ${code}`)
      })
      this.slots.push(slot)
    }
    workerData.aeadKey.fill(0)
  }

  /** A transferable buffer of at least `bytes` (recycled from finished jobs when possible). */
  buffer(bytes: number): ArrayBuffer {
    const i = this.spare.findIndex((b) => b.byteLength >= bytes && b.byteLength <= 2 * bytes)
    if (i >= 0) return this.spare.splice(i, 1)[0]
    return Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer
  }

  /** Returns a buffer for reuse by a later copy. */
  recycle(buffer: ArrayBuffer): void {
    if (this.spare.length < 2 * this.slots.length && buffer.byteLength > 0) this.spare.push(buffer)
  }

  /** Runs one segment. `input` is transferred (detached) and must not be used afterwards. */
  run(op: number, first: number, lengths: ReadonlyArray<number>, input: ArrayBuffer, inputOffset: number, inputBytes: number, outputBytes: number): Promise<SegmentResult> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure)
      if (this.closed) {
        return reject(new SegmentWorkerError({ reason: "Closed", firstChunk: first, chunks: lengths.length, detail: "pool closed" }))
      }
      this.queue.push({ id: this.nextId++, op, first, lengths, input, inputOffset, inputBytes, outputBytes, resolve, reject })
      this.dispatch()
    })
  }

  private dispatch() {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return
      if (slot.job) continue
      const job = this.queue.shift()!
      slot.job = job
      if (slot.online) this.arm(slot)
      slot.worker.postMessage(
        { id: job.id, op: job.op, first: job.first, lengths: job.lengths, input: job.input, inputOffset: job.inputOffset, inputBytes: job.inputBytes, outputBytes: job.outputBytes },
        [job.input]
      )
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
    const job = slot.job
    this.failure = new SegmentWorkerError({ reason, firstChunk: job?.first ?? -1, chunks: job?.lengths.length ?? 0, detail })
    const pending = [...this.slots.flatMap((s) => (s.job ? [s.job] : [])), ...this.queue]
    this.queue.length = 0
    for (const s of this.slots) {
      clearTimeout(s.timer)
      s.job = undefined
    }
    for (const j of pending) {
      j.reject(j === job ? this.failure : new SegmentWorkerError({ reason, firstChunk: j.first, chunks: j.lengths.length, detail: `aborted: another worker failed on chunk ${this.failure.firstChunk} (${detail})` }))
    }
    void this.close()
  }

  /** Stops the workers (they wipe their key copies first). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const inFlight = this.slots.flatMap((s) => (s.job ? [s.job] : []))
    for (const s of this.slots) {
      clearTimeout(s.timer)
      s.job = undefined
    }
    for (const j of [...inFlight, ...this.queue.splice(0)]) {
      j.reject(new SegmentWorkerError({ reason: "Closed", firstChunk: j.first, chunks: j.lengths.length, detail: "pool closed" }))
    }
    await Promise.all(this.slots.map((s) => {
      s.worker.postMessage({ close: true })
      return s.worker.terminate().catch(() => undefined)
    }))
  }
}
