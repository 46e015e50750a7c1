import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { describe, expect, it } from "vitest"
import { agcmDecrypt, createDecryptStream, createLegacyDecryptStream, inspect, LEGACY_V1_WARNING, migrateV1File, migrateV1ToV2 } from "../src/index.js"
import { failureOf, key32, sha, VECTORS } from "./helpers.js"

interface V1Vector {
  name: string
  key: string
  chunkSize: number
  plaintextLength: number
  plaintextSha256: string
  file: string
}

const dir = new URL("harpocrates-v1/", VECTORS)
const vectors: Array<V1Vector> = JSON.parse(fs.readFileSync(new URL("vectors.json", dir), "utf8"))
const read = (f: string) => fs.readFileSync(new URL(f, dir))

const collect = async (source: Uint8Array, transform: NodeJS.ReadWriteStream, pieceSize = 977) => {
  const parts: Array<Buffer> = []
  const pieces = function*() {
    for (let i = 0; i < source.length; i += pieceSize) yield Buffer.from(source.subarray(i, i + pieceSize))
  }
  await pipeline(Readable.from(pieces()), transform, new Writable({
    write(c: Buffer, _e, cb) {
      parts.push(c)
      cb()
    }
  }))
  return Buffer.concat(parts)
}

describe("harpocrates v1 vectors", () => {
  it("has the 13 recorded streams", () => expect(vectors.length).toBe(13))

  it.for(vectors)("$name decrypts to its SHA-256 through the engine with legacyV1, from bytes and from a stream in 7-byte pieces, warning every time", async (v) => {
    const file = read(v.file)
    // A stream is read once, in order: the v2 header's steps and then the v1 header's 24 bytes
    // must continue where the last read ended (the pieces cut both headers).
    const pieces = function*() {
      for (let i = 0; i < file.length; i += 7) yield file.subarray(i, i + 7)
    }
    for (const input of [ChunkInput.fromBytes(file), ChunkInput.fromStream(Readable.from(pieces()), "pipe")]) {
      const warnings: Array<string> = []
      const out = ChunkOutput.toMemory()
      const summary = await Effect.runPromise(runPipeline({
        input,
        output: out,
        pipeline: [agcmDecrypt({ key: Buffer.from(v.key, "hex"), legacyV1: true, onWarning: (m) => warnings.push(m) })],
        chunkBytes: 65536
      }))
      expect(out.bytes().length).toBe(v.plaintextLength)
      expect(sha("sha256", out.bytes())).toBe(v.plaintextSha256)
      expect(warnings).toEqual([LEGACY_V1_WARNING])
      expect(JSON.stringify(summary.results)).toContain("insecure")
    }
  })

  it.for(vectors)("$name decrypts through the v1 stream reader, fed in odd-sized pieces", async (v) => {
    const warnings: Array<string> = []
    const plain = await collect(read(v.file), createLegacyDecryptStream({ key: Buffer.from(v.key, "hex"), onWarning: (m) => warnings.push(m) }), 13)
    expect(sha("sha256", plain)).toBe(v.plaintextSha256)
    expect(warnings.length).toBe(1)
  })

  it.for(vectors)("$name decrypts through createDecryptStream with legacyV1", async (v) => {
    const warnings: Array<string> = []
    const plain = await collect(read(v.file), createDecryptStream({ key: Buffer.from(v.key, "hex"), legacyV1: true, onWarning: (m) => warnings.push(m) }), 5)
    expect(sha("sha256", plain)).toBe(v.plaintextSha256)
    expect(warnings).toEqual([LEGACY_V1_WARNING])
  })

  it("createDecryptStream refuses v1 without legacyV1", async () => {
    await expect(collect(read(vectors[4].file), createDecryptStream({ key: Buffer.from(vectors[4].key, "hex") }))).rejects.toMatchObject({ _tag: "UnsupportedVersion", version: 1 })
  })

  it("names v1's weaknesses in the warning", () => {
    for (const word of ["nonce", "reordered", "truncated", "position"]) expect(LEGACY_V1_WARNING).toContain(word)
  })

  it("refuses v1 without the legacy flag, pointing at it", async () => {
    const v = vectors[5]
    const e = await failureOf(runPipeline({ input: ChunkInput.fromBytes(read(v.file)), output: ChunkOutput.toMemory(), pipeline: [agcmDecrypt({ key: Buffer.from(v.key, "hex") })], chunkBytes: 65536 }))
    const cause = (e as { cause: { _tag: string; version: number; message: string } }).cause
    expect(cause._tag).toBe("UnsupportedVersion")
    expect(cause.version).toBe(1)
    expect(cause.message).toContain("only the legacy v1 reader opens")
  })

  it("a wrong key or a flipped byte fails the v1 frame", async () => {
    const v = vectors[11]
    const e = await failureOf(runPipeline({ input: ChunkInput.fromBytes(read(v.file)), output: ChunkOutput.toMemory(), pipeline: [agcmDecrypt({ key: key32(1), legacyV1: true, onWarning: () => {} })], chunkBytes: 65536 }))
    expect((e as { cause: { _tag: string; frame: number } }).cause).toMatchObject({ _tag: "LegacyFrameError", frame: 0 })
    const bad = Buffer.from(read(v.file))
    bad[24 + 65556 + 100] ^= 1
    await expect(collect(bad, createLegacyDecryptStream({ key: Buffer.from(v.key, "hex"), onWarning: () => {} }))).rejects.toMatchObject({ _tag: "LegacyFrameError", frame: 1 })
    await expect(collect(bad.subarray(0, bad.length - 3), createLegacyDecryptStream({ key: Buffer.from(v.key, "hex"), onWarning: () => {} }))).rejects.toMatchObject({ _tag: "LegacyFrameError" })
  })

  it("inspect describes a v1 header with its warning", async () => {
    const d = await Effect.runPromise(inspect(read(vectors[12].file)))
    expect(d).toMatchObject({ version: 1, chunkSize: 4096, headerBytes: 24, keyMode: "raw (v1)" })
  })
})

describe("migrate v1 to v2", () => {
  it.for(vectors)("$name migrates to a v2 stream with the same plaintext", async (v) => {
    const newKey = key32(99)
    const parts: Array<Buffer> = []
    await Effect.runPromise(migrateV1ToV2(Readable.from([read(v.file)]), new Writable({
      write(c: Buffer, _e, cb) {
        parts.push(c)
        cb()
      }
    }), { v1Key: Buffer.from(v.key, "hex"), encrypt: { key: newKey, chunkSize: 16384, workers: 1 }, onWarning: () => {} }))
    const v2 = Buffer.concat(parts)
    expect((await Effect.runPromise(inspect(v2))).version).toBe(2)
    const plain = await collect(v2, createDecryptStream({ key: newKey, workers: 1 }))
    expect(sha("sha256", plain)).toBe(v.plaintextSha256)
  })

  it("migrateV1File stages the output and publishes it 0600; a bad v1 file leaves nothing", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "agcm-migrate-"))
    const v = vectors[12]
    const src = path.join(tmp, "in.agcm")
    fs.writeFileSync(src, read(v.file))
    const out = path.join(tmp, "out.agcm")
    await Effect.runPromise(migrateV1File(src, out, { v1Key: Buffer.from(v.key, "hex"), encrypt: { key: key32(3), workers: 1 }, onWarning: () => {} }))
    expect(fs.statSync(out).mode & 0o777).toBe(0o600)
    const plain = await collect(fs.readFileSync(out), createDecryptStream({ key: key32(3), workers: 1 }))
    expect(sha("sha256", plain)).toBe(v.plaintextSha256)
    const out2 = path.join(tmp, "out2.agcm")
    const e = await failureOf(migrateV1File(src, out2, { v1Key: key32(4), encrypt: { key: key32(3), workers: 1 }, onWarning: () => {} }))
    expect((e as { _tag: string })._tag).toBe("LegacyFrameError")
    expect(fs.existsSync(out2)).toBe(false)
    expect(fs.existsSync(`${out2}.partial`)).toBe(false)
    fs.rmSync(tmp, { recursive: true })
  })
})
