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
 * - the buffers the engine lends (`data`) come back unchanged, and are detached only by
 *   `processSegment` (checked on every call the kit makes or watches);
 * - a transform changes the suite's inputs (else the suite exercises none of its logic);
 * - opt-in: the output equals a `reference` function's on inputs that cross chunk
 *   boundaries, and is the same at every chunk size;
 * - live memory (after a full garbage collection) stays bounded on a large streamed input.
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
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { describe, expect, it } from "vitest"
import { driveDirect, failureOf, permutation, runBytes, runExit, type RunResult, watched, withTimeout } from "./internal/run.js"

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
   * Inputs that exercise the processor's logic: for a redactor, texts that contain its
   * pattern (pseudo-random bytes never do). Either
   *
   * - samples (an array): bytes that may be cut and joined freely. The `reference` check runs
   *   each as is and shifted across chunk boundaries (after 0 to n-1 pseudo-random bytes at
   *   chunk sizes n up to 64, with the boundary at 16 places of the sample for larger ones);
   *   the `chunkSizeIndependent` check runs each, and all of them joined; and, unless `input`
   *   is given, every other check cuts its inputs from the samples repeated, so the whole
   *   suite exercises the processor;
   * - or a function of the chunk size that returns the exact inputs to run at that chunk size
   *   (for a format that cannot be cut or joined); the other checks keep using `input`.
   */
  readonly inputs?: ReadonlyArray<Uint8Array> | ((chunkBytes: number) => Iterable<Uint8Array>)
  /**
   * The whole output (header, chunk outputs, trailer) expected for an input, computed in one
   * piece (a redactor: the pattern replaced in the whole input). When given, the output of
   * the engine must equal it at every chunk size of `chunkSizes` and the default 64 KiB, on
   * inputs at boundary sizes and on `inputs`. Needs `deterministic`.
   */
  readonly reference?: (input: Uint8Array) => Uint8Array
  /**
   * True when the output must not depend on the chunk size (a redactor, a compressor of one
   * stream; not a processor that frames each chunk): the same inputs (one of about twice the
   * largest chunk size, and `inputs`) run at every chunk size of `chunkSizes` (1 is byte by
   * byte) and the default 64 KiB must give the same bytes. Needs `deterministic`. Default false.
   */
  readonly chunkSizeIndependent?: boolean
  /**
   * True for a transform that leaves the suite's inputs unchanged by design (a normaliser fed
   * normalised input): skips the check that the default input changes the output. Default false.
   */
  readonly allowUnchangedOutput?: boolean
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
  /**
   * Bound on the growth of live memory (V8 heap + external, measured after a full garbage
   * collection) during the large run, in bytes. Default 128 MiB.
   */
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

/** Inputs of about `size` bytes cut from `samples` repeated, starting at a place chosen by `seed`. */
const cutFromSamples = (samples: ReadonlyArray<Uint8Array>) => (size: number, seed: number): Uint8Array => {
  const out = new Uint8Array(size)
  let k = seed % samples.length
  let from = seed % Math.max(1, samples[k].length)
  for (let at = 0; at < size; k = (k + 1) % samples.length, from = 0) {
    const piece = samples[k].subarray(from, from + size - at)
    out.set(piece, at)
    at += piece.length
  }
  return out
}

/** The samples of `options.inputs` when they are an array with bytes in it. */
const samplesOf = (options: ConformanceOptions): ReadonlyArray<Uint8Array> | undefined =>
  typeof options.inputs === "object" && options.inputs.some((b) => b.length > 0) ? options.inputs : undefined

/** {@link ConformanceOptions} with defaults filled in. */
interface Settings {
  readonly make: () => ChunkProcessor
  readonly inverse: (() => ChunkProcessor) | undefined
  readonly deterministic: boolean
  /** The inputs of a size the checks use: `input`, else cut from the samples, else pseudo-random. */
  readonly input: (size: number, seed: number) => Uint8Array
  /** Where `input` comes from, for messages. */
  readonly inputSource: string
  readonly timeoutMs: number
}

const sizedInput = (options: ConformanceOptions): { readonly input: (size: number, seed: number) => Uint8Array; readonly source: string } => {
  if (options.input) return { input: options.input, source: "options.input" }
  const samples = samplesOf(options)
  return samples ? { input: cutFromSamples(samples), source: "options.inputs repeated" } : { input: pseudoRandomBytes, source: "pseudo-random bytes" }
}

const settle = (make: () => ChunkProcessor, options: ConformanceOptions): Settings => {
  const { input, source } = sizedInput(options)
  return {
    make,
    inverse: options.inverse,
    deterministic: options.deterministic ?? true,
    input,
    inputSource: source,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  }
}

/** An input of a check and how messages name it. */
interface LabeledInput {
  readonly label: string
  readonly bytes: Uint8Array
}

/**
 * Where a sample starts (bytes of pseudo-random prefix) so that chunk boundaries of size `n`
 * cross it: every offset for n up to 64, else 16 places spread over the sample.
 */
const shiftsAcross = (n: number, length: number): Array<number> => {
  if (n <= 1) return [0]
  if (n <= 64) return Array.from({ length: n }, (_, k) => k)
  const places = Math.min(16, length - 1)
  const splits = Array.from({ length: Math.max(0, places) }, (_, i) => 1 + Math.floor((i * (length - 1)) / places))
  return [...new Set([0, ...splits.map((j) => n - j)])].filter((k) => k >= 0)
}

const prefixed = (shift: number, sample: Uint8Array) => (shift === 0 ? sample : Buffer.concat([pseudoRandomBytes(shift, 7919 + shift), sample]))

/** The `inputs` to run at chunk size `n`: the function's, or each sample at every shift across a boundary. */
const inputsAt = (options: ConformanceOptions, n: number): Array<LabeledInput> => {
  const inputs = options.inputs
  if (inputs === undefined) return []
  if (typeof inputs === "function") return Array.from(inputs(n), (b, k) => ({ label: `options.inputs(${n})[${k}] (${bytes(b.length)})`, bytes: b }))
  return inputs.flatMap((sample, k) =>
    shiftsAcross(n, sample.length).map((shift) => ({
      label: shift === 0 ? `sample ${k} (${bytes(sample.length)})` : `sample ${k} after ${bytes(shift)} (${bytes(shift + sample.length)})`,
      bytes: prefixed(shift, sample)
    }))
  )
}

/** The chunk sizes of the `reference` and `chunkSizeIndependent` checks: `chunkSizes` and the engine's default. */
export const referenceChunkSizes = (options: ConformanceOptions = {}): Array<number> =>
  [...new Set([...(options.chunkSizes ?? DEFAULT_CHUNK_SIZES), ChunkSpec.DEFAULT_CHUNK_BYTES])].sort((a, b) => a - b)

/** Chunks in the plan of an input of `inputBytes` bytes laid out with `framing`. */
const chunkCount = (framing: ChunkSpec.Framing, inputBytes: number) => ChunkSpec.planRegion(inputBytes - framing.headerBytes, framing).totalChunks

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const bytes = (n: number) => `${n} ${n === 1 ? "byte" : "bytes"}`
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
  const sample = sizedInput(options).input(4 * chunkBytes + 64, 1)
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
  const engine = await watched(s.make, (p) => withTimeout(runBytes([p], input, chunkBytes, { segmentBytes: chunkBytes * 3, inFlight: 3 }), s.timeoutMs, `engine run of ${what}`))
  const oneSegment = await watched(s.make, (p) => withTimeout(runBytes([p], input, chunkBytes), s.timeoutMs, `engine run of ${what}`))
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
  const whole = await watched(s.make, (p) => withTimeout(runBytes([p], input, chunkBytes), s.timeoutMs, what))
  const bytewise = await watched(s.make, (p) =>
    withTimeout(
      runBytes([p], input, chunkBytes, { input: ChunkInput.fromStream(Readable.from(Array.from(input, (b) => Buffer.of(b))), "byte-by-byte") }),
      s.timeoutMs,
      what
    ))
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
    const viaSegments = await withTimeout(driveDirect(segmented, input, chunkBytes, permutation(chunks, 9), 4, "processSegment"), s.timeoutMs, `processSegment run of ${what}`)
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

/** The first byte where `a` and `b` differ, or the shorter length when one is a prefix of the other. */
const firstDifference = (a: Uint8Array, b: Uint8Array) => {
  const common = Math.min(a.length, b.length)
  let at = 0
  while (at < common && a[at] === b[at]) at++
  return at
}

/** Up to 8 bytes on each side of `at`, in hex, for messages. */
const around = (b: Uint8Array, at: number) => `${hex(b.subarray(Math.max(0, at - 8), at))}|${hex(b.subarray(at, at + 8))}`

/** Throws unless `output` equals `expected`, the reference's output, naming how they differ. */
const sameAsReference = (output: Uint8Array, expected: Uint8Array, what: string) => {
  const at = firstDifference(output, expected)
  if (at === output.length && at === expected.length) return
  if (at === output.length) {
    throw new Error(`${what}: output is ${bytes(expected.length - output.length)} shorter than the reference (${output.length} vs ${expected.length} bytes, equal up to there): bytes held back to match across chunks were dropped at the end of the input (finalize must return them, in its trailer)`)
  }
  if (at === expected.length) {
    throw new Error(`${what}: output is ${bytes(output.length - expected.length)} longer than the reference (${output.length} vs ${expected.length} bytes, equal up to byte ${at})`)
  }
  throw new Error(`${what}: output differs from the reference at byte ${at} (${output.length} vs ${expected.length} bytes; got ${around(output, at)}, expected ${around(expected, at)})`)
}

/**
 * With `options.reference`: at chunk size `chunkBytes`, the engine's whole output equals the
 * reference's for inputs at the boundary sizes and for `options.inputs` (samples shifted
 * across chunk boundaries, see {@link ConformanceOptions.inputs}). The buffers lent to the
 * processor are watched as in every engine run of the kit.
 */
export const checkReference = async (make: () => ChunkProcessor, chunkBytes: number, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const reference = options.reference
  if (!reference) throw new Error("checkReference needs options.reference")
  const n = await effectiveChunkBytes(make, chunkBytes, options)
  const inputs: Array<LabeledInput> = [
    ...inputsAt(options, n),
    ...boundarySizes(n).map((size) => {
      const b = s.input(size, size * 13 + n)
      return { label: `${bytes(b.length)} of ${s.inputSource}`, bytes: b }
    })
  ]
  for (const input of inputs) {
    const what = `chunk size ${chunkBytes}, ${input.label}`
    const run = await watched(s.make, (p) => withTimeout(runBytes([p], input.bytes, chunkBytes), s.timeoutMs, what))
    sameAsReference(run.output, reference(input.bytes), what)
  }
}

/**
 * The output does not depend on the chunk size: the same inputs (one of about twice the
 * largest chunk size below the default, each sample of `options.inputs`, and the samples
 * joined) run at every chunk size of {@link referenceChunkSizes} give the bytes they give at
 * the largest. For deterministic processors that declare it (`chunkSizeIndependent`).
 */
export const checkChunkSizeIndependence = async (make: () => ChunkProcessor, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const sizes = referenceChunkSizes(options)
  const largest = sizes[sizes.length - 1]
  const span = Math.max(64, ...sizes.filter((n) => n < largest))
  const inputs: Array<LabeledInput> = []
  const samples = samplesOf(options)
  if (samples) {
    inputs.push(...samples.map((b, k) => ({ label: `sample ${k} (${bytes(b.length)})`, bytes: b })))
    const joined = Buffer.concat(samples.flatMap((b, k) => [pseudoRandomBytes(k % 7 + 1, 31 + k), b]))
    inputs.push({ label: `the samples joined, each after a few pseudo-random bytes (${bytes(joined.length)})`, bytes: joined })
  } else if (typeof options.inputs === "function") {
    const seen = new Set<string>()
    for (const n of sizes) {
      for (const input of inputsAt(options, n)) {
        const key = hex(input.bytes)
        if (!seen.has(key)) (seen.add(key), inputs.push(input))
      }
    }
  }
  const sized = s.input(2 * span + 5, 4242)
  inputs.push({ label: `${bytes(sized.length)} of ${s.inputSource}`, bytes: sized })
  for (const input of inputs) {
    const outputs = new Map<number, Uint8Array>()
    for (const n of sizes) {
      const what = `${input.label} at chunk size ${n}`
      outputs.set(n, (await watched(s.make, (p) => withTimeout(runBytes([p], input.bytes, n), s.timeoutMs, what))).output)
    }
    const expected = outputs.get(largest)!
    for (const n of sizes) {
      const output = outputs.get(n)!
      const at = firstDifference(output, expected)
      if (at < output.length || at < expected.length) {
        throw new Error(`output differs at chunk size ${n} from chunk size ${largest} at byte ${at} (${input.label}; ${output.length} vs ${expected.length} bytes out; got ${around(output, at)}, expected ${around(expected, at)}): the output must not depend on where the input is cut (a match split across two chunks, bytes held back between them)`)
      }
    }
  }
}

/**
 * For a transform: at least one of the inputs the suite's checks use (those of the
 * byte-by-byte, resume and failure checks, from {@link Settings.input}) comes out changed.
 * When none does, the suite exercises none of the transform's logic (a redactor fed
 * pseudo-random bytes that never contain its pattern), and this check fails saying so.
 * Skipped with `options.allowUnchangedOutput`.
 */
export const checkInputChangesOutput = async (make: () => ChunkProcessor, options: ConformanceOptions = {}): Promise<void> => {
  const s = settle(make, options)
  const probe = make()
  if (probe.close) await Effect.runPromise(probe.close())
  if (probe.capabilities.kind !== "transform") throw new Error(`${probe.name} is an observer: it never changes its input`)
  if (options.allowUnchangedOutput) return
  const n = await effectiveChunkBytes(make, 64, options)
  const cases: Array<readonly [number, number]> = [[3 * n + 5, 77], [CHECK_CHUNKS * n + 3, 4321], [CHECK_CHUNKS * n, 99]]
  for (const [size, seed] of cases) {
    const input = s.input(size, seed)
    const run = await withTimeout(runBytes([s.make()], input, 64), s.timeoutMs, `${input.length} bytes of ${s.inputSource}`)
    if (!Buffer.from(run.output).equals(Buffer.from(input))) return
  }
  const sizes = cases.map(([size]) => size).join(", ")
  throw new Error(`the default input does not change the output: ${cases.length} inputs of ${s.inputSource} (${sizes} bytes), those the other checks run, came out of ${probe.name} exactly as they went in, so the suite exercises none of the transform's logic. Give options.inputs, samples the transform changes (e.g. texts that contain what it replaces), or options.input; or set options.allowUnchangedOutput: true if leaving such input unchanged is the point`)
}

const defaultLargeInput = (piece: Uint8Array) => function*(total: number): Iterable<Uint8Array> {
  const block = Buffer.from(piece)
  for (let sent = 0; sent < total; sent += block.length) {
    yield sent + block.length <= total ? block : block.subarray(0, total - sent)
  }
}

/** What {@link checkMemory} measured, in bytes. */
export interface MemoryReport {
  readonly inputBytes: number
  readonly outputBytes: number
  /**
   * Largest growth of live memory (V8 heap + external memory, i.e. Buffers) over the
   * baseline, each measured after a full garbage collection: what the run retained, not
   * garbage waiting for a collection.
   */
  readonly peakGrowthBytes: number
  /** Each measure: after a quarter, half and three quarters of the input, after the last chunk (before `finalize`) and after the run. */
  readonly samples: ReadonlyArray<{ readonly inputBytes: number; readonly growthBytes: number }>
  /** Peak RSS growth over the baseline at the same points, in bytes (informative: RSS does not shrink). */
  readonly rssGrowthBytes: number
}

let collector: (() => void) | undefined
/**
 * A full garbage collection: node's `gc` when it runs with `--expose-gc`, else V8's own,
 * taken once from a fresh context with the flag set for that moment (as jest's leak detector
 * does). Throws if neither is available.
 */
const fullGc = (): (() => void) => {
  if (collector) return collector
  const exposed = (globalThis as { gc?: unknown }).gc
  if (typeof exposed === "function") return (collector = exposed as () => void)
  v8.setFlagsFromString("--expose-gc")
  let gc: unknown
  try {
    gc = vm.runInNewContext("gc")
  } finally {
    v8.setFlagsFromString("--no-expose-gc")
  }
  if (typeof gc !== "function") throw new Error("the memory check needs a full garbage collection: run node with --expose-gc")
  return (collector = gc as () => void)
}

/**
 * Live memory: V8 heap + external after full collections. Three of them: the ArrayBuffer
 * memory a collection frees is swept concurrently and only accounted once the next one
 * starts.
 */
const liveMemory = () => {
  const gc = fullGc()
  gc()
  gc()
  gc()
  const m = process.memoryUsage()
  return { live: m.heapUsed + m.external, rss: m.rss }
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`

/**
 * Streams `largeInputBytes` (default 256 MiB) through the processor from a stream into a
 * counting sink that keeps nothing, and checks that live memory never grows more than
 * `memoryLimitBytes` (default 128 MiB) over the baseline.
 *
 * Live memory is measured after full garbage collections (so garbage not yet collected,
 * which depends on load and timing, never counts): before the run, at a quarter, half and
 * three quarters of the input, after its last chunk (before `finalize`) and after the run,
 * with the processor still referenced. What a processor keeps of its input shows in full at
 * the end; the engine's own buffers in flight are a few segments.
 */
export const checkMemory = async (make: () => ChunkProcessor, options: ConformanceOptions = {}): Promise<MemoryReport> => {
  const s = settle(make, options)
  const total = options.largeInputBytes === false ? 0 : options.largeInputBytes ?? DEFAULT_LARGE_BYTES
  const limit = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT
  const cs = options.largeChunkBytes ?? DEFAULT_LARGE_CHUNK
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
  let inputEnded = false
  // The default large input: a 1 MiB block, cut from the samples when they make the inputs.
  const block = samplesOf(options) && !options.input ? s.input(1 << 20, 2024) : pseudoRandomBytes(1 << 20, 2024)
  const pieces = (options.largeInput ?? defaultLargeInput(block))(total)
  const counted = async function*() {
    for await (const piece of pieces) {
      inputBytes += piece.length
      yield piece
    }
    inputEnded = true
  }
  const source = Readable.from(counted(), { objectMode: false })
  // Referenced until the last measure, so what it retains counts after the run too.
  const processor = s.make()
  const base = liveMemory()
  const measures: Array<{ readonly inputBytes: number; readonly growthBytes: number }> = []
  let rssPeak = base.rss
  const measure = (at: number) => {
    const m = liveMemory()
    measures.push({ inputBytes: at, growthBytes: m.live - base.live })
    rssPeak = Math.max(rssPeak, m.rss)
  }
  const marks = [1, 2, 3].map((k) => Math.floor((total * k) / 4))
  let nextMark = 0
  let measuredLast = false
  const update = (done: number) => {
    if (nextMark < marks.length && done >= marks[nextMark]) {
      while (nextMark < marks.length && done >= marks[nextMark]) nextMark++
      measure(done)
    }
    if (inputEnded && done === inputBytes && !measuredLast) {
      measuredLast = true
      measure(done)
    }
  }
  const summary = await withTimeout(
    Effect.runPromise(runPipeline({
      input: ChunkInput.fromStream(source, "large stream"),
      output: sink,
      pipeline: [processor],
      chunkBytes: cs,
      progress: { start: () => {}, update, stop: () => {} }
    })),
    Math.max(s.timeoutMs, 600_000),
    `streaming ${total} bytes`
  )
  measure(inputBytes)
  expect(summary.bytesProcessed, `every input byte of ${processor.name} must be processed`).toBe(inputBytes)
  const peak = Math.max(0, ...measures.map((m) => m.growthBytes))
  const report: MemoryReport = { inputBytes, outputBytes, peakGrowthBytes: peak, samples: measures, rssGrowthBytes: rssPeak - base.rss }
  const trace = measures.map((m) => `${m.growthBytes >= 0 ? "+" : ""}${mib(m.growthBytes)} at ${mib(m.inputBytes)} of input`).join(", ")
  expect(peak, `live memory (heap + external, after a full garbage collection) grew by ${peak} bytes on a ${inputBytes}-byte input (bound ${limit}): ${trace}`).toBeLessThan(limit)
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
  reference: checkReference,
  chunkSizeIndependence: checkChunkSizeIndependence,
  inputChangesOutput: checkInputChangesOutput,
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
  if (!deterministic && (options.reference || options.chunkSizeIndependent)) {
    throw new Error(`describeProcessorConformance(${name}): reference and chunkSizeIndependent compare bytes, so they need a deterministic processor`)
  }
  if (options.inputs !== undefined && typeof options.inputs !== "function" && !samplesOf(options)) {
    throw new Error(`describeProcessorConformance(${name}): options.inputs holds no bytes`)
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
    if (probe.capabilities.kind === "transform" && !options.allowUnchangedOutput) {
      it("the default input changes the output (the suite exercises the transform's logic)", () => checkInputChangesOutput(makeProcessor, options), timeout)
    }
    if (options.reference) {
      it.for(referenceChunkSizes(options))("chunk size %i: the output equals options.reference (boundary sizes, inputs shifted across chunk boundaries)", { timeout }, (n) => checkReference(makeProcessor, n, options))
    }
    if (options.chunkSizeIndependent) {
      it(`the output is the same at every chunk size (${referenceChunkSizes(options).join(", ")})`, () => checkChunkSizeIndependence(makeProcessor, options), timeout)
    }
    if (options.largeInputBytes !== false) {
      it(`memory stays bounded on a ${options.largeInputBytes ?? DEFAULT_LARGE_BYTES}-byte streamed input`, () => checkMemory(makeProcessor, options).then(() => undefined), 600_000)
    }
  })
  if (probe.close) void Effect.runPromise(probe.close())
}
