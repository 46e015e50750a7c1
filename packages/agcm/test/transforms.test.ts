// The header's transforms list: what a cipher records about the reversible transforms before
// it, and the decryptor's check that the processors after it undo them (FORMAT.md).
import { ChunkInput, ChunkOutput, type ChunkProcessor, PROCESSOR_API_VERSION, type ProcessorCapabilities, runPipeline } from "@cage/core"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { headerBytesWanted, newParams, parseHeader, RAW_HEADER_BYTES, sealHeader, TRANSFORMS_FLAG } from "../src/Format.js"
import { agcmDecrypt, agcmEncrypt, inspect, makeDecryptor, MAX_HEADER_BYTES } from "../src/index.js"
import { bytes, failureOf, key32, testObserver } from "./helpers.js"

const key = key32(31)
const CS = 16384

/** A transform that XORs every byte with `mask` (its own inverse), declaring `capabilities`. */
const xor = (name: string, mask: number, capabilities: Partial<ProcessorCapabilities> = {}): ChunkProcessor => ({
  name,
  version: "1.0.0",
  apiVersion: PROCESSOR_API_VERSION,
  capabilities: { kind: "transform", ordered: false, deterministic: true, ...capabilities },
  options: {},
  init: () => Effect.void,
  process: (_chunk, data) => Effect.sync(() => Buffer.from(data).map((b) => b ^ mask)),
  finalize: () => Effect.void
})
const encodeA = () => xor("enc-a", 0x5a, { reversible: true })
const decodeA = () => xor("dec-a", 0x5a, { undoes: "enc-a" })
const encodeB = () => xor("enc-b", 0x33, { reversible: true })
const decodeB = () => xor("dec-b", 0x33, { undoes: "enc-b" })
/** Lossy from Cage's point of view (not `reversible`): its output is the data, nothing records it. */
const redact = () => xor("redact", 0x01)
const observer = testObserver("count", undefined, true)

const run = (data: Uint8Array, pipeline: ReadonlyArray<ChunkProcessor>) =>
  Effect.runPromiseExit(Effect.gen(function*() {
    const out = ChunkOutput.toMemory()
    yield* runPipeline({ input: ChunkInput.fromBytes(data), output: out, pipeline, segmentBytes: 4 * CS, inFlight: 2 })
    return Buffer.from(out.bytes())
  }))
const ok = async (data: Uint8Array, pipeline: ReadonlyArray<ChunkProcessor>) => {
  const exit = await run(data, pipeline)
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  return exit.value
}
/** The `cause` of the run's ProcessorError. */
const causeOf = async (data: Uint8Array, pipeline: ReadonlyArray<ChunkProcessor>) => {
  const exit = await run(data, pipeline)
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const fail = exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; cause?: unknown } }
  return fail.error
}
const headerOf = (file: Uint8Array) => Effect.runPromise(parseHeader(file.subarray(0, MAX_HEADER_BYTES)))
const plain = bytes(3 * CS + 777, 5)

describe("agcm-encrypt records the reversible transforms before it", () => {
  it("in order, in an authenticated header that decrypts with the processors undoing them, last first", async () => {
    const file = await ok(plain, [encodeA(), observer, encodeB(), agcmEncrypt({ key, chunkSize: CS, workers: 1 })])
    const h = await headerOf(file)
    expect(h.transforms).toEqual(["enc-a", "enc-b"])
    expect(file[9] & TRANSFORMS_FLAG).toBe(TRANSFORMS_FLAG)
    expect(h.headerBytes).toBe(RAW_HEADER_BYTES + 2 + "enc-a\nenc-b".length)
    expect((await Effect.runPromise(inspect(file))).transforms).toEqual(["enc-a", "enc-b"])
    expect(await ok(file, [agcmDecrypt({ key, workers: 1 }), decodeB(), decodeA()])).toEqual(plain)
  })

  it("records nothing for a lossy transform or an observer: the header stays the plain 66-byte v2 header", async () => {
    const file = await ok(plain, [redact(), observer, agcmEncrypt({ key, chunkSize: CS, workers: 1 })])
    const h = await headerOf(file)
    expect(h.transforms).toBeUndefined()
    expect(h.headerBytes).toBe(RAW_HEADER_BYTES)
    expect(file[9]).toBe(0)
    expect(await ok(file, [agcmDecrypt({ key, workers: 1 })])).toEqual(Buffer.from(plain).map((b) => b ^ 1))
  })

  it("a name the header cannot hold is refused before any byte (AgcmUsageError Transforms)", async () => {
    const named = (n: string) => xor(n, 1, { reversible: true })
    for (const bad of ["has space", "x".repeat(215), "new\nline", "é"]) {
      const e = await causeOf(plain, [named(bad), agcmEncrypt({ key, chunkSize: CS, workers: 1 })])
      expect(e).toMatchObject({ _tag: "ProcessorError", processor: "agcm-encrypt", phase: "init", cause: { _tag: "AgcmUsageError", reason: "Transforms" } })
    }
    const many = Array.from({ length: 6 }, (_, i) => `${"n".repeat(200)}${i}`)
    expect(await failureOf(newParams({ key }, CS, undefined, many))).toMatchObject({ _tag: "AgcmUsageError", reason: "Transforms" })
  })
})

describe("agcm-decrypt checks that the pipeline undoes the recorded transforms", () => {
  const sealed = () => ok(plain, [encodeA(), encodeB(), agcmEncrypt({ key, chunkSize: CS, workers: 1 })])

  it.for([
    { what: "nothing after it", after: () => [], undone: [] },
    { what: "only the last one undone", after: () => [decodeB()], undone: ["enc-b"] },
    { what: "both undone in the wrong order", after: () => [decodeA(), decodeB()], undone: ["enc-a", "enc-b"] },
    { what: "a transform that undoes nothing first", after: () => [redact(), decodeB(), decodeA()], undone: ["enc-b", "enc-a"] }
  ])("refuses with TransformsNotUndone (exit 2) and writes nothing: $what", async ({ after, undone }) => {
    const file = await sealed()
    const out = ChunkOutput.toMemory()
    const exit = await Effect.runPromiseExit(runPipeline({ input: ChunkInput.fromBytes(file), output: out, pipeline: [agcmDecrypt({ key, workers: 1 }), ...after()] }))
    expect(out.committed()).toBe(false)
    const fail = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { cause: { _tag: string; exitCode: number; recorded: unknown; undone: unknown; message: string } } } : undefined
    expect(fail?.error.cause).toMatchObject({ _tag: "TransformsNotUndone", exitCode: 2, recorded: ["enc-a", "enc-b"], undone })
    expect(fail?.error.cause.message).toContain("must undo enc-b, then enc-a")
  })

  it("observers between the decryptor and the undoing transforms do not matter", async () => {
    expect(await ok(await sealed(), [agcmDecrypt({ key, workers: 1 }), observer, decodeB(), decodeA()])).toEqual(plain)
  })

  it("a wrong key fails as HeaderAuthFailed first: the list is trusted only once the header is authentic", async () => {
    const e = await causeOf(await sealed(), [agcmDecrypt({ key: key32(32), workers: 1 })])
    expect(e).toMatchObject({ cause: { _tag: "HeaderAuthFailed" } })
  })
})

describe("the transforms list is authenticated and checked like every header byte", () => {
  const withList = async (list: ReadonlyArray<string>) => {
    const params = await Effect.runPromise(newParams({ key }, CS, undefined, list))
    return Buffer.from((await Effect.runPromise(sealHeader(params, { key }))).header)
  }

  it("flipping any bit of any header byte refuses the file", async () => {
    const file = await ok(plain, [encodeA(), agcmEncrypt({ key, chunkSize: CS, workers: 1 })])
    const h = await headerOf(file)
    for (let at = 0; at < h.headerBytes; at++) {
      for (const mask of [0x01, 0x80]) {
        const b = Buffer.from(file)
        b[at] ^= mask
        const d = makeDecryptor({ key, workers: 1 })
        const error = await d.write(b).then(() => d.end()).then(() => undefined, (e: unknown) => e)
        await d.close()
        expect((error as { _tag?: string } | undefined)?._tag, `byte ${at} ^ ${mask}`).toMatch(/^(NotAgcm|UnsupportedVersion|InvalidHeader|HeaderAuthFailed|Truncated)$/)
      }
    }
  })

  it("truncation anywhere inside the header is Truncated", async () => {
    const header = await withList(["enc-a", "@acme/cage-processor-gzip"])
    for (let n = 4; n < header.length; n++) {
      expect((await failureOf(parseHeader(header.subarray(0, n))))._tag, `${n} bytes`).toBe("Truncated")
    }
    expect((await Effect.runPromise(parseHeader(header))).transforms).toEqual(["enc-a", "@acme/cage-processor-gzip"])
  })

  it("headerBytesWanted: every prefix of a header asks for at most its header, in at most four reads; bytes that are not AGCM ask for nothing more", async () => {
    const passphrase = new TextEncoder().encode("correct horse")
    const scrypt = async (list: ReadonlyArray<string>) => {
      const params = await Effect.runPromise(newParams({ passphrase }, CS, { salt: new Uint8Array(24), scryptSalt: new Uint8Array(16), scryptLogN: 10 }, list))
      return Buffer.from((await Effect.runPromise(sealHeader(params, { passphrase }))).header)
    }
    const headers = {
      raw: await withList([]),
      "raw, transforms": await withList(["enc-a", "@acme/cage-processor-gzip"]),
      scrypt: await scrypt([]),
      "scrypt, transforms": await scrypt(["enc-a"]),
      "scrypt, 1 KiB of transforms": await scrypt(Array.from({ length: 64 }, (_, i) => `transform-${String(i).padStart(5, "0")}`))
    }
    for (const [what, header] of Object.entries(headers)) {
      expect((await Effect.runPromise(parseHeader(header))).headerBytes, what).toBe(header.length)
      // Any prefix asks for more only while the header is not complete, and never past its end.
      for (let n = 0; n <= header.length; n++) {
        const want = headerBytesWanted(header.subarray(0, n))
        expect(want, `${what}: ${n} bytes`).toBeLessThanOrEqual(header.length)
        if (n < header.length) expect(want, `${what}: ${n} bytes`).toBeGreaterThan(n)
      }
      // A reader's steps, as agcm-decrypt takes them: from the magic to the whole header.
      let asked = 4
      let steps = 1
      for (let want = headerBytesWanted(header.subarray(0, asked)); want > asked; want = headerBytesWanted(header.subarray(0, asked))) {
        asked = want
        steps++
      }
      expect([asked, steps <= 4], what).toEqual([header.length, true])
    }
    // Not AGCM: a wrong byte in the magic, the version, the key mode or the list's length.
    const raw = headers["raw, transforms"]
    for (const [what, at, value] of [["magic", 0, 0x61], ["magic", 3, 0x00], ["version", 4, 3], ["key mode", 9, 0x87], ["list length 0", 11, 0], ["list length 4096", 11, 0x10]] as const) {
      const b = Buffer.from(raw)
      b[at] = value
      if (at === 11) b[10] = 0
      for (let n = at + 1; n <= 12; n++) expect(headerBytesWanted(b.subarray(0, n)), `${what}, ${n} bytes`).toBe(Math.max(n, at < 4 ? 0 : 10))
    }
    expect(headerBytesWanted(Buffer.from("age-encryption.org/v1\n"))).toBe(22)
  })

  it.for([
    { what: "an empty list", list: Buffer.alloc(0) },
    { what: "a list longer than 1 KiB", list: Buffer.alloc(1025, 0x61) },
    { what: "an empty name", list: Buffer.from("a\n\nb") },
    { what: "a space in a name", list: Buffer.from("a b") },
    { what: "a control byte", list: Buffer.from("a\u0001") }
  ])("a malformed list is InvalidHeader: $what", async ({ list }) => {
    const header = await withList(["x"])
    const length = Buffer.alloc(2)
    length.writeUInt16LE(list.length)
    const edited = Buffer.concat([header.subarray(0, 10), length, list, header.subarray(13)])
    expect(await failureOf(parseHeader(edited))).toMatchObject({ _tag: "InvalidHeader", field: "transforms" })
  })
})
