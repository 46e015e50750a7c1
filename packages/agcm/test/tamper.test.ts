import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { agcmDecrypt, agcmEncrypt, makeDecryptor } from "../src/index.js"
import { bytes, key32 } from "./helpers.js"

const key = key32(21)
const H = 66
const TAG = 16

interface Expected {
  readonly tags: ReadonlyArray<string>
  readonly chunk?: number
  readonly bytes?: number
  /** Index of the first chunk that must not release plaintext. */
  readonly firstBad: number
}

interface Layout {
  readonly cs: number
  readonly n: number
  readonly finalSealed: number
  readonly sealed: number
}

const layoutOf = (cs: number, length: number): Layout => {
  const n = Math.floor(length / cs) + 1
  return { cs, n, finalSealed: length - (n - 1) * cs + TAG, sealed: cs + TAG }
}

const seal = (plain: Uint8Array, cs: number) =>
  Effect.runPromise(Effect.gen(function*() {
    const out = ChunkOutput.toMemory()
    yield* runPipeline({ input: ChunkInput.fromBytes(plain), output: out, pipeline: [agcmEncrypt({ key, chunkSize: cs, workers: 1 })], chunkBytes: cs })
    return Buffer.from(out.bytes())
  }))

const chunkAt = (file: Buffer, l: Layout, i: number) =>
  file.subarray(H + i * l.sealed, H + i * l.sealed + (i === l.n - 1 ? l.finalSealed : l.sealed))
const chunksOf = (file: Buffer, l: Layout) => Array.from({ length: l.n }, (_, i) => chunkAt(file, l, i))
const rebuild = (file: Buffer, chunks: ReadonlyArray<Uint8Array>) => Buffer.concat([file.subarray(0, H), ...chunks])

type Edit =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; mask: number }
  | { kind: "delete"; chunk: number }
  | { kind: "duplicate"; chunk: number }
  | { kind: "swap"; i: number; j: number }
  | { kind: "moveToEnd"; chunk: number }
  | { kind: "append"; extra: Uint8Array }

const apply = (file: Buffer, l: Layout, e: Edit): Buffer => {
  const cs = chunksOf(file, l)
  switch (e.kind) {
    case "truncate":
      return file.subarray(0, e.at)
    case "flip": {
      const b = Buffer.from(file)
      b[e.at] ^= e.mask
      return b
    }
    case "delete":
      return rebuild(file, cs.filter((_, i) => i !== e.chunk))
    case "duplicate":
      return rebuild(file, cs.flatMap((c, i) => (i === e.chunk ? [c, c] : [c])))
    case "swap":
      return rebuild(file, cs.map((c, k) => (k === e.i ? cs[e.j] : k === e.j ? cs[e.i] : c)))
    case "moveToEnd":
      return rebuild(file, [...cs.filter((_, i) => i !== e.chunk), cs[e.chunk]])
    case "append":
      return Buffer.concat([file, e.extra])
  }
}

/** The specific error each edit must produce (see FORMAT.md, "Errors"). */
const expected = (l: Layout, e: Edit): Expected => {
  const auth = (chunk: number): Expected => ({ tags: ["ChunkAuthFailed"], chunk, firstBad: chunk })
  switch (e.kind) {
    case "truncate": {
      if (e.at === 0) return { tags: ["NotAgcm"], firstBad: 0 }
      if (e.at < H) return { tags: ["Truncated"], firstBad: 0 }
      const r = e.at - H
      const q = Math.floor(r / l.sealed)
      // A cut 16 or more bytes into a chunk leaves a "final chunk" that cannot authenticate.
      return r % l.sealed < TAG ? { tags: ["Truncated"], firstBad: q } : auth(q)
    }
    case "flip":
      if (e.at < 4) return { tags: ["NotAgcm"], firstBad: 0 }
      if (e.at < 8) return { tags: ["UnsupportedVersion"], firstBad: 0 }
      if (e.at === 8) return { tags: ["InvalidHeader", "HeaderAuthFailed"], firstBad: 0 }
      if (e.at === 9) return { tags: ["InvalidHeader", "AgcmUsageError", "Truncated"], firstBad: 0 }
      if (e.at < H) return { tags: ["HeaderAuthFailed"], firstBad: 0 }
      return auth(Math.floor((e.at - H) / l.sealed))
    case "delete":
      return e.chunk === l.n - 1 ? { tags: ["Truncated"], firstBad: e.chunk } : auth(e.chunk)
    case "duplicate":
      if (e.chunk < l.n - 1) return auth(e.chunk + 1)
      return l.finalSealed <= 256 ? { tags: ["TrailingData"], bytes: l.finalSealed, firstBad: l.n } : auth(l.n - 1)
    case "swap":
      return auth(e.i)
    case "moveToEnd":
      return auth(e.chunk)
    case "append":
      return e.extra.length <= 256 ? { tags: ["TrailingData"], bytes: e.extra.length, firstBad: l.n } : auth(l.n - 1)
  }
}

const check = (error: unknown, want: Expected) => {
  const got = error as { _tag: string; chunk?: number; bytes?: number }
  expect(want.tags).toContain(got._tag)
  if (want.chunk !== undefined) expect(got.chunk).toBe(want.chunk)
  if (want.bytes !== undefined) expect(got.bytes).toBe(want.bytes)
}

/** Decrypts through the stream API in pieces; returns the error and the plaintext released before it. */
const viaStream = async (file: Uint8Array, piece: number) => {
  const d = makeDecryptor({ key, workers: 1 })
  const released: Array<Uint8Array> = []
  try {
    for (let i = 0; i < file.length; i += piece) released.push(...(await d.write(file.subarray(i, i + piece))))
    released.push(...(await d.end()))
    return { error: undefined, released: Buffer.concat(released) }
  } catch (error) {
    return { error, released: Buffer.concat(released) }
  } finally {
    await d.close()
  }
}

/** Decrypts through the engine (one segment in flight, so the first bad chunk is the one reported). */
const viaEngine = async (file: Uint8Array, cs: number) => {
  const out = ChunkOutput.toMemory()
  const exit = await Effect.runPromiseExit(runPipeline({
    input: ChunkInput.fromBytes(file),
    output: out,
    pipeline: [agcmDecrypt({ key, workers: 1 })],
    chunkBytes: cs,
    segmentBytes: 2 * (cs + TAG),
    inFlight: 1
  }))
  expect(out.committed()).toBe(Exit.isSuccess(exit))
  if (Exit.isSuccess(exit)) return undefined
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { cause: unknown } }
  return reason.error.cause
}

const editArb = (l: Layout, fileLength: number): fc.Arbitrary<Edit> => {
  const arbs: Array<fc.Arbitrary<Edit>> = [
    fc.integer({ min: 0, max: fileLength - 1 }).map((at) => ({ kind: "truncate" as const, at })),
    fc.record({ at: fc.integer({ min: 0, max: fileLength - 1 }), mask: fc.integer({ min: 1, max: 255 }) }).map((r) => ({ kind: "flip" as const, ...r })),
    fc.uint8Array({ minLength: 1, maxLength: 400 }).map((extra) => ({ kind: "append" as const, extra })),
    fc.integer({ min: 0, max: l.n - 1 }).map((chunk) => ({ kind: "duplicate" as const, chunk }))
  ]
  if (l.n >= 2) {
    arbs.push(fc.integer({ min: 0, max: l.n - 1 }).map((chunk) => ({ kind: "delete" as const, chunk })))
    arbs.push(fc.integer({ min: 0, max: l.n - 2 }).map((chunk) => ({ kind: "moveToEnd" as const, chunk })))
  }
  if (l.n >= 3) {
    arbs.push(fc.tuple(fc.integer({ min: 0, max: l.n - 2 }), fc.integer({ min: 0, max: l.n - 2 })).filter(([a, b]) => a !== b).map(([a, b]) => ({ kind: "swap" as const, i: Math.min(a, b), j: Math.max(a, b) })))
  }
  return fc.oneof(...arbs)
}

describe("tampering at every position is rejected with its specific error", () => {
  it("property: any edit of any file, through the stream API and the engine", async () => {
    const cache = new Map<string, Buffer>()
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(16 * 1024, 32 * 1024),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: -300, max: 300 }),
        fc.integer({ min: 257, max: 70000 }),
        fc.context(),
        async (cs, fullChunks, delta, piece, ctx) => {
          const length = Math.max(0, fullChunks * cs + delta)
          const l = layoutOf(cs, length)
          const id = `${cs}:${length}`
          const plain = bytes(length, length)
          if (!cache.has(id)) cache.set(id, await seal(plain, cs))
          const file = cache.get(id)!
          const edit = fc.sample(editArb(l, file.length), { numRuns: 1, seed: piece * 7919 + length })[0]
          const want = expected(l, edit)
          ctx.log(JSON.stringify({ cs, length, edit: { ...edit, extra: undefined }, want }))
          const tampered = apply(file, l, edit)
          const s = await viaStream(tampered, piece)
          check(s.error, want)
          // Only chunks before the first bad one may have released plaintext, and only true plaintext.
          expect(s.released.length).toBeLessThanOrEqual(Math.min(want.firstBad * cs, plain.length))
          expect(s.released.equals(Buffer.from(plain.subarray(0, s.released.length)))).toBe(true)
          check(await viaEngine(tampered, cs), want)
        }
      ),
      { numRuns: 150 }
    )
  }, 120_000)

  const cs = 16 * 1024
  const sizes = [0, 1, 200, cs - 1, cs, cs + 1, 2 * cs - 1, 2 * cs, 2 * cs + 1]
  it.for(sizes)("truncation at every chunk boundary and around it, %i-byte plaintext", async (length) => {
    const l = layoutOf(cs, length)
    const file = await seal(bytes(length, 1), cs)
    const cuts = new Set<number>()
    for (let i = 0; i <= l.n; i++) for (const d of [-17, -16, -15, -1, 0, 1, 15, 16, 17]) cuts.add(H + i * l.sealed + d)
    for (let at = 0; at < H + 2; at++) cuts.add(at)
    for (const at of [...cuts].filter((x) => x >= 0 && x < file.length)) {
      const edit: Edit = { kind: "truncate", at }
      const s = await viaStream(apply(file, l, edit), 4096)
      check(s.error, expected(l, edit))
    }
  })

  it.for(sizes)("bytes flipped in every header byte, around every chunk boundary and inside chunks, %i-byte plaintext", async (length) => {
    const l = layoutOf(cs, length)
    const file = await seal(bytes(length, 2), cs)
    const positions = new Set<number>()
    for (let at = 0; at < H + 4; at++) positions.add(at)
    for (let i = 0; i <= l.n; i++) for (const d of [-17, -16, -1, 0, 1]) positions.add(H + i * l.sealed + d)
    for (let at = H; at < file.length; at += 997) positions.add(at)
    for (const at of [...positions].filter((x) => x >= 0 && x < file.length)) {
      const edit: Edit = { kind: "flip", at, mask: 0x80 }
      const s = await viaStream(apply(file, l, edit), 65536)
      check(s.error, expected(l, edit))
    }
  })

  it.for([
    { field: "magic", at: 0, value: 0x61, tag: "NotAgcm" },
    { field: "version = 1", at: 4, value: 1, tag: "UnsupportedVersion" },
    { field: "version = 3", at: 4, value: 3, tag: "UnsupportedVersion" },
    { field: "chunk size 2^13", at: 8, value: 13, tag: "InvalidHeader" },
    { field: "chunk size 2^23", at: 8, value: 23, tag: "InvalidHeader" },
    { field: "chunk size 2^15 (valid, but committed)", at: 8, value: 15, tag: "HeaderAuthFailed" },
    { field: "key mode 7", at: 9, value: 7, tag: "InvalidHeader" },
    { field: "salt", at: 10, value: -1, tag: "HeaderAuthFailed" },
    { field: "commitment", at: 34, value: -1, tag: "HeaderAuthFailed" },
    { field: "last commitment byte", at: 65, value: -1, tag: "HeaderAuthFailed" }
  ])("header field edited: $field → $tag", async ({ at, value, tag }) => {
    const file = await seal(bytes(40000, 3), cs)
    const b = Buffer.from(file)
    b[at] = value < 0 ? b[at] ^ 1 : value
    const s = await viaStream(b, 1000)
    expect((s.error as { _tag: string })._tag).toBe(tag)
    expect(s.released.length).toBe(0)
    expect(((await viaEngine(b, cs)) as { _tag: string })._tag).toBe(tag)
  })

  it("a wrong key is HeaderAuthFailed before any chunk", async () => {
    const file = await seal(bytes(1000, 4), cs)
    const d = makeDecryptor({ key: key32(22), workers: 1 })
    await expect(d.write(file)).rejects.toMatchObject({ _tag: "HeaderAuthFailed", exitCode: 3 })
    // Once failed, it stays failed.
    await expect(d.end()).rejects.toMatchObject({ _tag: "HeaderAuthFailed" })
  })
})
