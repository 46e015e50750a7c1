/**
 * The plan-then-execute chunk engine.
 *
 * `runPipeline` plans the input (pure arithmetic for files; discovered while reading for
 * streams), then runs segments (runs of consecutive chunks, about `segmentBytes` each)
 * through the processors with at most `inFlight` segments alive at once, so memory is
 * bounded by `inFlight × segmentBytes` plus the processors' own output, never by file size.
 * Reads overlap processing and writing; ordered processors and the output see segments
 * strictly in order.
 *
 * With a `checkpoint`, the engine fdatasyncs the output and writes a checkpoint at a
 * segment boundary at most every `intervalMs`; an interrupted run resumes from it (see
 * `Checkpoint.ts` for what must match). On any failure or interruption the output is
 * aborted: `<out>.partial` is kept for resume when a checkpoint covers it, and removed
 * otherwise. Nothing is ever published under the final name until every chunk and every
 * `finalize` succeeded.
 *
 * @module
 */
import { Effect, Exit, Option, Semaphore } from "effect"
import { randomUUID } from "node:crypto"
import type { ChunkInput } from "./ChunkInput.js"
import type { ChunkOutput } from "./ChunkOutput.js"
import { type ChunkProcessor, type InitResult, type JsonValue, PROCESSOR_API_VERSION } from "./ChunkProcessor.js"
import { type ChunkPlan, type ChunkSpec, type Framing, planRegion } from "./ChunkSpec.js"
import * as Checkpoint from "./Checkpoint.js"
import { type EngineError, ExitCode, exitCodeOf, InputChanged, IoError, ProcessorError, ResumeRefused, UsageError } from "./Error.js"
import { type ProgressReporter, silent } from "./Progress.js"
import * as RateLimit from "./RateLimit.js"
import { Telemetry } from "./Telemetry.js"

/** Default target size of a segment, in bytes (1 MiB: large enough to amortise a read/write). */
export const DEFAULT_SEGMENT_BYTES = 1 << 20
/** Default number of segments in flight. */
export const DEFAULT_IN_FLIGHT = 4
/** Default minimum time between two checkpoints, in ms. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000

/** Options of {@link runPipeline}. */
export interface RunOptions {
  readonly input: ChunkInput
  /** Where transformed bytes go; omit for observer-only pipelines (validate, verify). */
  readonly output?: ChunkOutput | undefined
  /** Processors in order; chunk bytes flow from each transform to the next processor. */
  readonly pipeline: ReadonlyArray<ChunkProcessor>
  /** Chunk size in bytes (the first processor may override it through its framing). */
  readonly chunkBytes: number
  /** Target bytes per segment (default 1 MiB; at least one chunk). */
  readonly segmentBytes?: number | undefined
  /** Segments in flight (default 4, at least 1). */
  readonly inFlight?: number | undefined
  /**
   * Checkpointing, for a file input and a resumable output only (ignored otherwise).
   * `mode: "resume"` continues from an existing checkpoint; `"fresh"` discards it.
   */
  readonly checkpoint?: { readonly path: string; readonly mode: "resume" | "fresh"; readonly intervalMs?: number } | undefined
  readonly progress?: ProgressReporter | undefined
  /**
   * Caps the input read rate, in bytes per second (see `RateLimit`): segments are admitted
   * on a smooth schedule, and made at most a tenth of a second of input each (at least one
   * chunk) so the rate holds over short windows too. Checkpoints and resume are unaffected.
   */
  readonly limitRate?: number | undefined
}

/** The result of a run. Byte counts are input bytes. */
export interface ChunkProcessingSummary {
  /** Chunks in the plan. */
  readonly totalChunks: number
  /** Chunks processed by this run (excluding those completed before a resume). */
  readonly processedChunks: number
  /** Input bytes processed by this run. */
  readonly bytesProcessed: number
  /** Chunks that failed (a failure ends the run with an error, so 0 in a summary). */
  readonly failedChunks: number
  /** First chunk index this run processed: > 0 when it resumed a checkpoint. */
  readonly resumedFrom: number
  /** Wall-clock duration of this run, in ms. */
  readonly durationMs: number
}

/** {@link ChunkProcessingSummary} plus output size and each processor's `finalize` result. */
export interface RunSummary extends ChunkProcessingSummary {
  /** Output bytes (0 without output). */
  readonly outputBytes: number
  /** `finalize` results keyed by processor name. */
  readonly results: { readonly [name: string]: JsonValue }
}

interface Segment {
  readonly seq: number
  readonly chunks: ReadonlyArray<ChunkSpec>
  /** Chunk bytes, one view per chunk, all over one buffer owned by this segment. */
  readonly data?: ReadonlyArray<Uint8Array>
}

/** A turnstile: `wait(n)` completes once `open(n)` was called, in increasing order. */
const makeGate = (start: number) => {
  let next = start
  const waiters = new Map<number, () => void>()
  return {
    wait: (n: number) =>
      Effect.callback<void>((resume) => {
        if (next >= n) return resume(Effect.void)
        waiters.set(n, () => resume(Effect.void))
        return Effect.sync(() => void waiters.delete(n))
      }),
    open: (n: number) =>
      Effect.sync(() => {
        next = n
        const w = waiters.get(n)
        if (w) {
          waiters.delete(n)
          w()
        }
      })
  }
}

const guard = <A>(p: ChunkProcessor, phase: ProcessorError["phase"], chunk: number | undefined, effect: Effect.Effect<A, unknown>, ioPassthrough = false) =>
  Effect.suspend(() => effect).pipe(
    Effect.catchDefect((defect) => Effect.fail(defect)),
    Effect.mapError((cause): EngineError => {
      // In direct mode the processor does the engine's reads and writes: report their
      // failures as the engine would (exit code 4, the path), not as the processor's.
      const tag = (cause as { _tag?: unknown } | undefined)?._tag
      if (ioPassthrough && (tag === "IoError" || tag === "InputChanged")) return cause as IoError | InputChanged
      const at = (cause as { chunk?: unknown } | undefined)?.chunk
      return new ProcessorError({ processor: p.name, phase, chunk: typeof at === "number" ? at : chunk, cause })
    })
  )

/** Checks processors before anything is read. */
const checkPipeline = (pipeline: ReadonlyArray<ChunkProcessor>) => {
  if (pipeline.length === 0) return Effect.fail(new UsageError({ detail: "the pipeline has no processors" }))
  for (const p of pipeline) {
    if (p.apiVersion !== PROCESSOR_API_VERSION) {
      return Effect.fail(new UsageError({ detail: `processor ${p.name}@${p.version} was built for processor API ${p.apiVersion}, this engine speaks ${PROCESSOR_API_VERSION}` }))
    }
  }
  return Effect.void
}

/**
 * Runs `options.pipeline` over `options.input`. See the module documentation.
 *
 * Fails with `IoError` (source/sink), `ProcessorError` (a processor's failure, with the
 * chunk index), `ResumeRefused` (checkpoint does not match or is corrupt) or `UsageError`.
 */
export const runPipeline = (options: RunOptions): Effect.Effect<RunSummary, EngineError> => {
  const out = options.output
  // One writer per output: claimed before the checkpoint is read or a byte of input, so two
  // runs (or two resumes of one checkpoint) never write the same `.partial`.
  if (out?.claim === undefined) return runClaimed(options)
  return Effect.acquireUseRelease(out.claim(), () => runClaimed(options), () => out.release?.() ?? Effect.void)
}

/**
 * Failures after which the partial output and the checkpoint are worthless: an input that
 * changed while it was read, or an integrity failure (a tampered or truncated input fails
 * the same way however often it is resumed). Interruptions and I/O errors stay resumable.
 */
const isPermanent = (error: unknown): boolean =>
  (error as { _tag?: unknown } | undefined)?._tag === "InputChanged" || exitCodeOf(error) === ExitCode.Integrity

const runClaimed = (options: RunOptions): Effect.Effect<RunSummary, EngineError> =>
  Effect.gen(function*() {
    const started = Date.now()
    const runId = randomUUID()
    const telemetry = yield* Telemetry
    const store = yield* Checkpoint.Checkpointer
    const { input, output, pipeline } = options
    const progress = options.progress ?? silent
    yield* checkPipeline(pipeline)

    const cp = options.checkpoint
    const checkpointing = cp !== undefined && input.identity !== undefined && output !== undefined && output.resumable
    let resumed: Checkpoint.Checkpoint | undefined
    if (checkpointing) {
      if (cp.mode === "resume") {
        const loaded = yield* store.load(cp.path)
        if (Option.isSome(loaded)) {
          yield* Checkpoint.validate(cp.path, loaded.value, { source: input.identity!, output: output.description, chunkBytes: options.chunkBytes, pipeline })
          // Replaying chunks through a transform that cannot snapshot itself would rebuild its
          // state, but not necessarily its output (an age stream picks a new file key per run).
          const stuck = pipeline.find((p) => p.capabilities.kind === "transform" && p.capabilities.resumable === false && p.capabilities.deterministic !== true)
          if (stuck && Checkpoint.completedPrefix(loaded.value) > 0) {
            return yield* Effect.fail(new ResumeRefused({ reason: "NotResumable", checkpoint: cp.path, detail: `${stuck.name} cannot continue an interrupted output` }))
          }
          resumed = loaded.value
        }
      } else {
        yield* store.remove(cp.path)
      }
    }

    // The first processor may read the input's header to learn the framing (a decrypt).
    let headerRead: Uint8Array | undefined
    const readHeader = (length: number) =>
      Effect.gen(function*() {
        if (headerRead) return yield* Effect.fail(new UsageError({ detail: "readHeader may be called once" }))
        const buf = new Uint8Array(length)
        const n = yield* input.read(0, buf, 0, length)
        headerRead = buf.subarray(0, n)
        return headerRead
      })
    const inits: Array<InitResult> = []
    for (let i = 0; i < pipeline.length; i++) {
      const p = pipeline[i]
      const resume = resumed?.state[Checkpoint.stateKey(i, p)]
      inits.push(
        (yield* guard(p, "init", undefined, p.init({
          input: input.description,
          inputSize: input.size,
          chunkBytes: options.chunkBytes,
          readHeader: i === 0 ? readHeader : () => Effect.fail(new UsageError({ detail: `${p.name}: only the first processor may read the input header` })),
          resume: resume as JsonValue | undefined
        }))) ?? {}
      )
    }
    // One processor decides how the input is cut (a cipher's chunk rule); a header can only
    // be skipped by the processor that read it, i.e. the first.
    const framers = inits.flatMap((r, i) => (r.framing ? [{ i, framing: r.framing }] : []))
    if (framers.length > 1) {
      return yield* Effect.fail(new UsageError({ detail: `both ${pipeline[framers[0].i].name} and ${pipeline[framers[1].i].name} set the input framing; a pipeline may hold one such processor` }))
    }
    if (framers.length === 1 && framers[0].i > 0 && framers[0].framing.headerBytes > 0) {
      return yield* Effect.fail(new UsageError({ detail: `${pipeline[framers[0].i].name} reads an input header, so it must come first in the pipeline` }))
    }
    // Chunk boundaries are computed on the pipeline's input: a framing processor placed after
    // a transform would receive chunks of whatever size that transform produced.
    const firstTransform = pipeline.findIndex((p) => p.capabilities.kind === "transform")
    if (framers.length === 1 && firstTransform >= 0 && firstTransform < framers[0].i) {
      return yield* Effect.fail(new UsageError({ detail: `${pipeline[framers[0].i].name} cuts the input into its own chunks, so it cannot come after the transform ${pipeline[firstTransform].name} (the engine does not re-chunk between stages)` }))
    }
    // Headers go straight to the output; a later transform would never see them.
    for (let i = 0; i < inits.length; i++) {
      const later = pipeline.findIndex((p, j) => j > i && p.capabilities.kind === "transform")
      if (inits[i].header && later >= 0) {
        return yield* Effect.fail(new UsageError({ detail: `${pipeline[i].name} writes a header, so it must be the last transform of the pipeline (${pipeline[later].name} comes after it)` }))
      }
    }
    const framing: Framing = framers[0]?.framing ?? { headerBytes: 0, chunkBytes: options.chunkBytes, shortFinal: false }
    const cs = framing.chunkBytes
    // Direct mode (see ChunkProcessor): one transform that reads and writes the files itself.
    const directOut = output?.positional
    // Only for an unordered transform: direct segments run concurrently, outside any gate.
    const lone = pipeline.length === 1 ? pipeline[0] : undefined
    const direct = lone && lone.processDirect !== undefined && inits[0].direct !== undefined &&
        lone.capabilities.kind === "transform" && lone.capabilities.ordered === false && lone.capabilities.resumable !== false &&
        input.fd !== undefined && input.size !== undefined && directOut !== undefined
      ? { outputChunkBytes: inits[0].direct.outputChunkBytes, process: lone.processDirect, fd: input.fd, out: directOut }
      : undefined
    if (direct && !(Number.isSafeInteger(direct.outputChunkBytes) && direct.outputChunkBytes > 0)) {
      return yield* Effect.fail(new UsageError({ detail: `${lone!.name} declared direct output chunks of ${direct.outputChunkBytes} bytes; a positive integer is needed` }))
    }
    // Output chunk i starts at (header bytes) + i × outputChunkBytes, resumed or not.
    const outputBase = inits.reduce((n, r) => n + (r.header?.length ?? 0), 0)
    const limiter = options.limitRate !== undefined ? RateLimit.make(options.limitRate) : undefined
    const segmentTarget = Math.min(options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, limiter ? limiter.bytesPerSecond / 10 : Infinity)
    const segChunks = Math.max(1, Math.floor(segmentTarget / cs))
    const inFlight = Math.max(1, options.inFlight ?? DEFAULT_IN_FLIGHT)

    let plan: ChunkPlan | undefined
    if (input.size !== undefined) {
      if (input.size < framing.headerBytes) {
        return yield* Effect.fail(new IoError({ reason: "Unknown", operation: "read", path: input.description, detail: `the input (${input.size} bytes) is shorter than its ${framing.headerBytes}-byte header` }))
      }
      plan = planRegion(input.size - framing.headerBytes, framing)
    }
    const startChunk = resumed ? Checkpoint.completedPrefix(resumed) : 0
    // Direct writes land at offsets computed from the header length: a resumed run must see
    // the layout the checkpointed bytes were written with (a processor that returned its
    // header only on the first run would otherwise shift every later chunk).
    if (direct && resumed && resumed.outputBytes !== outputBase + startChunk * direct.outputChunkBytes) {
      return yield* Effect.fail(new ResumeRefused({
        reason: "CheckpointCorrupt",
        checkpoint: cp!.path,
        detail: `${startChunk} completed chunks of ${direct.outputChunkBytes} bytes after a ${outputBase}-byte header make ${outputBase + startChunk * direct.outputChunkBytes} output bytes, the checkpoint says ${resumed.outputBytes}`
      }))
    }
    if (resumed && plan && startChunk > plan.totalChunks) {
      return yield* Effect.fail(new ResumeRefused({ reason: "CheckpointCorrupt", checkpoint: cp!.path, detail: `the checkpoint claims ${startChunk} chunks, the plan has ${plan.totalChunks}` }))
    }

    // Sink: a resumed run continues the .partial at the checkpoint's durable length.
    if (output) {
      yield* output.open(resumed ? { resumeAt: resumed.outputBytes } : {}).pipe(
        Effect.mapError((e) =>
          resumed && e._tag === "IoError" && (e.reason === "NotFound" || e.operation === "resume")
            ? new ResumeRefused({ reason: "OutputMissing", checkpoint: cp!.path, detail: `the partial output is missing or shorter than the checkpoint says (${e.message})` })
            : e
        )
      )
    }

    let completed = startChunk
    let outputAtCompleted = resumed?.outputBytes ?? 0
    let inputAtCompleted = resumed?.inputBytes ?? framing.headerBytes
    let lastSaved = Date.now()
    let savedCompleted = startChunk
    // Snapshots of the state after the last *written* segment: only those may be checkpointed.
    const snapshots: Array<JsonValue | undefined> = pipeline.map((p, i) => resumed?.state[Checkpoint.stateKey(i, p)] as JsonValue | undefined)

    // Uninterruptible: an interrupted save's promise would still rename its document into
    // place, possibly after a permanent failure removed the checkpoint.
    const saveCheckpoint = Effect.uninterruptible(Effect.gen(function*() {
      if (!checkpointing || completed === savedCompleted) return
      // A checkpoint vouches for the bytes read so far: never for a source that changed.
      if (input.verifyUnchanged) yield* input.verifyUnchanged()
      yield* output!.sync()
      const state: Record<string, JsonValue> = {}
      pipeline.forEach((p, i) => {
        if (snapshots[i] !== undefined) state[Checkpoint.stateKey(i, p)] = snapshots[i]!
      })
      yield* store.save(cp!.path, {
        format: "cage-checkpoint",
        version: Checkpoint.CHECKPOINT_VERSION,
        source: input.identity!,
        output: output!.description,
        chunkBytes: options.chunkBytes,
        pipeline: Checkpoint.describePipeline(pipeline),
        completed: [[0, completed]],
        outputBytes: outputAtCompleted,
        inputBytes: inputAtCompleted,
        state,
        updatedAt: new Date().toISOString()
      })
      savedCompleted = completed
      lastSaved = Date.now()
    }))

    const run = Effect.gen(function*() {
      yield* telemetry.publish({
        type: "run_start", runId, at: Date.now(), input: input.description, output: output?.description ?? null,
        pipeline: pipeline.map((p) => p.name), totalBytes: input.size ?? null, totalChunks: plan?.totalChunks ?? null,
        chunkBytes: cs, resumedFrom: startChunk
      })
      progress.start(input.size, inputAtCompleted)
      if (output && !resumed) {
        const headers = inits.flatMap((r) => (r.header ? [r.header] : []))
        yield* output.write(headers)
        outputAtCompleted = output.position()
      }

      // Replay: processors that cannot snapshot their state see the completed chunks again.
      const needsReplay = resumed !== undefined && startChunk > 0 && pipeline.some((p) => p.capabilities.resumable === false)

      // ---- segment source ----
      let nextChunk = needsReplay ? 0 : startChunk
      let seq = 0
      let streamPos = headerRead ? headerRead.length : 0
      let carry: Uint8Array | undefined = headerRead && headerRead.length > framing.headerBytes ? headerRead.slice(framing.headerBytes) : undefined
      let streamDone = false
      let regionRead = 0

      const nextFileSegment = (): Segment | undefined => {
        if (nextChunk >= plan!.totalChunks) return undefined
        const from = nextChunk
        const to = Math.min(plan!.totalChunks, from + segChunks, needsReplay && from < startChunk ? startChunk : Infinity)
        nextChunk = to
        return { seq: seq++, chunks: Array.from(plan!.chunks(from, to)) }
      }
      const nextStreamSegment = Effect.gen(function*() {
        if (streamDone) return undefined
        const want = segChunks * cs
        // One byte of lookahead tells whether the input ends exactly here.
        const buf = Buffer.allocUnsafeSlow(want + 1)
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
        if (chunks.length === 0) return undefined
        return { seq: seq++, chunks, data } satisfies Segment
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

      const gates = pipeline.map(() => makeGate(0))
      const writeGate = makeGate(0)
      let processedChunks = 0
      let bytesProcessed = 0

      const readSegment = (seg: Segment, spare: { buf?: Buffer }) =>
        Effect.gen(function*() {
          if (seg.data) return seg.data
          const first = seg.chunks[0]
          const last = seg.chunks[seg.chunks.length - 1]
          const length = last.end - first.start
          // Each worker reuses its buffer, so garbage never piles up between GCs (RSS stays
          // flat); a processor that transferred it to a worker thread detached it, and then
          // the worker allocates a new one.
          if (!spare.buf || spare.buf.buffer.byteLength === 0 || spare.buf.length < length) {
            spare.buf = Buffer.allocUnsafeSlow(Math.max(length, segChunks * cs))
          }
          const buf = spare.buf
          const n = yield* input.read(framing.headerBytes + first.start, buf, 0, length)
          if (n !== length) {
            return yield* Effect.fail(new InputChanged({ path: input.description, detail: `it shrank: expected ${length} bytes at ${framing.headerBytes + first.start}, got ${n}` }))
          }
          return seg.chunks.map((c) => buf.subarray(c.start - first.start, c.end - first.start))
        })

      const runStage = (i: number, seg: Segment, data: ReadonlyArray<Uint8Array>) => {
        const p = pipeline[i]
        const first = seg.chunks[0].index
        if (p.processSegment) {
          return guard(p, "process", first, p.processSegment(seg.chunks, data))
        }
        return Effect.forEach(seg.chunks, (c, k) => guard(p, "process", c.index, p.process(c, data[k])))
      }

      const worker = Effect.gen(function*() {
        const spare: { buf?: Buffer } = {}
        while (true) {
          const seg = yield* takeSegment
          if (!seg) return
          const t0 = Date.now()
          const replay = seg.chunks[0].index < startChunk
          // Each processor's state right after it handled this segment (taken inside its gate,
          // so for an ordered processor it covers exactly the chunks up to this segment).
          const segmentSnapshots: Array<[number, JsonValue]> = []
          if (telemetry.enabled && !replay) {
            for (const c of seg.chunks) yield* telemetry.publish({ type: "chunk_start", runId, at: t0, chunk: c.index, bytes: c.length })
          }
          if (direct) {
            const first = seg.chunks[0]
            yield* guard(pipeline[0], "process", first.index, direct.process(seg.chunks, {
              inputFd: direct.fd,
              inputOffset: framing.headerBytes + first.start,
              outputFd: direct.out.fd(),
              outputOffset: outputBase + first.index * direct.outputChunkBytes,
              input: input.description,
              // The file actually written (`<out>.partial`): a write error names it.
              output: direct.out.path
            }), true)
            if (pipeline[0].snapshot) segmentSnapshots.push([0, pipeline[0].snapshot()])
          }
          let data = direct ? [] : yield* readSegment(seg, spare)
          const produced: Array<[ChunkProcessor, ReadonlyArray<Uint8Array>]> = []
          for (let i = 0; !direct && i < pipeline.length; i++) {
            const p = pipeline[i]
            // On replay only the non-resumable processors (and the transforms feeding them) run.
            const skip = replay && p.capabilities.resumable !== false && p.capabilities.kind === "observer"
            if (p.capabilities.ordered) yield* gates[i].wait(seg.seq)
            const out = skip ? [] : yield* runStage(i, seg, data)
            if (p.snapshot && !replay) segmentSnapshots.push([i, p.snapshot()])
            if (p.capabilities.ordered) yield* gates[i].open(seg.seq + 1)
            if (p.capabilities.kind === "transform") {
              data = out.map((o, k) => {
                if (o === undefined) throw new Error(`internal error: transform ${p.name} returned no bytes for chunk ${seg.chunks[k].index}`)
                return o
              })
              if (p.release) produced.push([p, data])
            }
          }
          yield* writeGate.wait(seg.seq)
          const last = seg.chunks[seg.chunks.length - 1]
          if (!replay) {
            let outBytes = 0
            if (direct) {
              // Every segment before this one has completed (the write gate), so the output
              // is fully written up to this segment's end.
              const first = seg.chunks[0]
              const end = outputBase + last.index * direct.outputChunkBytes + last.length + (direct.outputChunkBytes - cs)
              direct.out.extend(end)
              outBytes = end - (outputBase + first.index * direct.outputChunkBytes)
            } else if (output) {
              const before = output.position()
              yield* output.write(data)
              outBytes = output.position() - before
            }
            const segBytes = last.end - seg.chunks[0].start
            for (const [i, snap] of segmentSnapshots) snapshots[i] = snap
            completed = last.index + 1
            outputAtCompleted = output?.position() ?? 0
            inputAtCompleted = framing.headerBytes + last.end
            processedChunks += seg.chunks.length
            bytesProcessed += segBytes
            progress.update(inputAtCompleted)
            if (telemetry.enabled) {
              const t1 = Date.now()
              const per = (t1 - t0) / seg.chunks.length
              for (const c of seg.chunks) {
                yield* telemetry.publish({
                  type: "chunk_complete", runId, at: t1, chunk: c.index, bytes: c.length,
                  outputBytes: Math.round(outBytes / seg.chunks.length), durationMs: per
                })
              }
            }
            if (checkpointing && Date.now() - lastSaved >= (cp!.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS)) {
              yield* saveCheckpoint
            }
          }
          // Everything downstream of these outputs has consumed them: hand them back for reuse.
          for (const [p, outputs] of produced) p.release!(outputs)
          yield* writeGate.open(seg.seq + 1)
        }
      })

      yield* Effect.all(Array.from({ length: inFlight }, () => worker), { concurrency: "unbounded", discard: true })

      const finalPlan = plan ?? planRegion(regionRead, framing)
      const results: Record<string, JsonValue> = {}
      const trailers: Array<Uint8Array> = []
      for (const p of pipeline) {
        const r = (yield* guard(p, "finalize", undefined, p.finalize({ plan: finalPlan, inputBytes: inputAtCompleted }))) ?? {}
        if (r.trailer) trailers.push(r.trailer)
        if (r.result !== undefined) results[p.name] = r.result
      }
      // Every byte was read: publish only if they all came from one version of the input.
      if (input.verifyUnchanged) yield* input.verifyUnchanged()
      if (output) {
        yield* output.write(trailers)
        yield* output.commit()
      }
      if (checkpointing) yield* store.remove(cp!.path)
      const summary: RunSummary = {
        totalChunks: finalPlan.totalChunks,
        processedChunks,
        bytesProcessed,
        failedChunks: 0,
        resumedFrom: startChunk,
        durationMs: Date.now() - started,
        outputBytes: output?.position() ?? 0,
        results
      }
      return summary
    })

    return yield* run.pipe(
      Effect.onExit((exit) =>
        Effect.gen(function*() {
          progress.stop()
          if (Exit.isFailure(exit)) {
            const failure = Exit.findErrorOption(exit)
            const error = Option.isSome(failure) ? String((failure.value as Error).message ?? failure.value) : "interrupted"
            const chunk = Option.isSome(failure) ? (failure.value as { chunk?: unknown }).chunk : undefined
            if (typeof chunk === "number") yield* telemetry.publish({ type: "chunk_failed", runId, at: Date.now(), chunk, error })
            // An interrupted run over an input that changed meanwhile is as worthless as one
            // that noticed the change itself.
            const changed = Option.isNone(failure) && input.verifyUnchanged
              ? Exit.isFailure(yield* Effect.exit(input.verifyUnchanged()))
              : false
            if (changed || (Option.isSome(failure) && isPermanent(failure.value))) {
              // The partial output first: a checkpoint without it would refuse the next run.
              if (output) yield* output.abort({ keepPartial: false })
              if (checkpointing) yield* Effect.ignore(store.remove(cp!.path))
            } else {
              // Record what is durably done so a resume redoes as little as possible.
              if (checkpointing) yield* Effect.ignore(saveCheckpoint)
              const keepPartial = checkpointing && savedCompleted > 0
              if (output) yield* output.abort({ keepPartial })
            }
            yield* telemetry.publish({ type: "run_complete", runId, at: Date.now(), ok: false, bytes: 0, chunks: completed, durationMs: Date.now() - started, error })
          } else {
            yield* telemetry.publish({ type: "run_complete", runId, at: Date.now(), ok: true, bytes: exit.value.bytesProcessed, chunks: exit.value.totalChunks, durationMs: exit.value.durationMs })
          }
          for (const p of pipeline) if (p.close) yield* p.close()
        })
      )
    )
  })
