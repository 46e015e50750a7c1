/**
 * A pool of worker threads (worker.ts) that seal or open whole segments (runs of
 * consecutive chunks). Inputs and outputs move by transfer (the caller copies engine
 * buffers once into a transferable ArrayBuffer, since the engine reuses its own); results
 * come back per job, and the caller keeps them in chunk order.
 *
 * Failure model: a worker that throws, exits or exceeds `timeoutMs` on a job fails that
 * job and every other job in flight with a {@link SegmentWorkerError} naming its chunks,
 * and the pool stays failed (no silent respawn in the middle of a file).
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { SegmentWorkerError } from "../Error.js"
import type { DirectJob, DirectOutcome } from "./direct.js"
import type { InjectedFault } from "./faults.js"
import type { SegmentReply, WorkerJob, WorkerMessage, WorkerReply, WorkerSetup } from "./worker.js"

export interface PoolOptions {
  readonly size: number
  readonly aeadKey: Uint8Array
  readonly baseNonce: Uint8Array
  /** A job not answered within this many ms fails the run (default 120000). */
  readonly timeoutMs?: number | undefined
  /** Tests only: make the worker fail on the job whose first chunk is `atChunk`. */
  readonly fault?: InjectedFault | undefined
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

/**
 * The worker's file: `worker.js` beside this module in `dist/` (its own tsup entry), else
 * the installed package's `dist/worker.js`, found through its exported package.json. The
 * second serves programs that bundle this package (the `cage` CLI's single file) and vitest,
 * which runs this module from `src/`, where Node cannot start a TypeScript worker
 * (test/builtWorker.ts refuses a stale build). When neither exists, the worker fails to
 * start and the pool reports SegmentWorkerError "Crashed" naming the missing file.
 */
const workerFile = (): URL => {
  const beside = new URL("./worker.js", import.meta.url)
  if (fs.existsSync(beside)) return beside
  try {
    const pkg = createRequire(import.meta.url).resolve("@cage/agcm/package.json")
    const built = path.join(path.dirname(pkg), "dist", "worker.js")
    if (fs.existsSync(built)) return pathToFileURL(built)
  } catch {
    // Not installed under its name: report the file beside this module.
  }
  return beside
}
let resolvedWorkerFile: URL | undefined

interface Job {
  readonly id: number
  readonly first: number
  readonly chunks: number
  /** What the worker is posted (with `id`), and what that transfers. */
  readonly message: WorkerJob
  readonly transfer: ReadonlyArray<ArrayBuffer>
  readonly settle: (reply: WorkerReply) => void
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
    const workerData: WorkerSetup = {
      aeadKey: Uint8Array.from(options.aeadKey),
      baseNonce: Uint8Array.from(options.baseNonce),
      fault: options.fault
    }
    resolvedWorkerFile ??= workerFile()
    for (let i = 0; i < options.size; i++) {
      // Workers hold no long-lived objects: a small young generation keeps their RSS down.
      const worker = new Worker(resolvedWorkerFile, { workerData, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } })
      // Workers must not keep the process alive once the run is over.
      worker.unref()
      const slot: Slot = { worker, jobs: [], timer: undefined, online: false }
      // Jobs wait in the queue until their worker is online, and its timeout starts with its
      // first job: start-up (tens of ms, more under load) is not "stopped answering".
      worker.once("online", () => {
        slot.online = true
        this.dispatch()
      })
      worker.on("message", (m: WorkerReply) => {
        const job = slot.jobs[0]
        if (!job || job.id !== m.id) return
        clearTimeout(slot.timer)
        slot.jobs.shift()
        // The timeout covers the job the worker is on now.
        if (slot.jobs.length > 0) this.arm(slot)
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
        settle: (reply) => {
          // A segment job is answered with a SegmentReply.
          const m = reply as SegmentReply
          resolve({
            output: m.inPlace ? new Uint8Array(m.input, inputOffset, outputBytes) : new Uint8Array(m.output!, 0, outputBytes),
            failedAt: m.failedAt,
            input: m.input,
            inPlace: m.inPlace === true
          })
        },
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
        settle: (reply) => resolve((reply as { readonly direct: DirectOutcome }).direct),
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

  /** Jobs the workers already online can hold at once (two each): 0 while all are starting. */
  get readyCapacity(): number {
    let n = 0
    for (const slot of this.slots) if (slot.online) n += JOBS_PER_WORKER
    return n
  }

  /** True once the pool failed or was closed: a job submitted now is rejected with the reason. */
  get stopping(): boolean {
    return this.failure !== undefined || this.closed
  }

  private submit(job: Job) {
    // Refused only once every worker that was online has stopped (as close() does for the
    // jobs in flight): a caller that closes its descriptors on this rejection must find no
    // worker using them.
    if (this.failure || this.closed) {
      const f = this.failure
      const why = f === undefined
        ? new SegmentWorkerError({ reason: "Closed", firstChunk: job.first, chunks: job.chunks, detail: "pool closed" })
        : f.firstChunk < 0
        // A worker that died with no job (before it was online): name this job's chunks.
        ? new SegmentWorkerError({ reason: f.reason, firstChunk: job.first, chunks: job.chunks, detail: f.detail })
        : f
      return void (this.stopped ?? Promise.resolve()).then(() => job.reject(why))
    }
    this.queue.push(job)
    this.dispatch()
  }

  private dispatch() {
    for (let depth = 1; depth <= JOBS_PER_WORKER; depth++) {
      for (const slot of this.slots) {
        if (this.queue.length === 0) return
        // A job waits in the queue until a worker is online: posted to one still starting,
        // it could wait there while another worker is free.
        if (!slot.online || slot.jobs.length >= depth) continue
        const job = this.queue.shift()!
        slot.jobs.push(job)
        if (slot.jobs.length === 1) this.arm(slot)
        slot.worker.postMessage({ id: job.id, ...job.message } satisfies WorkerMessage, job.transfer as Array<ArrayBuffer>)
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
    // close() rejects what is in flight once every worker has stopped; name the real cause
    // (a worker that died with no job, before it was online, failed no one's chunks).
    void this.close((j) =>
      j === job ? failure
      : job === undefined ? new SegmentWorkerError({ reason, firstChunk: j.first, chunks: j.chunks, detail })
      : new SegmentWorkerError({ reason, firstChunk: j.first, chunks: j.chunks, detail: `aborted: another worker failed on chunk ${failure.firstChunk} (${detail})` })
    )
  }

  /**
   * Stops the workers, then rejects whatever was still in flight or queued: only after the
   * threads that were online are gone (each wipes its key copies first), so a direct job's
   * promise never settles while its worker may still read or write the caller's
   * descriptors. A worker not online yet is terminated without waiting: it was never posted
   * a job. Idempotent.
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
      // A worker not online yet was never posted a job (dispatch waits for it), so it holds
      // no descriptor: stopping it needs no wait (its start-up would be waited for).
      if (!s.online) return void s.worker.terminate().catch(() => undefined)
      s.worker.postMessage({ close: true } satisfies WorkerMessage)
      return s.worker.terminate().catch(() => undefined)
    }))
    for (const j of pending) {
      j.reject(why?.(j) ?? new SegmentWorkerError({ reason: "Closed", firstChunk: j.first, chunks: j.chunks, detail: "pool closed" }))
    }
  }
}
