/**
 * The chunk processor plugin interface: how Cage's engine talks to ciphers, digests,
 * validators and third-party plugins.
 *
 * ## Contract
 *
 * A processor is created by a factory (`agcmEncrypt(options)`, `jsonValidate()`...) and
 * used for exactly one run. The engine calls, in this order:
 *
 * 1. `init(context)` once, before any chunk. It may read the input header (only the first
 *    processor of a pipeline may), set the input `framing` (at most one processor of a
 *    pipeline may; one with a header must be first), restore its state from a
 *    checkpoint (`context.resume`), and return a `header` to write before any chunk output.
 * 2. `process(chunk, data)` (or `processSegment`) for every chunk of the plan that is not
 *    already completed in a checkpoint.
 *    - `capabilities.ordered === true`: calls come in chunk-index order, never concurrently.
 *    - `capabilities.ordered === false`: calls may overlap and arrive out of order; the
 *      engine still writes transform output in order.
 *    - A `"transform"` returns the bytes that replace the chunk downstream (any length,
 *      possibly empty). An `"observer"` returns `undefined`: it must not mutate `data`, and
 *      the next processor receives the same bytes.
 *    - `data` is only valid until the returned effect completes: the engine reuses its read
 *      buffers. Copy what you keep. Never write into `data`, transforms included: a
 *      transform returns bytes of its own, or `data` itself unchanged (a processor that
 *      declares `release` must not return views of `data`). Returned bytes are owned by the
 *      engine. `processSegment`
 *      may instead take the segment's whole underlying ArrayBuffer (all views of one segment
 *      share it), e.g. to transfer it to a worker thread; the engine then allocates anew.
 *    - Direct mode: an unordered, resumable transform that implements `processDirect` and
 *      declares `direct` in its `init` result may be handed file descriptors instead of
 *      bytes, when it is the whole pipeline, the input is a regular file and the output a
 *      file. It must return the same `header` on every run, resumed or not (the offsets
 *      are computed from its length). It then reads
 *      each segment's input and writes its output itself, positionally (pread/pwrite, on
 *      worker threads), so segment bytes never cross to the engine's thread. Everything
 *      else (plan, order of completion, checkpoints, progress, telemetry, publishing) stays
 *      with the engine. The effect must not complete, fail or finish interrupting while
 *      any of its reads or writes is still in progress: the engine closes the descriptors
 *      right after.
 * 3. `finalize(context)` once, after the final chunk. It may return a `trailer` (written
 *    after all chunk output) and a JSON `result` (a digest, a manifest reference...) that
 *    the engine reports in the run summary.
 *
 * ## Failures
 *
 * Any failure of `init`, `process` or `finalize` is fatal to the run: the engine stops
 * reading, waits for in-flight work, wraps the error in `ProcessorError` with the chunk
 * index, leaves no output under the final name, and keeps the checkpoint (when there is
 * one) at the last durable chunk boundary so the run can resume. Throwing inside an effect
 * is a defect and is reported the same way (never a hang). A processor must fail with a
 * tagged error that has an `exitCode` (see `ExitCode`) when it knows the class of failure,
 * e.g. 3 for an authentication failure.
 *
 * ## Secrets
 *
 * `options` and `snapshot()` are written to checkpoints, manifests and audit logs: they
 * must never hold a key, passphrase or plaintext.
 *
 * @module
 */
import type { Effect } from "effect"
import type { ChunkPlan, ChunkSpec, Framing } from "./ChunkSpec.js"

/** Version of this interface. A processor built for another major version is refused. */
export const PROCESSOR_API_VERSION = 1

/** A JSON value: what options, snapshots and results may hold. */
export type JsonValue = null | boolean | number | string | ReadonlyArray<JsonValue> | { readonly [k: string]: JsonValue }

/** What a processor declares about itself. */
export interface ProcessorCapabilities {
  /** `"transform"` replaces chunk bytes (cipher, compression); `"observer"` only reads them (digest, validation). */
  readonly kind: "transform" | "observer"
  /** True when `process` must see chunks in index order, one at a time. */
  readonly ordered: boolean
  /**
   * True (default) when `snapshot()` captures all state needed to continue after the
   * completed chunks. False for processors whose state cannot be saved (a running
   * SHA-256): on resume the engine replays the completed chunks through them, reading the
   * input again but writing nothing. A transform that is not resumable is replayed only
   * when it is `deterministic`; otherwise a resume is refused (`ResumeRefused`
   * "NotResumable").
   */
  readonly resumable?: boolean
  /**
   * True when a transform's output for a chunk depends only on the bytes it was fed so far
   * and on state restored from snapshots (a gunzip; AGCM with its salt restored), so a
   * replay rebuilds its state without changing any byte already written. Default false
   * (an age stream draws a new file key per run).
   */
  readonly deterministic?: boolean
  /**
   * True for a processor that declares the framing of its input in `init` (a cipher that
   * cuts fixed chunks, such as AGCM). Placed after a transform whose output lengths differ
   * (gzip, a redactor), it starts a new stage: the engine re-chunks the bytes before it into
   * its framing through a bounded pipe (see `runPipeline`). Default false; a processor that
   * declares a framing without this flag must come before every transform.
   */
  readonly framesInput?: boolean
  /**
   * A transform whose output is an encoding of its input (gzip, base64), not new content:
   * getting the data back needs a processor that undoes it (one declaring {@link undoes}).
   * A cipher after it records it (AGCM writes it in its header), so that decrypting later
   * can say which processor is missing. Leave it unset for a lossy transform (a redactor):
   * its output is the data. Default false.
   */
  readonly reversible?: boolean
  /**
   * The name of the reversible transform whose output this processor turns back (a gunzip
   * declares `"@acme/cage-processor-gzip"`). Lets a decrypting pipeline check that it
   * undoes what the encrypting one recorded. Default: none.
   */
  readonly undoes?: string
}

/** A processor of the run as its neighbours see it: name and capabilities, nothing else. */
export interface PipelineEntry {
  readonly name: string
  readonly capabilities: ProcessorCapabilities
}

/** Identity of a source, recorded in checkpoints to detect that it changed. */
export interface SourceIdentity {
  readonly path: string
  /** Size in bytes. */
  readonly size: number
  /** Modification time in ns since the epoch, as a decimal string (exceeds 2^53). */
  readonly mtimeNs: string
  /** Status change time in ns since the epoch, as a decimal string. */
  readonly ctimeNs: string
  readonly ino: string
  readonly dev: string
}

/** What `init` learns about the run. */
export interface InitContext {
  /** Human description of the input: a path, or `"stdin"`. */
  readonly input: string
  /** Input size in bytes, or `undefined` for a stream of unknown length. */
  readonly inputSize: number | undefined
  /**
   * The size of plain chunks, in bytes: the run's `chunkBytes` or 64 KiB. The input is cut
   * into these unless a processor declares its own `framing`, which then decides.
   */
  readonly chunkBytes: number
  /**
   * Reads the first `length` bytes of the input (a format header). Only for the first
   * processor of the pipeline. May be called more than once, with growing lengths: each call
   * returns the input's first `length` bytes, reading only what earlier calls did not (so a
   * format can read a short fixed prefix, reject bytes that are not its own at once, and then
   * ask for the length the prefix gives). Fails with `IoError`, or returns fewer bytes at
   * end of input.
   */
  readonly readHeader: (length: number) => Effect.Effect<Uint8Array, unknown>
  /** The processor's `snapshot()` from the checkpoint, when resuming. */
  readonly resume: JsonValue | undefined
  /**
   * Where the processor sits in the run's whole pipeline (all stages): the processors
   * before it, in order (what its input bytes went through), and after it. The engine
   * always sets it; a context made by hand (a test) may leave it out, which means "alone".
   */
  readonly pipeline?: { readonly before: ReadonlyArray<PipelineEntry>; readonly after: ReadonlyArray<PipelineEntry> }
}

/** What `init` returns. Every field is optional. */
export interface InitResult {
  /** How the input is laid out (header length, chunk size, final-chunk rule). One processor per pipeline. */
  readonly framing?: Framing
  /** Bytes written to the output before any chunk output (skipped when resuming). */
  readonly header?: Uint8Array
  /**
   * Declares that `processDirect` can run this input (see the module documentation):
   * input chunk i (of the framing) becomes exactly `outputChunkBytes` output bytes, except
   * the final chunk, whose output is its input length plus `outputChunkBytes - chunkBytes`.
   * Output chunk i therefore starts at `header length + i * outputChunkBytes`.
   */
  readonly direct?: { readonly outputChunkBytes: number }
}

/** Where a segment lives, for {@link ChunkProcessor.processDirect}. Offsets are absolute, in bytes. */
export interface DirectSegment {
  /** The input file's descriptor (read positionally; never moved, never closed by the processor). */
  readonly inputFd: number
  /** Offset of the segment's first chunk in the input file (framing header included). */
  readonly inputOffset: number
  /** The output file's descriptor (written positionally; never closed by the processor). */
  readonly outputFd: number
  /** Offset of the segment's first output byte in the output file. */
  readonly outputOffset: number
  /** For messages: the input's description and the path of the file written (`<out>.partial`). */
  readonly input: string
  readonly output: string
}

/** What `finalize` receives. */
export interface FinalizeContext {
  /** The plan that was run (for streams: the plan discovered while reading). */
  readonly plan: ChunkPlan
  /** Total input bytes fed through the pipeline (including chunks completed before a resume). */
  readonly inputBytes: number
}

/** What `finalize` returns. */
export interface FinalizeResult {
  /** Bytes written after all chunk output. */
  readonly trailer?: Uint8Array
  /** A JSON summary reported by the engine (digest, counts, manifest path). No secrets. */
  readonly result?: JsonValue
}

/**
 * A chunk processor. See the module documentation for the full contract.
 *
 * Errors are `unknown` at this boundary: the engine wraps them in `ProcessorError`.
 */
export interface ChunkProcessor {
  /** Registry name, e.g. `"agcm-encrypt"`; third-party: the npm package name. */
  readonly name: string
  /** The processor's own semver version, recorded in checkpoints. */
  readonly version: string
  /** Must equal {@link PROCESSOR_API_VERSION}. */
  readonly apiVersion: number
  readonly capabilities: ProcessorCapabilities
  /** Non-secret options, recorded in checkpoints; a change refuses resume. */
  readonly options: { readonly [k: string]: JsonValue }
  // biome-ignore lint/suspicious/noConfusingVoidType: a processor with nothing to declare ends init with Effect.void
  readonly init: (context: InitContext) => Effect.Effect<InitResult | void, unknown>
  /** Processes one chunk. Transforms return the output bytes; observers return `undefined`. */
  readonly process: (chunk: ChunkSpec, data: Uint8Array) => Effect.Effect<Uint8Array | undefined, unknown>
  /**
   * Optional batch form for a segment (consecutive chunks): lets a processor hand a whole
   * segment to a worker thread. Same contract as calling `process` for each chunk in order.
   */
  readonly processSegment?: (
    chunks: ReadonlyArray<ChunkSpec>,
    data: ReadonlyArray<Uint8Array>
  ) => Effect.Effect<ReadonlyArray<Uint8Array | undefined>, unknown>
  /**
   * Optional, transforms only: processes a segment straight from the input file to the
   * output file (direct mode, see the module documentation). Same results and errors as
   * `processSegment` for the same chunks; the output of chunk k of the segment must land at
   * `outputOffset + (chunks[k].index - chunks[0].index) * outputChunkBytes`. A failing read
   * or write should fail with core's `IoError`, which the engine reports as is.
   */
  readonly processDirect?: (chunks: ReadonlyArray<ChunkSpec>, segment: DirectSegment) => Effect.Effect<void, unknown>
  // biome-ignore lint/suspicious/noConfusingVoidType: a processor with no result ends finalize with Effect.void
  readonly finalize: (context: FinalizeContext) => Effect.Effect<FinalizeResult | void, unknown>
  /**
   * Optional, transforms only: called with a segment's outputs once they have been written
   * and every later processor has seen them, so the processor may reuse that memory for
   * later segments (keeps RSS flat: garbage buffers otherwise pile up between GCs).
   */
  readonly release?: (outputs: ReadonlyArray<Uint8Array>) => void
  /** State after the last chunk processed, safe to store (no secrets). Default: nothing. */
  readonly snapshot?: () => JsonValue
  /** Releases resources (worker pools, file handles). Called once, after success or failure. */
  readonly close?: () => Effect.Effect<void>
}

/** A factory: how plugins are exported and referenced by name in configuration. */
export interface ProcessorFactory<Options = Record<string, unknown>> {
  readonly name: string
  readonly apiVersion: number
  readonly description: string
  readonly capabilities: ProcessorCapabilities
  readonly make: (options: Options) => ChunkProcessor
}
