/**
 * Direct mode (see ChunkProcessor): one transform that reads and writes the files itself.
 * Whether it applies, the resume check its fixed output layout needs, and how a direct
 * segment is run and accounted for.
 *
 * @internal
 */
import { Effect } from "effect"
import type { ChunkInput } from "../ChunkInput.js"
import type { ChunkOutput } from "../ChunkOutput.js"
import type { ChunkProcessor, InitResult } from "../ChunkProcessor.js"
import type { ChunkSpec, Framing } from "../ChunkSpec.js"
import type * as Checkpoint from "../Checkpoint.js"
import { ResumeRefused, UsageError } from "../Error.js"
import { guard } from "./processors.js"
import type { Segment } from "./segments.js"

/** What a direct run needs: the lone transform's `processDirect` and both descriptors. */
export interface Direct {
  readonly outputChunkBytes: number
  readonly process: NonNullable<ChunkProcessor["processDirect"]>
  readonly fd: number
  readonly out: NonNullable<ChunkOutput["positional"]>
}

/** Direct mode's parameters when it applies to this pipeline, input and output, else `undefined`. */
export const chooseDirect = (
  pipeline: ReadonlyArray<ChunkProcessor>,
  inits: ReadonlyArray<InitResult>,
  input: ChunkInput,
  output: ChunkOutput | undefined
): Effect.Effect<Direct | undefined, UsageError> => {
  const directOut = output?.positional
  // Only for an unordered transform: direct segments run concurrently, outside any gate.
  const lone = pipeline.length === 1 ? pipeline[0] : undefined
  const direct = lone && lone.processDirect !== undefined && inits[0].direct !== undefined &&
      lone.capabilities.kind === "transform" && lone.capabilities.ordered === false && lone.capabilities.resumable !== false &&
      input.fd !== undefined && input.size !== undefined && directOut !== undefined
    ? { outputChunkBytes: inits[0].direct.outputChunkBytes, process: lone.processDirect, fd: input.fd, out: directOut }
    : undefined
  return direct ? checkOutputChunkBytes(lone!, direct.outputChunkBytes).pipe(Effect.as(direct)) : Effect.succeed(undefined)
}

/** A processor's declared direct output chunk size must be a positive integer (bytes). */
export const checkOutputChunkBytes = (p: ChunkProcessor, outputChunkBytes: number): Effect.Effect<void, UsageError> =>
  Number.isSafeInteger(outputChunkBytes) && outputChunkBytes > 0
    ? Effect.void
    : Effect.fail(new UsageError({ reason: "Processor", detail: `${p.name} declared direct output chunks of ${outputChunkBytes} bytes; a positive integer is needed` }))

/**
 * Direct writes land at offsets computed from the header length: a resumed run must see
 * the layout the checkpointed bytes were written with (a processor that returned its
 * header only on the first run would otherwise shift every later chunk).
 */
export const checkResumedLayout = (direct: Direct, resumed: Checkpoint.Checkpoint, outputBase: number, startChunk: number, checkpoint: string) =>
  resumed.outputBytes !== outputBase + startChunk * direct.outputChunkBytes
    ? Effect.fail(new ResumeRefused({
      reason: "CheckpointCorrupt",
      checkpoint,
      detail: `${startChunk} completed chunks of ${direct.outputChunkBytes} bytes after a ${outputBase}-byte header make ${outputBase + startChunk * direct.outputChunkBytes} output bytes, the checkpoint says ${resumed.outputBytes}`
    }))
    : Effect.void

/**
 * Has `p` process consecutive `chunks` straight from one file to another: the first chunk
 * is read at `framing.headerBytes + its start` and written at `outputBase + its index ×
 * outputChunkBytes`. Its read and write failures come back as the engine's own (`IoError`,
 * `InputChanged`), anything else as a `ProcessorError` naming `p` and the chunk.
 */
export const directCall = (
  p: ChunkProcessor,
  process: Direct["process"],
  chunks: ReadonlyArray<ChunkSpec>,
  files: { readonly inputFd: number; readonly input: string; readonly framing: Framing; readonly outputFd: number; readonly output: string; readonly outputBase: number; readonly outputChunkBytes: number }
) => {
  const first = chunks[0]
  return guard(p, "process", first.index, process(chunks, {
    inputFd: files.inputFd,
    inputOffset: files.framing.headerBytes + first.start,
    outputFd: files.outputFd,
    outputOffset: files.outputBase + first.index * files.outputChunkBytes,
    input: files.input,
    output: files.output
  }), true)
}

/** Has the lone transform process a segment straight from the input file to the output file. */
export const processDirectSegment = (direct: Direct, p: ChunkProcessor, seg: Segment, framing: Framing, outputBase: number, input: ChunkInput) =>
  directCall(p, direct.process, seg.chunks, {
    inputFd: direct.fd,
    input: input.description,
    framing,
    outputFd: direct.out.fd(),
    // The file actually written (`<out>.partial`): a write error names it.
    output: direct.out.path,
    outputBase,
    outputChunkBytes: direct.outputChunkBytes
  })

/**
 * Records a written direct segment in the output; returns its output bytes. Call it in
 * segment order: every segment before this one has completed (the write gate), so the
 * output is fully written up to this segment's end.
 */
export const extendDirectOutput = (direct: Direct, seg: Segment, outputBase: number, chunkBytes: number): number => {
  const first = seg.chunks[0]
  const last = seg.chunks[seg.chunks.length - 1]
  const end = outputBase + last.index * direct.outputChunkBytes + last.length + (direct.outputChunkBytes - chunkBytes)
  direct.out.extend(end)
  return end - (outputBase + first.index * direct.outputChunkBytes)
}
