/**
 * What makes a pipeline acceptable: checked before anything is read ({@link checkPipeline})
 * and, once the processors declared their framing and headers, after `init`
 * ({@link checkFraming}). Violations fail with `UsageError`.
 *
 * @internal
 */
import { Effect } from "effect"
import { type ChunkProcessor, type InitResult, PROCESSOR_API_VERSION } from "../ChunkProcessor.js"
import { type Framing, plainFraming } from "../ChunkSpec.js"
import { UsageError } from "../Error.js"

/** Checks processors before anything is read. */
export const checkPipeline = (pipeline: ReadonlyArray<ChunkProcessor>) => {
  if (pipeline.length === 0) return Effect.fail(new UsageError({ reason: "Pipeline", detail: "the pipeline has no processors" }))
  for (const p of pipeline) {
    if (p.apiVersion !== PROCESSOR_API_VERSION) {
      return Effect.fail(new UsageError({ reason: "Processor", detail: `processor ${p.name}@${p.version} was built for processor API ${p.apiVersion}, this engine speaks ${PROCESSOR_API_VERSION}` }))
    }
  }
  return Effect.void
}

/**
 * Checks where the processors that frame the input or write a header stand, and returns
 * the framing of the run: the framer's, else plain chunks of `chunkBytes` (default 64 KiB)
 * without a header. The chunk size has one owner: the framer (which checked it against its
 * own rule), or `plainFraming` for plain chunks.
 */
export const checkFraming = (pipeline: ReadonlyArray<ChunkProcessor>, inits: ReadonlyArray<InitResult>, chunkBytes: number | undefined): Effect.Effect<Framing, UsageError> => {
  // One processor decides how the input is cut (a cipher's chunk rule); a header can only
  // be skipped by the processor that read it, i.e. the first.
  const framers = inits.flatMap((r, i) => (r.framing ? [{ i, framing: r.framing }] : []))
  if (framers.length > 1) {
    return Effect.fail(new UsageError({ reason: "Pipeline", detail: `both ${pipeline[framers[0].i].name} and ${pipeline[framers[1].i].name} set the input framing; a pipeline may hold one such processor` }))
  }
  if (framers.length === 1 && framers[0].i > 0 && framers[0].framing.headerBytes > 0) {
    return Effect.fail(new UsageError({ reason: "Pipeline", detail: `${pipeline[framers[0].i].name} reads an input header, so it must come first in the pipeline` }))
  }
  // Chunk boundaries are computed on the pipeline's input: a framing processor placed after
  // a transform would receive chunks of whatever size that transform produced.
  const firstTransform = pipeline.findIndex((p) => p.capabilities.kind === "transform")
  if (framers.length === 1 && firstTransform >= 0 && firstTransform < framers[0].i) {
    return Effect.fail(new UsageError({ reason: "Pipeline", detail: `${pipeline[framers[0].i].name} cuts the input into its own chunks, so it cannot come after the transform ${pipeline[firstTransform].name} unless it declares capabilities.framesInput (then the engine re-chunks between them)` }))
  }
  // Headers go straight to the output; a later transform would never see them.
  for (let i = 0; i < inits.length; i++) {
    const later = pipeline.findIndex((p, j) => j > i && p.capabilities.kind === "transform")
    if (inits[i].header && later >= 0) {
      return Effect.fail(new UsageError({ reason: "Pipeline", detail: `${pipeline[i].name} writes a header, so it must be the last transform of the pipeline (${pipeline[later].name} comes after it)` }))
    }
  }
  // The framer checked its own size against its rule; `chunkBytes` only sizes plain chunks.
  return framers.length === 1 ? Effect.succeed(framers[0].framing) : plainFraming(chunkBytes)
}
