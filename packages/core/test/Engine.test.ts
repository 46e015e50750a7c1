import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PassThrough, Readable } from "node:stream"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Checkpoint, ChunkInput, ChunkOutput, type ChunkProcessor, ChunkSpec, type InitResult, ProcessorError, ResumeRefused, runDirectChunks, runPipeline, Telemetry, type TelemetryEvent } from "../src/index.js"
import { pseudoRandom, sha256, sha256Observer, xorDirect, xorReference, xorTransform } from "./helpers.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-core-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const runExit = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromiseExit(e)
const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  if (!Exit.isFailure(exit)) throw new Error("expected failure")
  const e = Exit.findErrorOption(exit)
  if (e._tag !== "Some") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return e.value
}

describe("runPipeline: boundary sizes", () => {
  for (const cs of [1, 7, 64, 4096]) {
    const sizes = [0, 1, cs - 1, cs, cs + 1, 2 * cs - 1, 2 * cs, 2 * cs + 1, 5 * cs + 3].filter((s) => s >= 0)
    it.for(sizes)(`chunk ${cs}, file of %i bytes through transform + observer, small segments`, async (size) => {
      const data = pseudoRandom(size, size + cs)
      const src = path.join(dir, "in")
      fs.writeFileSync(src, data)
      const out = path.join(dir, "out")
      const obs = sha256Observer()
      const summary = await run(Effect.gen(function*() {
        const input = yield* ChunkInput.fromFile(src)
        return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [obs, xorTransform()], chunkBytes: cs, segmentBytes: cs * 3, inFlight: 3 })
      }))
      expect(fs.readFileSync(out)).toEqual(xorReference(data, cs))
      expect(summary.results["test-sha256"]).toBe(sha256(data))
      expect(summary.totalChunks).toBe(Math.ceil(size / cs))
      expect(summary.bytesProcessed).toBe(size)
      expect(obs.seen).toEqual(Array.from({ length: summary.totalChunks }, (_, i) => i))
      expect(fs.existsSync(out + ".partial")).toBe(false)
      expect(fs.statSync(out).mode & 0o777).toBe(0o600)
    })
    it.for(sizes)(`chunk ${cs}, stream of %i bytes in odd-sized pieces equals the file run`, async (size) => {
      const data = pseudoRandom(size, size * 3 + cs)
      const pieces: Array<Buffer> = []
      for (let at = 0, k = 1; at < size; k = (k * 7 + 3) % 13 + 1) {
        pieces.push(Buffer.from(data.subarray(at, at + k)))
        at += k
      }
      const sink = ChunkOutput.toMemory()
      const obs = sha256Observer()
      const summary = await run(runPipeline({ input: ChunkInput.fromStream(Readable.from(pieces)), output: sink, pipeline: [obs, xorTransform()], chunkBytes: cs, segmentBytes: cs * 2 }))
      expect(Buffer.from(sink.bytes())).toEqual(xorReference(data, cs))
      expect(summary.results["test-sha256"]).toBe(sha256(data))
      expect(summary.totalChunks).toBe(Math.ceil(size / cs))
    })
  }
  it("byte-by-byte stream writes", async () => {
    const data = pseudoRandom(1000, 9)
    const sink = ChunkOutput.toMemory()
    await run(runPipeline({ input: ChunkInput.fromStream(Readable.from(Array.from(data, (b) => Buffer.of(b)))), output: sink, pipeline: [xorTransform()], chunkBytes: 64 }))
    expect(Buffer.from(sink.bytes())).toEqual(xorReference(data, 64))
  })
  it("shortFinal framing adds an empty final chunk on a chunk boundary, for files and streams", async () => {
    const framed: ChunkProcessor = { ...xorTransform(), init: (ctx) => Effect.succeed({ framing: { headerBytes: 0, chunkBytes: ctx.chunkBytes, shortFinal: true } }), finalize: () => Effect.succeed({}) }
    for (const input of [ChunkInput.fromBytes(new Uint8Array(128)), ChunkInput.fromStream(Readable.from([Buffer.alloc(128)]))]) {
      const sink = ChunkOutput.toMemory()
      const s = await run(runPipeline({ input, output: sink, pipeline: [framed], chunkBytes: 64 }))
      expect(s.totalChunks).toBe(3)
      expect(sink.bytes().length).toBe(128 + 3)
    }
  })
})

describe("runPipeline: failures", () => {
  it("a stream that fails midway ends the run with an IoError naming it, and publishes nothing", async () => {
    async function* failing() {
      yield Buffer.from(pseudoRandom(5000, 1))
      yield Buffer.from(pseudoRandom(5000, 2))
      throw Object.assign(new Error("read EIO"), { code: "EIO" })
    }
    const out = path.join(dir, "out")
    const e = failureOf(await runExit(runPipeline({ input: ChunkInput.fromStream(Readable.from(failing()), "stdin"), output: ChunkOutput.toFile(out), pipeline: [xorTransform()], chunkBytes: 1024, segmentBytes: 2048 })))
    expect(e).toMatchObject({ _tag: "IoError", operation: "read", path: "stdin" })
    expect(fs.readdirSync(dir)).toEqual([])
  })
  it("a stream piece larger than several segments is cut across them, the rest kept for the next read", async () => {
    const data = pseudoRandom(300_001, 4)
    const sink = ChunkOutput.toMemory()
    const s = await run(runPipeline({ input: ChunkInput.fromStream(Readable.from([Buffer.from(data.subarray(0, 7)), Buffer.from(data.subarray(7))])), output: sink, pipeline: [xorTransform()], chunkBytes: 1000, segmentBytes: 4000 }))
    expect(s.totalChunks).toBe(301)
    expect(Buffer.from(sink.bytes())).toEqual(xorReference(data, 1000))
  })
  it("a failing chunk ends the run with its index and leaves no output", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, pseudoRandom(10_000))
    const out = path.join(dir, "out")
    const exit = await runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [xorTransform(0x5a, { failAt: 37 })], chunkBytes: 100, segmentBytes: 300 })
    }))
    const err = failureOf(exit)
    expect(err).toBeInstanceOf(ProcessorError)
    expect((err as ProcessorError).chunk).toBe(37)
    expect(fs.existsSync(out)).toBe(false)
    expect(fs.existsSync(out + ".partial")).toBe(false)
  })
  it("a processor that throws is reported, never hangs", async () => {
    const throwing: ChunkProcessor = { ...xorTransform(), process: (c) => Effect.sync(() => { if (c.index === 2) throw new TypeError("bug"); return new Uint8Array(1) }) }
    const exit = await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(1000)), output: ChunkOutput.toMemory(), pipeline: [throwing], chunkBytes: 100, inFlight: 4 }))
    const err = failureOf(exit) as ProcessorError
    expect(err._tag).toBe("ProcessorError")
    expect(err.chunk).toBe(2)
  })
  it("refuses an existing output without overwrite, and a missing input with its path", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, "abc")
    const out = path.join(dir, "out")
    fs.writeFileSync(out, "precious")
    const exit = await runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [xorTransform()], chunkBytes: 2 })
    }))
    expect(failureOf(exit)).toMatchObject({ _tag: "IoError", reason: "AlreadyExists" })
    expect(fs.readFileSync(out, "utf8")).toBe("precious")
    const missing = await runExit(ChunkInput.fromFile(path.join(dir, "nope")))
    const e = failureOf(missing) as Error
    expect(e.message).toContain("nope")
    expect(e.message).toContain("no such file")
  })
})

describe("runPipeline: checkpoints and resume", () => {
  const setup = (size = 50_000) => {
    const data = pseudoRandom(size, 42)
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    return { data, src, out: path.join(dir, "out"), ckpt: path.join(dir, "out.checkpoint.json") }
  }
  const attempt = (src: string, out: string, ckpt: string, pipeline: Array<ChunkProcessor>, mode: "resume" | "fresh" = "resume", cs = 100) =>
    runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline, chunkBytes: cs, segmentBytes: 500, inFlight: 2, checkpoint: { path: ckpt, mode, intervalMs: 0 } })
    }))

  it("an interrupted run resumes where it stopped and gives the one-run output", async () => {
    const { data, src, out, ckpt } = setup()
    const first = await attempt(src, out, ckpt, [sha256Observer(), xorTransform(0x5a, { failAt: 321 })])
    expect(failureOf(first)).toBeInstanceOf(ProcessorError)
    expect(fs.existsSync(out)).toBe(false)
    expect(fs.existsSync(out + ".partial")).toBe(true)
    const doc = fs.readFileSync(ckpt, "utf8")
    expect(doc.length).toBeLessThan(1024)
    expect(fs.statSync(ckpt).mode & 0o777).toBe(0o600)
    expect(fs.statSync(out + ".partial").mode & 0o777).toBe(0o600)
    const c = JSON.parse(doc)
    expect(c.completed[0][1]).toBeGreaterThan(0)
    expect(c.completed[0][1]).toBeLessThanOrEqual(321)
    const obs = sha256Observer()
    const second = await attempt(src, out, ckpt, [obs, xorTransform()])
    expect(Exit.isSuccess(second)).toBe(true)
    if (Exit.isSuccess(second)) {
      expect(second.value.resumedFrom).toBe(c.completed[0][1])
      expect(second.value.processedChunks).toBe(500 - c.completed[0][1])
      // the non-resumable observer was replayed over the completed chunks: its digest is whole
      expect(second.value.results["test-sha256"]).toBe(sha256(data))
    }
    expect(fs.readFileSync(out)).toEqual(xorReference(data, 100))
    expect(fs.existsSync(ckpt)).toBe(false)
    expect(fs.existsSync(out + ".partial")).toBe(false)
  })

  const interrupted = async () => {
    const s = setup()
    const first = await attempt(s.src, s.out, s.ckpt, [xorTransform(0x5a, { failAt: 200 })])
    expect(Exit.isFailure(first)).toBe(true)
    expect(fs.existsSync(s.ckpt)).toBe(true)
    return s
  }
  it("refuses when the source changed (mtime)", async () => {
    const { src, out, ckpt } = await interrupted()
    fs.utimesSync(src, new Date(), new Date(Date.now() + 5000))
    const err = failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused
    expect(err).toBeInstanceOf(ResumeRefused)
    expect(err.reason).toBe("SourceChanged")
    expect(err.message).toContain("modification time")
    expect(err.exitCode).toBe(5)
  })
  it("refuses when the source changed (size, content rewritten)", async () => {
    const { src, out, ckpt } = await interrupted()
    fs.appendFileSync(src, "x")
    expect((failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused).reason).toBe("SourceChanged")
  })
  it("refuses when the source was replaced (inode)", async () => {
    const { src, out, ckpt } = await interrupted()
    const bytes = fs.readFileSync(src)
    const st = fs.statSync(src)
    fs.rmSync(src)
    fs.writeFileSync(path.join(dir, "filler"), "x") // so the inode is not reused at once
    fs.writeFileSync(src, bytes)
    fs.utimesSync(src, st.atime, st.mtime)
    const err = failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused
    expect(err.reason).toBe("SourceChanged")
  })
  it("refuses when the chunk size changed", async () => {
    const { src, out, ckpt } = await interrupted()
    const err = failureOf(await attempt(src, out, ckpt, [xorTransform()], "resume", 200)) as ResumeRefused
    expect(err.reason).toBe("ChunkSizeChanged")
  })
  it("refuses when a framer declares another chunk size than the checkpoint recorded, after init", async () => {
    const { src, out, ckpt } = await interrupted()
    // The framer owns the size (its own option), the run passes none: the checkpoint's record
    // is what the resumed run is compared with.
    const sized = (chunkBytes: number): ChunkProcessor => ({ ...xorTransform(), init: () => Effect.succeed({ framing: { headerBytes: 0, chunkBytes, shortFinal: false } }) })
    const run = (p: ChunkProcessor) =>
      runExit(Effect.gen(function*() {
        const input = yield* ChunkInput.fromFile(src)
        return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [p], segmentBytes: 500, inFlight: 2, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } })
      }))
    const err = failureOf(await run(sized(300))) as ResumeRefused
    expect(err.reason).toBe("ChunkSizeChanged")
    expect(err.message).toContain("was 100 bytes, now 300")
    expect(Exit.isSuccess(await run(sized(100)))).toBe(true)
  })
  it("refuses when the pipeline's options changed", async () => {
    const { src, out, ckpt } = await interrupted()
    const err = failureOf(await attempt(src, out, ckpt, [xorTransform(0x11)])) as ResumeRefused
    expect(err.reason).toBe("PipelineChanged")
    expect(err.message).toContain("test-xor")
  })
  it("refuses when the pipeline changed", async () => {
    const { src, out, ckpt } = await interrupted()
    const err = failureOf(await attempt(src, out, ckpt, [sha256Observer(), xorTransform()])) as ResumeRefused
    expect(err.reason).toBe("PipelineChanged")
  })
  it("refuses a corrupt checkpoint", async () => {
    const { src, out, ckpt } = await interrupted()
    fs.writeFileSync(ckpt, fs.readFileSync(ckpt, "utf8").replace(/"chunkBytes":\d+/, '"chunkBytes":"x"'))
    const err = failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused
    expect(err.reason).toBe("CheckpointCorrupt")
    fs.writeFileSync(ckpt, "{not json")
    expect((failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused).reason).toBe("CheckpointCorrupt")
  })
  it("refuses when the partial output is gone", async () => {
    const { src, out, ckpt } = await interrupted()
    fs.rmSync(out + ".partial")
    expect((failureOf(await attempt(src, out, ckpt, [xorTransform()])) as ResumeRefused).reason).toBe("OutputMissing")
  })
  it("fresh mode discards the checkpoint and starts over", async () => {
    const { data, src, out, ckpt } = await interrupted()
    const exit = await attempt(src, out, ckpt, [xorTransform()], "fresh")
    expect(Exit.isSuccess(exit) && exit.value.resumedFrom).toBe(0)
    expect(fs.readFileSync(out)).toEqual(xorReference(data, 100))
  })
})

describe("telemetry", () => {
  it("publishes run and chunk events in a consistent order", async () => {
    const events: Array<TelemetryEvent> = []
    await run(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(1000)), output: ChunkOutput.toMemory(), pipeline: [xorTransform()], chunkBytes: 100, segmentBytes: 200 }).pipe(
      Effect.provide(Telemetry.layerCallback((e) => events.push(e)))
    ))
    expect(events[0].type).toBe("run_start")
    expect(events.at(-1)).toMatchObject({ type: "run_complete", ok: true, bytes: 1000, chunks: 10 })
    const completes = events.filter((e) => e.type === "chunk_complete")
    expect(completes.map((e) => (e as { chunk: number }).chunk)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(new Set(events.map((e) => e.runId)).size).toBe(1)
  })
  it("streams events through the PubSub layer", async () => {
    const types = await run(Effect.gen(function*() {
      const { events } = yield* Telemetry.TelemetryEvents
      const { Stream, Fiber } = yield* Effect.promise(() => import("effect"))
      const fiber = yield* events.pipe(Stream.takeUntil((e) => e.type === "run_complete"), Stream.runCollect, Effect.forkChild)
      yield* Effect.yieldNow
      yield* runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), output: ChunkOutput.toMemory(), pipeline: [xorTransform()], chunkBytes: 4 })
      const all = yield* Fiber.join(fiber)
      return Array.from(all, (e) => e.type)
    }).pipe(Effect.provide(Telemetry.layerPubSub)))
    expect(types[0]).toBe("run_start")
    expect(types.at(-1)).toBe("run_complete")
    expect(types.filter((t) => t === "chunk_complete").length).toBe(3)
  })
})
void Layer

describe("framing", () => {
  const framer = (headerBytes: number): ChunkProcessor => ({
    ...xorTransform(),
    name: `framer-${headerBytes}`,
    init: (ctx) => Effect.succeed({ framing: { headerBytes, chunkBytes: ctx.chunkBytes, shortFinal: true } })
  })
  it("a later processor may set the framing, and every processor sees it", async () => {
    const obs = sha256Observer()
    const s = await run(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(200)), output: ChunkOutput.toMemory(), pipeline: [obs, framer(0)], chunkBytes: 100 }))
    expect(s.totalChunks).toBe(3) // 100 + 100 + the empty final chunk
    expect(obs.seen).toEqual([0, 1, 2])
  })
  it("two framers, or a header reader that is not first, are usage errors", async () => {
    const two = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), pipeline: [framer(0), framer(0)], chunkBytes: 4 })))
    expect(two).toMatchObject({ _tag: "UsageError" })
    const late = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), pipeline: [sha256Observer(), framer(2)], chunkBytes: 4 })))
    expect((late as Error).message).toContain("must come first")
  })
  it("the chunk size has one owner: a framer's size decides, a plain size is checked once", async () => {
    const input = () => ChunkInput.fromBytes(new Uint8Array(10))
    const own: ChunkProcessor = { ...xorTransform(), init: () => Effect.succeed({ framing: { headerBytes: 0, chunkBytes: 8, shortFinal: true } }) }
    expect((await run(runPipeline({ input: input(), output: ChunkOutput.toMemory(), pipeline: [own] }))).totalChunks).toBe(2)
    // A plain size given beside a framer is not checked or used: the framer owns the size.
    expect((await run(runPipeline({ input: input(), output: ChunkOutput.toMemory(), pipeline: [own], chunkBytes: 0 }))).totalChunks).toBe(2)
    for (const bad of [0, -1, 1.5, 2 ** 30 + 1]) {
      const e = failureOf(await runExit(runPipeline({ input: input(), pipeline: [sha256Observer()], chunkBytes: bad })))
      expect(e).toMatchObject({ _tag: "UsageError", reason: "ChunkSize" })
      expect((e as Error).message).toBe(`a chunk size must be a whole number of bytes from 1 B to 1 GiB, got ${bad} bytes`)
    }
    const plain = await run(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(200_000)), pipeline: [sha256Observer()] }))
    expect(plain.totalChunks).toBe(4) // 64 KiB plain chunks by default
  })
  it("a header read in steps: each call returns the input's first bytes, and the chunks start after the declared header", async () => {
    const H = 10
    const cs = 4
    /** Reads the header as a format with a short fixed prefix would, and records what it got. */
    const stepped = (got: Array<string>): ChunkProcessor => ({
      ...xorTransform(),
      init: (ctx) =>
        Effect.gen(function*() {
          for (const n of [3, H, 2, H, 0]) got.push(Buffer.from(yield* ctx.readHeader(n)).toString("hex"))
          return { framing: { headerBytes: H, chunkBytes: ctx.chunkBytes, shortFinal: false } }
        })
    })
    for (const size of [H, H + 1, H + cs, H + 2 * cs + 3]) {
      const data = pseudoRandom(size, size)
      fs.writeFileSync(path.join(dir, "in"), data)
      const inputs = {
        bytes: () => Effect.succeed(ChunkInput.fromBytes(data)),
        file: () => ChunkInput.fromFile(path.join(dir, "in")),
        "byte-by-byte stream": () => Effect.succeed(ChunkInput.fromStream(Readable.from(Array.from(data, (b) => Buffer.of(b)))))
      }
      for (const [what, open] of Object.entries(inputs)) {
        const got: Array<string> = []
        const sink = ChunkOutput.toMemory()
        await run(Effect.flatMap(open(), (input) => runPipeline({ input, output: sink, pipeline: [stepped(got)], chunkBytes: cs })))
        const hex = (a: number) => Buffer.from(data.subarray(0, a)).toString("hex")
        expect(got, `${what}, ${size} bytes`).toEqual([hex(3), hex(H), hex(2), hex(H), ""])
        expect(Buffer.from(sink.bytes()), `${what}, ${size} bytes`).toEqual(xorReference(data.subarray(H), cs).subarray(2))
      }
    }
    // Past the end: the bytes there are, and no read after the end was seen.
    const short = pseudoRandom(6, 1)
    const reads: Array<number> = []
    const base = ChunkInput.fromStream(Readable.from([Buffer.from(short)]))
    const counted = { ...base, read: (p: number, b: Uint8Array, o: number, n: number) => Effect.tap(base.read(p, b, o, n), () => Effect.sync(() => reads.push(n))) }
    const lengths: Array<number> = []
    const reader: ChunkProcessor = {
      ...xorTransform(),
      init: (ctx) =>
        Effect.gen(function*() {
          for (const n of [3, 10, 20]) lengths.push((yield* ctx.readHeader(n)).length)
          return { framing: { headerBytes: 6, chunkBytes: ctx.chunkBytes, shortFinal: false } }
        })
    }
    await run(runPipeline({ input: counted, output: ChunkOutput.toMemory(), pipeline: [reader], chunkBytes: cs }))
    expect(lengths).toEqual([3, 6, 6])
    expect(reads.slice(0, 2)).toEqual([3, 7])
    const bad: ChunkProcessor = { ...xorTransform(), init: (ctx) => Effect.as(ctx.readHeader(-1), {}) }
    const e = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(short), pipeline: [bad], chunkBytes: cs })))
    // Through the processor's init, so reported as its failure, with the engine's reason.
    expect(e).toMatchObject({ _tag: "ProcessorError" })
    expect((e as Error).message).toContain("readHeader(-1): the length must be a whole number of bytes")
  })
  it("a processor built for another API version is refused before anything is read", async () => {
    const old = { ...xorTransform(), apiVersion: 0 }
    const e = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), pipeline: [old], chunkBytes: 4 })))
    expect((e as Error).message).toContain("processor API 0")
  })
})

describe("buffer reuse", () => {
  it("release() receives every transform output after it was written, in segment order", async () => {
    const released: Array<number> = []
    const sink = ChunkOutput.toMemory()
    const base = xorTransform()
    const p: ChunkProcessor = { ...base, release: (outs) => { for (const o of outs) released.push(o[o.length - 1]) } }
    await run(runPipeline({ input: ChunkInput.fromBytes(pseudoRandom(1000)), output: sink, pipeline: [p], chunkBytes: 100, segmentBytes: 300, inFlight: 3 }))
    expect(released).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(Buffer.from(sink.bytes())).toEqual(xorReference(pseudoRandom(1000), 100))
  })

  it("a stream sink that queues written buffers (PassThrough, read late) gets the bytes as written, whatever release() does", async () => {
    const through = new PassThrough({ highWaterMark: 1 << 20 })
    const base = xorTransform()
    // A processor that scribbles over its outputs once they are released (as a recycler would).
    const p: ChunkProcessor = { ...base, release: (outs) => { for (const o of outs) o.fill(0xff) } }
    await run(runPipeline({ input: ChunkInput.fromBytes(pseudoRandom(1000)), output: ChunkOutput.toStream(through, "pass"), pipeline: [p], chunkBytes: 100, segmentBytes: 300, inFlight: 3 }))
    through.end()
    const chunks: Array<Buffer> = []
    for await (const c of through) chunks.push(c as Buffer)
    expect(Buffer.concat(chunks)).toEqual(xorReference(pseudoRandom(1000), 100))
  })

  it("stream segments reuse a few read buffers, each only once its output is written", async () => {
    const data = pseudoRandom(200 * 1024 + 77, 5)
    const pieces: Array<Buffer> = []
    for (let at = 0, k = 1; at < data.length; k = (k * 7 + 3) % 5000 + 1) {
      pieces.push(Buffer.from(data.subarray(at, at + k)))
      at += k
    }
    const seen = new Set<ArrayBufferLike>()
    // Returns the engine's own bytes (allowed), so a buffer handed out again before its
    // segment was written would show up as wrong output.
    const identity: ChunkProcessor = {
      ...xorTransform(),
      name: "test-identity",
      init: () => Effect.succeed({}),
      process: (chunk, bytes) =>
        Effect.sync(() => {
          seen.add(bytes.buffer)
          return bytes
        }).pipe(Effect.delay(`${chunk.index % 3} millis`)),
      finalize: () => Effect.succeed({})
    }
    // A sink that copies what it is given only 2 ms later.
    const memory = ChunkOutput.toMemory()
    const slow: ChunkOutput.ChunkOutput = { ...memory, write: (buffers) => Effect.andThen(Effect.sleep("2 millis"), memory.write(buffers)) }
    const summary = await run(runPipeline({ input: ChunkInput.fromStream(Readable.from(pieces)), output: slow, pipeline: [identity], chunkBytes: 1024, segmentBytes: 4096, inFlight: 4 }))
    expect(Buffer.from(memory.bytes())).toEqual(Buffer.from(data))
    expect(summary.totalChunks).toBe(Math.ceil(data.length / 1024))
    // 51 segments through at most one buffer per segment in flight plus the one being read.
    expect(seen.size).toBeLessThanOrEqual(5)
  })
})

describe("descriptors (stdin from a file, stdout to a file or /dev/null)", () => {
  const sizes = [0, 1, 63, 64, 65, 1000, 3 * 64 * 1024 + 5]
  it.for(sizes)("%i bytes read from a descriptor's own offset and written at another's, through the engine", async (size) => {
    const data = pseudoRandom(size, size + 17)
    const src = path.join(dir, "in")
    // 5 bytes before the input that an earlier reader of the descriptor consumed.
    fs.writeFileSync(src, Buffer.concat([Buffer.from("skip!"), data]))
    const out = path.join(dir, "out")
    fs.writeFileSync(out, "kept:")
    const inFd = fs.openSync(src, "r")
    const outFd = fs.openSync(out, "a")
    try {
      fs.readSync(inFd, Buffer.alloc(5), 0, 5, null)
      const summary = await run(runPipeline({ input: ChunkInput.fromDescriptor(inFd, "stdin"), output: ChunkOutput.toDescriptor(outFd, "stdout"), pipeline: [xorTransform()], chunkBytes: 64, segmentBytes: 64 * 3 }))
      expect(summary.bytesProcessed).toBe(size)
      expect(fs.readFileSync(out)).toEqual(Buffer.concat([Buffer.from("kept:"), xorReference(data, 64)]))
      // The caller's descriptors stay open.
      expect(fs.fstatSync(inFd).isFile()).toBe(true)
      expect(fs.fstatSync(outFd).isFile()).toBe(true)
    } finally {
      fs.closeSync(inFd)
      fs.closeSync(outFd)
    }
  })
  it("the file behind a descriptor, read from its start in direct mode whatever its offset; the descriptor stays open", async () => {
    const data = pseudoRandom(64 * 7 + 5, 8)
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    const fd = fs.openSync(src, "r")
    try {
      fs.readSync(fd, Buffer.alloc(9), 0, 9, null)
      const input = await run(ChunkInput.fromOpenFile(fd, "stdin"))
      expect(input).toMatchObject({ description: "stdin", size: data.length, randomAccess: true, fd })
      const { processor, calls } = xorDirect()
      const out = path.join(dir, "out")
      await run(runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [processor], chunkBytes: 64, segmentBytes: 128 }).pipe(Effect.ensuring(input.close())))
      expect(calls.direct).toBeGreaterThan(0)
      expect(calls.process).toBe(0)
      expect(fs.readFileSync(out)).toEqual(xorReference(data, 64))
      expect(fs.fstatSync(fd).size).toBe(data.length)
    } finally {
      fs.closeSync(fd)
    }
    const devnull = fs.openSync("/dev/null", "r")
    try {
      expect(failureOf(await runExit(ChunkInput.fromOpenFile(devnull, "stdin")))).toMatchObject({ _tag: "IoError", path: "stdin", detail: "not a regular file" })
      expect(fs.fstatSync(devnull).isCharacterDevice()).toBe(true)
    } finally {
      fs.closeSync(devnull)
    }
  })
  it("writes to /dev/null, and a read error names the descriptor's description", async () => {
    const devnull = fs.openSync("/dev/null", "w")
    try {
      const sink = ChunkOutput.toDescriptor(devnull, "stdout")
      await run(runPipeline({ input: ChunkInput.fromBytes(pseudoRandom(5000)), output: sink, pipeline: [xorTransform()], chunkBytes: 64 }))
      expect(sink.position()).toBe(xorReference(pseudoRandom(5000), 64).length)
      // A descriptor open for writing only cannot be read: EBADF, reported as an IoError on "stdin".
      const e = failureOf(await runExit(runPipeline({ input: ChunkInput.fromDescriptor(devnull, "stdin"), output: ChunkOutput.toMemory(), pipeline: [xorTransform()], chunkBytes: 64 })))
      expect(e).toMatchObject({ _tag: "IoError", path: "stdin" })
    } finally {
      fs.closeSync(devnull)
    }
  })
})

describe("snapshots in checkpoints", () => {
  const counter = (): ChunkProcessor => {
    let count = 0
    return {
      name: "test-counter",
      version: "1.0.0",
      apiVersion: 1,
      capabilities: { kind: "observer", ordered: true },
      options: {},
      init: (ctx) => Effect.sync(() => { count = ctx.resume ? (ctx.resume as { count: number }).count : 0 }),
      // slow down processing so several segments are processed ahead of the writer
      process: () => Effect.sync(() => { count++; return undefined }),
      snapshot: () => ({ count }),
      finalize: () => Effect.sync(() => ({ result: count }))
    }
  }
  it("a checkpoint holds each processor's state as of the last written segment, with many segments in flight", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, pseudoRandom(60_000, 3))
    const out = path.join(dir, "out")
    const ckpt = path.join(dir, "ckpt")
    const attempt = (failAt?: number) => runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [counter(), xorTransform(0x5a, { failAt })], chunkBytes: 100, segmentBytes: 200, inFlight: 4, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } })
    }))
    expect(Exit.isFailure(await attempt(431))).toBe(true)
    const c = JSON.parse(fs.readFileSync(ckpt, "utf8"))
    expect(c.state["0:test-counter"].count).toBe(c.completed[0][1])
    const done = await attempt()
    expect(Exit.isSuccess(done) && done.value.results["test-counter"]).toBe(600)
    expect(fs.readFileSync(out)).toEqual(xorReference(pseudoRandom(60_000, 3), 100))
  })
  it("refuses a framing processor after a transform, and a header writer before a transform", async () => {
    const framer: ChunkProcessor = { ...xorTransform(), name: "framer", init: (ctx) => Effect.succeed({ framing: { headerBytes: 0, chunkBytes: ctx.chunkBytes, shortFinal: true } }) }
    const e1 = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), pipeline: [xorTransform(), framer], chunkBytes: 4 }))) as Error
    expect(e1.message).toContain("cannot come after the transform test-xor")
    const e2 = failureOf(await runExit(runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(10)), pipeline: [xorTransform(), { ...xorTransform(), name: "second" }], chunkBytes: 4 }))) as Error
    expect(e2.message).toContain("must be the last transform")
  })
})

describe("non-resumable transforms", () => {
  it("a checkpoint of a pipeline with a transform that cannot snapshot itself is refused on resume", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, pseudoRandom(20_000, 5))
    const out = path.join(dir, "out")
    const ckpt = path.join(dir, "ckpt")
    const stuck = (failAt?: number): ChunkProcessor => ({ ...xorTransform(0x5a, { failAt }), capabilities: { kind: "transform", ordered: true, resumable: false } })
    const attempt = (failAt?: number) => runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [stuck(failAt)], chunkBytes: 100, segmentBytes: 200, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } })
    }))
    expect(Exit.isFailure(await attempt(150))).toBe(true)
    const e = failureOf(await attempt()) as ResumeRefused
    expect(e.reason).toBe("NotResumable")
    expect(e.message).toContain("test-xor cannot continue")
  })
  it("a deterministic one is replayed instead, and the output is the one-run output", async () => {
    const src = path.join(dir, "in")
    const data = pseudoRandom(20_000, 6)
    fs.writeFileSync(src, data)
    const out = path.join(dir, "out")
    const ckpt = path.join(dir, "ckpt")
    const replayable = (failAt?: number): ChunkProcessor => ({ ...xorTransform(0x5a, { failAt }), capabilities: { kind: "transform", ordered: true, resumable: false, deterministic: true } })
    const attempt = (failAt?: number) => runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [replayable(failAt)], chunkBytes: 100, segmentBytes: 200, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } })
    }))
    expect(Exit.isFailure(await attempt(150))).toBe(true)
    const done = await attempt()
    expect(Exit.isSuccess(done) && done.value.resumedFrom).toBeGreaterThan(0)
    expect(fs.readFileSync(out)).toEqual(xorReference(data, 100))
  })
})

describe("checkpoint size", () => {
  it("a checkpoint of a 10 GB run with an AGCM-shaped pipeline and snapshot stays under 1 KB", async () => {
    const file = path.join(dir, "big.ckpt")
    const store = Checkpoint.makeFileStore()
    const doc: Checkpoint.Checkpoint = {
      format: "cage-checkpoint",
      version: 1,
      source: { path: "/var/backups/database-dump-2026-11-21.sql", size: 10e9, mtimeNs: "1795297328502081326", ctimeNs: "1795297328502081326", ino: "2156258123", dev: "65024" },
      output: "/var/backups/database-dump-2026-11-21.sql.agcm",
      chunkBytes: 65536,
      pipeline: [{ name: "json-validate", version: "1.0.0", options: { format: "ndjson", maxDepth: 1024 } }, { name: "agcm-encrypt", version: "2.0.0", options: { keyMode: "scrypt", chunkSize: 65536 } }],
      completed: [[0, 152587]],
      outputBytes: 9_999_991_234,
      inputBytes: 9_999_990_784,
      state: { "1:agcm-encrypt": { format: "agcm-v2", chunkSize: 65536, keyMode: "scrypt", salt: "ab".repeat(24), scryptLogN: 17, scryptSalt: "cd".repeat(16), commitment: "ef".repeat(32) } },
      updatedAt: new Date().toISOString()
    }
    await run(store.save(file, doc))
    expect(fs.statSync(file).size).toBeLessThan(1024)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    const back = await run(store.load(file))
    expect(back._tag === "Some" && back.value.completed).toEqual([[0, 152587]])
  })
})

describe("direct mode", () => {
  const fileRun = (src: string, out: string, pipeline: Array<ChunkProcessor>, cs: number, checkpoint?: { path: string; mode: "resume" | "fresh"; intervalMs: number }) =>
    runExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline, chunkBytes: cs, segmentBytes: 3 * cs, inFlight: 3, checkpoint }).pipe(Effect.ensuring(input.close()))
    }))

  it("a lone direct transform, file to file, reads and writes positionally: same bytes at every boundary size", async () => {
    const cs = 64
    for (const size of [0, 1, cs - 1, cs, cs + 1, 2 * cs - 1, 2 * cs, 2 * cs + 1, 3 * cs, 3 * cs + 1, 10 * cs + 7]) {
      const data = pseudoRandom(size, size + 1)
      const src = path.join(dir, `in-${size}`)
      const out = path.join(dir, `out-${size}`)
      fs.writeFileSync(src, data)
      const { processor, calls } = xorDirect()
      const exit = await fileRun(src, out, [processor], cs)
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(fs.readFileSync(out)).toEqual(xorReference(data, cs))
      if (Exit.isSuccess(exit)) expect(exit.value.outputBytes).toBe(xorReference(data, cs).length)
      expect(calls.process).toBe(0)
      expect(calls.direct).toBe(Math.ceil(Math.ceil(size / cs) / 3))
    }
  })

  it("a declared output chunk size that is not a positive integer is a UsageError, and nothing is published", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, pseudoRandom(1000, 4))
    for (const outputChunkBytes of [0, -1, 1.5, Number.NaN]) {
      const { processor } = xorDirect()
      const bad: ChunkProcessor = { ...processor, init: (c) => processor.init(c).pipe(Effect.map((r) => ({ ...r, direct: { outputChunkBytes } }))) }
      const out = path.join(dir, "out")
      const e = failureOf(await fileRun(src, out, [bad], 100))
      expect(e, String(outputChunkBytes)).toMatchObject({ _tag: "UsageError", reason: "Processor", detail: `test-xor-direct declared direct output chunks of ${outputChunkBytes} bytes; a positive integer is needed` })
      expect(fs.readdirSync(dir)).toEqual(["in"])
    }
  })

  it("is not taken with another processor in the pipeline, or a memory output", async () => {
    const data = pseudoRandom(1000, 3)
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    const a = xorDirect()
    const obs = sha256Observer()
    const exit = await fileRun(src, path.join(dir, "out"), [obs, a.processor], 100)
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(a.calls.direct).toBe(0)
    expect(a.calls.process).toBe(10)
    expect(fs.readFileSync(path.join(dir, "out"))).toEqual(xorReference(data, 100))
    const b = xorDirect()
    const mem = ChunkOutput.toMemory()
    await run(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: mem, pipeline: [b.processor], chunkBytes: 100 })
    }))
    expect(b.calls.direct).toBe(0)
    expect(Buffer.from(mem.bytes())).toEqual(xorReference(data, 100))
  })

  it("a processor failure names the chunk, an IoError passes through as is, and nothing is published", async () => {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, pseudoRandom(5000, 9))
    const out = path.join(dir, "out")
    const e1 = failureOf(await fileRun(src, out, [xorDirect(0x5a, { failAt: 17 }).processor], 100))
    expect(e1).toBeInstanceOf(ProcessorError)
    expect((e1 as ProcessorError).chunk).toBe(15) // the segment's first chunk (segments of 3)
    expect(fs.existsSync(out)).toBe(false)
    expect(fs.existsSync(out + ".partial")).toBe(false)
    const e2 = failureOf(await fileRun(src, out, [xorDirect(0x5a, { ioFailAt: 20 }).processor], 100))
    expect((e2 as { _tag: string })._tag).toBe("IoError")
    expect((e2 as Error).message).toContain(out)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("an ordered transform is never run in direct mode (its segments would overlap)", async () => {
    const data = pseudoRandom(1000, 5)
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    const a = xorDirect()
    const ordered: ChunkProcessor = { ...a.processor, capabilities: { ...a.processor.capabilities, ordered: true } }
    const exit = await fileRun(src, path.join(dir, "out"), [ordered], 100)
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(a.calls.direct).toBe(0)
    expect(fs.readFileSync(path.join(dir, "out"))).toEqual(xorReference(data, 100))
  })

  /** A 50,000-byte input file and the output and checkpoint names of a resume case. */
  const resumeCase = (seed: number) => {
    const data = pseudoRandom(50_000, seed)
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    return { data, src, out: path.join(dir, "out"), ckpt: path.join(dir, "out.checkpoint.json") }
  }

  it("a resume whose header length differs from the checkpointed layout is refused, the partial untouched", async () => {
    const { src, out, ckpt } = resumeCase(8)
    expect(Exit.isFailure(await fileRun(src, out, [xorDirect(0x5a, { failAt: 321 }).processor], 100, { path: ckpt, mode: "resume", intervalMs: 0 }))).toBe(true)
    const partial = fs.readFileSync(out + ".partial")
    // The same processor, but it returns no header when resuming.
    const { processor } = xorDirect()
    const noHeader: ChunkProcessor = { ...processor, init: (c) => Effect.map(processor.init(c), (r) => ({ ...r, header: undefined })) }
    const e = failureOf(await fileRun(src, out, [noHeader], 100, { path: ckpt, mode: "resume", intervalMs: 0 }))
    expect(e).toBeInstanceOf(ResumeRefused)
    expect((e as ResumeRefused).message).toContain("after a 0-byte header")
    expect(fs.readFileSync(out + ".partial")).toEqual(partial)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("an interrupted direct run resumes from its checkpoint to the one-run output", async () => {
    const { data, src, out, ckpt } = resumeCase(42)
    const first = await fileRun(src, out, [xorDirect(0x5a, { failAt: 321 }).processor], 100, { path: ckpt, mode: "resume", intervalMs: 0 })
    expect(failureOf(first)).toBeInstanceOf(ProcessorError)
    const c = JSON.parse(fs.readFileSync(ckpt, "utf8"))
    expect(c.completed[0][1]).toBeGreaterThan(0)
    // Segments past the checkpoint may already be on disk: the resume truncates and redoes them.
    expect(fs.statSync(out + ".partial").size).toBeGreaterThanOrEqual(c.outputBytes)
    const again = xorDirect()
    const second = await fileRun(src, out, [again.processor], 100, { path: ckpt, mode: "resume", intervalMs: 0 })
    expect(Exit.isSuccess(second)).toBe(true)
    if (Exit.isSuccess(second)) expect(second.value.resumedFrom).toBe(c.completed[0][1])
    expect(again.calls.process).toBe(0)
    expect(fs.readFileSync(out)).toEqual(xorReference(data, 100))
    expect(fs.existsSync(ckpt)).toBe(false)
  })
})

describe("runDirectChunks: chunks [from, to) of a file in direct mode", () => {
  const cs = 64
  const data = pseudoRandom(10 * cs + 7, 21) // 11 chunks, the last one short
  const reference = xorReference(data, cs)
  /** Where chunk i's output lies in `reference` (after the 2-byte header). */
  const outputOf = (i: number) => [2 + i * (cs + 1), 2 + i * (cs + 1) + Math.min(cs, data.length - i * cs) + 1] as const
  const plan = ChunkSpec.planRegion(data.length, { headerBytes: 0, chunkBytes: cs, shortFinal: true })

  const withFiles = async <A>(body: (fds: { input: number; out: number; outPath: string }) => Promise<A>) => {
    const src = path.join(dir, "in")
    const outPath = path.join(dir, "out.partial")
    fs.writeFileSync(src, data)
    fs.writeFileSync(outPath, Buffer.alloc(reference.length - 1, 0xff))
    const input = fs.openSync(src, "r")
    const out = fs.openSync(outPath, "r+")
    try {
      return await body({ input, out, outPath })
    } finally {
      fs.closeSync(input)
      fs.closeSync(out)
    }
  }
  const initOf = (p: ChunkProcessor) => run(p.init({ input: "in", inputSize: data.length, chunkBytes: cs, readHeader: () => Effect.succeed(new Uint8Array(0)), resume: undefined }).pipe(Effect.map((r) => r ?? {})))

  it("writes exactly the range's chunks at their offsets, for every range and segment size", async () => {
    await withFiles(async ({ input, out, outPath }) => {
      for (const segmentBytes of [cs, 2 * cs, 3 * cs - 1, 1000]) {
        const per = Math.max(1, Math.floor(segmentBytes / cs))
        for (let from = 0; from <= plan.totalChunks; from++) {
          for (let to = from; to <= plan.totalChunks; to++) {
            fs.writeSync(out, Buffer.alloc(reference.length - 1, 0xff), 0, reference.length - 1, 0)
            const { processor, calls } = xorDirect()
            const init = await initOf(processor)
            await run(runDirectChunks({ processor, init, plan, from, to, input: { fd: input, description: "in" }, output: { fd: out, path: outPath, base: 2 }, segmentBytes }))
            const expected = Buffer.alloc(reference.length - 1, 0xff)
            for (let i = from; i < to; i++) reference.copy(expected, outputOf(i)[0], ...outputOf(i))
            expect(fs.readFileSync(outPath), `chunks ${from}..${to}, ${segmentBytes}-byte segments`).toEqual(expected)
            expect(calls.direct).toBe(Math.ceil((to - from) / per))
            expect(calls.process).toBe(0)
          }
        }
      }
    })
  })

  it("runs at most inFlight calls at once, and reads after a header when the plan has one", async () => {
    await withFiles(async ({ input, out, outPath }) => {
      const { processor: inner } = xorDirect()
      let active = 0
      let most = 0
      const processor: ChunkProcessor = {
        ...inner,
        processDirect: (chunks, at) =>
          Effect.gen(function*() {
            most = Math.max(most, ++active)
            yield* Effect.sleep("5 millis")
            yield* inner.processDirect!(chunks, at)
            active--
          })
      }
      const init = await initOf(processor)
      await run(runDirectChunks({ processor, init, plan, from: 0, to: plan.totalChunks, input: { fd: input, description: "in" }, output: { fd: out, path: outPath, base: 2 }, segmentBytes: cs, inFlight: 3 }))
      expect(most).toBe(3)
      // Every chunk; the header is the caller's to write.
      expect(fs.readFileSync(outPath)).toEqual(Buffer.concat([Buffer.from([0xff, 0xff]), reference.subarray(2, reference.length - 1)]))
      // The same bytes as the region after a 100-byte header: chunk c is read at 100 + c.start.
      const headed = path.join(dir, "headed")
      fs.writeFileSync(headed, Buffer.concat([Buffer.alloc(100, 7), data]))
      const fd = fs.openSync(headed, "r")
      try {
        fs.writeSync(out, Buffer.alloc(reference.length - 1, 0xff), 0, reference.length - 1, 0)
        const after = ChunkSpec.planRegion(data.length, { headerBytes: 100, chunkBytes: cs, shortFinal: true })
        await run(runDirectChunks({ processor: inner, init, plan: after, from: 3, to: 5, input: { fd, description: "headed" }, output: { fd: out, path: outPath, base: 2 } }))
        const expected = Buffer.alloc(reference.length - 1, 0xff)
        reference.copy(expected, outputOf(3)[0], outputOf(3)[0], outputOf(4)[1])
        expect(fs.readFileSync(outPath)).toEqual(expected)
      } finally {
        fs.closeSync(fd)
      }
    })
  })

  it("a failure names the segment's first chunk, an IoError passes through, and no direct mode or a range outside the plan is a UsageError", async () => {
    await withFiles(async ({ input, out, outPath }) => {
      const go = (processor: ChunkProcessor, init: InitResult, from: number, to: number) =>
        runExit(runDirectChunks({ processor, init, plan, from, to, input: { fd: input, description: "in" }, output: { fd: out, path: outPath, base: 2 }, segmentBytes: 3 * cs }))
      const failing = xorDirect(0x5a, { failAt: 7 }).processor
      const e1 = failureOf(await go(failing, await initOf(failing), 1, 11))
      expect(e1).toBeInstanceOf(ProcessorError)
      expect(e1).toMatchObject({ processor: "test-xor-direct", phase: "process", chunk: 7 }) // segments 1-3, 4-6, 7-9
      const io = xorDirect(0x5a, { ioFailAt: 2 }).processor
      expect(failureOf(await go(io, await initOf(io), 0, 11))).toMatchObject({ _tag: "IoError", reason: "NoSpace", path: outPath })
      const ok = xorDirect().processor
      const init = await initOf(ok)
      expect(failureOf(await go(xorTransform(), {}, 0, 1))).toMatchObject({ _tag: "UsageError", reason: "Processor" })
      expect(failureOf(await go(ok, {}, 0, 1))).toMatchObject({ _tag: "UsageError", reason: "Processor" })
      // The engine's own check of a declared output chunk size, as for a whole run.
      expect(failureOf(await go(ok, { direct: { outputChunkBytes: 0 } }, 0, 1))).toMatchObject({ _tag: "UsageError", detail: "test-xor-direct declared direct output chunks of 0 bytes; a positive integer is needed" })
      for (const [from, to] of [[-1, 2], [3, 2], [0, 12], [0.5, 2]]) {
        expect(failureOf(await go(ok, init, from, to)), `${from}..${to}`).toMatchObject({ _tag: "UsageError", detail: `chunks ${from} to ${to} are not within the 11 chunks of in` })
      }
    })
  })
})
