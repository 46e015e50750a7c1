/**
 * Whole-message Cobblestone (salt ‖ commitment ‖ chunks) over the same core as the
 * processors (`deriveKeys`, `openSegment`, `cipherSegment`), with the chunk size and
 * context as parameters: at 16 KiB this is Cobblestone-256, which the Wycheproof vectors
 * check. AGCM v2 is this with a 10..27-byte AGCM prefix as the context.
 */
import { ChunkSpec } from "@cage/core"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { AgcmUsageError, HeaderAuthFailed, Truncated } from "../Error.js"
import { cipherSegment, commitmentMatches, COMMITMENT_BYTES, deriveKeys, KEY_BYTES, SALT_BYTES, SEAL, TAG_BYTES, wipeKeys } from "./cobblestone.js"
import { openSegment } from "./open.js"
import { SegmentCipher } from "./segmentCipher.js"

export const COBBLESTONE_CHUNK_SIZE = 16 * 1024

/** Seals `plaintext` as a Cobblestone message (salt ‖ commitment ‖ chunks). */
export const sealMessage = (key: Uint8Array, context: Uint8Array, plaintext: Uint8Array, chunkSize = COBBLESTONE_CHUNK_SIZE, salt: Uint8Array = crypto.randomBytes(SALT_BYTES)): Uint8Array => {
  const keys = deriveKeys(key, salt, context)
  const plan = ChunkSpec.planRegion(plaintext.length, { headerBytes: 0, chunkBytes: chunkSize, shortFinal: true })
  const lengths = [...plan.chunks()].map((c) => c.length)
  const out = new Uint8Array(SALT_BYTES + COMMITMENT_BYTES + plaintext.length + TAG_BYTES * lengths.length)
  out.set(salt, 0)
  out.set(keys.commitment, SALT_BYTES)
  cipherSegment(SEAL, keys.aeadKey, keys.baseNonce, 0, plaintext, lengths, out.subarray(SALT_BYTES + COMMITMENT_BYTES))
  wipeKeys(keys)
  return out
}

/** Opens a Cobblestone message. Fails like `agcmDecrypt` (HeaderAuthFailed, Truncated, ChunkAuthFailed, TrailingData). */
export const openMessage = (key: Uint8Array, context: Uint8Array, message: Uint8Array, chunkSize = COBBLESTONE_CHUNK_SIZE, workers = 1) =>
  Effect.gen(function*() {
    if (key.length !== KEY_BYTES) return yield* new AgcmUsageError({ reason: "Key", detail: `the key must be ${KEY_BYTES} bytes, got ${key.length}` })
    const headerBytes = SALT_BYTES + COMMITMENT_BYTES
    if (message.length < headerBytes) return yield* new Truncated({ at: message.length, detail: "inside the salt and commitment" })
    const keys = deriveKeys(key, message.subarray(0, SALT_BYTES), context)
    if (!commitmentMatches(keys.commitment, message.subarray(SALT_BYTES, headerBytes))) return yield* new HeaderAuthFailed()
    const region = message.subarray(headerBytes)
    const plan = ChunkSpec.planRegion(region.length, { headerBytes, chunkBytes: chunkSize + TAG_BYTES, shortFinal: true })
    const specs = [...plan.chunks()]
    const cipher = new SegmentCipher(keys, { workers })
    const outputs = yield* openSegment(cipher, keys, chunkSize, specs, specs.map((s) => region.subarray(s.start, s.end)), region.length, headerBytes).pipe(
      Effect.ensuring(Effect.suspend(() => cipher.close())),
      Effect.ensuring(Effect.sync(() => wipeKeys(keys)))
    )
    return Buffer.concat(outputs)
  })
