/**
 * Calling processors: every call goes through {@link guard}, so a processor's failure or
 * defect is reported as a `ProcessorError` naming it, the phase and the chunk.
 *
 * @internal
 */
import { Effect } from "effect"
import type { ChunkInput } from "../ChunkInput.js"
import type { ChunkProcessor, InitResult, JsonValue, PipelineEntry } from "../ChunkProcessor.js"
import type { ChunkPlan } from "../ChunkSpec.js"
import * as Checkpoint from "../Checkpoint.js"
import { type EngineError, type InputChanged, type IoError, ProcessorError, UsageError } from "../Error.js"
import type { Segment } from "./segments.js"

export const guard = <A>(p: ChunkProcessor, phase: ProcessorError["phase"], chunk: number | undefined, effect: Effect.Effect<A, unknown>, ioPassthrough = false) =>
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

/**
 * Initialises the processors in order, each with its checkpointed state when resuming.
 * Returns their results and the input header the first one read, if any.
 */
export const initProcessors = (
  pipeline: ReadonlyArray<ChunkProcessor>,
  input: ChunkInput,
  chunkBytes: number,
  resumed: Checkpoint.Checkpoint | undefined,
  whole: ReadonlyArray<ChunkProcessor> = pipeline
) =>
  Effect.gen(function*() {
    // The first processor may read the input's header to learn the framing (a decrypt), in
    // as many steps as it likes: each call returns the input's first `length` bytes and reads
    // only those no earlier call read (a stream cannot be read twice). The bytes read are
    // handed to the segment source, which starts after the declared header.
    let headerRead: Uint8Array | undefined
    let atEnd = false
    const readHeader = (length: number) =>
      Effect.gen(function*() {
        if (!Number.isSafeInteger(length) || length < 0) {
          return yield* Effect.fail(new UsageError({ reason: "Processor", detail: `readHeader(${length}): the length must be a whole number of bytes` }))
        }
        const have = headerRead?.length ?? 0
        if (length > have && !atEnd) {
          const buf = new Uint8Array(length)
          if (headerRead) buf.set(headerRead)
          const n = yield* input.read(have, buf, have, length - have)
          atEnd = n < length - have
          headerRead = buf.subarray(0, have + n)
        }
        return (headerRead ?? new Uint8Array(0)).subarray(0, length)
      })
    const inits: Array<InitResult> = []
    const entry = (q: ChunkProcessor): PipelineEntry => ({ name: q.name, capabilities: q.capabilities })
    for (let i = 0; i < pipeline.length; i++) {
      const p = pipeline[i]
      // Its place in the whole pipeline: a staged run's later stage sees the earlier stages too.
      const at = whole.indexOf(p)
      const resume = resumed?.state[Checkpoint.stateKey(i, p)]
      inits.push(
        (yield* guard(p, "init", undefined, p.init({
          input: input.description,
          inputSize: input.size,
          chunkBytes,
          readHeader: i === 0 ? readHeader : () => Effect.fail(new UsageError({ reason: "Processor", detail: `${p.name}: only the first processor may read the input header` })),
          resume: resume as JsonValue | undefined,
          pipeline: { before: whole.slice(0, at).map(entry), after: whole.slice(at + 1).map(entry) }
        }))) ?? {}
      )
    }
    return { inits, headerRead: headerRead as Uint8Array | undefined }
  })

/** Runs processor `i` of the pipeline over a segment (its batch form when it has one). */
export const runStage = (pipeline: ReadonlyArray<ChunkProcessor>, i: number, seg: Segment, data: ReadonlyArray<Uint8Array>) => {
  const p = pipeline[i]
  const first = seg.chunks[0].index
  if (p.processSegment) {
    return guard(p, "process", first, p.processSegment(seg.chunks, data))
  }
  return Effect.forEach(seg.chunks, (c, k) => guard(p, "process", c.index, p.process(c, data[k])))
}

/** Finalizes the processors in order: their trailers (in order) and results by name. */
export const finalizeProcessors = (pipeline: ReadonlyArray<ChunkProcessor>, plan: ChunkPlan, inputBytes: number) =>
  Effect.gen(function*() {
    const results: Record<string, JsonValue> = {}
    const trailers: Array<Uint8Array> = []
    for (const p of pipeline) {
      const r = (yield* guard(p, "finalize", undefined, p.finalize({ plan, inputBytes }))) ?? {}
      if (r.trailer) trailers.push(r.trailer)
      if (r.result !== undefined) results[p.name] = r.result
    }
    return { results, trailers }
  })
