// Stages: a processor that frames its own input after a transform with other output lengths.
import { Effect, Exit } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { ChunkInput, ChunkOutput, type ChunkProcessor, type Progress, PROCESSOR_API_VERSION, runPipeline, stagesOf, stagesResume, Telemetry } from "../src/index.js"
import { pseudoRandom, sha256Observer, xorTransform } from "./helpers.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-stages-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

/** A variable-length transform: chunk i comes out (i % 3) times, and 0 times every 5th chunk. */
const stretch = (opts: { failAt?: number; deterministic?: boolean } = {}): ChunkProcessor => ({
  name: "test-stretch",
  version: "1.0.0",
  apiVersion: PROCESSOR_API_VERSION,
  // Unordered on purpose: segments finish out of order, the pipe must still get them in order.
  capabilities: { kind: "transform", ordered: false, deterministic: opts.deterministic ?? false },
  options: {},
  init: () => Effect.void,
  process: (chunk, data) =>
    chunk.index === opts.failAt
      ? Effect.fail(new Error(`stretch failed at ${chunk.index}`))
      : Effect.promise(async () => {
        await new Promise((r) => setTimeout(r, (chunk.index * 7) % 3))
        const times = chunk.index % 5 === 4 ? 0 : (chunk.index % 3) + 1
        return Buffer.concat(Array.from({ length: times }, () => data))
      }),
  finalize: () => Effect.void
})

const stretchReference = (input: Uint8Array, cs: number) => {
  const parts: Array<Uint8Array> = []
  for (let i = 0; i * cs < input.length; i++) {
    const c = input.subarray(i * cs, Math.min(input.length, (i + 1) * cs))
    const times = i % 5 === 4 ? 0 : (i % 3) + 1
    for (let t = 0; t < times; t++) parts.push(c)
  }
  return Buffer.concat(parts)
}

/** A cipher-like framer: fixed chunks of `chunkBytes` with C2SP's short final chunk, a header, each chunk prefixed by its index. */
const framer = (chunkBytes: number, opts: { failAt?: number } = {}): ChunkProcessor => ({
  name: "test-framer",
  version: "1.0.0",
  apiVersion: PROCESSOR_API_VERSION,
  capabilities: { kind: "transform", ordered: false, framesInput: true },
  options: { chunkBytes },
  init: () => Effect.succeed({ framing: { headerBytes: 0, chunkBytes, shortFinal: true }, header: Buffer.from("HDR") }),
  process: (chunk, data) =>
    chunk.index === opts.failAt
      ? Effect.fail(new Error(`framer failed at ${chunk.index}`))
      : Effect.sync(() => {
        if (chunk.final ? data.length >= chunkBytes : data.length !== chunkBytes) throw new Error(`chunk ${chunk.index} has ${data.length} bytes`)
        return Buffer.concat([Buffer.from([chunk.index & 0xff]), data])
      }),
  finalize: () => Effect.void
})

const framerReference = (input: Uint8Array, chunkBytes: number) => {
  const parts: Array<Uint8Array> = [Buffer.from("HDR")]
  const n = Math.floor(input.length / chunkBytes) + 1
  for (let i = 0; i < n; i++) parts.push(Buffer.from([i & 0xff]), input.subarray(i * chunkBytes, Math.min(input.length, (i + 1) * chunkBytes)))
  return Buffer.concat(parts)
}

const runFile = (data: Uint8Array, pipeline: ReadonlyArray<ChunkProcessor>, o: { chunkBytes?: number; segmentBytes?: number; inFlight?: number } = {}) =>
  Effect.runPromiseExit(Effect.gen(function*() {
    const src = path.join(dir, "in")
    fs.writeFileSync(src, data)
    fs.rmSync(path.join(dir, "out"), { force: true })
    const input = yield* ChunkInput.fromFile(src)
    return yield* runPipeline({ input, output: ChunkOutput.toFile(path.join(dir, "out")), pipeline, ...o }).pipe(Effect.ensuring(input.close()))
  }))

/** `data` as the input file, and runs over it that checkpoint after every segment. */
const checkpointed = (data: Uint8Array) => {
  const src = path.join(dir, "in")
  const out = path.join(dir, "out")
  const ckpt = path.join(dir, "out.ckpt")
  fs.writeFileSync(src, data)
  const attempt = (pipeline: ReadonlyArray<ChunkProcessor>) => Effect.runPromiseExit(Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(src)
    return yield* runPipeline({ input, output: ChunkOutput.toFile(out), pipeline, chunkBytes: 64, segmentBytes: 512, inFlight: 2, checkpoint: { path: ckpt, mode: "resume", intervalMs: 0 } }).pipe(Effect.ensuring(input.close()))
  }))
  return { out, ckpt, attempt }
}

describe("stagesOf", () => {
  it("cuts before a processor that frames its input and follows a transform, nowhere else", () => {
    const names = (stages: ReadonlyArray<ReadonlyArray<ChunkProcessor>>) => stages.map((s) => s.map((p) => p.name))
    expect(names(stagesOf([stretch(), framer(100)]))).toEqual([["test-stretch"], ["test-framer"]])
    expect(names(stagesOf([sha256Observer(), framer(100)]))).toEqual([["test-sha256", "test-framer"]])
    expect(names(stagesOf([framer(100), stretch()]))).toEqual([["test-framer", "test-stretch"]])
    expect(names(stagesOf([stretch(), sha256Observer(), framer(100), sha256Observer()]))).toEqual([["test-stretch", "test-sha256"], ["test-framer", "test-sha256"]])
  })
})

describe("a framer after a variable-length transform: the engine re-chunks between them", () => {
  it("gives the bytes of the transform's whole output cut into the framer's chunks, for any sizes", async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 900 }), fc.integer({ min: 1, max: 4 }),
      async (drawn, cs1, cs2, inFlight) => {
        // At most 300 chunks a stage: tiny chunk sizes with a 20,000-byte input made up to
        // 20,000 segments, and one run of 40 took from 16 s to over 60 s, by the draw.
        const size = Math.min(drawn, 300 * Math.min(cs1, cs2))
        const data = pseudoRandom(size, size + cs1)
        const exit = await runFile(data, [stretch(), framer(cs2)], { chunkBytes: cs1, segmentBytes: 3 * cs1, inFlight })
        if (!Exit.isSuccess(exit)) throw new Error(String(exit.cause))
        const middle = stretchReference(data, cs1)
        expect(fs.readFileSync(path.join(dir, "out")).equals(framerReference(middle, cs2))).toBe(true)
        expect(exit.value.stages).toEqual([
          { processors: ["test-stretch"], inputBytes: size, outputBytes: middle.length, totalChunks: Math.ceil(size / cs1) },
          { processors: ["test-framer"], inputBytes: middle.length, outputBytes: exit.value.outputBytes, totalChunks: Math.floor(middle.length / cs2) + 1 }
        ])
        expect(exit.value.bytesProcessed).toBe(size)
      }
    ), { numRuns: 40 })
  })
  it("runs boundary sizes around both chunk sizes", async () => {
    const cs1 = 64
    const cs2 = 100
    for (const size of [0, 1, cs1 - 1, cs1, cs1 + 1, cs2 - 1, cs2, cs2 + 1, 2 * cs2, 5 * cs1 + 3, 4096]) {
      const data = pseudoRandom(size, size)
      const exit = await runFile(data, [stretch(), framer(cs2)], { chunkBytes: cs1 })
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(fs.readFileSync(path.join(dir, "out")).equals(framerReference(stretchReference(data, cs1), cs2))).toBe(true)
    }
  })
  it("a failure in the first stage fails the run with it, and leaves no output", async () => {
    const exit = await runFile(pseudoRandom(50_000), [stretch({ failAt: 30 }), framer(100)], { chunkBytes: 64, segmentBytes: 256 })
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) && exit.cause)).toContain("stretch failed at 30")
    expect(fs.readdirSync(dir).sort()).toEqual(["in"])
  })
  it("a failure in the later stage fails the run with it, stops the first stage, and leaves no output", async () => {
    const exit = await runFile(pseudoRandom(500_000), [stretch(), framer(100, { failAt: 3 })], { chunkBytes: 64, segmentBytes: 256 })
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) && exit.cause)).toContain("framer failed at 3")
    expect(fs.readdirSync(dir).sort()).toEqual(["in"])
  })
  it("a framer without framesInput after a transform is still refused, naming the way out", async () => {
    const plain = { ...framer(100), capabilities: { kind: "transform" as const, ordered: false } }
    const exit = await runFile(pseudoRandom(1000), [xorTransform(), plain], { chunkBytes: 64 })
    expect(Exit.isFailure(exit) && String(exit.cause)).toContain("unless it declares capabilities.framesInput")
  })
  it("removes a checkpoint a staged run cannot use, and starts over", async () => {
    const ckpt = path.join(dir, "out.ckpt")
    fs.writeFileSync(ckpt, "{}")
    const data = pseudoRandom(10_000)
    const exit = await Effect.runPromiseExit(Effect.gen(function*() {
      const src = path.join(dir, "in")
      fs.writeFileSync(src, data)
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(path.join(dir, "out")), pipeline: [stretch(), framer(100)], chunkBytes: 64, checkpoint: { path: ckpt, mode: "resume" } }).pipe(Effect.ensuring(input.close()))
    }))
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(fs.existsSync(ckpt)).toBe(false)
    expect(fs.readFileSync(path.join(dir, "out")).equals(framerReference(stretchReference(data, 64), 100))).toBe(true)
  })
  it("resumes when the transforms before the cut are deterministic: the earlier stage runs again, the last continues its output", async () => {
    const data = pseudoRandom(60_000, 9)
    const { out, ckpt, attempt } = checkpointed(data)
    expect(stagesResume(stagesOf([stretch({ deterministic: true }), framer(100)]))).toBe(true)
    expect(stagesResume(stagesOf([stretch(), framer(100)]))).toBe(false)
    const first = await attempt([stretch({ deterministic: true }), framer(100, { failAt: 700 })])
    expect(Exit.isFailure(first)).toBe(true)
    const saved = JSON.parse(fs.readFileSync(ckpt, "utf8"))
    // The checkpoint describes the whole pipeline, and the last stage's own progress.
    expect(saved.pipeline.map((p: { name: string }) => p.name)).toEqual(["test-stretch", "test-framer"])
    expect(saved.completed[0][1]).toBeGreaterThan(0)
    const durable = fs.readFileSync(out + ".partial").subarray(0, saved.outputBytes)
    const second = await attempt([stretch({ deterministic: true }), framer(100)])
    if (!Exit.isSuccess(second)) throw new Error(String(second.cause))
    expect(second.value.resumedFrom).toBe(saved.completed[0][1])
    const whole = fs.readFileSync(out)
    expect(whole.equals(framerReference(stretchReference(data, 64), 100))).toBe(true)
    expect(whole.subarray(0, durable.length).equals(durable)).toBe(true)
    expect(fs.existsSync(ckpt)).toBe(false)
  })
  it("refuses to resume when an earlier stage's options changed (its bytes would differ)", async () => {
    const data = pseudoRandom(60_000, 10)
    const { attempt } = checkpointed(data)
    expect(Exit.isFailure(await attempt([stretch({ deterministic: true }), framer(100, { failAt: 700 })]))).toBe(true)
    const changed = { ...stretch({ deterministic: true }), options: { level: 9 } }
    const refused = await attempt([changed, framer(100)])
    expect(Exit.isFailure(refused) && String(refused.cause)).toContain("the options of test-stretch changed")
  })
})

describe("what a staged run tells its processors, its progress reporter and its telemetry", () => {
  it("init sees the whole pipeline: the processors before and after it, across stages", async () => {
    const seen: Record<string, { before: Array<string>; after: Array<string> }> = {}
    const spying = (p: ChunkProcessor): ChunkProcessor => ({
      ...p,
      init: (context) => {
        seen[p.name] = { before: (context.pipeline?.before ?? []).map((e) => e.name), after: (context.pipeline?.after ?? []).map((e) => e.name) }
        return p.init(context)
      }
    })
    const exit = await runFile(pseudoRandom(5000), [spying(stretch()), spying(sha256Observer()), spying(framer(100)), spying({ ...sha256Observer(), name: "tail" })], { chunkBytes: 64 })
    if (!Exit.isSuccess(exit)) throw new Error(String(exit.cause))
    expect(seen).toEqual({
      "test-stretch": { before: [], after: ["test-sha256", "test-framer", "tail"] },
      "test-sha256": { before: ["test-stretch"], after: ["test-framer", "tail"] },
      "test-framer": { before: ["test-stretch", "test-sha256"], after: ["tail"] },
      tail: { before: ["test-stretch", "test-sha256", "test-framer"], after: [] }
    })
  })

  it("reports every stage's input and output bytes as they advance, ending at the summary's figures", async () => {
    const data = pseudoRandom(40_000, 3)
    const reports: Array<ReadonlyArray<Progress.StageProgress>> = []
    const updates: Array<[number, number]> = []
    const exit = await Effect.runPromiseExit(Effect.gen(function*() {
      const src = path.join(dir, "in")
      fs.writeFileSync(src, data)
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({
        input,
        output: ChunkOutput.toFile(path.join(dir, "out")),
        pipeline: [stretch(), framer(100)],
        chunkBytes: 64,
        segmentBytes: 512,
        progress: { start: () => {}, update: (done, written) => void updates.push([done, written]), stop: () => {}, stages: (s) => void reports.push(s.map((x) => ({ ...x }))) }
      }).pipe(Effect.ensuring(input.close()))
    }))
    if (!Exit.isSuccess(exit)) throw new Error(String(exit.cause))
    const last = reports.at(-1)!
    expect(last.map((s) => s.processors)).toEqual([["test-stretch"], ["test-framer"]])
    // Each stage's final figures are the summary's; the reporter's own update is the first stage's input.
    expect(last.map((s) => [s.inputBytes, s.outputBytes])).toEqual(exit.value.stages!.map((s) => [s.inputBytes, s.outputBytes]))
    expect(updates.at(-1)).toEqual([data.length, exit.value.stages![0].outputBytes])
    for (let k = 0; k < 2; k++) {
      const series = reports.map((r) => r[k].inputBytes)
      expect(series.every((v, i) => i === 0 || v >= series[i - 1])).toBe(true)
    }
  })

  it("publishes one run per stage, each naming its stage, with its input and output bytes", async () => {
    const events: Array<Telemetry.TelemetryEvent> = []
    const exit = await Effect.runPromiseExit(Effect.gen(function*() {
      const src = path.join(dir, "in")
      fs.writeFileSync(src, pseudoRandom(9000, 4))
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(path.join(dir, "out")), pipeline: [stretch(), framer(100)], chunkBytes: 64 }).pipe(Effect.ensuring(input.close()))
    }).pipe(Effect.provide(Telemetry.layerCallback((e) => events.push(e)))))
    if (!Exit.isSuccess(exit)) throw new Error(String(exit.cause))
    const starts = events.filter((e) => e.type === "run_start")
    expect(starts.map((e) => [e.pipeline, e.stage])).toEqual(expect.arrayContaining([[["test-stretch"], { index: 0, of: 2 }], [["test-framer"], { index: 1, of: 2 }]]))
    expect(starts).toHaveLength(2)
    const ends = new Map(events.flatMap((e) => (e.type === "run_complete" ? [[e.runId, e] as const] : [])))
    for (const [k, start] of starts.sort((a, b) => (a.stage?.index ?? 0) - (b.stage?.index ?? 0)).entries()) {
      const end = ends.get(start.runId)!
      expect([end.ok, end.bytes, end.outputBytes]).toEqual([true, exit.value.stages![k].inputBytes, exit.value.stages![k].outputBytes])
    }
  })
})
