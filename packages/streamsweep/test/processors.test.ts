import { ChunkInput, type ChunkProcessor, ChunkSpec, ProcessorError, runPipeline } from "@cage/core"
import { describeProcessorConformance } from "@cage/testkit"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { inspect, jsonIndex, jsonIndexFactory, jsonValidate, jsonValidateFactory, validateBytes } from "../src/index.js"
import { largeNdjson, ndjsonInput } from "./support.js"

describeProcessorConformance("json-validate", () => jsonValidate({ format: "ndjson" }), {
  input: ndjsonInput,
  largeInput: largeNdjson,
  largeInputBytes: 64 << 20
})

describeProcessorConformance("json-index", () => jsonIndex({ format: "ndjson" }), {
  input: ndjsonInput,
  largeInput: largeNdjson,
  largeInputBytes: 16 << 20
})

const enc = (s: string) => new TextEncoder().encode(s)
const vectors = fileURLToPath(new URL("../../../../shared/vectors/jsontestsuite/", import.meta.url))

/** Drives a processor by hand over `data` in chunks of `chunkBytes`; returns its result or its error. */
const drive = (p: ChunkProcessor, data: Uint8Array, chunkBytes: number) =>
  Effect.runSync(Effect.gen(function*() {
    yield* p.init({ input: "mem", inputSize: data.length, chunkBytes, readHeader: () => Effect.succeed(new Uint8Array(0)), resume: undefined })
    for (const c of ChunkSpec.planChunks(data.length, chunkBytes).chunks()) yield* p.process(c, data.slice(c.start, c.end))
    return (yield* p.finalize({ plan: ChunkSpec.planChunks(data.length, chunkBytes), inputBytes: data.length }))?.result
  }).pipe(Effect.result))

describe("json-validate", () => {
  it("gives validateBytes' verdict on every JSONTestSuite case, at chunk sizes 1, 3 and 64", () => {
    for (const file of fs.readdirSync(vectors).filter((f) => f.endsWith(".json"))) {
      const data = new Uint8Array(fs.readFileSync(vectors + file))
      const expected = validateBytes(data)
      for (const size of [1, 3, 64]) {
        const r = drive(jsonValidate(), data, size)
        if (expected === undefined) expect(r._tag, file).toBe("Success")
        else expect(r._tag === "Failure" ? r.failure : undefined, file).toMatchObject({ _tag: "JsonSyntaxError", offset: expected.offset, reason: expected.reason })
      }
    }
  })

  it("fails a pipeline with ProcessorError (exit code 3) at the chunk holding the error", async () => {
    const data = enc(`[${"1,".repeat(100)}x]`)
    const error = await Effect.runPromise(Effect.flip(runPipeline({ input: ChunkInput.fromBytes(data), pipeline: [jsonValidate()], chunkBytes: 16 })))
    expect(error).toBeInstanceOf(ProcessorError)
    expect(error).toMatchObject({ processor: "json-validate", phase: "process", chunk: Math.floor(201 / 16), exitCode: 3 })
  })

  it("reports the validation result through runPipeline", async () => {
    const data = ndjsonInput(10_000, 3)
    const summary = await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(data), pipeline: [jsonValidate({ format: "ndjson" })], chunkBytes: 999 }))
    expect(summary.results["json-validate"]).toMatchObject({ valid: true, bytes: 10_000, format: "ndjson", maxDepth: 5 })
  })

  it("refuses bad options with usage errors", () => {
    const init = (p: ChunkProcessor, resume: unknown) =>
      Effect.runSync(Effect.flip(p.init({ input: "mem", inputSize: 1, chunkBytes: 1, readHeader: () => Effect.succeed(new Uint8Array(0)), resume: resume as never })))
    expect(init(jsonValidate({ maxDepth: -1 }), undefined)).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option", exitCode: 2 })
    expect(init(jsonValidate({ format: "xml" as never }), undefined)).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Format" })
    expect(init(jsonIndex({ exactKeyLimit: -1 }), undefined)).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option" })
  })

  it("exports factories", () => {
    expect(jsonValidateFactory.make({}).name).toBe("json-validate")
    expect(jsonIndexFactory.make({}).name).toBe("json-index")
    expect(jsonValidateFactory.capabilities).toMatchObject({ kind: "observer", ordered: true })
  })
})

describe("json-index", () => {
  it("gives inspect's metadata at every chunk size and writes the sidecar index", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streamsweep-"))
    const data = enc(JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ i, s: "é".repeat(i), a: { b: [i, { c: i % 3 === 0 }] } }))).replace("{\"i\":3,", "{\"i\":3,\"i\":3,"))
    const expected = await Effect.runPromise(inspect(ChunkInput.fromBytes(data, "mem"), { indexPath: path.join(dir, "ref.idx") }))
    for (const size of [1, 7, 64, 4096]) {
      const indexPath = path.join(dir, `${size}.idx`)
      const r = drive(jsonIndex({ indexPath }), data, size)
      expect(r._tag).toBe("Success")
      const { input: _input, ...rest } = expected
      expect(r._tag === "Success" ? r.success : undefined).toEqual({ ...rest, index: indexPath })
      expect(fs.readFileSync(indexPath, "utf8")).toBe(fs.readFileSync(path.join(dir, "ref.idx"), "utf8"))
      expect(fs.existsSync(`${indexPath}.partial`)).toBe(false)
    }
    expect(expected.anomalies.duplicateKeys.count).toBe(1)
  })

  it("removes its partial index when the input is invalid", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streamsweep-"))
    const indexPath = path.join(dir, "bad.idx")
    const error = await Effect.runPromise(Effect.flip(runPipeline({ input: ChunkInput.fromBytes(enc("[1, 2, }")), pipeline: [jsonIndex({ indexPath })], chunkBytes: 3 })))
    expect(error).toMatchObject({ _tag: "ProcessorError", exitCode: 3 })
    expect(fs.readdirSync(dir)).toEqual([])
  })
})
