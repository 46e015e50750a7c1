/**
 * The conformance kit for Cage chunk processors.
 *
 * {@link describeProcessorConformance} registers a vitest suite that checks a processor
 * against the `ChunkProcessor` contract of `@cage/core` (see `ChunkProcessor.ts`):
 *
 * - identity: `name`, `version`, `apiVersion`, `capabilities`, JSON options, fresh instances;
 * - boundary sizes 0, 1, n-1, n, n+1, 2n-1, 2n, 2n+1 around every chunk size n, through
 *   `runPipeline`, compared with the processor driven by hand (and with segments of
 *   several sizes);
 * - a stream delivered byte by byte;
 * - out-of-order, overlapping `process` calls when `capabilities.ordered` is false;
 * - with `processDirect`: file-to-file runs in direct mode (at boundary sizes, segments of
 *   several chunks in flight) give the same output and result as the engine in memory;
 * - resume from a checkpoint after an interruption gives the one-run output and result;
 * - a failure (typed, or a throw inside the effect) in `process` ends the run with a
 *   `ProcessorError` carrying the chunk index, never hangs, publishes no output;
 * - with an `inverse`: round trips, and (opt-in) tampering is rejected with exit code 3;
 * - memory stays bounded on a large streamed input.
 *
 * Every check is also exported as a plain async function (`checks`) that throws on a
 * violation, so a kit's own tests, or a custom suite, can call them one by one.
 *
 * @module
 */
import { ChunkInput, ChunkOutput, type ChunkProcessor, ChunkSpec, IoError, type JsonValue, PROCESSOR_API_VERSION, ProcessorError, runPipeline } from "@cage/core"
import { Data, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Readable } from "node:stream"
import { describe, expect, it } from "vitest"
import { driveDirect, failureOf, permutation, runBytes, runExit, type RunResult, withTimeout } from "./internal/run.js"

/** Options of {@link describeProcessorConformance}. Every field is optional. */
export interface ConformanceOptions {
  /** Chunk sizes in bytes to test boundary sizes around. Default `[1, 7, 64, 4096]`. */
  readonly chunkSizes?: ReadonlyArray<number>
  /**
   * Makes the inverse processor (decrypt for an encrypt, gunzip for a gzip). When given,
   * every output is run through it and must give back the input exactly. The inverse runs
   * alone in a pipeline over the forward output (header and trailer included), with the
   * same chunk size.
   */
  readonly inverse?: () => ChunkProcessor
  /**
   * True (default) when two fresh processors give the same output and result for the same
   * input, so outputs are compared byte for byte. Set false for random nonces or salts:
   * outputs are then compared through `inverse`, which becomes required for transforms.
   */
  readonly deterministic?: boolean
  /**
   * Makes a valid input of about `size` bytes (default: pseudo-random bytes of exactly
   * `size`). Processors that accept only some inputs (a JSON validator) return the closest
   * valid input; its length is what the checks use.
   */
  readonly input?: (size: number, seed: number) => Uint8Array
  /**
   * Large-input memory check: about this many bytes streamed through the processor (what
   * `largeInput` yields is what counts). Default 256 MiB;
   * `false` skips the check (only for processors whose memory is checked elsewhere).
   */
  readonly largeInputBytes?: number | false
  /** Pieces of the large input, about `totalBytes` in all (default: one pseudo-random 1 MiB block repeated). */
  readonly largeInput?: (totalBytes: number) => Iterable<Uint8Array> | AsyncIterable<Uint8Array>
  /** Chunk size for the large-input check, in bytes. Default 64 KiB. */
  readonly largeChunkBytes?: number
  /** Bound on heap + external memory growth during the large run, in bytes. Default 128 MiB. */
  readonly memoryLimitBytes?: number
  /**
   * True when the inverse authenticates its input (a cipher, a checksummed format): a byte
   * flipped in the forward output must make the inverse fail with a `ProcessorError` whose
   * cause has exit code 3. Default false.
   */
  readonly inverseRejectsTampering?: boolean
  /**
   * Segments in flight for the resume checks. Default `[1, 3]`: with 3, later segments are
   * processed before earlier ones are written, so a snapshot must describe exactly the
   * checkpointed chunks.
   */
  readonly resumeInFlight?: ReadonlyArray<number>
  /** Time limit of each run, in ms, after which the check fails as "hung". Default 30 000. */
  readonly timeoutMs?: number
}

const DEFAULT_CHUNK_SIZES = [1, 7, 64, 4096]
const DEFAULT_LARGE_BYTES = 256 * 1024 * 1024
const DEFAULT_LARGE_CHUNK = 64 * 1024
const DEFAULT_MEMORY_LIMIT = 128 * 1024 * 1024
const DEFAULT_TIMEOUT_MS = 30_000
/** Chunks in the inputs of the ordering, resume and failure checks. */
const CHECK_CHUNKS = 40

/** Pseudo-random bytes (xorshift32): reproducible inputs without a fixture file. */
export const pseudoRandomBytes = (size: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** The boundary sizes around chunk size `n`: 0, 1, n-1, n, n+1, 2n-1, 2n, 2n+1, deduplicated. */
export const boundarySizes = (n: number): Array<number> =>
  [...new Set([0, 1, n - 1, n, n + 1, 2 * n - 1, 2 * n, 2 * n + 1])].filter((s) => s >= 0).sort((a, b) => a - b)

/** The failure the kit injects into `process`. Exit code 1: it is not a known class of failure. */
export class InjectedFailure extends Data.TaggedError("InjectedFailure")<{ readonly chunk: number }> {
  readonly exitCode = 1
  override get message() {
    return `conformance kit: injected failure at chunk ${this.chunk}`
  }
}

/** {@link ConformanceOptions} with defaults filled in. */
interface Settings {
  readonly make: () => ChunkProcessor
  readonly inverse: (() => ChunkProcessor) | undefined
  readonly deterministic: boolean
  readonly input: (size: number, seed: number) => Uint8Array
  readonly timeoutMs: number
}

const settle = (make: () => ChunkProcessor, options: ConformanceOptions): Settings => ({
  make,
  inverse: options.inverse,
  deterministic: options.deterministic ?? true,
  input: options.input ?? pseudoRandomBytes,
  timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS
})

/** Chunks in the plan of an input of `inputBytes` bytes laid out with `framing`. */
const chunkCount = (framing: ChunkSpec.Framing, inputBytes: number) => ChunkSpec.planRegion(inputBytes - framing.headerBytes, framing).totalChunks

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const sameBytes = (actual: Uint8Array, expected: Uint8Array, what: string) => {
  if (actual.length !== expected.length || !Buffer.from(actual).equals(Buffer.from(expected))) {
    const at = Array.from({ length: Math.min(actual.length, expected.length) }).findIndex((_, i) => actual[i] !== expected[i])
    throw new Error(`${what}: ${actual.length} bytes differ from the expected ${expected.length} bytes (first difference at byte ${at < 0 ? Math.min(actual.length, expected.length) : at})${actual.length <= 64 && expected.length <= 64 ? `: got ${hex(actual)}, expected ${hex(expected)}` : ""}`)
  }
}

/** Runs the inverse over `output` and checks that it gives back `input`. */
const roundTrip = async (s: Settings, output: Uint8Array, input: Uint8Array, chunkBytes: number, what: string) => {
  if (!s.inverse) return
  const back = await withTimeout(runBytes([s.inverse()], output, chunkBytes), s.timeoutMs, `the inverse of ${what}`)
  sameBytes(back.output, input, `round trip of ${what} through the inverse`)
}

/**
 * Checks that two runs over the same `input` agree: byte for byte and result for result
 * when deterministic, through the inverse otherwise; observers pass their input through.
 */
const agree = async (s: Settings, kind: ChunkProcessor["capabilities"]["kind"], a: RunResult, b: RunResult, input: Uint8Array, chunkBytes: number, what: string) => {
  if (s.deterministic) {
    sameBytes(b.output, a.output, what)
    expect(b.results, `${what}: finalize results`).toEqual(a.results)
  }
  if (kind === "observer" && !s.inverse) {
    // An observer's output is its header (if any), the untouched input, and its trailer.
    const passedThrough = Buffer.from(b.output).includes(Buffer.from(input))
    expect(passedThrough, `${what}: an observer must pass every input byte through unchanged`).toBe(true)
  }
  await roundTrip(s, a.output, input, chunkBytes, `${what} (reference)`)
  await roundTrip(s, b.output, input, chunkBytes, what)
}

/**
 * The chunk size a processor really uses when asked for `chunkBytes`: a processor that
 * frames its input (a cipher with its own chunk size) overrides it in `init`. Input sizes
 * of the checks are derived from this, so they cut where the processor cuts.
 */
export const effectiveChunkBytes = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<number> => {
  const p = make()
  const sample = (options.input ?? pseudoRandomBytes)(4 * chunkBytes + 64, 1)
  const exit = await Effect.runPromiseExit(p.init({
    input: "conformance probe",
    inputSize: sample.length,
    chunkBytes,
    readHeader: (length) => Effect.sync(() => sample.slice(0, length)),
    resume: undefined
  }))
  if (p.close) await Effect.runPromise(p.close())
  // A processor whose init needs more than the sample (a decryptor) keeps the asked size.
  return Exit.isSuccess(exit) && exit.value?.framing ? exit.value.framing.chunkBytes : chunkBytes
}

// ---------------------------------------------------------------------------------------
// The checks. Each throws (a vitest assertion error or an Error) on a violation.

/** `name`, `version`, `apiVersion`, `capabilities` and JSON-safe options; a fresh object per call. */
export const checkIdentity = async (make: () => ChunkProcessor): Promise<void> => {
  const p = make()
  const q = make()
  expect(p, "makeProcessor must return a new processor for every run").not.toBe(q)
  expect(typeof p.name === "string" && p.name.length > 0, "name must be a non-empty string").toBe(true)
  expect(p.version, "version must be semver").toMatch(/^\d+\.\d+\.\d+(?:[-+].*)?$/)
  expect(p.apiVersion, `apiVersion must be PROCESSOR_API_VERSION (${PROCESSOR_API_VERSION})`).toBe(PROCESSOR_API_VERSION)
  expect(["transform", "observer"], "capabilities.kind").toContain(p.capabilities.kind)
  expect(typeof p.capabilities.ordered, "capabilities.ordered must be a boolean").toBe("boolean")
  expect(JSON.parse(JSON.stringify(p.options)), "options must survive JSON (they are written to checkpoints)").toEqual(p.options)
  if (p.snapshot) {
    const snap = p.snapshot() as JsonValue
    expect(JSON.parse(JSON.stringify(snap ?? null)), "snapshot() must be JSON").toEqual(snap ?? null)
  }
  if (p.close) await Effect.runPromise(p.close())
  if (q.close) await Effect.runPromise(q.close())
}

/**
 * One input of `size` bytes at chunk size `chunkBytes`: the engine's output (file-like
 * source, small and default segments) equals the processor driven by hand in order.
 */
export const checkBoundary = async (make: () => ChunkProcessor, size: number, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const input = s.input(size, size * 31 + chunkBytes)
  const what = `${input.length} bytes at chunk size ${chunkBytes}`
  const reference = await withTimeout(driveDirect(s.make(), input, chunkBytes, "in-order", 1), s.timeoutMs, `direct run of ${what}`)
  const engine = await withTimeout(runBytes([s.make()], input, chunkBytes, { segmentBytes: chunkBytes * 3, inFlight: 3 }), s.timeoutMs, `engine run of ${what}`)
  const oneSegment = await withTimeout(runBytes([s.make()], input, chunkBytes), s.timeoutMs, `engine run of ${what}`)
  const kind = make().capabilities.kind
  await agree(s, kind, reference, engine, input, chunkBytes, `${what}, engine with 3-chunk segments vs direct`)
  await agree(s, kind, reference, oneSegment, input, chunkBytes, `${what}, engine with default segments vs direct`)
  expect(engine.summary?.totalChunks, `${what}: chunks in the plan`).toBe(chunkCount(reference.framing, input.length))
}

/** A stream delivered one byte at a time gives the same result as the whole input at once. */
export const checkByteByByte = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const input = s.input(3 * (await effectiveChunkBytes(make, chunkBytes, options)) + 5, 77)
  const what = `a ${input.length}-byte stream written byte by byte at chunk size ${chunkBytes}`
  const whole = await withTimeout(runBytes([s.make()], input, chunkBytes), s.timeoutMs, what)
  const bytewise = await withTimeout(
    runBytes([s.make()], input, chunkBytes, { input: ChunkInput.fromStream(Readable.from(Array.from(input, (b) => Buffer.of(b))), "byte-by-byte") }),
    s.timeoutMs,
    what
  )
  await agree(s, make().capabilities.kind, whole, bytewise, input, chunkBytes, what)
}

/**
 * For `capabilities.ordered === false`: `process` called in a shuffled order with up to 4
 * calls overlapping gives the same output as in order (and, with `processSegment`,
 * segments in a shuffled order too). Throws if the processor is ordered.
 */
export const checkOutOfOrder = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const probe = make()
  if (probe.capabilities.ordered) throw new Error(`${probe.name} is ordered: out-of-order delivery does not apply`)
  const n = await effectiveChunkBytes(make, chunkBytes, options)
  const input = s.input(CHECK_CHUNKS * n + (n >> 1), 1234)
  const what = `${input.length} bytes at chunk size ${chunkBytes}`
  const inOrder = await withTimeout(driveDirect(s.make(), input, chunkBytes, "in-order", 1), s.timeoutMs, `in-order run of ${what}`)
  const chunks = chunkCount(inOrder.framing, input.length)
  for (const seed of [1, 2, 3]) {
    const shuffled = await withTimeout(driveDirect(s.make(), input, chunkBytes, permutation(chunks, seed), 4), s.timeoutMs, `shuffled run of ${what}`)
    await agree(s, probe.capabilities.kind, inOrder, shuffled, input, chunkBytes, `${what}, process called in shuffled order ${seed} vs in order`)
  }
  if (probe.processSegment) {
    // Drive processSegment over 3-chunk segments in reverse order through the engine's own
    // contract: same output as calling process chunk by chunk.
    const p = s.make()
    const segmented: ChunkProcessor = {
      ...p,
      process: (c, d) => p.processSegment!([c], [d]).pipe(Effect.map((o) => o[0]))
    }
    const viaSegments = await withTimeout(driveDirect(segmented, input, chunkBytes, permutation(chunks, 9), 4), s.timeoutMs, `processSegment run of ${what}`)
    await agree(s, probe.capabilities.kind, inOrder, viaSegments, input, chunkBytes, `${what}, processSegment in shuffled order vs process in order`)
  }
  if (probe.close) await Effect.runPromise(probe.close())
}

const tempDir = () => fs.mkdtempSync(nodePath.join(os.tmpdir(), "cage-testkit-"))

/**
 * For a processor with `processDirect`: file-to-file runs, which the engine hands to
 * `processDirect` (checked by counting its calls), agree with in-memory runs through
 * `process`/`processSegment` at boundary sizes of the processor's chunk size, with 3-chunk
 * segments and 3 of them in flight. Throws if the processor has no `processDirect`.
 */
export const checkDirectMode = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const probe = make()
  if (!probe.processDirect) throw new Error(`${probe.name} has no processDirect: direct mode does not apply`)
  const n = await effectiveChunkBytes(make, chunkBytes, options)
  const dir = tempDir()
  try {
    for (const size of [...boundarySizes(n), 7 * n + 3]) {
      const input = s.input(size, size + 11)
      const what = `${size} bytes file to file at chunk size ${chunkBytes}`
      const src = nodePath.join(dir, `in-${size}`)
      const out = nodePath.join(dir, `out-${size}`)
      fs.writeFileSync(src, input)
      const p = s.make()
      let directCalls = 0
      const counted: ChunkProcessor = {
        ...p,
        processDirect: (cs, seg) => {
          directCalls++
          return p.processDirect!(cs, seg)
        }
      }
      const summary = await withTimeout(Effect.runPromise(Effect.gen(function*() {
        const file = yield* ChunkInput.fromFile(src)
        return yield* runPipeline({ input: file, output: ChunkOutput.toFile(out), pipeline: [counted], chunkBytes, segmentBytes: 3 * n, inFlight: 3 }).pipe(Effect.ensuring(file.close()))
      })), s.timeoutMs, what)
      const reference = await withTimeout(runBytes([s.make()], input, chunkBytes, { segmentBytes: 3 * n, inFlight: 3 }), s.timeoutMs, `${what} (in memory)`)
      const chunks = reference.summary?.totalChunks ?? 0
      expect(directCalls, `${what}: processDirect must be called once per 3-chunk segment`).toBe(Math.ceil(chunks / 3))
      expect(summary.outputBytes, `${what}: output bytes`).toBe(fs.statSync(out).size)
      await agree(s, probe.capabilities.kind, reference, { output: fs.readFileSync(out), results: summary.results, summary }, input, chunkBytes, `${what}, direct mode vs in memory`)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
    if (probe.close) await Effect.runPromise(probe.close())
  }
}

/** How {@link checkResume} interrupts the first run. */
export type Interruption =
  /** The source fails to read past about 60% of the input (a crash, a yanked disk). */
  | "read"
  /** The processor's own `process` fails at the chunk about 60% in (an {@link InjectedFailure}). */
  | "process"

/**
 * A run interrupted mid-way (see {@link Interruption}), then resumed from its checkpoint
 * with fresh processors, gives the same output file and result as one uninterrupted run
 * (for a transform declared `resumable: false` and not `deterministic`: the resume is
 * refused as `NotResumable`);
 * `resumedFrom` is past chunk 0; no checkpoint is left behind. `inFlight` > 1 lets later
 * segments be processed before earlier ones are written.
 */
export const checkResume = async (make: () => ChunkProcessor, chunkBytes: number, inFlight: number, options: ConformanceOptions = {}, interruption: Interruption = "read"): Promise<void> => {
  const s = settle(make, options)
  const dir = tempDir()
  try {
    const n = await effectiveChunkBytes(make, chunkBytes, options)
    const input = s.input(CHECK_CHUNKS * n + 3, 4321)
    const src = nodePath.join(dir, "input")
    fs.writeFileSync(src, input)
    const once = nodePath.join(dir, "once")
    const resumed = nodePath.join(dir, "resumed")
    const ckpt = nodePath.join(dir, "resumed.checkpoint")
    const failAtByte = Math.floor(input.length * 0.6)
    const failAtChunk = Math.floor(CHECK_CHUNKS * 0.6)
    const what = `resume after a ${interruption} failure, ${input.length} bytes at chunk size ${chunkBytes} with ${inFlight} segments in flight`
    // The processor of the interrupted run fails at one chunk; same name, version and
    // options, so the checkpoint still matches the pipeline of the resumed run.
    const readFailure = (position: number) => new IoError({ reason: "Unknown", operation: "read", path: src, detail: `conformance kit: injected interruption at byte ${position}` })
    const failingProcessor = (): ChunkProcessor => {
      const p = s.make()
      const inject = Effect.fail(new InjectedFailure({ chunk: failAtChunk }))
      return {
        ...p,
        process: (c, d) => (c.index === failAtChunk ? inject : p.process(c, d)),
        processSegment: p.processSegment ? (cs, ds) => (cs.some((c) => c.index === failAtChunk) ? inject : p.processSegment!(cs, ds)) : undefined,
        processDirect: p.processDirect ? (cs, seg) => (cs.some((c) => c.index === failAtChunk) ? inject : p.processDirect!(cs, seg)) : undefined
      }
    }
    // In direct mode (see ChunkProcessor) the processor reads the input itself: the read
    // failure is injected where it reads.
    const failingReader = (): ChunkProcessor => {
      const p = s.make()
      if (!p.processDirect) return p
      return {
        ...p,
        processDirect: (cs, seg) => {
          const end = seg.inputOffset + (cs[cs.length - 1].end - cs[0].start)
          return end > failAtByte ? Effect.fail(readFailure(seg.inputOffset)) : p.processDirect!(cs, seg)
        }
      }
    }
    const runFile = (out: string, failing: boolean) =>
      Effect.runPromiseExit(Effect.gen(function*() {
        const file = yield* ChunkInput.fromFile(src)
        const input: ChunkInput.ChunkInput = failing && interruption === "read"
          ? {
            ...file,
            read: (position, buffer, offset, length) =>
              position + length > failAtByte ? Effect.fail(readFailure(position)) : file.read(position, buffer, offset, length)
          }
          : file
        return yield* runPipeline({
          input,
          output: ChunkOutput.toFile(out),
          pipeline: [failing ? (interruption === "process" ? failingProcessor() : failingReader()) : s.make()],
          chunkBytes,
          segmentBytes: n * 2,
          inFlight,
          checkpoint: out === once ? undefined : { path: ckpt, mode: "resume", intervalMs: 0 }
        }).pipe(Effect.ensuring(file.close()))
      }))
    const one = await withTimeout(runFile(once, false), s.timeoutMs, `uninterrupted run for ${what}`)
    if (!Exit.isSuccess(one)) throw new Error(`${what}: the uninterrupted run failed: ${String(one.cause)}`)
    const first = await withTimeout(runFile(resumed, true), s.timeoutMs, `interrupted run for ${what}`)
    expect(Exit.isFailure(first), `${what}: the interrupted run must fail`).toBe(true)
    expect(fs.existsSync(resumed), `${what}: an interrupted run must not publish its output`).toBe(false)
    expect(fs.existsSync(ckpt), `${what}: the interrupted run must leave a checkpoint`).toBe(true)
    const second = await withTimeout(runFile(resumed, false), s.timeoutMs, `resumed run for ${what}`)
    const caps = make().capabilities
    if (caps.kind === "transform" && caps.resumable === false && caps.deterministic !== true) {
      // The engine refuses to continue the output of a transform that cannot snapshot itself;
      // the refusal must be the typed one, and it must leave the checkpoint for --no-resume.
      const failure = Exit.isFailure(second) ? Exit.findErrorOption(second) : undefined
      expect(failure?._tag === "Some" ? (failure.value as { _tag?: string; reason?: string }) : undefined, `${what}: resuming a non-resumable transform must be refused`).toMatchObject({ _tag: "ResumeRefused", reason: "NotResumable" })
      expect(fs.existsSync(resumed), `${what}: a refused resume must not publish`).toBe(false)
      return
    }
    if (!Exit.isSuccess(second)) throw new Error(`${what}: the resumed run failed: ${String(second.cause)}`)
    expect(second.value.resumedFrom, `${what}: the resumed run must start past chunk 0`).toBeGreaterThan(0)
    expect(fs.existsSync(ckpt), `${what}: the checkpoint must be removed after success`).toBe(false)
    const a: RunResult = { output: fs.readFileSync(once), results: one.value.results }
    const b: RunResult = { output: fs.readFileSync(resumed), results: second.value.results }
    await agree(s, make().capabilities.kind, a, b, input, chunkBytes, `${what}: resumed vs one run`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * `process` fails at one chunk (a typed failure, or a throw inside the effect when
 * `how === "throw"`): the run ends with a `ProcessorError` naming the processor and the
 * chunk index, within the time limit, publishes no output, and calls `close` once.
 */
export const checkFailure = async (make: () => ChunkProcessor, chunkBytes: number, how: "fail" | "throw", options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const dir = tempDir()
  try {
    const n = await effectiveChunkBytes(make, chunkBytes, options)
    const input = s.input(CHECK_CHUNKS * n, 99)
    const failAt = Math.floor(CHECK_CHUNKS / 2) + 1
    const p = s.make()
    let closed = 0
    const inject = (index: number): Effect.Effect<never, unknown> =>
      how === "fail" ? Effect.fail(new InjectedFailure({ chunk: index })) : Effect.sync(() => { throw new InjectedFailure({ chunk: index }) })
    const faulty: ChunkProcessor = {
      ...p,
      process: (c, d) => (c.index === failAt ? inject(c.index) : p.process(c, d)),
      processSegment: p.processSegment
        ? (cs, ds) => (cs.some((c) => c.index === failAt) ? inject(failAt) : p.processSegment!(cs, ds))
        : undefined,
      close: () => Effect.suspend(() => { closed++; return p.close ? p.close() : Effect.void })
    }
    const out = nodePath.join(dir, "out")
    const exit = await withTimeout(
      runExit({ input: ChunkInput.fromBytes(input), output: ChunkOutput.toFile(out), pipeline: [faulty], chunkBytes, segmentBytes: n * 2, inFlight: 4 }),
      s.timeoutMs,
      `a run failing at chunk ${failAt}`
    )
    const error = failureOf(exit)
    expect(error, "a failure in process must surface as ProcessorError").toBeInstanceOf(ProcessorError)
    const pe = error as ProcessorError
    expect(pe.processor).toBe(p.name)
    expect(pe.phase).toBe("process")
    expect(pe.chunk, "the ProcessorError must carry the failing chunk index").toBe(failAt)
    expect(pe.cause).toBeInstanceOf(InjectedFailure)
    expect(fs.existsSync(out), "a failed run must not publish its output").toBe(false)
    expect(fs.existsSync(`${out}.partial`), "a failed run without checkpoint must remove its partial output").toBe(false)
    expect(closed, "close must be called once after a failure").toBe(1)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * With an authenticating inverse: a byte flipped at several places in the forward output
 * makes the inverse fail with a `ProcessorError` whose exit code is 3 (integrity), never
 * succeed with different bytes.
 */
export const checkTampering = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  if (!s.inverse) throw new Error("checkTampering needs options.inverse")
  const input = s.input(5 * (await effectiveChunkBytes(make, chunkBytes, options)) + 3, 555)
  const forward = await withTimeout(runBytes([s.make()], input, chunkBytes), s.timeoutMs, "forward run for tampering")
  const positions = [...new Set([0, forward.output.length >> 2, forward.output.length >> 1, (forward.output.length * 3) >> 2, forward.output.length - 1])]
  for (const at of positions) {
    const tampered = Buffer.from(forward.output)
    tampered[at] ^= 0x01
    const exit = await withTimeout(
      runExit({ input: ChunkInput.fromBytes(tampered), output: ChunkOutput.toMemory(), pipeline: [s.inverse()], chunkBytes }),
      s.timeoutMs,
      `inverse over output tampered at byte ${at}`
    )
    if (Exit.isSuccess(exit)) throw new Error(`the inverse accepted output with byte ${at} of ${tampered.length} flipped`)
    const error = failureOf(exit)
    expect(error, `tampering at byte ${at}`).toBeInstanceOf(ProcessorError)
    expect((error as ProcessorError).exitCode, `tampering at byte ${at}: exit code`).toBe(3)
  }
}

const defaultLargeInput = function*(total: number): Iterable<Uint8Array> {
  const block = Buffer.from(pseudoRandomBytes(1 << 20, 2024))
  for (let sent = 0; sent < total; sent += block.length) {
    yield sent + block.length <= total ? block : block.subarray(0, total - sent)
  }
}

/** What {@link checkMemory} measured, in bytes. */
export interface MemoryReport {
  readonly inputBytes: number
  readonly outputBytes: number
  /** Peak growth of V8 heap + external memory (Buffers) over the baseline, in bytes. */
  readonly peakGrowthBytes: number
  /** Peak RSS growth over the baseline, in bytes (informative: RSS does not shrink). */
  readonly rssGrowthBytes: number
}

/**
 * Streams `largeInputBytes` (default 256 MiB) through the processor from a stream into a
 * counting sink that keeps nothing, and checks that heap + external memory never grows
 * more than `memoryLimitBytes` (default 128 MiB) over the baseline.
 */
export const checkMemory = async (make: () => ChunkProcessor, options: ConformanceOptions = {}): Promise<MemoryReport> => {
  const s = settle(make, options)
  const total = options.largeInputBytes === false ? 0 : options.largeInputBytes ?? DEFAULT_LARGE_BYTES
  const limit = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT
  const cs = options.largeChunkBytes ?? DEFAULT_LARGE_CHUNK
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  const used = () => {
    const m = process.memoryUsage()
    return { live: m.heapUsed + m.external, rss: m.rss }
  }
  const base = used()
  let peak = base
  const sample = () => {
    const m = used()
    peak = { live: Math.max(peak.live, m.live), rss: Math.max(peak.rss, m.rss) }
  }
  let outputBytes = 0
  const sink: ChunkOutput.ChunkOutput = {
    description: "counting sink",
    resumable: false,
    position: () => outputBytes,
    open: () => Effect.void,
    write: (buffers) => Effect.sync(() => { for (const b of buffers) outputBytes += b.length }),
    sync: () => Effect.void,
    commit: () => Effect.void,
    abort: () => Effect.void
  }
  // Count what the generator yields: a format with framing (gzip members) may not hit `total` exactly.
  let inputBytes = 0
  const pieces = (options.largeInput ?? defaultLargeInput)(total)
  const counted = async function*() {
    for await (const piece of pieces) {
      inputBytes += piece.length
      yield piece
    }
  }
  const source = Readable.from(counted(), { objectMode: false })
  const summary = await withTimeout(
    Effect.runPromise(runPipeline({
      input: ChunkInput.fromStream(source, "large stream"),
      output: sink,
      pipeline: [s.make()],
      chunkBytes: cs,
      progress: { start: sample, update: sample, stop: sample }
    })),
    Math.max(s.timeoutMs, 600_000),
    `streaming ${total} bytes`
  )
  expect(summary.bytesProcessed, "every input byte must be processed").toBe(inputBytes)
  const report: MemoryReport = { inputBytes, outputBytes, peakGrowthBytes: peak.live - base.live, rssGrowthBytes: peak.rss - base.rss }
  expect(report.peakGrowthBytes, `heap + external memory grew by ${report.peakGrowthBytes} bytes on a ${total}-byte input (bound ${limit})`).toBeLessThan(limit)
  return report
}

/** Every check, for custom suites and for testing the kit itself. */
export const checks = {
  identity: checkIdentity,
  boundary: checkBoundary,
  byteByByte: checkByteByByte,
  outOfOrder: checkOutOfOrder,
  directMode: checkDirectMode,
  resume: checkResume,
  failure: checkFailure,
  tampering: checkTampering,
  memory: checkMemory
} as const

/**
 * Registers the conformance suite for one processor with vitest: call it at the top level
 * of a test file.
 *
 * `makeProcessor` must return a fresh processor for every run (the engine uses a processor
 * for exactly one run); it is called many times. Processors with secrets (keys) should
 * close over fixed test keys so that a resumed run can continue an interrupted one.
 *
 * @example
 * import { describeProcessorConformance } from "@cage/testkit"
 * import { gzip, gunzip } from "../src/index.js"
 *
 * describeProcessorConformance("gzip", () => gzip({ level: 1 }), { inverse: () => gunzip(), inverseRejectsTampering: true })
 */
export const describeProcessorConformance = (name: string, makeProcessor: () => ChunkProcessor, options: ConformanceOptions = {}): void => {
  const probe = makeProcessor()
  const deterministic = options.deterministic ?? true
  if (!deterministic && probe.capabilities.kind === "transform" && !options.inverse) {
    throw new Error(`describeProcessorConformance(${name}): a non-deterministic transform needs options.inverse to compare outputs`)
  }
  if (options.inverseRejectsTampering && !options.inverse) {
    throw new Error(`describeProcessorConformance(${name}): inverseRejectsTampering needs options.inverse`)
  }
  const sizes = options.chunkSizes ?? DEFAULT_CHUNK_SIZES
  const timeout = (options.timeoutMs ?? DEFAULT_TIMEOUT_MS) * 4
  describe(`${name}: ChunkProcessor conformance`, () => {
    it("declares a valid identity, capabilities and JSON options", () => checkIdentity(makeProcessor))
    for (const n of sizes) {
      // Sizes around the chunk size the processor really uses (its own framing may override n).
      it.for(boundarySizes(n).map((_, k) => k))(`chunk size ${n}: boundary size #%i (0, 1, n-1, n, n+1, 2n-1, 2n, 2n+1) through the engine equals the processor driven by hand`, { timeout }, async (k) => {
        const effective = await effectiveChunkBytes(makeProcessor, n, options)
        await checkBoundary(makeProcessor, boundarySizes(effective)[k] ?? boundarySizes(effective).at(-1)!, n, options)
      })
    }
    it("a stream written byte by byte equals the whole input", () => checkByteByByte(makeProcessor, 64, options), timeout)
    if (!probe.capabilities.ordered) {
      it.for(sizes.filter((n) => n > 1))("chunk size %i: process in shuffled, overlapping order equals in order", { timeout }, (n) => checkOutOfOrder(makeProcessor, n, options))
    }
    if (probe.processDirect) {
      it.for(sizes.filter((n) => n > 1))("chunk size %i: direct mode, file to file, equals the engine in memory", { timeout }, (n) => checkDirectMode(makeProcessor, n, options))
    }
    const resumeCases = (options.resumeInFlight ?? [1, 3]).flatMap((inFlight) => (["read", "process"] as const).map((how) => [inFlight, how] as const))
    it.for(resumeCases)("resume from a checkpoint after an interruption equals one run (%i segments in flight, %s failure)", { timeout }, ([inFlight, how]) => checkResume(makeProcessor, 64, inFlight, options, how))
    it.for(["fail", "throw"] as const)("a %s in process surfaces as ProcessorError with the chunk index, never hangs", { timeout }, (how) => checkFailure(makeProcessor, 64, how, options))
    if (options.inverseRejectsTampering) {
      it("the inverse rejects tampered output with exit code 3", () => checkTampering(makeProcessor, 64, options), timeout)
    }
    if (options.largeInputBytes !== false) {
      it(`memory stays bounded on a ${options.largeInputBytes ?? DEFAULT_LARGE_BYTES}-byte streamed input`, () => checkMemory(makeProcessor, options).then(() => undefined), 600_000)
    }
  })
  if (probe.close) void Effect.runPromise(probe.close())
}
