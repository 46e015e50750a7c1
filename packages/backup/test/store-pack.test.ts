// The chunk store's keys and pack files (issue 21, first part): derivation, keyed chunk ids,
// round trips, and damage at every byte named by pack, blob offset and chunk id.
import * as crypto from "node:crypto"
import { describe, expect, it } from "vitest"
import { PackDamaged } from "../src/Error.js"
import { chunkId, deriveStoreKeys, wipeStoreKeys } from "../src/internal/store/keys.js"
import { openBlob, PackWriter, readTable } from "../src/internal/store/pack.js"

const master = crypto.createHash("sha256").update("master").digest()
const storeId = Buffer.alloc(16, 7)
const keys = deriveStoreKeys(master, storeId)
const chunks = [Buffer.from("alpha"), Buffer.alloc(0), crypto.randomBytes(300), Buffer.alloc(70_000, 0x61)]

const packOf = (plaintexts: ReadonlyArray<Uint8Array>) => {
  const w = new PackWriter(keys)
  for (const p of plaintexts) w.add(chunkId(keys, p), p)
  return w.finish()
}
/** Every chunk of `bytes`, through the table: plaintexts, or the PackDamaged of each that failed. */
const readAll = (packId: string, bytes: Buffer) =>
  readTable(packId, bytes, keys).map((e) => {
    try {
      return openBlob(packId, e, bytes.subarray(e.offset, e.offset + e.sealedBytes), keys)
    } catch (error) {
      return error as PackDamaged
    }
  })

describe("store keys", () => {
  it("derive one key per purpose, per store: a chunk id depends on the store, never a bare SHA-256", () => {
    const again = deriveStoreKeys(master, storeId)
    const other = deriveStoreKeys(master, Buffer.alloc(16, 8))
    const all = [keys, other].flatMap((k) => [k.chunkId, k.blob, k.index, k.snapshot, k.config]).map((k) => k.toString("hex"))
    expect(new Set(all).size).toBe(10)
    expect(again).toEqual(keys)
    const text = Buffer.from("a guessed file")
    expect(chunkId(keys, text)).toEqual(chunkId(again, text))
    expect(chunkId(keys, text)).not.toEqual(chunkId(other, text))
    expect(chunkId(keys, text)).not.toEqual(crypto.createHash("sha256").update(text).digest())
    expect(() => deriveStoreKeys(master.subarray(1), storeId)).toThrow(RangeError)
    const wiped = deriveStoreKeys(master, storeId)
    wipeStoreKeys(wiped)
    expect(wiped.blob.every((b) => b === 0)).toBe(true)
  })
})

describe("pack files", () => {
  it("round-trip every chunk, named by the SHA-256 of the pack's bytes", () => {
    const pack = packOf(chunks)
    expect(pack.packId).toBe(crypto.createHash("sha256").update(pack.bytes).digest("hex"))
    expect(readTable(pack.packId, pack.bytes, keys)).toEqual(pack.entries)
    expect(readAll(pack.packId, pack.bytes)).toEqual(chunks)
    expect(pack.entries.map((e) => e.plainBytes)).toEqual(chunks.map((c) => c.length))
    // An empty pack is a valid pack of no chunks.
    const empty = packOf([])
    expect(readTable(empty.packId, empty.bytes, keys)).toEqual([])
  })

  it("a flipped bit anywhere is found: in a blob, only that chunk fails (named); in the table or trailer, the pack", () => {
    const small = [Buffer.from("one"), Buffer.alloc(0), Buffer.from("three three")]
    const pack = packOf(small)
    for (let at = 0; at < pack.bytes.length; at++) {
      const b = Buffer.from(pack.bytes)
      b[at] ^= 0x10
      const blob = pack.entries.findIndex((e) => at >= e.offset && at < e.offset + e.sealedBytes)
      if (blob < 0) {
        expect(() => readAll(pack.packId, b), `byte ${at}`).toThrow(PackDamaged)
        continue
      }
      const got = readAll(pack.packId, b)
      got.forEach((r, k) => {
        if (k === blob) expect(r, `byte ${at}`).toMatchObject({ _tag: "PackDamaged", offset: pack.entries[k].offset, chunk: pack.entries[k].id.toString("hex"), exitCode: 3 })
        else expect(r).toEqual(small[k])
      })
    }
  })

  it("a pack cut at any length is refused", () => {
    const pack = packOf(chunks.slice(0, 3))
    for (let n = 0; n < pack.bytes.length; n++) {
      expect(() => readTable(pack.packId, pack.bytes.subarray(0, n), keys), `${n} bytes`).toThrow(PackDamaged)
    }
  })

  it("a blob opens only as the chunk it was sealed for, under this store's keys", () => {
    // Random bytes: stored uncompressed, so both blobs have the same length.
    const a = crypto.randomBytes(40)
    const b = crypto.randomBytes(40)
    const pack = packOf([a, b])
    const [ea, eb] = pack.entries
    const blobB = pack.bytes.subarray(eb.offset, eb.offset + eb.sealedBytes)
    // B's blob where the table says A's chunk is: same length, other chunk.
    expect(() => openBlob(pack.packId, ea, blobB, keys)).toThrow(expect.objectContaining({ _tag: "PackDamaged", detail: "the chunk does not authenticate" }))
    // A table that claims a different id for a genuine blob is refused too.
    expect(() => openBlob(pack.packId, { ...ea, id: eb.id }, pack.bytes.subarray(ea.offset, ea.offset + ea.sealedBytes), keys)).toThrow(PackDamaged)
    expect(() => openBlob(pack.packId, ea, blobB.subarray(1), keys)).toThrow(expect.objectContaining({ detail: expect.stringContaining("expected 68 bytes, got 67") }))
    const otherStore = deriveStoreKeys(master, Buffer.alloc(16, 9))
    expect(() => readTable(pack.packId, pack.bytes, otherStore)).toThrow(expect.objectContaining({ detail: expect.stringContaining("another store's key") }))
  })

  it("compresses a chunk only when that makes it smaller, and an entry whose length lies is refused", () => {
    const text = Buffer.from("INSERT INTO t VALUES (1, 'alpha');\n".repeat(4000))
    const noise = crypto.randomBytes(200_000)
    const pack = packOf([text, noise, Buffer.from("ab")])
    const [et, en, es] = pack.entries
    expect(et.sealedBytes).toBeLessThan(text.length / 10)
    expect(en.sealedBytes).toBe(noise.length + 28)
    expect(es.sealedBytes).toBe(2 + 28)
    expect(readAll(pack.packId, pack.bytes)).toEqual([text, noise, Buffer.from("ab")])
    // Random bytes with a run of zeros in the middle or at the end: compressed, although their start is not.
    for (const at of [300_000, 600_000 - 65_536]) {
      const mixed = crypto.randomBytes(600_000)
      mixed.fill(0, at, at + 65_536)
      const [e] = packOf([mixed]).entries
      expect(e.sealedBytes, `zeros at ${at}`).toBeLessThan(600_000 - 60_000)
    }
    // A compressed body never inflates past the length its entry records.
    const blob = pack.bytes.subarray(et.offset, et.offset + et.sealedBytes)
    expect(() => openBlob(pack.packId, { ...et, plainBytes: text.length - 1 }, blob, keys)).toThrow(expect.objectContaining({ _tag: "PackDamaged", detail: "the chunk's compressed body does not decompress" }))
    expect(() => openBlob(pack.packId, { ...et, plainBytes: text.length + 1 }, blob, keys)).toThrow(expect.objectContaining({ detail: `the chunk holds ${text.length} bytes, its entry says ${text.length + 1}` }))
  })

  it("never reuses a nonce: sealing the same chunk twice gives different blobs", () => {
    const one = packOf([chunks[0]])
    const two = packOf([chunks[0]])
    expect(one.bytes.equals(two.bytes)).toBe(false)
    const nonces = new Set([one, two].flatMap((p) => [p.bytes.subarray(0, 12).toString("hex")]))
    expect(nonces.size).toBe(2)
  })
})
