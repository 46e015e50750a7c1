/**
 * Streaming AGCM v2: Node stream transforms (`createEncryptStream`, `createDecryptStream`)
 * and Effect stream operators (`encryptStream`, `decryptStream`).
 *
 * Memory is constant: at most `inFlight` segments of about 1 MiB each plus one chunk of
 * look-ahead, whatever the stream length. Segments run on the worker pool when `workers`
 * is above 1 and the stream is large enough to repay it; output is always in chunk order.
 *
 * The decryptor releases a chunk's plaintext only after that chunk authenticated; it keeps
 * one sealed chunk plus 256 bytes of look-ahead so that the end of the stream (a missing
 * final chunk, trailing data) is judged on the real tail.
 *
 * @module
 */
import type { ChunkSpec } from "@cage/core"
import { Effect, Stream } from "effect"
import { Transform } from "node:stream"
import type { AgcmError } from "./Error.js"
import { AgcmUsageError, Truncated } from "./Error.js"
import { encryptFraming, isLegacyV1, isRawKey, MAGIC, newParams, openHeader, parseHeader, sealHeader } from "./Format.js"
import { ByteQueue } from "./internal/byteQueue.js"
import { type DerivedKeys, SEAL, TAG_BYTES, wipeKeys } from "./internal/cobblestone.js"
import { faultOf } from "./internal/faults.js"
import { openSegment, TRAILING_PROBE_BYTES } from "./internal/open.js"
import { SegmentCipher } from "./internal/segmentCipher.js"
import { type LegacyDecryptor, makeLegacyDecryptor } from "./LegacyV1.js"
import type { AgcmDecryptOptions, AgcmEncryptOptions } from "./Options.js"

/** Target bytes per segment handed to a worker. */
const SEGMENT_TARGET_BYTES = 1024 * 1024

type Run = Promise<{ ok: true; out: ReadonlyArray<Uint8Array> } | { ok: false; error: unknown }>

const settle = (e: Effect.Effect<ReadonlyArray<Uint8Array>, unknown>): Run =>
  Effect.runPromise(Effect.result(e)).then(
    (r) => (r._tag === "Success" ? { ok: true as const, out: r.success } : { ok: false as const, error: r.failure }),
    (defect) => ({ ok: false as const, error: defect })
  )

/** Keeps segments in flight and hands results back in submission order. */
class Ordered {
  private readonly runs: Array<Run> = []
  constructor(private readonly maxInFlight: number) {}
  submit(run: Run) {
    this.runs.push(run)
  }
  /** Collects finished results until at most `keep` runs remain in flight. */
  async drain(keep = this.maxInFlight): Promise<Array<Uint8Array>> {
    const out: Array<Uint8Array> = []
    while (this.runs.length > keep) {
      const r = await this.runs.shift()!
      if (!r.ok) throw r.error
      out.push(...r.out)
    }
    return out
  }
}

/** An incremental cipher: bytes in, bytes out, in order. */
export interface StreamCipher {
  /**
   * Feeds bytes; resolves with output ready so far (may be empty). Rejects with an
   * AgcmError. `bytes` must stay unchanged until the promise settles; after that the
   * cipher holds no view of it (bytes not yet sealed or opened are copied), so a read loop
   * may refill one buffer.
   */
  readonly write: (bytes: Uint8Array) => Promise<Array<Uint8Array>>
  /** Ends input; resolves with the remaining output. Rejects with an AgcmError. */
  readonly end: () => Promise<Array<Uint8Array>>
  /** Releases workers and wipes keys. Idempotent. */
  readonly close: () => Promise<void>
}

const specsFor = (first: number, firstStart: number, lengths: ReadonlyArray<number>, finalLast: boolean): Array<ChunkSpec.ChunkSpec> => {
  const specs: Array<ChunkSpec.ChunkSpec> = []
  let start = firstStart
  for (let k = 0; k < lengths.length; k++) {
    specs.push({ index: first + k, start, end: start + lengths[k], length: lengths[k], final: finalLast && k === lengths.length - 1 })
    start += lengths[k]
  }
  return specs
}

/**
 * An incremental encryptor (header first). Resolves after key derivation.
 * Errors: AgcmUsageError, KdfCostTooHigh; later SegmentWorkerError.
 */
export const makeEncryptor = (options: AgcmEncryptOptions): Effect.Effect<StreamCipher, AgcmError> =>
  Effect.gen(function*() {
    const { chunkBytes: chunkSize } = yield* encryptFraming(options.chunkSize)
    const params = yield* newParams(options, chunkSize)
    const { header, keys } = yield* sealHeader(params, options)
    const cipher = new SegmentCipher(keys, { workers: options.workers, timeoutMs: options.workerTimeoutMs, fault: faultOf(options) })
    const perSegment = Math.max(1, Math.floor(SEGMENT_TARGET_BYTES / chunkSize))
    const ordered = new Ordered(cipher.workers > 1 ? cipher.workers * 2 : 0)
    const queue = new ByteQueue()
    let index = 0
    let headerSent = false
    let done = false
    const takeHeader = (): Array<Uint8Array> => {
      if (headerSent) return []
      headerSent = true
      return [header]
    }
    const submit = (chunks: Array<Uint8Array>) => {
      const first = index
      index += chunks.length
      ordered.submit(settle(cipher.run(SEAL, first, chunks).pipe(Effect.map((o) => o.outputs))))
    }
    return {
      write: async (bytes) => {
        if (done) throw new AgcmUsageError({ reason: "WriteAfterEnd", detail: "write after end" })
        queue.push(bytes)
        // Full chunks are never final in Cobblestone, so a full segment can go at once.
        while (queue.length >= perSegment * chunkSize) {
          const chunks: Array<Uint8Array> = []
          for (let k = 0; k < perSegment; k++) chunks.push(queue.take(chunkSize))
          submit(chunks)
        }
        queue.own()
        return [...takeHeader(), ...(await ordered.drain())]
      },
      end: async () => {
        done = true
        const chunks: Array<Uint8Array> = []
        while (queue.length >= chunkSize) chunks.push(queue.take(chunkSize))
        chunks.push(queue.take(queue.length))
        submit(chunks)
        return [...takeHeader(), ...(await ordered.drain(0))]
      },
      close: async () => {
        await Effect.runPromise(cipher.close())
        wipeKeys(keys)
      }
    }
  })

/**
 * An incremental decryptor. Reads and checks the header from the first bytes.
 * Errors: NotAgcm, UnsupportedVersion, InvalidHeader, Truncated, HeaderAuthFailed,
 * ChunkAuthFailed, TrailingData, KdfCostTooHigh, AgcmUsageError, SegmentWorkerError.
 */
export const makeDecryptor = (options: AgcmDecryptOptions): StreamCipher => {
  const queue = new ByteQueue()
  // With legacyV1, a version-1 header hands the whole stream to the v1 reader.
  let legacy: LegacyDecryptor | undefined
  let keys: DerivedKeys | undefined
  let cipher: SegmentCipher | undefined
  let ordered = new Ordered(0)
  let chunkSize = 0
  let headerBytes = 0
  let index = 0
  let regionStart = 0
  let failure: unknown
  let perSegment = 1

  const readHeader = async (atEnd: boolean): Promise<boolean> => {
    // From the magic's 4 bytes on, bytes that are not AGCM fail at once (a header still short
    // of its end parses as Truncated, which only means "wait for more").
    if (queue.length < MAGIC.length && !atEnd) return false
    const head = queue.peek(queue.length)
    if (options.legacyV1 && isLegacyV1(head)) {
      if (!isRawKey(options)) throw new AgcmUsageError({ reason: "Key", detail: "AGCM v1 files use a raw 32-byte key, not a passphrase" })
      legacy = makeLegacyDecryptor({ key: options.key, onWarning: options.onWarning })
      return true
    }
    // Parse what we have; "truncated" before the end only means "wait for more".
    const parsed = await Effect.runPromise(Effect.result(parseHeader(head)))
    if (parsed._tag === "Failure") {
      if (parsed.failure._tag === "Truncated" && !atEnd) return false
      throw parsed.failure
    }
    const h = parsed.success
    const opened = await Effect.runPromise(Effect.result(openHeader(h, options)))
    if (opened._tag === "Failure") throw opened.failure
    keys = opened.success
    chunkSize = h.chunkSize
    headerBytes = h.headerBytes
    queue.take(headerBytes)
    cipher = new SegmentCipher(keys, { workers: options.workers, timeoutMs: options.workerTimeoutMs, fault: faultOf(options) })
    ordered = new Ordered(cipher.workers > 1 ? cipher.workers * 2 : 0)
    perSegment = Math.max(1, Math.floor(SEGMENT_TARGET_BYTES / chunkSize))
    return true
  }
  const submit = (chunks: Array<Uint8Array>, finalLast: boolean, regionBytes: number | undefined) => {
    const specs = specsFor(index, regionStart, chunks.map((c) => c.length), finalLast)
    index += chunks.length
    for (const c of chunks) regionStart += c.length
    ordered.submit(settle(openSegment(cipher!, keys!, chunkSize, specs, chunks, regionBytes, headerBytes)))
  }
  const guard = async <A>(f: () => Promise<A>): Promise<A> => {
    if (failure) throw failure
    try {
      return await f()
    } catch (e) {
      // Once failed, stay failed.
      failure = e
      throw e
    }
  }
  return {
    write: (bytes) =>
      guard(async () => {
        if (legacy) return legacy.write(bytes)
        queue.push(bytes)
        if (!keys && !(await readHeader(false))) {
          queue.own()
          return []
        }
        if (legacy) return (legacy as LegacyDecryptor).write(queue.take(queue.length))
        const sealed = chunkSize + TAG_BYTES
        // Keep one sealed chunk plus the probe window in hand: those bytes may be the tail.
        while (queue.length >= perSegment * sealed + sealed + TRAILING_PROBE_BYTES) {
          const chunks: Array<Uint8Array> = []
          for (let k = 0; k < perSegment; k++) chunks.push(queue.take(sealed))
          submit(chunks, false, undefined)
        }
        queue.own()
        return ordered.drain()
      }),
    end: () =>
      guard(async () => {
        if (!keys && !legacy) await readHeader(true)
        if (legacy) return [...(legacy as LegacyDecryptor).write(queue.take(queue.length)), ...(legacy as LegacyDecryptor).end()]
        if (!keys) throw new Truncated({ at: queue.length, detail: "inside the header" })
        const sealed = chunkSize + TAG_BYTES
        const regionBytes = regionStart + queue.length
        const chunks: Array<Uint8Array> = []
        while (queue.length >= sealed) chunks.push(queue.take(sealed))
        // shortFinal: a region that is a multiple of the sealed chunk size ends with an empty (missing) final chunk.
        chunks.push(queue.take(queue.length))
        submit(chunks, true, regionBytes)
        return ordered.drain(0)
      }),
    close: async () => {
      if (cipher) await Effect.runPromise(cipher.close())
      wipeKeys(keys)
    }
  }
}

const toTransform = (make: () => Promise<StreamCipher>): Transform => {
  let cipher: Promise<StreamCipher> | undefined
  const get = () => (cipher ??= make())
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      get()
        .then((c) => c.write(chunk))
        .then((out) => {
          for (const o of out) if (o.length > 0) t.push(o)
          cb()
        }, (e) => cb(e as Error))
    },
    flush(cb) {
      get()
        .then((c) => c.end())
        .then((out) => {
          for (const o of out) if (o.length > 0) t.push(o)
          cb()
        }, (e) => cb(e as Error))
    },
    destroy(err, cb) {
      const c = cipher
      if (!c) return cb(err)
      c.then((x) => x.close(), () => undefined).then(() => cb(err), () => cb(err))
    }
  })
  t.on("end", () => void t.destroy())
  return t
}

/**
 * A Node transform: plaintext in, AGCM v2 out (header first). Constant memory.
 * Destroys with AgcmUsageError, KdfCostTooHigh or SegmentWorkerError.
 */
export const createEncryptStream = (options: AgcmEncryptOptions): Transform =>
  toTransform(() => Effect.runPromise(Effect.result(makeEncryptor(options))).then((r) => {
    if (r._tag === "Failure") throw r.failure
    return r.success
  }))

/**
 * A Node transform: AGCM v2 in, plaintext out. Plaintext is pushed only after its chunk
 * authenticated. Destroys with the first error (see {@link makeDecryptor}).
 */
export const createDecryptStream = (options: AgcmDecryptOptions): Transform =>
  toTransform(() => Promise.resolve(makeDecryptor(options)))

const fromCipher = <E, R>(make: Effect.Effect<StreamCipher, AgcmError>, self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | AgcmError, R> =>
  Stream.unwrap(Effect.map(make, (c) => {
    const lift = (p: () => Promise<Array<Uint8Array>>) =>
      Effect.tryPromise({ try: p, catch: (e) => e as AgcmError })
    return self.pipe(
      Stream.mapEffect((b) => lift(() => c.write(b))),
      Stream.concat(Stream.fromEffect(Effect.suspend(() => lift(() => c.end())))),
      Stream.flattenIterable,
      Stream.filter((b) => b.length > 0),
      Stream.ensuring(Effect.promise(() => c.close()))
    )
  }))

/** Effect stream operator: plaintext bytes to AGCM v2 bytes. Fails with an AgcmError. */
export const encryptStream = (options: AgcmEncryptOptions) =>
<E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | AgcmError, R> => fromCipher(makeEncryptor(options), self)

/** Effect stream operator: AGCM v2 bytes to plaintext. Fails with an AgcmError. */
export const decryptStream = (options: AgcmDecryptOptions) =>
<E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | AgcmError, R> => fromCipher(Effect.sync(() => makeDecryptor(options)), self)

