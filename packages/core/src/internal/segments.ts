/**
 * Cutting the input into segments (runs of consecutive chunks): from the plan for a file,
 * discovered while reading for a stream, and taken one at a time under the rate limit.
 *
 * @internal
 */
import { Effect, Semaphore } from "effect"
import type { ChunkInput } from "../ChunkInput.js"
import { type ChunkPlan, type ChunkSpec, type Framing, planRegion } from "../ChunkSpec.js"
import { InputChanged, IoError } from "../Error.js"
import type * as RateLimit from "../RateLimit.js"

export interface Segment {
  readonly seq: number
  readonly chunks: ReadonlyArray<ChunkSpec>
  /** Chunk bytes, one view per chunk, all over one buffer owned by this segment. */
  readonly data?: ReadonlyArray<Uint8Array>
  /** The buffer under `data` (stream segments): back to the source's pool once the segment is written. */
  readonly buffer?: Buffer
}

/**
 * Read buffers kept for reuse. A fresh buffer per stream segment lives through several
 * scavenges while the segment is in flight, gets promoted, and promoted ArrayBuffers count
 * against V8's old-generation limit: reading a 1 GiB pipe then ran ~130 full mark-compacts
 * (about 1 s of CPU) against 2 with recycled buffers (README.md, "Memory").
 */
export interface BufferPool {
  /** A buffer of at least `bytes`: a kept one, else a new one. Not zero-filled. */
  readonly take: (bytes: number) => Buffer
  /**
   * Keeps `buffer` for a later `take` (at most `keep` of them). Only once nothing reads it
   * any more; a buffer a processor detached (transferred to a worker) is dropped.
   */
  readonly give: (buffer: Buffer) => void
}

export const makeBufferPool = (keep: number): BufferPool => {
  const free: Array<Buffer> = []
  return {
    take: (bytes) => {
      for (let i = free.length - 1; i >= 0; i--) {
        if (free[i].length >= bytes) return free.splice(i, 1)[0]
      }
      return Buffer.allocUnsafeSlow(bytes)
    },
    give: (buffer) => {
      if (buffer.buffer.byteLength > 0 && free.length < keep && !free.includes(buffer)) free.push(buffer)
    }
  }
}

/** The plan of an input of known size (a file), else `undefined` (a stream: discovered while reading). */
export const planInput = (input: ChunkInput, framing: Framing): Effect.Effect<ChunkPlan | undefined, IoError> => {
  if (input.size === undefined) return Effect.succeed(undefined)
  if (input.size < framing.headerBytes) {
    return Effect.fail(new IoError({ reason: "Unknown", operation: "read", path: input.description, detail: `the input (${input.size} bytes) is shorter than its ${framing.headerBytes}-byte header` }))
  }
  return Effect.succeed(planRegion(input.size - framing.headerBytes, framing))
}

export interface SegmentSourceOptions {
  readonly input: ChunkInput
  readonly framing: Framing
  /** The file's plan; `undefined` for a stream. */
  readonly plan: ChunkPlan | undefined
  /** Chunks per segment. */
  readonly segChunks: number
  /** The first chunk this run has not completed. */
  readonly startChunk: number
  /** Start from chunk 0 anyway, with the chunks before `startChunk` in segments of their own. */
  readonly needsReplay: boolean
  /** The bytes the first processor read as a header (a stream continues after them). */
  readonly headerRead: Uint8Array | undefined
  readonly limiter: RateLimit.RateLimiter | undefined
  /** Where stream segments take their buffers (and the engine returns them once written). */
  readonly buffers: BufferPool
}

/**
 * The segments of a run, in order. `take` yields `undefined` once the input is exhausted;
 * `regionRead` is how many bytes of a stream (after its header) were cut so far.
 */
export const makeSegmentSource = (options: SegmentSourceOptions) =>
  Effect.gen(function*() {
    const { input, framing, plan, segChunks, startChunk, needsReplay, headerRead, limiter, buffers } = options
    const cs = framing.chunkBytes
    let nextChunk = needsReplay ? 0 : startChunk
    let seq = 0
    let streamPos = headerRead ? headerRead.length : 0
    let carry: Uint8Array | undefined = headerRead && headerRead.length > framing.headerBytes ? headerRead.slice(framing.headerBytes) : undefined
    let streamDone = false
    let regionRead = 0
    // A resumed stream (the later stage of a staged run) starts after the chunks it
    // completed: read past them once, unless they are replayed.
    let skip = !plan && !needsReplay ? startChunk * cs : 0
    const skipCompleted = Effect.gen(function*() {
      if (carry) {
        const n = Math.min(carry.length, skip)
        carry = n < carry.length ? carry.subarray(n) : undefined
        skip -= n
        regionRead += n
      }
      const scratch = skip > 0 ? Buffer.allocUnsafeSlow(Math.min(skip, 1 << 20)) : undefined
      while (skip > 0) {
        const r = yield* input.read(streamPos, scratch!, 0, Math.min(skip, scratch!.length))
        if (r === 0) {
          return yield* Effect.fail(new InputChanged({ path: input.description, detail: `it ends ${skip} bytes before the chunks the checkpoint says were completed` }))
        }
        streamPos += r
        skip -= r
        regionRead += r
      }
    })

    const nextFileSegment = (): Segment | undefined => {
      if (nextChunk >= plan!.totalChunks) return undefined
      const from = nextChunk
      const to = Math.min(plan!.totalChunks, from + segChunks, needsReplay && from < startChunk ? startChunk : Infinity)
      nextChunk = to
      return { seq: seq++, chunks: Array.from(plan!.chunks(from, to)) }
    }
    const nextStreamSegment = Effect.gen(function*() {
      if (streamDone) return undefined
      if (skip > 0) yield* skipCompleted
      const want = segChunks * cs
      // One byte of lookahead tells whether the input ends exactly here.
      const buf = buffers.take(want + 1)
      let n = 0
      if (carry) {
        buf.set(carry, 0)
        n = carry.length
        carry = undefined
      }
      let eof = false
      while (n < want + 1) {
        const r = yield* input.read(streamPos, buf, n, want + 1 - n)
        if (r === 0) {
          eof = true
          break
        }
        streamPos += r
        n += r
      }
      if (!eof) {
        carry = Uint8Array.prototype.slice.call(buf, want, n)
        n = want
      }
      const chunks: Array<ChunkSpec> = []
      const data: Array<Uint8Array> = []
      const full = Math.floor(n / cs)
      const rem = n - full * cs
      const withFinalEmpty = eof && framing.shortFinal && rem === 0
      for (let k = 0; k < full; k++) {
        const last = eof && !framing.shortFinal && rem === 0 && k === full - 1
        chunks.push({ index: nextChunk, start: regionRead, end: regionRead + cs, length: cs, final: last })
        data.push(buf.subarray(k * cs, (k + 1) * cs))
        nextChunk++
        regionRead += cs
      }
      if (rem > 0 || withFinalEmpty) {
        chunks.push({ index: nextChunk, start: regionRead, end: regionRead + rem, length: rem, final: true })
        data.push(buf.subarray(full * cs, n))
        nextChunk++
        regionRead += rem
      }
      streamDone = eof
      if (chunks.length === 0) {
        buffers.give(buf)
        return undefined
      }
      return { seq: seq++, chunks, data, buffer: buf } satisfies Segment
    })
    const lock = yield* Semaphore.make(1)
    const limited = (seg: Segment | undefined) =>
      limiter && seg ? Effect.as(limiter.take(seg.chunks[seg.chunks.length - 1].end - seg.chunks[0].start), seg) : Effect.succeed(seg)
    // Under the lock, so segments are admitted by the limiter in plan order.
    const takeSegment = lock.withPermits(1)(
      limiter && !plan
        ? Effect.andThen(limiter.take(segChunks * cs), nextStreamSegment)
        : plan ? Effect.flatMap(Effect.sync(nextFileSegment), limited) : nextStreamSegment
    )
    return { take: takeSegment, regionRead: () => regionRead }
  })

/**
 * A reader of file segments for one worker (stream segments carry their bytes already).
 * Fails with `InputChanged` when the file is shorter than planned.
 */
export const makeSegmentReader = (input: ChunkInput, framing: Framing, bufferBytes: number) => {
  const spare: { buf?: Buffer } = {}
  return (seg: Segment) =>
    Effect.gen(function*() {
      if (seg.data) return seg.data
      const first = seg.chunks[0]
      const last = seg.chunks[seg.chunks.length - 1]
      const length = last.end - first.start
      // Each worker reuses its buffer, so garbage never piles up between GCs (RSS stays
      // flat); a processor that transferred it to a worker thread detached it, and then
      // the worker allocates a new one.
      if (!spare.buf || spare.buf.buffer.byteLength === 0 || spare.buf.length < length) {
        spare.buf = Buffer.allocUnsafeSlow(Math.max(length, bufferBytes))
      }
      const buf = spare.buf
      const n = yield* input.read(framing.headerBytes + first.start, buf, 0, length)
      if (n !== length) {
        return yield* Effect.fail(new InputChanged({ path: input.description, detail: `it shrank: expected ${length} bytes at ${framing.headerBytes + first.start}, got ${n}` }))
      }
      return seg.chunks.map((c) => buf.subarray(c.start - first.start, c.end - first.start))
    })
}
