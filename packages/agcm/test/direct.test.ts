/**
 * Direct mode: a lone AGCM processor, a file input and a file output, so the engine hands
 * the processor descriptors and the processor preads, seals/opens and pwrites each segment
 * itself (in-process, or on the worker pool for inputs of 8 MiB or more).
 *
 * Every test checks that direct mode was really taken (a spy on the processor's entry points
 * and a counter on the engine's own reads) and compares with the non-direct path (bytes in or
 * memory out), which the other test files cover in depth.
 */
import {
  ChunkInput,
  ChunkOutput,
  type ChunkProcessor,
  type ChunkSpec,
  type DirectSegment,
  type JsonValue,
  type RunOptions,
  runPipeline
} from "@cage/core"
import { Cause, Effect, Exit, Fiber } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PassThrough, Readable } from "node:stream"
import { afterAll, describe, expect, it, vi } from "vitest"
import { type AgcmDecryptOptions, agcmDecrypt, agcmEncrypt, type AgcmEncryptOptions, MAX_HEADER_BYTES } from "../src/index.js"
import { bytes, key32, testObserver } from "./helpers.js"
import { cipherSegment, deriveKeys, SEAL } from "../src/internal/cobblestone.js"
import { poolSeam, withFault } from "../src/internal/faults.js"
import { SegmentCipher } from "../src/internal/segmentCipher.js"

// Every worker thread the pool starts: whether it had stopped when a job failed, which jobs
// it holds (posted, not answered yet), and how many it held at once.
interface Tracked {
  exited: boolean
  /** Node's "online": the thread runs JavaScript. */
  online: boolean
  maxAhead: number
  /** Job id -> first chunk, for jobs posted and not answered yet. */
  readonly jobs: Map<number, number>
  /** First chunks of every job ever posted. */
  readonly posted: Set<number>
  /** Started under `failStart` or `hideOnline`: its "online" event is never emitted. */
  readonly hidesOnline: boolean
}
const threads = vi.hoisted(() => ({
  all: [] as Array<Tracked>,
  /**
   * Workers started while set run a script that throws at once instead of the pool's
   * worker, and never emit "online" (as a thread that fails to start).
   */
  failStart: false,
  /** How many of the next workers started run normally but never emit "online" (as one slow to start). */
  hideOnline: 0,
  onPost: undefined as undefined | ((job: { readonly id: number; readonly first: number }) => void)
}))
vi.mock("node:worker_threads", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:worker_threads")>()
  class TrackedWorker extends original.Worker implements Tracked {
    exited = false
    online = false
    maxAhead = 0
    readonly jobs = new Map<number, number>()
    readonly posted = new Set<number>()
    readonly hidesOnline: boolean
    constructor(...args: ConstructorParameters<typeof original.Worker>) {
      super(...((threads.failStart ? ["throw new Error('failed to start')", { eval: true }] : args) as ConstructorParameters<typeof original.Worker>))
      this.hidesOnline = threads.failStart || threads.hideOnline > 0
      if (threads.hideOnline > 0) threads.hideOnline--
      threads.all.push(this)
      this.once("online", () => {
        this.online = true
      })
      this.once("exit", () => {
        this.exited = true
      })
      // Registered before the pool's own listener: a job is off this list before the pool settles it.
      this.on("message", (m: { id?: number }) => {
        if (typeof m?.id === "number") this.jobs.delete(m.id)
      })
    }
    override emit(event: string | symbol, ...args: Array<unknown>): boolean {
      return this.hidesOnline && event === "online" ? false : super.emit(event, ...args)
    }
    override postMessage(value: unknown, transferList?: ReadonlyArray<unknown>): void {
      const job = value as { id?: unknown; first?: unknown } | null
      if (typeof job?.id === "number" && typeof job.first === "number") {
        this.jobs.set(job.id, job.first)
        this.posted.add(job.first)
        this.maxAhead = Math.max(this.maxAhead, this.jobs.size)
      }
      super.postMessage(value, transferList as never)
      if (typeof job?.id === "number" && typeof job.first === "number") threads.onPost?.({ id: job.id, first: job.first })
    }
  }
  return { ...original, Worker: TrackedWorker, default: { ...original, Worker: TrackedWorker } }
})

const key = key32(77)
const KiB = 1024
const MiB = 1024 * 1024
const TAG = 16
/** Header bytes of a raw-key AGCM v2 file. */
const H = 66
/** Segment size the engine uses by default. */
const DEFAULT_SEGMENT = MiB

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "agcm-direct-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
let fileNo = 0
const fresh = (name: string) => path.join(tmp, `${fileNo++}-${name}`)
const writeTemp = (name: string, data: Uint8Array) => {
  const p = fresh(name)
  fs.writeFileSync(p, data)
  return p
}
/** Waits for `done`, looking every 5 ms. */
const until = async (done: () => boolean) => {
  while (!done()) await new Promise((r) => setTimeout(r, 5))
}
const gone = (out: string) => {
  expect(fs.existsSync(out)).toBe(false)
  expect(fs.existsSync(`${out}.partial`)).toBe(false)
}

// ---------------------------------------------------------------------------------------
// Spies and runners
// ---------------------------------------------------------------------------------------

interface Calls {
  direct: number
  segment: number
  process: number
  /** Every segment handed to processDirect, with its first chunk and chunk count. */
  segments: Array<{ first: number; chunks: number; segment: DirectSegment }>
}

type Hook = (chunks: ReadonlyArray<ChunkSpec.ChunkSpec>, segment: DirectSegment) => Effect.Effect<DirectSegment | undefined, unknown>

/** Wraps a processor to count which entry point the engine uses; `hook` runs before each direct segment. */
const spy = (p: ChunkProcessor, hook?: Hook) => {
  const calls: Calls = { direct: 0, segment: 0, process: 0, segments: [] }
  const processor: ChunkProcessor = {
    ...p,
    process: (c, d) => {
      calls.process++
      return p.process(c, d)
    },
    processSegment: (c, d) => {
      calls.segment++
      return p.processSegment!(c, d)
    },
    processDirect: (c, s) => {
      calls.direct++
      calls.segments.push({ first: c[0].index, chunks: c.length, segment: s })
      return hook ? hook(c, s).pipe(Effect.flatMap((s2) => p.processDirect!(c, s2 ?? s))) : p.processDirect!(c, s)
    }
  }
  return { processor, calls }
}

/** Feeds `snapshot` to `init` as if resuming: a fresh run under a chosen salt. */
const withResume = (p: ChunkProcessor, snapshot: JsonValue): ChunkProcessor => ({
  ...p,
  init: (context) => p.init({ ...context, resume: snapshot })
})

interface Reads {
  calls: number
  bytes: number
}

/** A file input whose reads through the engine are counted (direct mode must not read segments). */
const openInput = (src: string, reads: Reads) =>
  ChunkInput.fromFile(src).pipe(Effect.map((input): ChunkInput.ChunkInput => ({
    ...input,
    read: (position, buffer, offset, length) => {
      reads.calls++
      return input.read(position, buffer, offset, length).pipe(Effect.tap((n) => Effect.sync(() => { reads.bytes += n })))
    }
  })))

type RunExtra = Partial<Omit<RunOptions, "input" | "output" | "pipeline">>

const runEffect = (src: string, output: ChunkOutput.ChunkOutput, pipeline: ReadonlyArray<ChunkProcessor>, reads: Reads, o: RunExtra) =>
  Effect.gen(function*() {
    const input = yield* openInput(src, reads)
    return yield* runPipeline({ input, output, pipeline, chunkBytes: 16 * KiB, ...o }).pipe(Effect.ensuring(input.close()))
  })

const runFile = async (src: string, output: ChunkOutput.ChunkOutput, processor: ChunkProcessor | ReadonlyArray<ChunkProcessor>, o: RunExtra = {}) => {
  const reads: Reads = { calls: 0, bytes: 0 }
  const exit = await Effect.runPromiseExit(runEffect(src, output, Array.isArray(processor) ? processor : [processor as ChunkProcessor], reads, o))
  return { exit, reads }
}

const success = <A>(exit: Exit.Exit<A, unknown>): A => {
  if (Exit.isFailure(exit)) throw new Error(`expected success, got ${Cause.pretty(exit.cause)}`)
  return exit.value
}

interface AnyError {
  readonly _tag: string
  readonly message: string
  readonly [k: string]: unknown
}

/** The run's typed failure; a defect or an interruption fails the test (direct mode must never crash). */
const failure = (exit: Exit.Exit<unknown, unknown>): AnyError => {
  if (Exit.isSuccess(exit)) throw new Error("expected the run to fail, it succeeded")
  const fail = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (!fail) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return (fail as unknown as { error: AnyError }).error
}

/** What must match between the direct and the non-direct path for the same failing input. */
const shape = (e: AnyError) => {
  const c = e.cause as AnyError | undefined
  return {
    tag: e._tag,
    phase: e.phase,
    chunk: e.chunk,
    cause: c && { tag: c._tag, chunk: c.chunk, final: c.final, bytes: c.bytes, at: c.at, detail: c.detail }
  }
}

const enc = (cs: number, extra: Partial<AgcmEncryptOptions> = {}) =>
  agcmEncrypt({ key, chunkSize: cs, workers: 1, ...extra } as AgcmEncryptOptions)
const dec = (extra: Partial<AgcmDecryptOptions> = {}) => agcmDecrypt({ key, workers: 1, ...extra } as AgcmDecryptOptions)

const chunkCount = (plainBytes: number, cs: number) => Math.floor(plainBytes / cs) + 1
const sealedLength = (plainBytes: number, cs: number) => H + plainBytes + TAG * chunkCount(plainBytes, cs)

/** Encrypts file to file in direct mode and checks that it really was direct. */
const sealDirect = async (src: string, cs: number, o: RunExtra = {}, extra: Partial<AgcmEncryptOptions> = {}) => {
  const out = fresh("sealed.agcm")
  const p = enc(cs, extra)
  const s = spy(p)
  const { exit, reads } = await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs, ...o })
  const summary = success(exit)
  expect(s.calls.direct).toBeGreaterThan(0)
  expect(s.calls.segment).toBe(0)
  expect(s.calls.process).toBe(0)
  // The engine read no input bytes itself: the processor did.
  expect(reads.calls).toBe(0)
  expect(fs.existsSync(`${out}.partial`)).toBe(false)
  return { out, sealed: fs.readFileSync(out), summary, snapshot: p.snapshot!(), calls: s.calls }
}

/** Decrypts file to file in direct mode and checks that it really was direct. */
const openDirect = async (src: string, o: RunExtra = {}, extra: Partial<AgcmDecryptOptions> = {}) => {
  const out = fresh("opened.bin")
  const s = spy(dec(extra))
  const { exit, reads } = await runFile(src, ChunkOutput.toFile(out), s.processor, o)
  const summary = success(exit)
  expect(s.calls.direct).toBeGreaterThan(0)
  expect(s.calls.segment).toBe(0)
  expect(s.calls.process).toBe(0)
  // Only the header went through the engine's reads (init's readHeader: the magic, then at
  // most three more steps to the header's end).
  expect(reads.calls).toBeLessThanOrEqual(4)
  expect(reads.bytes).toBeLessThanOrEqual(MAX_HEADER_BYTES)
  expect(fs.existsSync(`${out}.partial`)).toBe(false)
  return { out, plain: fs.readFileSync(out), summary, calls: s.calls }
}

/** Seals bytes (no descriptor, memory sink: never direct) under the salt of `snapshot`. */
const sealInMemory = async (plain: Uint8Array, cs: number, snapshot: JsonValue, workers = 1) => {
  const s = spy(withResume(enc(cs, { workers }), snapshot))
  const out = ChunkOutput.toMemory()
  await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: out, pipeline: [s.processor], chunkBytes: cs }))
  expect(s.calls.direct).toBe(0)
  expect(s.calls.segment).toBeGreaterThan(0)
  return Buffer.from(out.bytes())
}

/** Decrypts a file into memory (not direct). */
const openViaMemory = async (src: string, o: RunExtra = {}, extra: Partial<AgcmDecryptOptions> = {}) => {
  const s = spy(dec(extra))
  const out = ChunkOutput.toMemory()
  const { exit } = await runFile(src, out, s.processor, o)
  expect(s.calls.direct).toBe(0)
  return { exit, plain: Buffer.from(out.bytes()), calls: s.calls }
}

// ---------------------------------------------------------------------------------------
// 1. Direct mode is taken exactly when it should be
// ---------------------------------------------------------------------------------------

describe("direct mode is taken for a lone AGCM processor from a file to a file, and only then", () => {
  const cs = 16 * KiB
  const plain = bytes(10 * cs + 5, 1)

  it("encrypt and decrypt file to file: processDirect only, with the right descriptors and offsets; the engine reads no segment", async () => {
    const src = writeTemp("plain.bin", plain)
    const sealed = await sealDirect(src, cs, { segmentBytes: 3 * cs, inFlight: 3 })
    expect(sealed.sealed.length).toBe(sealedLength(plain.length, cs))
    // 11 chunks in segments of 3.
    expect(sealed.calls.direct).toBe(4)
    const firsts = sealed.calls.segments.map((s) => s.first).sort((a, b) => a - b)
    expect(firsts).toEqual([0, 3, 6, 9])
    for (const { first, segment } of sealed.calls.segments) {
      expect(segment.inputOffset).toBe(first * cs)
      expect(segment.outputOffset).toBe(H + first * (cs + TAG))
      expect(segment.input).toBe(src)
      expect(segment.output).toBe(`${sealed.out}.partial`)
      expect(segment.inputFd).toBeGreaterThanOrEqual(0)
      expect(segment.outputFd).toBeGreaterThanOrEqual(0)
      expect(segment.outputFd).not.toBe(segment.inputFd)
    }
    expect(sealed.summary.results["agcm-encrypt"]).toMatchObject({ chunksSealed: 11, pool: false })
    expect(sealed.summary.outputBytes).toBe(sealed.sealed.length)

    const opened = await openDirect(sealed.out, { segmentBytes: 3 * cs, inFlight: 3 })
    expect(opened.plain.equals(plain)).toBe(true)
    // Decrypt segments hold floor(3 cs / (cs + 16)) = 2 sealed chunks.
    expect(opened.calls.direct).toBe(6)
    for (const { first, segment } of opened.calls.segments) {
      expect(segment.inputOffset).toBe(H + first * (cs + TAG))
      expect(segment.outputOffset).toBe(first * cs)
    }
    expect(opened.summary.results["agcm-decrypt"]).toMatchObject({ chunksOpened: 11, plaintextBytes: plain.length, pool: false })
    expect(opened.summary.outputBytes).toBe(plain.length)
  })

  it("a memory output, a stream output, a bytes input, a stream input or a second processor are not direct", async () => {
    const src = writeTemp("plain.bin", plain)
    const sealed = await sealDirect(src, cs)
    const snapshot = sealed.snapshot
    const check = async (label: string, run: (p: ChunkProcessor) => Promise<Uint8Array>) => {
      const s = spy(withResume(enc(cs), snapshot))
      const out = Buffer.from(await run(s.processor))
      expect(s.calls.direct, label).toBe(0)
      expect(s.calls.segment, label).toBeGreaterThan(0)
      // Same salt, same key: the same file as the direct run.
      expect(out.equals(sealed.sealed), label).toBe(true)
    }
    await check("file to memory", async (p) => {
      const out = ChunkOutput.toMemory()
      success((await runFile(src, out, p, { chunkBytes: cs })).exit)
      return out.bytes()
    })
    await check("file to stream", async (p) => {
      const sink = new PassThrough()
      const parts: Array<Buffer> = []
      sink.on("data", (b: Buffer) => parts.push(b))
      success((await runFile(src, ChunkOutput.toStream(sink, "pipe"), p, { chunkBytes: cs })).exit)
      return Buffer.concat(parts)
    })
    await check("bytes to file", async (p) => {
      const out = fresh("bytes-to-file.agcm")
      await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: ChunkOutput.toFile(out), pipeline: [p], chunkBytes: cs }))
      return fs.readFileSync(out)
    })
    await check("stream to file", async (p) => {
      const out = fresh("stream-to-file.agcm")
      const input = ChunkInput.fromStream(Readable.from([plain.subarray(0, 7000), plain.subarray(7000)]), "pipe")
      await Effect.runPromise(runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [p], chunkBytes: cs }))
      return fs.readFileSync(out)
    })
    await check("with an observer in the pipeline", async (p) => {
      let seen = 0
      const observer = testObserver("count", (_c, d) => {
        seen += d.length
      })
      const out = fresh("observed.agcm")
      // After the cipher: the observer sees the sealed chunks (the header goes straight out).
      success((await runFile(src, ChunkOutput.toFile(out), [p, observer], { chunkBytes: cs })).exit)
      expect(seen).toBe(sealedLength(plain.length, cs) - H)
      return fs.readFileSync(out)
    })
  })
})

// ---------------------------------------------------------------------------------------
// 2. Byte identity at every chunk boundary
// ---------------------------------------------------------------------------------------

describe("direct mode writes the same bytes as the non-direct path at every chunk boundary", () => {
  const cases = [16 * KiB, 64 * KiB].flatMap((cs) =>
    [0, 1, cs - 1, cs, cs + 1, 2 * cs - 1, 2 * cs, 2 * cs + 1, 3 * MiB + 12345].map((n) => ({ cs, n }))
  )
  it.for(cases)("chunk size $cs, $n-byte plaintext", async ({ cs, n }) => {
    const plain = bytes(n, n + cs)
    const src = writeTemp("plain.bin", plain)
    // Default segments, and small segments completing out of order (3 in flight).
    const a = await sealDirect(src, cs)
    const b = await sealDirect(src, cs, { segmentBytes: 3 * cs, inFlight: 3 })
    expect(a.sealed.length).toBe(sealedLength(n, cs))
    expect(a.summary.outputBytes).toBe(a.sealed.length)
    expect(a.calls.direct).toBe(Math.ceil(chunkCount(n, cs) / Math.floor(DEFAULT_SEGMENT / cs)))
    // Same salt (b's snapshot) through the non-direct path: byte-identical.
    expect(b.sealed.equals(await sealInMemory(plain, cs, b.snapshot))).toBe(true)
    const reference = await sealInMemory(plain, cs, a.snapshot)
    expect(a.sealed.equals(reference)).toBe(true)

    const d1 = await openDirect(a.out)
    expect(d1.plain.equals(plain)).toBe(true)
    expect(d1.summary.outputBytes).toBe(n)
    expect(d1.calls.direct).toBe(Math.ceil(chunkCount(n, cs) / Math.floor(DEFAULT_SEGMENT / (cs + TAG))))
    const d2 = await openDirect(b.out, { segmentBytes: 2 * cs, inFlight: 3 })
    expect(d2.plain.equals(plain)).toBe(true)
    const m = await openViaMemory(a.out)
    success(m.exit)
    expect(m.plain.equals(plain)).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------
// 3. The worker pool in direct mode
// ---------------------------------------------------------------------------------------

describe("direct mode on the worker pool", () => {
  const cs = 64 * KiB
  const plain = bytes(9 * MiB + 4321, 3)
  let src = ""
  const source = () => (src ||= writeTemp("big.bin", plain))

  it("a 9 MiB input with workers: 2 runs on the pool, byte-identical to in-process, and round-trips", async () => {
    const before = threads.all.length
    const sealed = await sealDirect(source(), cs, {}, { workers: 2 })
    // Jobs are posted ahead (two per worker at most) so a worker never idles waiting for the main thread.
    const started = threads.all.slice(before)
    expect(started.length).toBeGreaterThan(0)
    expect(Math.max(...started.map((w) => w.maxAhead))).toBe(2)
    expect(sealed.summary.results["agcm-encrypt"]).toMatchObject({ workers: 2, pool: true, chunksSealed: chunkCount(plain.length, cs) })
    expect(sealed.sealed.equals(await sealInMemory(plain, cs, sealed.snapshot, 1))).toBe(true)
    const opened = await openDirect(sealed.out, {}, { workers: 2 })
    expect(opened.summary.results["agcm-decrypt"]).toMatchObject({ workers: 2, pool: true })
    expect(opened.plain.equals(plain)).toBe(true)
  })

  it.for([2, 3])("a stream (no descriptors) with workers: %i starts one thread fewer: the engine's thread is a lane too", async (workers) => {
    const before = threads.all.length
    const out = ChunkOutput.toMemory()
    const s = await Effect.runPromise(runPipeline({ input: ChunkInput.fromStream(Readable.from([plain])), output: out, pipeline: [enc(cs, { workers })] }))
    expect(s.results["agcm-encrypt"]).toMatchObject({ workers, pool: true })
    expect(threads.all.length - before).toBe(workers - 1)
    const opened = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(out.bytes()), output: opened, pipeline: [dec({ workers })] }))
    expect(Buffer.from(opened.bytes()).equals(plain)).toBe(true)
  })

  const reasons = { throw: "Crashed", exit: "Exited", hang: "Timeout" } as const
  it.for(["throw", "exit", "hang"] as const)("an injected worker fault (%s) fails the run with SegmentWorkerError and publishes nothing", async (kind) => {
    const atChunk = 32 // the third 1 MiB segment (16 chunks of 64 KiB each)
    const out = fresh("fault.agcm")
    const before = threads.all.length
    // When a direct job fails, every worker of the pool that was posted a job must have
    // stopped: the engine closes the descriptors right after, and a live worker could still
    // read or write them. One never posted a job (not online yet) holds none, and the pool
    // does not wait for it.
    const stoppedAtFailure: Array<boolean> = []
    const base = enc(cs, withFault({ workers: 2, workerTimeoutMs: 300 }, { kind, atChunk }))
    const s = spy({
      ...base,
      processDirect: (c, seg) =>
        base.processDirect!(c, seg).pipe(Effect.tapError(() => Effect.sync(() => stoppedAtFailure.push(threads.all.slice(before).every((w) => w.exited || w.posted.size === 0)))))
    })
    const t0 = Date.now()
    const { exit, reads } = await runFile(source(), ChunkOutput.toFile(out), s.processor, { chunkBytes: cs })
    const e = failure(exit)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(s.calls.direct).toBeGreaterThan(0)
    expect(s.calls.segment + s.calls.process).toBe(0)
    expect(reads.calls).toBe(0)
    expect(e._tag).toBe("ProcessorError")
    expect(e.exitCode).toBe(1)
    const cause = e.cause as AnyError
    expect(cause._tag).toBe("SegmentWorkerError")
    expect(cause.reason).toBe(reasons[kind])
    // The failing job names its chunks; a job aborted with it names the real cause.
    if (cause.firstChunk === atChunk) expect(cause.chunks).toBe(16)
    else expect(String(cause.detail)).toContain(`chunk ${atChunk}`)
    expect(threads.all.length).toBeGreaterThan(before)
    expect(stoppedAtFailure.length).toBeGreaterThan(0)
    expect(stoppedAtFailure.every((x) => x)).toBe(true)
    gone(out)
  })

  it("interrupting a pooled direct run ends it only once its jobs in flight are done", async () => {
    const src = writeTemp("int.bin", Buffer.alloc(32 * MiB, 0x33))
    const out = fresh("int.agcm")
    const before = threads.all.length
    const atInterrupt: Array<{ first: number; posted: boolean; settled: boolean }> = []
    // workers: 3 is a pool of two threads holding four jobs: all three 8 MiB segments in flight go to it.
    const base = enc(cs, { workers: 3 })
    const s = spy({
      ...base,
      processDirect: (c, seg) =>
        base.processDirect!(c, seg).pipe(Effect.onInterrupt(() =>
          Effect.sync(() => {
            const mine = threads.all.slice(before)
            const first = c[0].index
            atInterrupt.push({
              first,
              posted: mine.some((w) => w.posted.has(first)),
              // The job is answered (or its thread gone): it no longer touches the descriptors.
              settled: mine.every((w) => w.exited || ![...w.jobs.values()].includes(first))
            })
          })
        ))
    })
    let posted: () => void = () => {}
    const firstPosted = new Promise<void>((r) => { posted = r })
    threads.onPost = (job) => {
      if (job.first === 0) posted()
    }
    try {
      const reads: Reads = { calls: 0, bytes: 0 }
      const fiber = Effect.runFork(runEffect(src, ChunkOutput.toFile(out), [s.processor], reads, { chunkBytes: cs, segmentBytes: 8 * MiB, inFlight: 3 }))
      await firstPosted
      await Effect.runPromise(Fiber.interrupt(fiber))
      const exit = fiber.pollUnsafe()
      expect(exit && Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)).toBe(true)
    } finally {
      threads.onPost = undefined
    }
    expect(atInterrupt.find((x) => x.first === 0)).toEqual({ first: 0, posted: true, settled: true })
    expect(atInterrupt.every((x) => x.settled)).toBe(true)
    // The processor's close stopped the pool's workers that had jobs before the run ended;
    // one not online yet (never posted a job) is terminated without a wait.
    expect(threads.all.slice(before).every((w) => w.exited || w.posted.size === 0)).toBe(true)
    await until(() => threads.all.slice(before).every((w) => w.exited))
    gone(out)
  })

  it("a worker fault while decrypting fails the same way", async () => {
    const sealed = await sealDirect(source(), cs, {}, { workers: 1 })
    const out = fresh("fault.out")
    const s = spy(dec(withFault({ workers: 2, workerTimeoutMs: 300 }, { kind: "exit", atChunk: 30 })))
    const e = failure((await runFile(sealed.out, ChunkOutput.toFile(out), s.processor)).exit)
    expect(s.calls.direct).toBeGreaterThan(0)
    expect(e._tag).toBe("ProcessorError")
    expect((e.cause as AnyError)._tag).toBe("SegmentWorkerError")
    expect((e.cause as AnyError).reason).toBe("Exited")
    gone(out)
  })
})

// ---------------------------------------------------------------------------------------
// 4. Tampering, through direct mode
// ---------------------------------------------------------------------------------------

interface Want {
  readonly tag: string
  readonly chunk?: number
  readonly bytes?: number
  readonly phase?: "init" | "process"
}

interface Edit {
  readonly name: string
  readonly apply: (file: Buffer) => Buffer
  readonly want: Want
}

/** Layout of a sealed file: chunk i starts at H + i (cs + 16); the final chunk is short. */
const layout = (cs: number, plainBytes: number) => {
  const n = chunkCount(plainBytes, cs)
  const sealed = cs + TAG
  const finalSealed = plainBytes - (n - 1) * cs + TAG
  const chunk = (file: Buffer, i: number) => file.subarray(H + i * sealed, H + i * sealed + (i === n - 1 ? finalSealed : sealed))
  const chunks = (file: Buffer) => Array.from({ length: n }, (_, i) => chunk(file, i))
  const rebuild = (file: Buffer, cs2: ReadonlyArray<Uint8Array>) => Buffer.concat([file.subarray(0, H), ...cs2])
  return {
    n,
    sealed,
    finalSealed,
    flip: (at: number, mask = 0x80) => (file: Buffer) => {
      const b = Buffer.from(file)
      b[at] ^= mask
      return b
    },
    flipInChunk: (i: number, offset: number) => (file: Buffer) => {
      const b = Buffer.from(file)
      b[H + i * sealed + offset] ^= 0x01
      return b
    },
    cut: (length: number) => (file: Buffer) => Buffer.from(file.subarray(0, length)),
    append: (k: number) => (file: Buffer) => Buffer.concat([file, bytes(k, 99)]),
    remove: (i: number) => (file: Buffer) => rebuild(file, chunks(file).filter((_, k) => k !== i)),
    duplicate: (i: number) => (file: Buffer) => rebuild(file, chunks(file).flatMap((c, k) => (k === i ? [c, c] : [c]))),
    swap: (i: number, j: number) => (file: Buffer) => {
      const all = chunks(file)
      return rebuild(file, all.map((c, k) => (k === i ? all[j] : k === j ? all[i] : c)))
    },
    moveToEnd: (i: number) => (file: Buffer) => {
      const all = chunks(file)
      return rebuild(file, [...all.filter((_, k) => k !== i), all[i]])
    }
  }
}

/**
 * Decrypts `tampered` file to file in direct mode and file to memory (not direct) with the
 * same segmentation; both must fail with the same error (tag, chunk, bytes, at, detail) and
 * the direct run must publish nothing.
 */
const rejectBoth = async (tampered: Buffer, want: Want, o: RunExtra, extra: Partial<AgcmDecryptOptions>) => {
  const src = writeTemp("tampered.agcm", tampered)
  const out = fresh("tampered.out")
  const s = spy(dec(extra))
  const direct = failure((await runFile(src, ChunkOutput.toFile(out), s.processor, o)).exit)
  gone(out)
  // Header failures happen in init, before any segment; every other failure went through processDirect.
  if (want.phase === "init") expect(s.calls.direct).toBe(0)
  else expect(s.calls.direct).toBeGreaterThan(0)
  expect(s.calls.segment + s.calls.process).toBe(0)
  expect(direct._tag).toBe("ProcessorError")
  expect(direct.exitCode).toBe(3)
  expect(direct.phase).toBe(want.phase ?? "process")
  const cause = direct.cause as AnyError
  expect(cause._tag).toBe(want.tag)
  if (want.chunk !== undefined) {
    expect(cause.chunk).toBe(want.chunk)
    // The engine's ProcessorError names the same chunk.
    expect(direct.chunk).toBe(want.chunk)
  }
  if (want.bytes !== undefined) expect(cause.bytes).toBe(want.bytes)
  const viaMemory = await openViaMemory(src, o, extra)
  expect(shape(direct)).toEqual(shape(failure(viaMemory.exit)))
}

describe("tampered files are rejected in direct mode with the non-direct path's exact error", () => {
  describe("in-process (workers: 1), 16 KiB chunks, segments of 2 chunks, one in flight", () => {
    const cs = 16 * KiB
    const o: RunExtra = { segmentBytes: 2 * (cs + TAG), inFlight: 1 }
    // File A: 6 chunks, the final one holds 1000 bytes (1016 sealed).
    const nA = 5 * cs + 1000
    const A = layout(cs, nA)
    // File B: 5 chunks, the final one is empty (16 sealed bytes: a tag only).
    const nB = 4 * cs
    const B = layout(cs, nB)
    const files = new Map<string, Buffer>()
    const sealedOf = async (name: "A" | "B") => {
      if (!files.has(name)) {
        const src = writeTemp(`${name}.bin`, bytes(name === "A" ? nA : nB, name === "A" ? 5 : 6))
        files.set(name, (await sealDirect(src, cs)).sealed)
      }
      return files.get(name)!
    }
    const last = A.n - 1 // 5
    const lenA = H + 5 * A.sealed + A.finalSealed
    const lenB = H + 4 * B.sealed + B.finalSealed
    const editsA: Array<Edit> = [
      { name: "bit flipped in the first chunk", apply: A.flipInChunk(0, 5), want: { tag: "ChunkAuthFailed", chunk: 0 } },
      { name: "bit flipped in a middle chunk", apply: A.flipInChunk(2, 9000), want: { tag: "ChunkAuthFailed", chunk: 2 } },
      { name: "bit flipped in a middle chunk's tag", apply: A.flipInChunk(3, cs + 15), want: { tag: "ChunkAuthFailed", chunk: 3 } },
      { name: "bit flipped in the final chunk", apply: A.flipInChunk(last, 3), want: { tag: "ChunkAuthFailed", chunk: last } },
      { name: "salt byte flipped", apply: A.flip(10), want: { tag: "HeaderAuthFailed", phase: "init" } },
      { name: "commitment byte flipped", apply: A.flip(40), want: { tag: "HeaderAuthFailed", phase: "init" } },
      { name: "cut at the final chunk's boundary (final chunk missing)", apply: A.cut(H + 5 * A.sealed), want: { tag: "Truncated" } },
      { name: "cut at a middle chunk boundary", apply: A.cut(H + 3 * A.sealed), want: { tag: "Truncated" } },
      { name: "cut 15 bytes into a chunk", apply: A.cut(H + 3 * A.sealed + 15), want: { tag: "Truncated" } },
      // 1011 bytes of the final chunk remain: a final chunk that cannot authenticate.
      { name: "cut inside the final chunk's tag (long final chunk)", apply: A.cut(lenA - 5), want: { tag: "ChunkAuthFailed", chunk: last } },
      { name: "1 byte appended", apply: A.append(1), want: { tag: "TrailingData", bytes: 1 } },
      { name: "17 bytes appended", apply: A.append(17), want: { tag: "TrailingData", bytes: 17 } },
      { name: "300 bytes appended (past the probe)", apply: A.append(300), want: { tag: "ChunkAuthFailed", chunk: last } },
      { name: "a middle chunk deleted", apply: A.remove(1), want: { tag: "ChunkAuthFailed", chunk: 1 } },
      { name: "the final chunk deleted", apply: A.remove(last), want: { tag: "Truncated" } },
      { name: "a middle chunk duplicated", apply: A.duplicate(1), want: { tag: "ChunkAuthFailed", chunk: 2 } },
      { name: "the final chunk duplicated (1016 bytes: past the probe)", apply: A.duplicate(last), want: { tag: "ChunkAuthFailed", chunk: last } },
      { name: "chunks 1 and 3 swapped", apply: A.swap(1, 3), want: { tag: "ChunkAuthFailed", chunk: 1 } },
      { name: "chunk 0 moved to the end", apply: A.moveToEnd(0), want: { tag: "ChunkAuthFailed", chunk: 0 } }
    ]
    const editsB: Array<Edit> = [
      // 11 bytes of the 16-byte final chunk remain: shorter than a tag.
      { name: "cut inside the final chunk's tag (empty final chunk)", apply: B.cut(lenB - 5), want: { tag: "Truncated" } },
      { name: "cut at the final chunk's boundary", apply: B.cut(lenB - 16), want: { tag: "Truncated" } },
      { name: "the empty final chunk duplicated (16 trailing bytes)", apply: B.duplicate(B.n - 1), want: { tag: "TrailingData", bytes: 16 } },
      { name: "17 bytes appended", apply: B.append(17), want: { tag: "TrailingData", bytes: 17 } },
      { name: "bit flipped in the empty final chunk", apply: B.flipInChunk(B.n - 1, 0), want: { tag: "ChunkAuthFailed", chunk: B.n - 1 } }
    ]
    it.for(editsA)("file A: $name", async (edit) => {
      await rejectBoth(edit.apply(await sealedOf("A")), edit.want, o, { workers: 1 })
    })
    it.for(editsB)("file B: $name", async (edit) => {
      await rejectBoth(edit.apply(await sealedOf("B")), edit.want, o, { workers: 1 })
    })
    it("the untampered files decrypt in direct mode", async () => {
      for (const [name, n] of [["A", nA], ["B", nB]] as const) {
        const src = writeTemp(`${name}.agcm`, await sealedOf(name))
        expect((await openDirect(src, o)).plain.equals(bytes(n, name === "A" ? 5 : 6))).toBe(true)
      }
    })
  })

  // workers: 2 is a pool of one thread holding two jobs, plus the calling thread, which runs
  // a segment in-process when the pool is full: with two segments in flight every segment
  // goes to the pool.
  describe("on the pool (workers: 2, 9 MiB, two segments in flight)", () => {
    const cs = 64 * KiB
    const n = 9 * MiB + 4321
    const L = layout(cs, n) // 145 chunks, segments of 15 sealed chunks
    const last = L.n - 1
    let sealed: Buffer | undefined
    const sealedFile = async () => (sealed ??= (await sealDirect(writeTemp("big.bin", bytes(n, 7)), cs, {}, { workers: 2 })).sealed)
    const edits: Array<Edit> = [
      { name: "bit flipped in the first chunk", apply: L.flipInChunk(0, 1), want: { tag: "ChunkAuthFailed", chunk: 0 } },
      { name: "bit flipped in a middle chunk", apply: L.flipInChunk(70, 40000), want: { tag: "ChunkAuthFailed", chunk: 70 } },
      { name: "bit flipped in the final chunk", apply: L.flipInChunk(last, 100), want: { tag: "ChunkAuthFailed", chunk: last } },
      { name: "cut at the final chunk's boundary", apply: L.cut(H + last * L.sealed), want: { tag: "Truncated" } },
      { name: "1 byte appended", apply: L.append(1), want: { tag: "TrailingData", bytes: 1 } },
      { name: "17 bytes appended", apply: L.append(17), want: { tag: "TrailingData", bytes: 17 } },
      { name: "chunks 20 and 21 swapped", apply: L.swap(20, 21), want: { tag: "ChunkAuthFailed", chunk: 20 } }
    ]
    it("the untampered file decrypts on the pool", async () => {
      const src = writeTemp("big.agcm", await sealedFile())
      const opened = await openDirect(src, { inFlight: 2 }, { workers: 2 })
      expect(opened.summary.results["agcm-decrypt"]).toMatchObject({ pool: true })
      expect(opened.plain.equals(bytes(n, 7))).toBe(true)
    })
    it.for(edits)("$name", async (edit) => {
      await rejectBoth(edit.apply(await sealedFile()), edit.want, { inFlight: 2 }, { workers: 2 })
    })
  })

  it.for([1, 2])("opening writes only chunks that authenticated (workers: %i); the failure removes the .partial and the checkpoint", async (workers) => {
    const cs = 64 * KiB
    const n = workers === 1 ? 9 * cs + 100 : 9 * MiB + 100
    const plain = bytes(n, 8)
    const sealed = (await sealDirect(writeTemp("p.bin", plain), cs, {}, { workers })).sealed
    // Segments of 2 sealed chunks (workers 1) or 1 MiB (15 chunks); the bad chunk sits in
    // the middle of a segment, after a chunk that authenticates.
    const bad = workers === 1 ? 5 : 67
    const tampered = Buffer.from(sealed)
    tampered[H + bad * (cs + TAG) + 1234] ^= 0x10
    const src = writeTemp("t.agcm", tampered)
    const out = fresh("t.out")
    const ckpt = fresh("t.ckpt")
    const o: RunExtra = workers === 1
      ? { segmentBytes: 2 * (cs + TAG), inFlight: 1, checkpoint: { path: ckpt, mode: "fresh", intervalMs: 0 } }
      : { inFlight: 2, checkpoint: { path: ckpt, mode: "fresh", intervalMs: 0 } }
    const s = spy(dec({ workers }))
    // What the .partial and the checkpoint held when the run gave up (they are removed then).
    const sink = ChunkOutput.toFile(out)
    let atAbort: { partial: Buffer; checkpoint: { completed: Array<[number, number]>; outputBytes: number } } | undefined
    const watched: ChunkOutput.ChunkOutput = {
      ...sink,
      abort: (a) => Effect.suspend(() => {
        atAbort = { partial: fs.readFileSync(`${out}.partial`), checkpoint: JSON.parse(fs.readFileSync(ckpt, "utf8")) }
        return sink.abort(a)
      })
    }
    const e = failure((await runFile(src, watched, s.processor, o)).exit)
    expect(s.calls.direct).toBeGreaterThan(0)
    expect((e.cause as AnyError)._tag).toBe("ChunkAuthFailed")
    expect((e.cause as AnyError).chunk).toBe(bad)
    expect(e.exitCode).toBe(3)
    // An authentication failure is permanent: nothing is left to resume.
    expect(fs.existsSync(out)).toBe(false)
    expect(fs.existsSync(`${out}.partial`)).toBe(false)
    expect(fs.existsSync(ckpt)).toBe(false)
    const c = atAbort!.checkpoint
    expect(c.completed[0][1]).toBeGreaterThan(0)
    expect(c.completed[0][1]).toBeLessThanOrEqual(bad)
    const partial = atAbort!.partial
    expect(partial.length).toBeGreaterThanOrEqual(c.outputBytes)
    // Every chunk on disk is either true plaintext or never written (a hole): the bad
    // chunk's garbage plaintext (one flipped bit away from the truth) is never released.
    for (let i = 0; i * cs < partial.length; i++) {
      const got = partial.subarray(i * cs, (i + 1) * cs)
      const truth = plain.subarray(i * cs, i * cs + got.length)
      if (i < bad) expect(got.equals(truth), `chunk ${i}`).toBe(true)
      else expect(got.equals(truth) || got.every((x) => x === 0), `chunk ${i}`).toBe(true)
      if (i === bad) expect(got.every((x) => x === 0), "the failed chunk").toBe(true)
    }
    if (workers === 1) {
      // One segment in flight: chunk 4 (the good half of the failing segment) was written, nothing after it.
      expect(partial.length).toBe(bad * cs)
    }
  })
})

// ---------------------------------------------------------------------------------------
// 5. Resume in direct mode
// ---------------------------------------------------------------------------------------

describe("resume in direct mode", () => {
  const checkpointOf = (ckpt: string) =>
    JSON.parse(fs.readFileSync(ckpt, "utf8")) as { completed: Array<[number, number]>; outputBytes: number; state: Record<string, JsonValue> }

  /** Resumes, then checks the published file against one uninterrupted run under the checkpoint's salt. */
  const resumeAndCheck = async (src: string, out: string, ckpt: string, plain: Buffer, cs: number, workers: number, o: RunExtra) => {
    const c = checkpointOf(ckpt)
    expect(c.completed[0][1]).toBeGreaterThan(0)
    expect(JSON.stringify(c)).not.toContain(Buffer.from(key).toString("hex"))
    expect(fs.existsSync(`${out}.partial`)).toBe(true)
    const snapshot = c.state["0:agcm-encrypt"]
    expect(snapshot).toBeDefined()
    const s = spy(enc(cs, { workers }))
    const { exit, reads } = await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs, ...o, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } })
    const summary = success(exit)
    expect(summary.resumedFrom).toBe(c.completed[0][1])
    expect(s.calls.direct).toBeGreaterThan(0)
    expect(s.calls.segment + s.calls.process).toBe(0)
    expect(reads.calls).toBe(0)
    // The resumed run never redid a completed chunk.
    expect(Math.min(...s.calls.segments.map((x) => x.first))).toBe(c.completed[0][1])
    const published = fs.readFileSync(out)
    expect(published.equals(await sealInMemory(plain, cs, snapshot))).toBe(true)
    expect(fs.existsSync(ckpt)).toBe(false)
    expect(fs.existsSync(`${out}.partial`)).toBe(false)
    const opened = await openDirect(out, {}, { workers })
    expect(opened.plain.equals(plain)).toBe(true)
    return summary
  }

  /** An input of `size` bytes and fresh output and checkpoint names for a resume case. */
  const resumeCase = (size: number, seed: number) => {
    const plain = bytes(size, seed)
    return { plain, src: writeTemp("r.bin", plain), out: fresh("r.agcm"), ckpt: fresh("r.ckpt") }
  }

  it("interrupted (Effect interruption mid-run, in-process), then resumed: byte-identical to one run", async () => {
    const cs = 16 * KiB
    const { plain, src, out, ckpt } = resumeCase(40 * cs + 777, 9)
    const o: RunExtra = { chunkBytes: cs, segmentBytes: 4 * cs, inFlight: 2 }
    let reached: () => void = () => {}
    const atSegment = new Promise<void>((r) => { reached = r })
    // The segment starting at chunk 20 never finishes: the run is interrupted while it waits.
    const s = spy(enc(cs), (chunks) => chunks[0].index === 20 ? Effect.sync(() => reached()).pipe(Effect.andThen(Effect.never)) : Effect.succeed(undefined))
    const reads: Reads = { calls: 0, bytes: 0 }
    const fiber = Effect.runFork(runEffect(src, ChunkOutput.toFile(out), [s.processor], reads, { ...o, checkpoint: { path: ckpt, mode: "fresh", intervalMs: 0 } }))
    await atSegment
    await Effect.runPromise(Fiber.interrupt(fiber))
    const exit = fiber.pollUnsafe()
    expect(exit && Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)).toBe(true)
    expect(fs.existsSync(out)).toBe(false)
    const c = checkpointOf(ckpt)
    expect(c.completed[0][1]).toBeLessThanOrEqual(20)
    expect(c.outputBytes).toBe(H + c.completed[0][1] * (cs + TAG))
    await resumeAndCheck(src, out, ckpt, plain, cs, 1, o)
  })

  it("a worker crash (pool, 9 MiB), then resumed on the pool: byte-identical to one run", async () => {
    const cs = 64 * KiB
    const { plain, src, out, ckpt } = resumeCase(9 * MiB + 999, 10)
    const s = spy(enc(cs, withFault({ workers: 2 }, { kind: "exit", atChunk: 96 })))
    const e = failure((await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs, checkpoint: { path: ckpt, mode: "fresh", intervalMs: 0 } })).exit)
    expect(s.calls.direct).toBeGreaterThan(0)
    expect((e.cause as AnyError)._tag).toBe("SegmentWorkerError")
    expect(fs.existsSync(out)).toBe(false)
    const c = checkpointOf(ckpt)
    expect(c.completed[0][1]).toBeLessThanOrEqual(96)
    expect(c.outputBytes).toBe(H + c.completed[0][1] * (cs + TAG))
    const summary = await resumeAndCheck(src, out, ckpt, plain, cs, 2, { chunkBytes: cs })
    expect(summary.results["agcm-encrypt"]).toMatchObject({ pool: true })
  })
})

// ---------------------------------------------------------------------------------------
// 6. I/O failures inside a direct segment
// ---------------------------------------------------------------------------------------

describe("I/O failures in direct mode are IoErrors naming the file", () => {
  const shrinkAt = (src: string, atChunk: number, toBytes: number): Hook => (chunks) =>
    chunks[0].index === atChunk ? Effect.sync(() => fs.truncateSync(src, toBytes)).pipe(Effect.as(undefined)) : Effect.succeed(undefined)

  // A source that shrinks under the run changed: InputChanged (exit 4), nothing kept.
  const expectShrank = (e: AnyError, src: string) => {
    expect(e._tag).toBe("InputChanged")
    expect(e.path).toBe(src)
    expect(e.exitCode).toBe(4)
    expect(e.message).toContain(`${src} changed while it was being read (it shrank`)
  }

  it.for([
    { label: "inside the segment", to: (cs: number) => 9 * cs + 5 },
    { label: "at the segment's start", to: (cs: number) => 8 * cs },
    { label: "to nothing", to: () => 0 }
  ])("encrypting, in-process: the input shrinks $label", async ({ to }) => {
    const cs = 16 * KiB
    const src = writeTemp("shrink.bin", bytes(20 * cs, 11))
    const out = fresh("shrink.agcm")
    const s = spy(enc(cs), shrinkAt(src, 8, to(cs)))
    const e = failure((await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs, segmentBytes: 4 * cs, inFlight: 1 })).exit)
    expectShrank(e, src)
    expect(s.calls.direct).toBe(3)
    gone(out)
  })

  it("encrypting on the pool (9 MiB, workers: 2): the input shrinks mid-run", async () => {
    const cs = 64 * KiB
    const src = writeTemp("shrink.bin", bytes(9 * MiB, 12))
    const out = fresh("shrink.agcm")
    const s = spy(enc(cs, { workers: 2 }), shrinkAt(src, 64, 4 * MiB + 1000))
    const e = failure((await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs })).exit)
    expectShrank(e, src)
    gone(out)
  })

  it("decrypting, in-process: the ciphertext shrinks mid-run (an IoError, not Truncated)", async () => {
    const cs = 16 * KiB
    const sealed = await sealDirect(writeTemp("p.bin", bytes(20 * cs + 3, 13)), cs)
    const out = fresh("shrink.out")
    const s = spy(dec(), shrinkAt(sealed.out, 8, H + 9 * (cs + TAG) + 100))
    const e = failure((await runFile(sealed.out, ChunkOutput.toFile(out), s.processor, { segmentBytes: 4 * (cs + TAG), inFlight: 1 })).exit)
    expectShrank(e, sealed.out)
    gone(out)
  })

  it.for([1, 2])("a failing write (workers: %i) is an IoError naming the file written (<out>.partial)", async (workers) => {
    const cs = 64 * KiB
    const src = writeTemp("w.bin", bytes(workers === 1 ? 5 * cs : 9 * MiB, 14))
    const out = fresh("w.agcm")
    // The input's descriptor is read-only: writing the output through it fails (EBADF).
    const s = spy(enc(cs, { workers }), (chunks, segment) => Effect.succeed(chunks[0].index === 0 ? { ...segment, outputFd: segment.inputFd } : undefined))
    const e = failure((await runFile(src, ChunkOutput.toFile(out), s.processor, { chunkBytes: cs })).exit)
    expect(e._tag).toBe("IoError")
    expect(e.operation).toBe("write")
    expect(e.path).toBe(`${out}.partial`)
    expect(e.exitCode).toBe(4)
    gone(out)
  })
})

describe("the calling thread runs segments until a worker is online (the default)", () => {
  const cs = 64 * KiB
  const perSegment = 16
  /** Files and direct jobs of `perSegment` chunks each over `segments` segments of `plain`. */
  const directCase = (name: string, segments: number, seed: number) => {
    const plain = bytes(segments * perSegment * cs, seed)
    const src = writeTemp(`${name}.bin`, plain)
    const out = fresh(`${name}.agcm`)
    const inFd = fs.openSync(src, "r")
    const outFd = fs.openSync(out, "w")
    const job = (k: number) => ({
      op: SEAL,
      first: k * perSegment,
      lengths: Array.from({ length: perSegment }, () => cs),
      inFd,
      inPos: k * perSegment * cs,
      outFd,
      outPos: k * perSegment * (cs + TAG),
      inputBytes: perSegment * cs,
      outputBytes: perSegment * (cs + TAG)
    })
    const close = () => {
      fs.closeSync(inFd)
      fs.closeSync(outFd)
    }
    return { plain, out, job, close }
  }
  const keysFor = (seed: number) => deriveKeys(key, bytes(24, seed), new Uint8Array(0))
  /** What sealing all of `plain` in-process gives. */
  const expected = (keys: ReturnType<typeof deriveKeys>, plain: Uint8Array) => {
    const n = plain.length / cs
    const out = new Uint8Array(n * (cs + TAG))
    cipherSegment(SEAL, keys.aeadKey, keys.baseNonce, 0, plain, Array.from({ length: n }, () => cs), out)
    return Buffer.from(out)
  }
  /** Runs `body` with the default routing, then puts the seams back and closes `cipher` and the files. */
  const defaultRouting = async (cipher: SegmentCipher, c: { readonly close: () => void }, body: () => Promise<void>) => {
    try {
      poolSeam.routeBeforeOnline = false
      await body()
    } finally {
      threads.hideOnline = 0
      threads.failStart = false
      poolSeam.routeBeforeOnline = true
      await Effect.runPromise(cipher.close())
      c.close()
    }
  }

  it("the first segment runs in-process, and a segment after the worker is online goes to it; the file is the same", async () => {
    const keys = keysFor(5)
    const c = directCase("ready", 3, 9)
    // inputBytes tells the cipher the input is large enough for its pool (8 MiB or more).
    const cipher = new SegmentCipher(keys, { workers: 2, inputBytes: 64 * MiB })
    const before = threads.all.length
    await defaultRouting(cipher, c, async () => {
      // Routed when runDirect is called: the pool starts here, and its worker cannot be
      // online before the event loop turns.
      const first = cipher.runDirect(c.job(0))
      const started = threads.all.slice(before)
      expect(started.length).toBe(1)
      expect((await Effect.runPromise(first)).failedAt).toBe(-1)
      const worker = started[0]
      expect(worker.posted.size).toBe(0)
      expect(cipher.usesPool).toBe(false)
      await until(() => worker.online)
      for (const k of [1, 2]) expect((await Effect.runPromise(cipher.runDirect(c.job(k)))).failedAt).toBe(-1)
      expect([...worker.posted]).toEqual([perSegment, 2 * perSegment])
      expect(cipher.usesPool).toBe(true)
    })
    expect(Buffer.from(fs.readFileSync(c.out)).equals(expected(keys, c.plain))).toBe(true)
  })

  it("with two workers, one not online yet, every job goes to the one online", async () => {
    const keys = keysFor(7)
    const c = directCase("one-online", 7, 10)
    const before = threads.all.length
    // workers: 3 is a pool of two threads; the first one started never reports "online".
    threads.hideOnline = 1
    const cipher = new SegmentCipher(keys, { workers: 3, inputBytes: 64 * MiB })
    await defaultRouting(cipher, c, async () => {
      expect((await Effect.runPromise(cipher.runDirect(c.job(0)))).failedAt).toBe(-1)
      const [hidden, online] = threads.all.slice(before)
      expect(hidden.hidesOnline && !online.hidesOnline).toBe(true)
      await until(() => online.online)
      // Six segments at once: the online worker holds two, this thread runs the others.
      const outcomes = await Effect.runPromise(Effect.all([1, 2, 3, 4, 5, 6].map((k) => cipher.runDirect(c.job(k))), { concurrency: "unbounded" }))
      expect(outcomes.every((o) => o.failedAt === -1)).toBe(true)
      expect(hidden.posted.size).toBe(0)
      expect(online.posted.size).toBeGreaterThan(0)
    })
    expect(Buffer.from(fs.readFileSync(c.out)).equals(expected(keys, c.plain))).toBe(true)
  })

  it("a pool whose worker died before it was online fails the next segment with the worker's error, naming that segment's chunks", async () => {
    const keys = keysFor(6)
    const c = directCase("dead", 2, 4)
    const before = threads.all.length
    const cipher = new SegmentCipher(keys, { workers: 2, inputBytes: 64 * MiB })
    await defaultRouting(cipher, c, async () => {
      threads.failStart = true
      const first = cipher.runDirect(c.job(0))
      threads.failStart = false
      // A file that ends before the worker's death is noticed is sealed on this thread.
      expect((await Effect.runPromise(first)).failedAt).toBe(-1)
      const worker = threads.all[before]
      await until(() => worker.exited)
      const exit = await Effect.runPromiseExit(cipher.runDirect(c.job(1)))
      expect(Exit.isFailure(exit)).toBe(true)
      const e = Exit.isFailure(exit) ? Cause.squash(exit.cause) as { _tag?: string; reason?: string; detail?: string; firstChunk?: number; chunks?: number } : {}
      expect(e).toMatchObject({ _tag: "SegmentWorkerError", reason: "Crashed", firstChunk: perSegment, chunks: perSegment })
      expect(e.detail).toContain("failed to start")
    })
  })

  /**
   * Runs `body` with the default routing and records, for each in-process run of `cipher`,
   * the turn of the event loop it started in: an immediate that queues itself counts the
   * turns (one queued while immediates run waits for the next turn). Checks that the four
   * segments of `c` each ran here, each in a turn of its own, and that the file is right.
   */
  const oneRunPerTurn = async (keys: ReturnType<typeof deriveKeys>, c: ReturnType<typeof directCase>, cipher: SegmentCipher, body: () => Promise<void>) => {
    let turn = 0
    let counting = true
    const tick = () => {
      turn++
      if (counting) setImmediate(tick)
    }
    const turns: Array<number> = []
    await defaultRouting(cipher, c, async () => {
      poolSeam.onLaterRun = () => void turns.push(turn)
      setImmediate(tick)
      await body()
    }).finally(() => {
      counting = false
      poolSeam.onLaterRun = undefined
    })
    expect(turns.length).toBe(4)
    expect(new Set(turns).size).toBe(4)
    expect(Buffer.from(fs.readFileSync(c.out)).equals(expected(keys, c.plain))).toBe(true)
  }

  it("segments this thread runs while the pool is full or starting run one per turn of the event loop", async () => {
    const keys = keysFor(8)
    const c = directCase("turns", 4, 12)
    const cipher = new SegmentCipher(keys, { workers: 2, inputBytes: 64 * MiB })
    await oneRunPerTurn(keys, c, cipher, async () => {
      // Routed now, before the event loop turns: no worker can be online, all four run here.
      const runs = [0, 1, 2, 3].map((k) => cipher.runDirect(c.job(k)))
      const outcomes = await Effect.runPromise(Effect.all(runs, { concurrency: "unbounded" }))
      expect(outcomes.every((o) => o.failedAt === -1)).toBe(true)
    })
  })

  it("a segment queued by the continuation of the one running here waits for the next turn", async () => {
    const keys = keysFor(11)
    const c = directCase("chain", 4, 14)
    // The pool's only worker never reports "online": every segment runs on this thread.
    threads.hideOnline = 1
    const cipher = new SegmentCipher(keys, { workers: 2, inputBytes: 64 * MiB })
    await oneRunPerTurn(keys, c, cipher, async () => {
      // One after another: each run's continuation asks for the next segment at once.
      const outcomes = await Effect.runPromise(Effect.forEach([0, 1, 2, 3], (k) => Effect.suspend(() => cipher.runDirect(c.job(k)))))
      expect(outcomes.every((o) => o.failedAt === -1)).toBe(true)
    })
  })

  it("an in-process run interrupted while it waits for its turn never runs", async () => {
    const keys = keysFor(9)
    const c = directCase("interrupted", 3, 13)
    const cipher = new SegmentCipher(keys, { workers: 2, inputBytes: 64 * MiB })
    let runs = 0
    await defaultRouting(cipher, c, async () => {
      const fibers = [0, 1, 2].map((k) => Effect.runFork(cipher.runDirect(c.job(k))))
      // As the first run starts, the other two wait for their turns: interrupt the last.
      poolSeam.onLaterRun = () => {
        if (++runs === 1) fibers[2].interruptUnsafe()
      }
      for (const f of fibers.slice(0, 2)) expect((await Effect.runPromise(Fiber.join(f))).failedAt).toBe(-1)
      expect(Exit.hasInterrupts(await Effect.runPromise(Fiber.await(fibers[2])))).toBe(true)
      // Turns enough for the third to have run if it were still queued.
      for (let t = 0; t < 5; t++) await new Promise((r) => setImmediate(r))
    }).finally(() => {
      poolSeam.onLaterRun = undefined
    })
    expect(runs).toBe(2)
    // The third segment was never written.
    expect(fs.statSync(c.out).size).toBe(2 * perSegment * (cs + TAG))
  })

  it("a 9 MiB file through the engine with workers: 2 is byte-identical to in-process, whichever thread ran each segment", async () => {
    // Correctness only: which segments reach the worker depends on how fast it starts.
    try {
      poolSeam.routeBeforeOnline = false
      const plain = bytes(9 * MiB + 17, 21)
      const src = writeTemp("ready9.bin", plain)
      const sealed = await sealDirect(src, cs, {}, { workers: 2 })
      expect(sealed.sealed.equals(await sealInMemory(plain, cs, sealed.snapshot, 1))).toBe(true)
      const opened = await openDirect(sealed.out, {}, { workers: 2 })
      expect(opened.plain.equals(plain)).toBe(true)
    } finally {
      poolSeam.routeBeforeOnline = true
    }
  })
})
