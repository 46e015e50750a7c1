import { ChunkInput, type ChunkProcessor, PROCESSOR_API_VERSION, runPipeline, Telemetry } from "@cage/core"
import { Effect, Fiber, PubSub, Schema, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { describe, expect, it } from "vitest"
import { AuditEvent, consume, fingerprint, layer, makeTranslator, makeWriter, readLogs, type AuditEventOf } from "../src/index.js"
import { durations, syntheticRun, tempDir } from "./helpers.js"

const lines = (path: string) => fs.readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l))

/** An observer that sees every chunk (stands in for a cipher). */
const observer: ChunkProcessor = {
  name: "test-observer", version: "1.0.0", apiVersion: PROCESSOR_API_VERSION,
  capabilities: { kind: "observer", ordered: false }, options: {},
  init: () => Effect.void, process: () => Effect.succeed(undefined), finalize: () => Effect.void
}

describe("audit log from core telemetry", () => {
  it("records a real engine run: run_start, every chunk, run_complete; Schema-valid; no plaintext or key", async () => {
    const dir = tempDir()
    const log = nodePath.join(dir, "audit.jsonl")
    const writer = makeWriter(log)
    const plaintext = randomBytes(10 * 4096 + 5)
    const secret = randomBytes(32).toString("hex")
    const recipient = `age1${secret}`
    await Effect.runPromise(
      runPipeline({ input: ChunkInput.fromBytes(plaintext, "in.bin"), pipeline: [observer], chunkBytes: 4096, segmentBytes: 4096 }).pipe(
        Effect.provide(layer(writer, { operation: "encrypt", strategy: "native", recipients: [fingerprint(recipient)] }))
      )
    )
    writer.close()
    const events = lines(log)
    expect(events.map((e) => e.type)).toEqual(["run_start", ...Array(11).fill("chunk"), "run_complete"])
    for (const e of events) expect(Schema.is(AuditEvent)(e)).toBe(true)
    expect(events[0]).toMatchObject({ operation: "encrypt", strategy: "native", input: "in.bin", pipeline: ["test-observer"], totalBytes: plaintext.length, recipients: [fingerprint(recipient)] })
    expect(events.slice(1, -1).map((e) => e.chunk).sort((a, b) => a - b)).toEqual([...Array(11).keys()])
    expect(events.at(-1)).toMatchObject({ ok: true, bytes: plaintext.length, chunks: 11 })
    const text = fs.readFileSync(log, "utf8")
    expect(text).not.toContain(secret)
    expect(text).not.toContain(plaintext.subarray(0, 16).toString("hex"))
    expect(text).not.toContain(plaintext.subarray(0, 16).toString("base64"))
    expect(fs.statSync(log).mode & 0o777).toBe(0o600)
  })

  it("consumes the PubSub telemetry stream (Telemetry.layerPubSub)", async () => {
    const dir = tempDir()
    const log = nodePath.join(dir, "audit.jsonl")
    const writer = makeWriter(log)
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const { pubsub } = yield* Telemetry.TelemetryEvents
      // Subscribe before the run starts, so no event can be missed; stop after the run ends.
      const subscription = yield* PubSub.subscribe(pubsub)
      const events = Stream.fromSubscription(subscription).pipe(Stream.takeUntil((e) => e.type === "run_complete"))
      const fiber = yield* Effect.forkChild(consume(events, writer, { operation: "decrypt" }))
      yield* runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(3 * 1000 + 1)), pipeline: [observer], chunkBytes: 1000 })
      yield* Fiber.join(fiber)
    })).pipe(Effect.provide(Telemetry.layerPubSub)))
    writer.close()
    expect(lines(log).map((e) => e.type)).toEqual(["run_start", "chunk", "chunk", "chunk", "chunk", "run_complete"])
    expect(lines(log)[0].operation).toBe("decrypt")
  })

  it("records a failed run with the failing chunk", async () => {
    const dir = tempDir()
    const log = nodePath.join(dir, "audit.jsonl")
    const writer = makeWriter(log)
    const failing: ChunkProcessor = { ...observer, process: (c) => (c.index === 2 ? Effect.fail(new Error("bad chunk")) : Effect.succeed(undefined)) }
    await Effect.runPromise(Effect.flip(
      runPipeline({ input: ChunkInput.fromBytes(new Uint8Array(5 * 100)), pipeline: [failing], chunkBytes: 100, segmentBytes: 100, inFlight: 1 }).pipe(
        Effect.provide(layer(writer, { operation: "validate" }))
      )
    ))
    writer.close()
    const events = lines(log)
    expect(events.find((e) => e.type === "chunk_failed")).toMatchObject({ chunk: 2 })
    expect(events.at(-1)).toMatchObject({ type: "run_complete", ok: false })
    expect(events.at(-1).error).toContain("bad chunk")
  })

  it("emits chunk_anomaly during the run, as soon as the measurement is complete", () => {
    const out: Array<AuditEvent> = []
    const translate = makeTranslator({ operation: "encrypt" }, (e) => out.push(e))
    for (const e of syntheticRun("r1", 100, 1 << 20, durations([40, 77, 99]))) translate(e)
    const anomalies = out.filter((e): e is AuditEventOf<"chunk_anomaly"> => e.type === "chunk_anomaly")
    expect(anomalies.map((a) => [a.chunk, a.span, a.direction])).toEqual([[40, 1, "slow"], [77, 1, "slow"], [99, 1, "slow"]])
    // Each chunk is its own measurement here: known complete when the next chunk arrives.
    for (const a of anomalies.slice(0, 2)) {
      const at = out.indexOf(a)
      expect(out[at - 1]).toMatchObject({ type: "chunk", chunk: a.chunk + 1 })
      expect(out[at + 1]).toMatchObject({ type: "chunk", chunk: a.chunk + 2 })
    }
    // The last chunk's anomaly comes out at the end of the run, before run_complete.
    expect(out.slice(-2).map((e) => e.type)).toEqual(["chunk_anomaly", "run_complete"])
  })

  it("counts a segment (chunks timed together) as one measurement", () => {
    const out: Array<AuditEvent> = []
    const translate = makeTranslator({ operation: "encrypt" }, (e) => out.push(e))
    // 40 segments of 16 chunks; the engine reports every chunk of a segment with the
    // segment's time and its average duration. Segment 30 is slow.
    const chunkBytes = 65536
    let t = 0
    translate({ type: "run_start", runId: "s", at: 0, input: "in", output: null, pipeline: ["p"], totalBytes: null, totalChunks: null, chunkBytes, resumedFrom: 0 })
    for (let seg = 0; seg < 40; seg++) {
      const segMs = seg === 30 ? 80 : 10 + (seg % 3)
      t += segMs
      for (let k = 0; k < 16; k++) translate({ type: "chunk_complete", runId: "s", at: t, chunk: seg * 16 + k, bytes: chunkBytes, outputBytes: chunkBytes, durationMs: segMs / 16 })
    }
    translate({ type: "run_complete", runId: "s", at: t, ok: true, bytes: 40 * 16 * chunkBytes, outputBytes: 0, chunks: 640, durationMs: t })
    const anomalies = out.filter((e): e is AuditEventOf<"chunk_anomaly"> => e.type === "chunk_anomaly")
    expect(anomalies.map((a) => [a.chunk, a.span])).toEqual([[480, 16]])
    expect(anomalies[0].throughputMBps).toBeCloseTo((16 * chunkBytes) / 80 / 1000, 6)
  })

  it("keeps detectors per run (interleaved runs do not mix)", () => {
    const out: Array<AuditEvent> = []
    const translate = makeTranslator({ operation: "encrypt" }, (e) => out.push(e))
    const fast = syntheticRun("fast", 60, 1 << 20, () => 1)
    const slow = syntheticRun("slow", 60, 1 << 20, () => 10)
    for (let i = 0; i < Math.max(fast.length, slow.length); i++) {
      if (fast[i]) translate(fast[i])
      if (slow[i]) translate(slow[i])
    }
    expect(out.filter((e) => e.type === "chunk_anomaly")).toEqual([])
  })
})

describe("rotation", () => {
  it("rotates by size, keeps maxFiles, loses no line of the kept files", async () => {
    const dir = tempDir()
    const log = nodePath.join(dir, "audit.jsonl")
    const writer = makeWriter(log, { maxBytes: 2000, maxFiles: 3 })
    const out: Array<AuditEvent> = []
    const translate = makeTranslator({ operation: "encrypt" }, (e) => {
      out.push(e)
      writer.write(e)
    })
    for (const e of syntheticRun("r", 60, 65536, () => 10)) translate(e)
    writer.close()
    const files = [`${log}.3`, `${log}.2`, `${log}.1`, log]
    for (const f of files) {
      expect(fs.existsSync(f)).toBe(true)
      expect(fs.statSync(f).size).toBeLessThanOrEqual(2000)
    }
    expect(fs.existsSync(`${log}.4`)).toBe(false)
    const read = await Effect.runPromise(readLogs(files))
    // The kept files hold the newest events, contiguous and in order.
    expect(read.events).toEqual(out.slice(out.length - read.events.length))
    expect(read.events.length).toBeGreaterThan(20)
  })

  it("rejects bad options", () => {
    expect(() => makeWriter(nodePath.join(tempDir(), "x"), { maxBytes: 0 })).toThrow(/maxBytes/)
    expect(() => makeWriter(nodePath.join(tempDir(), "x"), { maxFiles: -1 })).toThrow(/maxFiles/)
    expect(Effect.runSync(Effect.flip(Effect.try({ try: () => makeWriter(nodePath.join(tempDir(), "x"), { maxBytes: 0 }), catch: (e) => e }))))
      .toMatchObject({ _tag: "AuditUsageError", reason: "Option", exitCode: 2, message: "maxBytes must be a positive integer, got 0" })
  })

  it("a line longer than maxBytes gets a file of its own", () => {
    const dir = tempDir()
    const log = nodePath.join(dir, "a.jsonl")
    const writer = makeWriter(log, { maxBytes: 50, maxFiles: 2 })
    const translate = makeTranslator({ operation: "x" }, writer.write)
    for (const e of syntheticRun("r", 2, 10, () => 1)) if (e.type !== "chunk_start") translate(e)
    writer.close()
    for (const f of [log, `${log}.1`, `${log}.2`]) expect(fs.readFileSync(f, "utf8").trim().split("\n").length).toBe(1)
  })
})
