import { Effect, Stream } from "effect"
import fc from "fast-check"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { describe, expect, it } from "vitest"
import { createDecryptStream, createEncryptStream, decryptStream, encryptStream, makeDecryptor, makeEncryptor } from "../src/index.js"
import { bytes, key32 } from "./helpers.js"

const key = key32(5)
const CS = 16 * 1024

const pieces = (b: Uint8Array, size: number) => {
  const out: Array<Buffer> = []
  for (let i = 0; i < b.length; i += size) out.push(Buffer.from(b.subarray(i, i + size)))
  return out
}
const through = async (input: Array<Buffer>, t: NodeJS.ReadWriteStream) => {
  const parts: Array<Buffer> = []
  await pipeline(Readable.from(input), t, new Writable({
    write(c: Buffer, _e, cb) {
      parts.push(c)
      cb()
    }
  }))
  return Buffer.concat(parts)
}

describe("Node stream transforms", () => {
  const sizes = [0, 1, CS - 1, CS, CS + 1, 2 * CS - 1, 2 * CS, 2 * CS + 1]
  it.for(sizes)("round trip of %i bytes in 1000-byte writes", async (n) => {
    const plain = bytes(n, n + 1)
    const sealed = await through(pieces(plain, 1000), createEncryptStream({ key, chunkSize: CS, workers: 1 }))
    expect(sealed.length).toBe(66 + n + 16 * (Math.floor(n / CS) + 1))
    const back = await through(pieces(sealed, 1000), createDecryptStream({ key, workers: 1 }))
    expect(back.equals(plain)).toBe(true)
  })

  it("byte-by-byte writes on both sides", async () => {
    const plain = bytes(CS + 77, 9)
    const sealed = await through(pieces(plain, 1), createEncryptStream({ key, chunkSize: CS, workers: 1 }))
    const back = await through(pieces(sealed, 1), createDecryptStream({ key, workers: 1 }))
    expect(back.equals(plain)).toBe(true)
  })

  it("property: any write sizes give the same plaintext back", async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 3 * CS + 5 }),
      fc.integer({ min: 1, max: 40000 }),
      fc.integer({ min: 1, max: 40000 }),
      async (n, a, b) => {
        const plain = bytes(n, a)
        // At most 2000 writes a side: 1-byte writes of 49 KiB made one run of 40 take from
        // 2 s to 30 s, by the draw (byte-by-byte writes have their own test above).
        const sealed = await through(pieces(plain, Math.max(a, Math.ceil(n / 2000))), createEncryptStream({ key, chunkSize: CS, workers: 1 }))
        const back = await through(pieces(sealed, Math.max(b, Math.ceil(sealed.length / 2000))), createDecryptStream({ key, workers: 1 }))
        expect(back.equals(plain)).toBe(true)
      }
    ), { numRuns: 40 })
  })

  it("a 12 MiB stream crosses into the worker pool and stays in order", async () => {
    const plain = bytes(12 * 1024 * 1024 + 3, 4)
    const sealed = await through(pieces(plain, 1 << 20), createEncryptStream({ key, chunkSize: 64 * 1024, workers: 2 }))
    const back = await through(pieces(sealed, 700_000), createDecryptStream({ key, workers: 2 }))
    expect(back.equals(plain)).toBe(true)
    const inProcess = await through(pieces(sealed, 1 << 20), createDecryptStream({ key, workers: 1 }))
    expect(inProcess.equals(plain)).toBe(true)
  })

  it("a tampered stream destroys the transform with the chunk's error", async () => {
    const sealed = await through(pieces(bytes(3 * CS, 1), 5000), createEncryptStream({ key, chunkSize: CS, workers: 1 }))
    sealed[66 + (CS + 16) + 5] ^= 4
    await expect(through(pieces(sealed, 5000), createDecryptStream({ key, workers: 1 }))).rejects.toMatchObject({ _tag: "ChunkAuthFailed", chunk: 1 })
  })

  it("rejects a write after end", async () => {
    const e = await Effect.runPromise(makeEncryptor({ key, workers: 1 }))
    await e.end()
    await expect(e.write(new Uint8Array(1))).rejects.toMatchObject({ _tag: "AgcmUsageError", reason: "WriteAfterEnd" })
    await e.close()
  })

  it("the incremental decryptor refuses bytes that are not AGCM from the magic's 4 bytes on, and waits on a header's valid start", async () => {
    for (const garbage of ["PK\x03\x04", "AGCX", "age-encr", "AGCM\x07\x00\x00\x00\x10"]) {
      const d = makeDecryptor({ key, workers: 1 })
      await expect(d.write(Buffer.from(garbage, "latin1")), JSON.stringify(garbage)).rejects.toMatchObject({ _tag: garbage.startsWith("AGCM") ? "UnsupportedVersion" : "NotAgcm" })
      await d.close()
    }
    for (const start of ["AGC", "AGCM", "AGCM\x02\x00\x00\x00\x10\x00"]) {
      const d = makeDecryptor({ key, workers: 1 })
      expect(await d.write(Buffer.from(start, "latin1")), JSON.stringify(start)).toEqual([])
      await expect(d.end()).rejects.toMatchObject({ _tag: "Truncated" })
      await d.close()
    }
  })

  it("the incremental decryptor never releases a chunk before it authenticated", async () => {
    const plain = bytes(4 * CS + 10, 2)
    const sealed = await through(pieces(plain, 9999), createEncryptStream({ key, chunkSize: CS, workers: 1 }))
    const d = makeDecryptor({ key, workers: 1 })
    let released = 0
    for (let i = 0; i < sealed.length; i += 3000) {
      for (const o of await d.write(sealed.subarray(i, i + 3000))) released += o.length
      // Released plaintext is always whole chunks that were fully received.
      expect(released % CS).toBe(0)
      expect(released).toBeLessThanOrEqual(Math.floor(Math.max(0, Math.min(sealed.length, i + 3000) - 66) / (CS + 16)) * CS)
    }
    for (const o of await d.end()) released += o.length
    expect(released).toBe(plain.length)
    await d.close()
  })

  it.for([7, 100, 4097, CS + 16, 3 * CS + 5])("a caller may refill its one buffer once write resolves (a read loop), %i bytes at a time", async (piece) => {
    const plain = bytes(4 * CS + 123, 6)
    /** Feeds `data` through `c` from one reused buffer, scribbled over after every write. */
    const feed = async (c: ReturnType<typeof makeDecryptor>, data: Uint8Array) => {
      const buffer = Buffer.alloc(piece)
      const out: Array<Uint8Array> = []
      for (let i = 0; i < data.length; i += piece) {
        const n = Math.min(piece, data.length - i)
        buffer.set(data.subarray(i, i + n))
        out.push(...(await c.write(buffer.subarray(0, n))).map((o) => Buffer.from(o)))
        buffer.fill(0xee)
      }
      out.push(...await c.end())
      await c.close()
      return Buffer.concat(out)
    }
    const sealed = await feed(await Effect.runPromise(makeEncryptor({ key, chunkSize: CS, workers: 1 })), plain)
    expect(await feed(makeDecryptor({ key, workers: 1 }), sealed)).toEqual(Buffer.from(plain))
  })
})

describe("Effect streams", () => {
  it.for([0, 1, CS, 3 * CS + 1])("round trip of %i bytes", async (n) => {
    const plain = bytes(n, 3)
    const sealed = await Effect.runPromise(Stream.fromIterable(pieces(plain, 777) as Array<Uint8Array>).pipe(
      encryptStream({ key, chunkSize: CS, workers: 1 }),
      Stream.runCollect
    ))
    const back = await Effect.runPromise(Stream.fromIterable(sealed).pipe(decryptStream({ key, workers: 1 }), Stream.runCollect))
    expect(Buffer.concat(back).equals(plain)).toBe(true)
  })

  it("fails with the tagged error", async () => {
    const sealed = await Effect.runPromise(Stream.make(new Uint8Array(10) as Uint8Array).pipe(encryptStream({ key, chunkSize: CS, workers: 1 }), Stream.runCollect))
    const all = Buffer.concat(sealed)
    const exit = await Effect.runPromise(Effect.flip(Stream.make(all.subarray(0, all.length - 1) as Uint8Array).pipe(decryptStream({ key, workers: 1 }), Stream.runCollect)))
    expect(exit).toMatchObject({ _tag: "ChunkAuthFailed", chunk: 0, final: true })
  })
})
