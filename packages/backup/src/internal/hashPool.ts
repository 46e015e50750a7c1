/**
 * A small pool of worker threads computing SHA-256 digests (node:crypto) of chunks, so
 * manifest hashing and verify use every core.
 *
 * Two kinds of task:
 * - `hashBuffers`: bytes already in memory (create: plaintext and ciphertext chunks). They
 *   are copied once into a SharedArrayBuffer, because the engine owns and reuses its buffers.
 * - `hashFileRanges`: byte ranges of a file (verify). Each worker reads its ranges itself,
 *   so no byte crosses threads and the main thread only schedules.
 *
 * The worker source is an inline string (`eval: true`) so the same code runs from `dist`
 * and from the TypeScript sources under vitest.
 *
 * @internal
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"

/**
 * Reads `length` bytes at `position` into `buf`; returns the count, short only at end of
 * file (a truncated backup then hashes what exists, and its digest differs). Pure: it is
 * also pasted into the worker source with `toString()`, so it may use only its parameters.
 */
function readFully(readSync: typeof fs.readSync, fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0
  while (got < length) {
    const r = readSync(fd, buf, got, length - got, position + got)
    if (r === 0) break
    got += r
  }
  return got
}

/**
 * Hashes the ranges (flat `[start, length, …]`) of the open file `fd` into `out` (32 bytes
 * each); returns the (possibly grown) read buffer for reuse. A contiguous run of ranges
 * (verify's case) is read with one call instead of one per chunk. Pure, like
 * {@link readFully}: pasted into the worker source.
 */
function hashRanges(
  readSync: typeof fs.readSync,
  hash: typeof createHash,
  fd: number,
  ranges: ReadonlyArray<number>,
  out: Uint8Array,
  buffer: Buffer
): Buffer {
  let buf = buffer
  const n = ranges.length / 2
  if (n === 0) return buf
  const first = ranges[0]
  const last = ranges[2 * n - 2] + ranges[2 * n - 1]
  let contiguous = true
  for (let i = 1; i < n && contiguous; i++) contiguous = ranges[2 * i] === ranges[2 * i - 2] + ranges[2 * i - 1]
  if (contiguous) {
    if (buf.length < last - first) buf = Buffer.allocUnsafeSlow(last - first)
    const got = readFully(readSync, fd, buf, last - first, first)
    for (let i = 0; i < n; i++) {
      const a = Math.min(got, ranges[2 * i] - first)
      const b = Math.min(got, a + ranges[2 * i + 1])
      out.set(hash("sha256").update(buf.subarray(a, b)).digest(), 32 * i)
    }
  } else {
    for (let i = 0; i < n; i++) {
      const length = ranges[2 * i + 1]
      if (buf.length < length) buf = Buffer.allocUnsafeSlow(length)
      const got = readFully(readSync, fd, buf, length, ranges[2 * i])
      out.set(hash("sha256").update(buf.subarray(0, got)).digest(), 32 * i)
    }
  }
  return buf
}

const WORKER_SOURCE = `
${readFully.toString()}
${hashRanges.toString()}
const { parentPort } = require("node:worker_threads")
const { createHash } = require("node:crypto")
const fs = require("node:fs")
let buf = Buffer.alloc(0)
parentPort.on("message", (task) => {
  try {
    const n = task.kind === "buffers" ? task.bounds.length - 1 : task.ranges.length / 2
    const out = new Uint8Array(32 * n)
    if (task.kind === "buffers") {
      const all = new Uint8Array(task.sab)
      for (let i = 0; i < n; i++) {
        out.set(createHash("sha256").update(all.subarray(task.bounds[i], task.bounds[i + 1])).digest(), 32 * i)
      }
    } else {
      const fd = fs.openSync(task.path, "r")
      try {
        buf = hashRanges(fs.readSync, createHash, fd, task.ranges, out, buf)
      } finally {
        fs.closeSync(fd)
      }
    }
    parentPort.postMessage({ id: task.id, digests: out }, [out.buffer])
  } catch (e) {
    parentPort.postMessage({ id: task.id, error: String(e && e.message || e), code: e && e.code })
  }
})
`

type Task =
  | { readonly kind: "buffers"; readonly sab: SharedArrayBuffer; readonly bounds: ReadonlyArray<number> }
  | { readonly kind: "file"; readonly path: string; readonly ranges: ReadonlyArray<number> }

interface Pending {
  readonly task: Task
  readonly resolve: (d: Uint8Array) => void
  readonly reject: (e: Error) => void
}

/** Target bytes per task: large enough to amortise a message, small enough to balance two workers. */
const TASK_BYTES = 4 << 20

/**
 * Tasks posted to a worker ahead of time: with two, a worker that finishes one starts the
 * next at once instead of idling until the main thread answers.
 */
const TASKS_PER_WORKER = 2

/** SHA-256 of one buffer on the calling thread. */
export const sha256 = (data: Uint8Array): Buffer => createHash("sha256").update(data).digest()

/** A worker pool; `size` 0 hashes on the calling thread. */
export class HashPool {
  readonly size: number
  private readonly workers: Array<Worker> = []
  /** Tasks posted to each worker and not answered yet. */
  private readonly busy = new Map<Worker, number>()
  private readonly queue: Array<Pending> = []
  private readonly running = new Map<number, Pending & { worker: Worker }>()
  private nextId = 0
  private closed = false

  constructor(size: number = availableParallelism()) {
    this.size = Math.max(0, Math.floor(size))
  }

  private spawn() {
    const w = new Worker(WORKER_SOURCE, { eval: true })
    w.unref()
    w.on("message", (m: { id: number; digests?: Uint8Array; error?: string; code?: string }) => {
      if (!this.busy.has(w)) return
      // The worker is one task lighter even when that task was already failed by failAll.
      const left = Math.max(0, this.busy.get(w)! - 1)
      this.busy.set(w, left)
      // An idle worker must not keep the process alive; a busy one must (see pump).
      if (left === 0) w.unref()
      const job = this.running.get(m.id)
      if (job) {
        this.running.delete(m.id)
        if (m.digests) job.resolve(m.digests)
        else job.reject(Object.assign(new Error(m.error ?? "hash worker failed"), { code: m.code }))
      }
      this.pump()
    })
    const lose = (e: Error) => {
      // A dead worker must never be picked again (its tasks would never settle): drop it,
      // fail what was in flight, and let pump start a fresh one for later tasks.
      if (!this.busy.has(w)) return
      this.busy.delete(w)
      this.workers.splice(this.workers.indexOf(w), 1)
      this.failAll(e)
    }
    w.on("error", lose)
    w.on("exit", (code) => {
      if (!this.closed) lose(new Error(`hash worker exited with code ${code}`))
    })
    this.workers.push(w)
    this.busy.set(w, 0)
  }

  private failAll(e: Error) {
    for (const [id, job] of this.running) {
      this.running.delete(id)
      job.reject(e)
    }
    for (const job of this.queue.splice(0)) job.reject(e)
  }

  private pump() {
    while (this.queue.length > 0) {
      // The least busy worker; a new one while the pool is not full and all are working.
      let w: Worker | undefined
      for (const c of this.workers) if (w === undefined || this.busy.get(c)! < this.busy.get(w)!) w = c
      if ((w === undefined || this.busy.get(w)! > 0) && this.workers.length < this.size) {
        this.spawn()
        w = this.workers[this.workers.length - 1]
      }
      if (w === undefined || this.busy.get(w)! >= TASKS_PER_WORKER) return
      const job = this.queue.shift()!
      const id = this.nextId++
      this.running.set(id, { ...job, worker: w })
      this.busy.set(w, this.busy.get(w)! + 1)
      w.ref()
      w.postMessage({ id, ...job.task })
    }
  }

  private submit(task: Task): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error("internal error: hash pool used after close"))
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject })
      this.pump()
    })
  }

  /**
   * Shared buffers are reused: allocating (and zero-filling) a fresh SharedArrayBuffer per
   * segment cost more than the hashing and let memory grow until the GC caught up.
   */
  private readonly shared: Array<SharedArrayBuffer> = []

  private takeShared(bytes: number): SharedArrayBuffer {
    const i = this.shared.findIndex((b) => b.byteLength >= bytes)
    if (i >= 0) return this.shared.splice(i, 1)[0]
    // Round up to a power of two so buffers fit later segments of similar size.
    return new SharedArrayBuffer(Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(Math.max(1, bytes)))))
  }

  /** SHA-256 of each buffer, in order. */
  async hashBuffers(chunks: ReadonlyArray<Uint8Array>): Promise<Array<Buffer>> {
    if (this.size === 0) return chunks.map(sha256)
    const groups = groupBy(chunks.map((c) => c.length))
    const parts = await Promise.all(groups.map(([from, to]) => {
      let total = 0
      const bounds = [0]
      for (let i = from; i < to; i++) bounds.push((total += chunks[i].length))
      const sab = this.takeShared(total)
      const view = new Uint8Array(sab)
      for (let i = from; i < to; i++) view.set(chunks[i], bounds[i - from])
      return this.submit({ kind: "buffers", sab, bounds }).finally(() => this.shared.push(sab))
    }))
    return splitDigests(parts)
  }

  /** SHA-256 of each byte range `[start, start + length)` of the file at `path`, in order. */
  async hashFileRanges(path: string, ranges: ReadonlyArray<readonly [start: number, length: number]>): Promise<Array<Buffer>> {
    if (this.size === 0) return hashFileRangesHere(path, ranges)
    const groups = groupBy(ranges.map((r) => r[1]))
    const parts = await Promise.all(groups.map(([from, to]) =>
      this.submit({ kind: "file", path, ranges: ranges.slice(from, to).flatMap((r) => [r[0], r[1]]) })
    ))
    return splitDigests(parts)
  }

  /** Stops the workers. Pending tasks fail. */
  async close(): Promise<void> {
    this.closed = true
    this.failAll(new Error("hash pool closed"))
    await Promise.all(this.workers.map((w) => w.terminate()))
    this.workers.length = 0
    this.busy.clear()
    this.shared.length = 0
  }
}

/** Groups consecutive items into runs of about TASK_BYTES (at least one item each). */
const groupBy = (lengths: ReadonlyArray<number>): Array<[number, number]> => {
  const out: Array<[number, number]> = []
  let from = 0
  let bytes = 0
  for (let i = 0; i < lengths.length; i++) {
    bytes += lengths[i] + 64 // per-chunk overhead, so many empty chunks still split
    if (bytes >= TASK_BYTES) {
      out.push([from, i + 1])
      from = i + 1
      bytes = 0
    }
  }
  if (from < lengths.length) out.push([from, lengths.length])
  return out
}

const splitDigests = (parts: ReadonlyArray<Uint8Array>): Array<Buffer> => {
  const out: Array<Buffer> = []
  for (const p of parts) for (let i = 0; i < p.length; i += 32) out.push(Buffer.from(p.buffer, p.byteOffset + i, 32))
  return out
}

/**
 * Single-thread reference: reads and hashes each range on the calling thread, in groups of
 * about 4 MiB like the workers (so a comparison measures threads, not I/O patterns).
 */
export const hashFileRangesHere = (path: string, ranges: ReadonlyArray<readonly [number, number]>): Array<Buffer> => {
  const fd = fs.openSync(path, "r")
  try {
    let buf: Buffer = Buffer.alloc(0)
    const parts: Array<Uint8Array> = []
    for (const [from, to] of groupBy(ranges.map((r) => r[1]))) {
      const out = new Uint8Array(32 * (to - from))
      buf = hashRanges(fs.readSync, createHash, fd, ranges.slice(from, to).flatMap((r) => [r[0], r[1]]), out, buf)
      parts.push(out)
    }
    return splitDigests(parts)
  } finally {
    fs.closeSync(fd)
  }
}
