import { Effect } from "effect"
import * as fs from "node:fs"
import * as zlib from "node:zlib"
import { describe, expect, it } from "vitest"
import { cipherSegment, deriveKeys, OPEN, SEAL } from "../src/internal/cobblestone.js"
import { bufferReleaser } from "../src/internal/memory.js"
import { openMessage, sealMessage } from "../src/internal/message.js"
import { failureOf, sha, VECTORS } from "./helpers.js"

interface ChunkedVector {
  tcId: number
  comment: string
  key: string
  ctx: string
  ct: string
  aeadKey?: string
  baseNonce?: string
  msgLength?: number
  msgSha512?: string
  result: "valid" | "invalid"
  flags: Array<string>
}

const load = (name: string) => JSON.parse(fs.readFileSync(new URL(`wycheproof/${name}`, VECTORS), "utf8"))

describe("Wycheproof c2sp_chunked_encryption_aes_256_gcm_test.json through the AGCM core", () => {
  const file = load("c2sp_chunked_encryption_aes_256_gcm_test.json")
  const vectors: Array<ChunkedVector> = file.testGroups.flatMap((g: { tests: Array<ChunkedVector> }) => g.tests)
  it("has all 35 vectors", () => expect(vectors.length).toBe(35))
  it.for(vectors)("tcId $tcId: $comment", async (v) => {
    const key = Buffer.from(v.key, "hex")
    const ctx = Buffer.from(v.ctx, "hex")
    const ct = zlib.inflateSync(Buffer.from(v.ct, "hex"))
    if (v.aeadKey && v.baseNonce) {
      const keys = deriveKeys(key, ct.subarray(0, 24), ctx)
      expect(keys.aeadKey.toString("hex")).toBe(v.aeadKey)
      expect(keys.baseNonce.toString("hex")).toBe(v.baseNonce)
    }
    if (v.result === "valid") {
      const plain = await Effect.runPromise(openMessage(key, ctx, ct))
      expect(plain.length).toBe(v.msgLength)
      expect(sha("sha512", plain)).toBe(v.msgSha512)
      // Sealing the plaintext again with the vector's salt reproduces the ciphertext byte for byte.
      expect(Buffer.from(sealMessage(key, ctx, plain, 16384, ct.subarray(0, 24))).equals(ct)).toBe(true)
      return
    }
    const error = await failureOf(openMessage(key, ctx, ct)) as { _tag: string }
    if (v.flags.includes("HeaderFailure")) {
      expect(["HeaderAuthFailed", "Truncated", "AgcmUsageError"]).toContain(error._tag)
      if (v.flags.includes("InvalidKeySize")) expect(error._tag).toBe("AgcmUsageError")
      if (v.flags.includes("WrongKey") || v.flags.includes("WrongContext")) expect(error._tag).toBe("HeaderAuthFailed")
    } else {
      expect(["ChunkAuthFailed", "Truncated", "TrailingData"]).toContain(error._tag)
    }
    if (v.flags.includes("Truncation") && !v.flags.includes("HeaderFailure")) expect(["Truncated", "ChunkAuthFailed"]).toContain(error._tag)
    if (v.comment === "valid full chunk and short final chunk followed by extra encrypted chunk") expect(error._tag).toBe("TrailingData")
    // Vectors 18 and 19 append garbage after a full chunk with no final chunk: no valid final
    // chunk exists, so the file reads as cut (Truncated) or with a damaged final chunk.
    if (v.flags.includes("TrailingData")) expect(["TrailingData", "ChunkAuthFailed", "Truncated"]).toContain(error._tag)
    if (v.flags.includes("ChunkReordering")) expect(error._tag).toBe("ChunkAuthFailed")
  })
})

describe("Wycheproof c2sp_chunked_encryption_aes_128_gcm_test.json", () => {
  // AGCM is AES-256 only: every AES-128 vector must be refused as a wrong key size before any chunk.
  const file = load("c2sp_chunked_encryption_aes_128_gcm_test.json")
  const vectors: Array<ChunkedVector> = file.testGroups.flatMap((g: { tests: Array<ChunkedVector> }) => g.tests)
  it.for(vectors)("tcId $tcId is refused (16-byte keys are not AES-256)", async (v) => {
    const key = Buffer.from(v.key, "hex")
    const ct = zlib.inflateSync(Buffer.from(v.ct, "hex"))
    const error = await failureOf(openMessage(key, Buffer.from(v.ctx, "hex"), ct)) as { _tag: string }
    expect(key.length === 32 ? ["HeaderAuthFailed", "Truncated", "ChunkAuthFailed", "TrailingData"] : ["AgcmUsageError"]).toContain(error._tag)
  })
})

interface GcmVector {
  tcId: number
  iv: string
  key: string
  aad: string
  msg: string
  ct: string
  tag: string
  result: "valid" | "invalid" | "acceptable"
}

describe("Wycheproof aes_gcm_test.json through cipherSegment", () => {
  const releaser = bufferReleaser()
  it("runs with the output releaser the engine uses on this Node", () => expect(releaser).toBeTypeOf("function"))
  const file = load("aes_gcm_test.json")
  const groups: Array<{ keySize: number; ivSize: number; tagSize: number; tests: Array<GcmVector> }> = file.testGroups
  const all = groups.flatMap((g) => g.tests.map((t) => ({ ...t, keySize: g.keySize, ivSize: g.ivSize, tagSize: g.tagSize })))
  it("loops over all 316 vectors", () => expect(all.length).toBe(316))
  it.for(all)("tcId $tcId", (v) => {
    // AGCM seals with AES-256, 96-bit nonces, 128-bit tags and no AAD: only those vectors apply.
    const applicable = v.keySize === 256 && v.ivSize === 96 && v.tagSize === 128 && v.aad === ""
    if (!applicable) {
      const reason = v.keySize !== 256 ? "key size" : v.ivSize !== 96 ? "IV size" : v.tagSize !== 128 ? "tag size" : "AAD (AGCM uses none)"
      expect(reason.length).toBeGreaterThan(0)
      return
    }
    const key = Buffer.from(v.key, "hex")
    const iv = Buffer.from(v.iv, "hex")
    const msg = Buffer.from(v.msg, "hex")
    const sealed = Buffer.concat([Buffer.from(v.ct, "hex"), Buffer.from(v.tag, "hex")])
    // Both ways the engine runs it: cipher outputs left to the GC, and released at once.
    for (const release of [undefined, releaser]) {
      const opened = new Uint8Array(Math.max(0, sealed.length - 16))
      const failedAt = cipherSegment(OPEN, key, iv, 0, sealed, [sealed.length], opened, release)
      if (v.result === "valid") {
        expect(failedAt).toBe(-1)
        expect(Buffer.from(opened).equals(msg)).toBe(true)
        const out = new Uint8Array(msg.length + 16)
        cipherSegment(SEAL, key, iv, 0, msg, [msg.length], out, release)
        expect(Buffer.from(out).equals(sealed)).toBe(true)
      } else {
        expect(failedAt).toBe(0)
      }
    }
  })
})
