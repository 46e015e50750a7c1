import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { PassThrough, Readable } from "node:stream"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { agcmDecrypt, agcmEncrypt, inspect, isAgcm } from "../src/index.js"
import { bytes, failureOf, key32, testObserver } from "./helpers.js"
import { withFault } from "../src/internal/faults.js"

const CS = 16 * 1024
const key = key32(7)

const encrypt = (plain: Uint8Array, opts: Partial<Parameters<typeof agcmEncrypt>[0]> = {}) =>
  Effect.gen(function*() {
    const out = ChunkOutput.toMemory()
    yield* runPipeline({ input: ChunkInput.fromBytes(plain), output: out, pipeline: [agcmEncrypt({ key, chunkSize: CS, ...opts } as never)], chunkBytes: CS })
    return out.bytes()
  })
const decrypt = (sealed: Uint8Array, opts: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const out = ChunkOutput.toMemory()
    yield* runPipeline({ input: ChunkInput.fromBytes(sealed), output: out, pipeline: [agcmDecrypt({ key, ...opts } as never)], chunkBytes: CS })
    return out.bytes()
  })

describe("agcmEncrypt / agcmDecrypt through the engine", () => {
  const sizes = [0, 1, CS - 1, CS, CS + 1, 2 * CS - 1, 2 * CS, 2 * CS + 1, 5 * CS + 123]
  it.for(sizes)("round trip of %i bytes at 16 KiB, in-process", async (n) => {
    const plain = bytes(n, n)
    const sealed = await Effect.runPromise(encrypt(plain, { workers: 1 }))
    // header (66) + plaintext + one tag per chunk; the final chunk is always short.
    expect(sealed.length).toBe(66 + n + 16 * (Math.floor(n / CS) + 1))
    const back = await Effect.runPromise(decrypt(sealed, { workers: 1 }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
  })

  it.for([64 * 1024, 1024 * 1024, 4 * 1024 * 1024])("round trip at chunk size %i", async (cs) => {
    const plain = bytes(2 * cs + 17, 3)
    const out = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: out, pipeline: [agcmEncrypt({ key, chunkSize: cs, workers: 1 })], chunkBytes: cs }))
    const desc = await Effect.runPromise(inspect(out.bytes()))
    expect(desc.chunkSize).toBe(cs)
    const back = await Effect.runPromise(decrypt(out.bytes(), { workers: 1 }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
  })

  it("worker pool output is byte-identical to in-process output (same salt)", async () => {
    const plain = bytes(9 * 1024 * 1024 + 5, 11)
    const one = agcmEncrypt({ key, chunkSize: CS, workers: 1 })
    const a = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: a, pipeline: [one], chunkBytes: CS }))
    const snap = one.snapshot!()
    const pooled = agcmEncrypt({ key, chunkSize: CS, workers: 2 })
    const b = ChunkOutput.toMemory()
    // Feed the first run's salt through the resume path so both runs share the nonces.
    const summary = await Effect.runPromise(Effect.gen(function*() {
      const init = yield* pooled.init({ input: "x", inputSize: plain.length, chunkBytes: CS, readHeader: () => Effect.die("no"), resume: snap })
      yield* b.open()
      yield* b.write([init!.header!])
      const total = Math.floor(plain.length / CS) + 1
      for (let first = 0; first < total; first += 64) {
        const specs = Array.from({ length: Math.min(64, total - first) }, (_, k) => {
          const index = first + k
          const start = index * CS
          const end = Math.min(start + CS, plain.length)
          return { index, start, end, length: end - start, final: index === total - 1 }
        })
        const seg = Buffer.from(plain.subarray(specs[0].start, specs[specs.length - 1].end))
        const out = yield* pooled.processSegment!(specs, specs.map((s) => seg.subarray(s.start - specs[0].start, s.end - specs[0].start)))
        yield* b.write(out as Array<Uint8Array>)
      }
      const r = yield* pooled.finalize({ plan: undefined as never, inputBytes: plain.length })
      yield* pooled.close!()
      return r
    }))
    expect((summary as { result: { workers: number } }).result.workers).toBe(2)
    expect(Buffer.from(b.bytes()).equals(Buffer.from(a.bytes()))).toBe(true)
    const back = await Effect.runPromise(decrypt(a.bytes(), { workers: 2 }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
  })

  it("the pooled decryptor (opening in place) reports tampering like the in-process one", async () => {
    const plain = bytes(9 * 1024 * 1024 + 100, 12)
    const sealed = Buffer.from(await Effect.runPromise(encrypt(plain, { workers: 2 })))
    // workers: 2 is one pool thread holding two jobs (the engine's thread runs a segment
    // itself only when the pool is full): two segments in flight all go to the pool.
    const pooled = (b: Uint8Array) =>
      Effect.gen(function*() {
        const out = ChunkOutput.toMemory()
        yield* runPipeline({ input: ChunkInput.fromBytes(b), output: out, pipeline: [agcmDecrypt({ key, workers: 2 })], inFlight: 2 })
        return out.bytes()
      })
    const back = await Effect.runPromise(pooled(sealed))
    expect(Buffer.from(back).equals(plain)).toBe(true)
    const causeOf = async (b: Uint8Array) => (await failureOf(pooled(b)) as { cause: unknown }).cause
    expect(await causeOf(Buffer.concat([sealed, Buffer.alloc(7)]))).toMatchObject({ _tag: "TrailingData", bytes: 7 })
    const flipped = Buffer.from(sealed)
    flipped[66 + 300 * (CS + 16) + 77] ^= 2
    expect(await causeOf(flipped)).toMatchObject({ _tag: "ChunkAuthFailed", chunk: 300 })
    expect(await causeOf(sealed.subarray(0, sealed.length - 116))).toMatchObject({ _tag: "Truncated" })
  })

  it("small inputs never start the pool; large ones do", async () => {
    for (const [n, pooled] of [[100_000, false], [7 * 1024 * 1024, false], [9 * 1024 * 1024, true]] as const) {
      const p = agcmEncrypt({ key, chunkSize: CS, workers: 2 })
      const s = await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(bytes(n)), output: ChunkOutput.toMemory(), pipeline: [p], chunkBytes: CS }))
      expect(s.results["agcm-encrypt"]).toMatchObject({ workers: 2, pool: pooled })
    }
    const one = await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(bytes(9 * 1024 * 1024)), output: ChunkOutput.toMemory(), pipeline: [agcmEncrypt({ key, chunkSize: CS, workers: 1 })], chunkBytes: CS }))
    expect(one.results["agcm-encrypt"]).toMatchObject({ workers: 1, pool: false })
  })

  it("isAgcm and inspect describe a v2 header without the key", async () => {
    const sealed = await Effect.runPromise(encrypt(bytes(5), { workers: 1 }))
    expect(isAgcm(sealed)).toBe(true)
    expect(isAgcm(new Uint8Array([0x41, 0x47]))).toBe(false)
    expect(await Effect.runPromise(inspect(sealed))).toEqual({ format: "agcm", version: 2, headerBytes: 66, chunkSize: CS, keyMode: "raw", sealedChunkBytes: CS + 16 })
    expect(await failureOf(inspect(Buffer.from("PK\x03\x04 not agcm")))).toMatchObject({ _tag: "NotAgcm", exitCode: 3 })
    expect(await failureOf(inspect(sealed.subarray(0, 40)))).toMatchObject({ _tag: "Truncated" })
  })

  it("encrypting chunks [k..n) after a snapshot gives the same bytes as one run", async () => {
    const plain = bytes(7 * CS + 99, 5)
    const first = agcmEncrypt({ key, chunkSize: CS, workers: 1 })
    const all = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: all, pipeline: [first], chunkBytes: CS }))
    const snap = JSON.parse(JSON.stringify(first.snapshot!()))
    expect(JSON.stringify(snap)).not.toContain(Buffer.from(key).toString("hex"))
    for (const k of [0, 1, 3, 7]) {
      const resumed = agcmEncrypt({ key, chunkSize: CS, workers: 1 })
      const parts = await Effect.runPromise(Effect.gen(function*() {
        const init = yield* resumed.init({ input: "x", inputSize: plain.length, chunkBytes: CS, readHeader: () => Effect.die("no"), resume: snap })
        const out: Array<Uint8Array> = [init!.header!]
        for (let i = 0; i < 8; i++) {
          const start = i * CS
          const end = Math.min(start + CS, plain.length)
          const sealed = yield* resumed.process({ index: i, start, end, length: end - start, final: i === 7 }, plain.subarray(start, end))
          if (i >= k) out.push(sealed!)
        }
        return out
      }))
      const header = parts[0]
      const prefixBytes = 66 + k * (CS + 16)
      const rebuilt = Buffer.concat([all.bytes().subarray(0, prefixBytes), ...parts.slice(1)])
      expect(Buffer.from(header).equals(Buffer.from(all.bytes().subarray(0, 66)))).toBe(true)
      expect(rebuilt.equals(Buffer.from(all.bytes()))).toBe(true)
    }
  })

  it("refuses to resume under a different key (would splice two keys into one file)", async () => {
    const first = agcmEncrypt({ key, chunkSize: CS, workers: 1 })
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(bytes(10)), output: ChunkOutput.toMemory(), pipeline: [first], chunkBytes: CS }))
    const other = agcmEncrypt({ key: key32(8), chunkSize: CS, workers: 1 })
    const e = await failureOf(other.init({ input: "x", inputSize: 10, chunkBytes: CS, readHeader: () => Effect.die("no"), resume: first.snapshot!() }))
    expect((e as { _tag: string })._tag).toBe("HeaderAuthFailed")
    // Another chunk size is the engine's refusal (ChunkSizeChanged, once the framing is
    // declared): init declares its size and builds no header, and seals nothing.
    const otherSize = agcmEncrypt({ key, chunkSize: 2 * CS, workers: 1 })
    const declared = await Effect.runPromise(otherSize.init({ input: "x", inputSize: 10, chunkBytes: CS, readHeader: () => Effect.die("no"), resume: first.snapshot!() }))
    expect(declared).toEqual({ framing: { headerBytes: 0, chunkBytes: 2 * CS, shortFinal: true } })
  })

  it("passphrase mode round trip; wrong passphrase is HeaderAuthFailed; cost cap is enforced", async () => {
    const plain = bytes(3 * CS + 1, 9)
    const passphrase = Buffer.from("correct horse battery staple")
    const sealed = await Effect.runPromise(encrypt(plain, { passphrase, scryptLogN: 10, key: undefined } as never))
    const d = await Effect.runPromise(inspect(sealed))
    expect(d).toMatchObject({ version: 2, keyMode: "scrypt", headerBytes: 83, scrypt: { logN: 10, r: 8, p: 1 } })
    const back = await Effect.runPromise(decrypt(sealed, { passphrase, key: undefined }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
    const wrong = await failureOf(decrypt(sealed, { passphrase: Buffer.from("wrong"), key: undefined }))
    expect((wrong as { cause: { _tag: string } }).cause._tag).toBe("HeaderAuthFailed")
    const capped = await failureOf(decrypt(sealed, { passphrase, maxScryptLogN: 9, key: undefined }))
    expect((capped as { cause: { _tag: string } }).cause._tag).toBe("KdfCostTooHigh")
    const rawKeyOnScrypt = await failureOf(decrypt(sealed))
    expect((rawKeyOnScrypt as { cause: unknown }).cause).toMatchObject({ _tag: "AgcmUsageError", reason: "Key" })
  })

  it("rejects bad options with usage errors", async () => {
    const cases = [
      [{ chunkSize: 1000 }, "ChunkSize"],
      [{ chunkSize: 8 * 1024 }, "ChunkSize"],
      [{ chunkSize: 8 * 1024 * 1024 }, "ChunkSize"],
      [{ key: new Uint8Array(16) }, "Key"],
      [{ workers: 0 }, "Workers"],
      [{ key: undefined, passphrase: Buffer.from("p"), scryptLogN: 9 }, "ScryptCost"]
    ] as const
    for (const [opts, reason] of cases) {
      const e = await failureOf(encrypt(bytes(1), opts as never))
      expect((e as { cause: unknown }).cause).toMatchObject({ _tag: "AgcmUsageError", reason, exitCode: 2 })
    }
  })
})

describe("the header on a stream that stays open", () => {
  /** A stream holding `bytes` that never ends: whatever waits for more input waits forever. */
  const open = (bytes: Uint8Array) => {
    const s = new PassThrough()
    s.write(bytes)
    return ChunkInput.fromStream(s, "pipe")
  }
  const run = (bytes: Uint8Array) => runPipeline({ input: open(bytes), output: ChunkOutput.toMemory(), pipeline: [agcmDecrypt({ key, workers: 1 })], segmentBytes: 4 * CS })

  it("bytes that are not AGCM fail at once, however few (not after 1109 bytes or the end of input)", async () => {
    for (const garbage of ["PK\x03\x04 not agcm", "age-encryption.org/v1\n-> X25519 abc\n", "AGCX", "AGCM\x03\x00\x00\x00\x10\x00"]) {
      const e = await failureOf(run(Buffer.from(garbage, "latin1")))
      expect(e, JSON.stringify(garbage)).toMatchObject({ _tag: "ProcessorError" })
      expect((e as { cause?: { _tag?: string } }).cause?._tag, JSON.stringify(garbage)).toMatch(/^(NotAgcm|UnsupportedVersion)$/)
    }
  }, 20_000)
  it("a real header is read in steps, whole, and then a damaged first chunk fails at once too", async () => {
    // 16 chunks: the first segment (4 chunks) is whole in the stream, and the rest too.
    const sealed = Buffer.from(await Effect.runPromise(encrypt(bytes(16 * CS, 3), { workers: 1 })))
    sealed[70] ^= 1 // inside chunk 0 (the raw header is 66 bytes)
    const e = await failureOf(run(sealed))
    expect((e as { cause?: { _tag?: string; chunk?: number } }).cause).toMatchObject({ _tag: "ChunkAuthFailed", chunk: 0 })
  }, 20_000)
})

describe("segment worker failures are structured, never a hang", () => {
  const plain = bytes(9 * 1024 * 1024, 2)
  it.for(["throw", "exit", "hang"] as const)("a worker that does %s fails the run with SegmentWorkerError naming its chunks", async (kind) => {
    const e = await failureOf(encrypt(plain, withFault({ workers: 2, workerTimeoutMs: 500 }, { kind, atChunk: 64 }) as never))
    const cause = (e as { cause: { _tag: string; firstChunk: number; chunks: number; reason: string } }).cause
    expect(cause._tag).toBe("SegmentWorkerError")
    expect(cause.reason).toBe(kind === "throw" ? "Crashed" : kind === "exit" ? "Exited" : "Timeout")
    if (cause.firstChunk === 64) expect(cause.chunks).toBe(64)
    expect((e as { _tag: string })._tag).toBe("ProcessorError")
  })
})

describe("segment buffers on the worker pool", () => {
  // An observer ahead of the cipher sees the engine's read buffers, the ones the cipher gets.
  const watch = () => {
    const seen = new Set<ArrayBufferLike>()
    const observer = testObserver("test-watch", (_chunk, data) => void seen.add(data.buffer))
    return { seen, observer }
  }
  const stream = (plain: Uint8Array) => ChunkInput.fromStream(Readable.from([Buffer.from(plain)]))

  it("by default the engine's buffers stay with the engine, which reads every stream segment into a few of them", async () => {
    const plain = bytes(9 * 1024 * 1024 + 5, 11)
    const { seen, observer } = watch()
    const out = ChunkOutput.toMemory()
    const s = await Effect.runPromise(runPipeline({ input: stream(plain), output: out, pipeline: [observer, agcmEncrypt({ key, chunkSize: CS, workers: 2 })], chunkBytes: CS }))
    expect(s.results["agcm-encrypt"]).toMatchObject({ pool: true })
    // 10 segments of 1 MiB through at most 5 buffers (4 in flight and the one being read), none detached.
    expect(seen.size).toBeLessThanOrEqual(5)
    for (const b of seen) expect(b.byteLength).toBeGreaterThan(0)
    const back = await Effect.runPromise(decrypt(out.bytes(), { workers: 2 }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
  })

  it("transferInputs: true moves them to the workers uncopied (detached here)", async () => {
    const plain = bytes(9 * 1024 * 1024 + 5, 12)
    const { seen, observer } = watch()
    const out = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: stream(plain), output: out, pipeline: [observer, agcmEncrypt({ key, chunkSize: CS, workers: 2, transferInputs: true })], chunkBytes: CS }))
    expect([...seen].some((b) => b.byteLength === 0)).toBe(true)
    const back = await Effect.runPromise(decrypt(out.bytes(), { workers: 2 }))
    expect(Buffer.from(back).equals(plain)).toBe(true)
  })
})
