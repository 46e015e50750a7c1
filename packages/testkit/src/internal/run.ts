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

const byteHex = (b: number | undefined) => (b === undefined ? "none" : `0x${b.toString(16).padStart(2, "0")}`)

/** True when two views share bytes of one ArrayBuffer. */
const overlaps = (a: Uint8Array, b: Uint8Array) =>
  a.buffer === b.buffer && a.length > 0 && b.length > 0 && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length

/**
 * What the contract (`ChunkProcessor.ts`, `data`) lets a processor do with the buffers the
 * engine lends it, checked after `process` (`how === "process"`, one chunk) or
 * `processSegment` completed. `before` holds copies of `data` taken before the call, `outputs`
 * what it returned. Returns the first violation, described, or `undefined`:
 *
 * - `data` must hold the same bytes after the call: the engine lends its read buffers, for
 *   observers and transforms alike (a transform writes its output into bytes of its own).
 * - `processSegment` may take the segment's whole ArrayBuffer (transfer it to a worker
 *   thread), which detaches every view of it; `process` may not (the other chunks of its
 *   segment are views of the same buffer).
 * - A transform may return `data` itself, or a view of it, unchanged: the engine owns both,
 *   and consumes the output before it reuses its buffer. Not when it declares `release`,
 *   which would hand the engine's read buffer to it for reuse.
 */
export const lentBufferViolation = (
  p: ChunkProcessor,
  how: "process" | "processSegment",
  chunks: ReadonlyArray<ChunkSpec.ChunkSpec>,
  data: ReadonlyArray<Uint8Array>,
  before: ReadonlyArray<Uint8Array>,
  outputs: ReadonlyArray<Uint8Array | undefined> | undefined
): string | undefined => {
  for (let k = 0; k < data.length; k++) {
    const d = data[k]
    const b = before[k]
    const index = chunks[k]?.index ?? k
    if (b.length > 0 && d.buffer.byteLength === 0) {
      if (how === "processSegment") continue
      return `processor ${p.name} detached the input buffer of chunk ${index} in process (transferred its ArrayBuffer): only processSegment may take a segment's buffer (the other chunks of a segment are views of it)`
    }
    if (d.length !== b.length || !Buffer.from(d.buffer, d.byteOffset, d.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) {
      let at = 0
      while (at < b.length && d[at] === b[at]) at++
      return `processor ${p.name} modified its input buffer at chunk ${index}: byte ${at} of ${b.length} changed from ${byteHex(b[at])} to ${byteHex(d[at])} (the engine lends data read-only, to observers and transforms alike: write the output into bytes of your own)`
    }
  }
  if (p.release && p.capabilities.kind === "transform" && outputs) {
    for (let k = 0; k < outputs.length; k++) {
      const o = outputs[k]
      if (o && data.some((d) => overlaps(o, d))) {
        return `processor ${p.name} returned its input buffer (or a view of it) as the output of chunk ${chunks[k]?.index ?? k} and declares release(): release would hand the engine's read buffer to it for reuse (return bytes of your own, or drop release)`
      }
    }
  }
  return undefined
}

/** A copy of `data` in an ArrayBuffer of its own. */
const copyOf = (data: Uint8Array) => {
  const c = new Uint8Array(data.length)
  c.set(data)
  return c
}

/**
 * `p` with its `process` and `processSegment` watched (see {@link lentBufferViolation}): the
 * first violation is kept, for `violation()` to report once the run is over.
 */
export const watchLentBuffers = (p: ChunkProcessor): { readonly processor: ChunkProcessor; readonly violation: () => string | undefined } => {
  let first: string | undefined
  const note = (v: string | undefined) => {
    if (v && !first) first = v
  }
  const processor: ChunkProcessor = {
    ...p,
    process: (c, d) => {
      const before = [copyOf(d)]
      return Effect.map(p.process(c, d), (out) => {
        note(lentBufferViolation(p, "process", [c], [d], before, [out]))
        return out
      })
    },
    processSegment: p.processSegment
      ? (cs, ds) => {
        const before = ds.map(copyOf)
        return Effect.map(p.processSegment!(cs, ds), (outs) => {
          note(lentBufferViolation(p, "processSegment", cs, ds, before, outs))
          return outs
        })
      }
      : undefined
  }
  return { processor, violation: () => first }
}

/**
 * Runs `run` over a watched fresh processor (see {@link watchLentBuffers}): a violation is
 * reported in place of the run's outcome, since it may be what made the run fail.
 */
export const watched = async <A>(make: () => ChunkProcessor, run: (p: ChunkProcessor) => Promise<A>): Promise<A> => {
  const w = watchLentBuffers(make())
  let outcome: { ok: true; value: A } | { ok: false; error: unknown }
  try {
    outcome = { ok: true, value: await run(w.processor) }
  } catch (error) {
    outcome = { ok: false, error }
  }
  const v = w.violation()
  if (v) throw new Error(v)
  if (!outcome.ok) throw outcome.error
  return outcome.value
}

/**
 * Drives one processor by hand, without the engine: `init`, then `process` for every chunk
 * in `order` (indices) with up to `concurrency` calls in flight, then `finalize` and `close`.
 *
 * Each chunk gets a copy of its bytes in an ArrayBuffer of its own, which is overwritten with
 * {@link SCRIBBLE} as soon as `process` completed: a processor that keeps a reference to
 * `data` instead of copying it produces wrong output here. Before that, the lent buffer is
 * checked ({@link lentBufferViolation}): unchanged, not detached, and for a processor with
 * `release` not returned. Observers must return `undefined`. `lent` says which call
 * `p.process` stands for: `"processSegment"` when it hands the chunk to `processSegment` as a
 * segment of one (which may then take its buffer).
 */
export const driveDirect = async (
  p: ChunkProcessor,
  input: Uint8Array,
  chunkBytes: number,
  order: "in-order" | ReadonlyArray<number>,
  concurrency: number,
  lent: "process" | "processSegment" = "process"
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
        const data = copyOf(input.subarray(framing.headerBytes + c.start, framing.headerBytes + c.end))
        const before = copyOf(data)
        const out = yield* p.process(c, data)
        const violation = lentBufferViolation(p, lent, [c], [data], [before], [out])
        if (violation) throw new Error(violation)
        if (p.capabilities.kind === "observer") {
          if (out !== undefined) throw new Error(`observer ${p.name} returned bytes for chunk ${i}; observers must return undefined`)
          outs[i] = before
        } else {
          if (!(out instanceof Uint8Array)) throw new Error(`transform ${p.name} returned ${String(out)} for chunk ${i}; transforms must return bytes`)
          // Returning `data` itself is allowed (the engine owns both): keep its bytes before
          // they are overwritten. Anything else is kept as is, so a processor that reuses its
          // output buffers is caught too.
          outs[i] = overlaps(out, data) ? copyOf(out) : out
        }
        if (data.buffer.byteLength > 0) data.fill(SCRIBBLE)
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
