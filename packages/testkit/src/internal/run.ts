/**
 * Drivers shared by the conformance checks: run a pipeline over bytes or files, drive a
 * processor's `process` directly in a chosen order, and bound a promise in time.
 *
 * @internal
 */
import { ChunkInput, ChunkOutput, type ChunkProcessor, ChunkSpec, type EngineError, type JsonValue, type RunOptions, runPipeline, type RunSummary } from "@cage/core"
import { Effect, Exit } from "effect"

/** The outcome of one run: the whole output (header, chunks, trailer) and the summary. */
export interface RunResult {
  readonly output: Uint8Array
  readonly results: { readonly [name: string]: JsonValue }
  readonly summary?: RunSummary
}

/** Rejects with a "hung" error when `promise` does not settle within `ms` milliseconds. */
export const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (a processor that never completes its effect hangs the engine)`)), ms)
  })
  return Promise.race([promise, hung]).finally(() => clearTimeout(timer))
}

/** Runs `pipeline` over in-memory bytes into an in-memory sink. */
export const runBytes = async (
  pipeline: ReadonlyArray<ChunkProcessor>,
  bytes: Uint8Array,
  chunkBytes: number,
  extra: Partial<Pick<RunOptions, "segmentBytes" | "inFlight" | "input">> = {}
): Promise<RunResult> => {
  const sink = ChunkOutput.toMemory()
  const summary = await Effect.runPromise(
    runPipeline({ input: extra.input ?? ChunkInput.fromBytes(bytes), output: sink, pipeline, chunkBytes, segmentBytes: extra.segmentBytes, inFlight: extra.inFlight })
  )
  if (!sink.committed()) throw new Error("the engine finished without committing its output")
  return { output: sink.bytes(), results: summary.results, summary }
}

/** Like {@link runBytes} but returns the exit, for checks that expect a failure. */
export const runExit = (options: RunOptions): Promise<Exit.Exit<RunSummary, EngineError>> => Effect.runPromiseExit(runPipeline(options))

/** The typed failure of an exit, or throws describing what happened instead. */
export const failureOf = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (!Exit.isFailure(exit)) throw new Error("expected the run to fail, it succeeded")
  const e = Exit.findErrorOption(exit)
  if (e._tag !== "Some") throw new Error(`expected a typed failure, got a defect or interruption: ${String(exit.cause)}`)
  return e.value
}

/** A deterministic permutation of `0..n-1` (xorshift-seeded Fisher–Yates). */
export const permutation = (n: number, seed: number): Array<number> => {
  const out = Array.from({ length: n }, (_, i) => i)
  let x = seed >>> 0 || 1
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    const j = (x >>> 0) % (i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  // A permutation equal to the identity would not test anything: reverse it instead.
  if (n > 1 && out.every((v, i) => v === i)) out.reverse()
  return out
}

/** Pattern written over a chunk buffer once `process` completed, as the engine may reuse it. */
export const SCRIBBLE = 0xa5

/**
 * Drives one processor by hand, without the engine: `init`, then `process` for every chunk
 * in `order` (indices) with up to `concurrency` calls in flight, then `finalize` and `close`.
 *
 * Each chunk gets a fresh copy of its bytes, which is overwritten with {@link SCRIBBLE}
 * as soon as `process` completed: a processor that keeps a reference to `data` instead of
 * copying it produces wrong output here. Observers must return `undefined` and leave
 * `data` untouched.
 */
export const driveDirect = async (
  p: ChunkProcessor,
  input: Uint8Array,
  chunkBytes: number,
  order: "in-order" | ReadonlyArray<number>,
  concurrency: number
): Promise<RunResult & { readonly framing: ChunkSpec.Framing }> => {
  const init = (await Effect.runPromise(p.init({
    input: "conformance",
    inputSize: input.length,
    chunkBytes,
    readHeader: (length) => Effect.sync(() => input.slice(0, length)),
    resume: undefined
  }))) ?? {}
  const framing: ChunkSpec.Framing = init.framing ?? { headerBytes: 0, chunkBytes, shortFinal: false }
  const plan = ChunkSpec.planRegion(input.length - framing.headerBytes, framing)
  const chunks: Array<ChunkSpec.ChunkSpec> = Array.from(plan.chunks())
  const indices = order === "in-order" ? chunks.map((c) => c.index) : order
  if (indices.length !== chunks.length) throw new Error(`internal error: order has ${indices.length} entries for ${chunks.length} chunks`)
  const outs: Array<Uint8Array | undefined> = new Array(chunks.length)
  await Effect.runPromise(
    Effect.forEach(indices, (i) =>
      Effect.gen(function*() {
        const c = chunks[i]
        const data = Buffer.from(input.subarray(framing.headerBytes + c.start, framing.headerBytes + c.end))
        const before = Buffer.from(data)
        const out = yield* p.process(c, data)
        if (p.capabilities.kind === "observer") {
          if (out !== undefined) throw new Error(`observer ${p.name} returned bytes for chunk ${i}; observers must return undefined`)
          if (!before.equals(data)) throw new Error(`observer ${p.name} modified the bytes of chunk ${i}; observers must not mutate data`)
          outs[i] = before
        } else {
          if (!(out instanceof Uint8Array)) throw new Error(`transform ${p.name} returned ${String(out)} for chunk ${i}; transforms must return bytes`)
          // Returning `data` itself is allowed (the engine owns both); anything else is kept as is,
          // so a processor that reuses its output buffers is caught too.
          outs[i] = out.buffer === data.buffer ? Buffer.from(out) : out
        }
        data.fill(SCRIBBLE)
      }), { concurrency, discard: true })
  )
  const fin = (await Effect.runPromise(p.finalize({ plan, inputBytes: input.length }))) ?? {}
  if (p.close) await Effect.runPromise(p.close())
  const parts: Array<Uint8Array> = []
  if (init.header) parts.push(init.header)
  for (const o of outs) parts.push(o!)
  if (fin.trailer) parts.push(fin.trailer)
  return { output: Buffer.concat(parts), results: fin.result === undefined ? {} : { [p.name]: fin.result }, framing }
}
