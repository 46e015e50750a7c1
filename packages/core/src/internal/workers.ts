/**
 * The worker loop: `inFlight` workers each take a segment, read it, run it through the
 * processors (ordered ones one segment at a time, in order, behind their gate), write it
 * in order behind the write gate, then record it as written and checkpoint when due.
 *
 * @internal
 */
import { Effect } from "effect"
import type { ChunkInput } from "../ChunkInput.js"
import type { ChunkOutput } from "../ChunkOutput.js"
import type { ChunkProcessor, JsonValue } from "../ChunkProcessor.js"
import type { Framing } from "../ChunkSpec.js"
import type { EngineError } from "../Error.js"
import type { ProgressReporter } from "../Progress.js"
import type { TelemetryPublisher } from "../Telemetry.js"
import type { CheckpointWriter, Written } from "./checkpointing.js"
import { type Direct, extendDirectOutput, processDirectSegment } from "./directMode.js"
import { makeGate } from "./gate.js"
import { runStage } from "./processors.js"
import { type BufferPool, makeSegmentReader, type Segment } from "./segments.js"

export interface WorkerContext {
  readonly pipeline: ReadonlyArray<ChunkProcessor>
  readonly input: ChunkInput
  readonly output: ChunkOutput | undefined
  readonly framing: Framing
  readonly direct: Direct | undefined
  /** Output bytes before the first chunk's output (the headers). */
  readonly outputBase: number
  /** Segments before this chunk are a replay: processed again, but not written. */
  readonly startChunk: number
  readonly segChunks: number
  readonly inFlight: number
  /** Where the segments' buffers go back once written. */
  readonly buffers: BufferPool
  /** The next segment, `undefined` at the end. */
  readonly takeSegment: Effect.Effect<Segment | undefined, EngineError>
  /** Updated as each segment is written. */
  readonly written: Written
  readonly checkpoints: CheckpointWriter | undefined
  readonly progress: ProgressReporter
  readonly telemetry: TelemetryPublisher
  readonly runId: string
}

/** Runs every segment; returns the chunks and input bytes this run processed (replays excluded). */
export const runWorkers = (ctx: WorkerContext) =>
  Effect.gen(function*() {
    const { pipeline, input, output, framing, direct, outputBase, startChunk, segChunks, written, checkpoints, progress, telemetry, runId } = ctx
    const cs = framing.chunkBytes
    const gates = pipeline.map(() => makeGate(0))
    const writeGate = makeGate(0)
    let processedChunks = 0
    let bytesProcessed = 0

    const worker = Effect.gen(function*() {
      const readSegment = makeSegmentReader(input, framing, segChunks * cs)
      while (true) {
        const seg = yield* ctx.takeSegment
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
          yield* processDirectSegment(direct, pipeline[0], seg, framing, outputBase, input)
          if (pipeline[0].snapshot) segmentSnapshots.push([0, pipeline[0].snapshot()])
        }
        let data = direct ? [] : yield* readSegment(seg)
        const produced: Array<[ChunkProcessor, ReadonlyArray<Uint8Array>]> = []
        for (let i = 0; !direct && i < pipeline.length; i++) {
          const p = pipeline[i]
          // On replay only the non-resumable processors (and the transforms feeding them) run.
          const skip = replay && p.capabilities.resumable !== false && p.capabilities.kind === "observer"
          if (p.capabilities.ordered) yield* gates[i].wait(seg.seq)
          const out = skip ? [] : yield* runStage(pipeline, i, seg, data)
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
            outBytes = extendDirectOutput(direct, seg, outputBase, cs)
          } else if (output) {
            const before = output.position()
            yield* output.write(data)
            outBytes = output.position() - before
          }
          const segBytes = last.end - seg.chunks[0].start
          for (const [i, snap] of segmentSnapshots) written.snapshots[i] = snap
          written.completed = last.index + 1
          written.outputAtCompleted = output?.position() ?? 0
          written.inputAtCompleted = framing.headerBytes + last.end
          processedChunks += seg.chunks.length
          bytesProcessed += segBytes
          progress.update(written.inputAtCompleted, written.outputAtCompleted)
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
          if (checkpoints) yield* checkpoints.saveIfDue
        }
        // Everything downstream of these outputs has consumed them: hand them back for reuse.
        for (const [p, outputs] of produced) p.release!(outputs)
        // The input's bytes too: every processor has finished with them, and the output
        // (which may be `data` itself) is written.
        if (seg.buffer) ctx.buffers.give(seg.buffer)
        yield* writeGate.open(seg.seq + 1)
      }
    })

    yield* Effect.all(Array.from({ length: ctx.inFlight }, () => worker), { concurrency: "unbounded", discard: true })
    return { processedChunks, bytesProcessed }
  })
