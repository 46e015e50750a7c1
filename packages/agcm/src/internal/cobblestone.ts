/**
 * The Cobblestone-256 core (c2sp.org/chunked-encryption): key derivation, the chunk nonces
 * and the one seal/open loop every AGCM path runs (in-process, segment workers, streams,
 * range reads, Wycheproof conformance tests).
 */
import * as crypto from "node:crypto"

/** Cobblestone-256 HKDF info label (c2sp.org/chunked-encryption, "Key derivation"). */
export const LABEL = "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM"
export const KEY_BYTES = 32
export const SALT_BYTES = 24
export const COMMITMENT_BYTES = 32
export const NONCE_BYTES = 12
export const TAG_BYTES = 16
/** Chunk indices fit the 5 nonce bytes the counter is XORed into. */
export const MAX_CHUNKS = 2 ** 40

/** Per-file secrets derived from the key, salt and context. */
export interface DerivedKeys {
  readonly aeadKey: Buffer
  readonly baseNonce: Buffer
  readonly commitment: Buffer
}

/**
 * HKDF-Expand (RFC 5869 section 2.3) with SHA-512, PRK = `key`. Cobblestone uses Expand
 * only (no Extract), which `crypto.hkdf` does not offer, hence this loop.
 */
export const hkdfExpandSha512 = (prk: Uint8Array, info: Uint8Array, length: number): Buffer => {
  const blocks: Array<Buffer> = []
  let previous = Buffer.alloc(0)
  for (let i = 1; blocks.length * 64 < length; i++) {
    previous = crypto.createHmac("sha512", prk).update(previous).update(info).update(Buffer.of(i)).digest()
    blocks.push(previous)
  }
  return Buffer.concat(blocks).subarray(0, length)
}

/** Derives AEAD key ‖ base nonce ‖ commitment from `key` (32 bytes), `salt` (24 bytes) and `context`. */
export const deriveKeys = (key: Uint8Array, salt: Uint8Array, context: Uint8Array): DerivedKeys => {
  const info = Buffer.concat([Buffer.from(LABEL, "latin1"), Buffer.of(0), salt, context])
  const okm = hkdfExpandSha512(key, info, KEY_BYTES + NONCE_BYTES + COMMITMENT_BYTES)
  const out = {
    aeadKey: Buffer.from(okm.subarray(0, KEY_BYTES)),
    baseNonce: Buffer.from(okm.subarray(KEY_BYTES, KEY_BYTES + NONCE_BYTES)),
    commitment: Buffer.from(okm.subarray(KEY_BYTES + NONCE_BYTES))
  }
  okm.fill(0)
  return out
}

/** Constant-time commitment comparison. */
export const commitmentMatches = (expected: Uint8Array, actual: Uint8Array): boolean =>
  expected.length === actual.length && crypto.timingSafeEqual(expected, actual)

/** Seal = 0, open = 1 (numbers, so a worker job message stays plain data). */
export const SEAL = 0
export const OPEN = 1

/**
 * Writes chunk `index`'s nonce into `nonce` (12 bytes): `baseNonce` XOR `index` as a
 * 40-bit big-endian integer in bytes 7..11 (`index` < 2^40).
 */
export const chunkNonce = (baseNonce: Uint8Array, index: number, nonce: Uint8Array): Uint8Array => {
  nonce.set(baseNonce)
  // Low 32 bits with >>>, high 8 bits by division (bit operators stop at 32 bits).
  const low = index >>> 0
  nonce[7] ^= Math.floor(index / 4294967296) & 0xff
  nonce[8] ^= (low >>> 24) & 0xff
  nonce[9] ^= (low >>> 16) & 0xff
  nonce[10] ^= (low >>> 8) & 0xff
  nonce[11] ^= low & 0xff
  return nonce
}

/**
 * Seals or opens a run of consecutive chunks `firstIndex, firstIndex + 1, ...`.
 *
 * - `input` holds the chunks back to back; `lengths[k]` is chunk k's input length in bytes
 *   (plaintext for seal, ciphertext ‖ 16-byte tag for open, which must be >= 16).
 * - `output` receives the results back to back (each `len + 16` for seal, `len - 16` for
 *   open); it may be `input` itself when opening (each output starts at or before its input).
 * - `release`, when given, is handed each `cipher.update()` output once it is copied into
 *   `output` (see `bufferReleaser` in memory.ts).
 *
 * Returns -1 on success, or the position k (within the run) of the first chunk that failed
 * authentication; output bytes from chunk k on are garbage and must be discarded.
 */
export const cipherSegment = (
  op: number,
  aeadKey: Uint8Array,
  baseNonce: Uint8Array,
  firstIndex: number,
  input: Uint8Array,
  lengths: ArrayLike<number>,
  output: Uint8Array,
  release?: (consumed: Uint8Array) => void
): number => {
  const nonce = new Uint8Array(NONCE_BYTES)
  let inAt = 0
  let outAt = 0
  for (let k = 0; k < lengths.length; k++) {
    chunkNonce(baseNonce, firstIndex + k, nonce)
    const length = lengths[k]
    if (op === SEAL) {
      const cipher = crypto.createCipheriv("aes-256-gcm", aeadKey, nonce)
      const body = cipher.update(input.subarray(inAt, inAt + length))
      cipher.final()
      output.set(body, outAt)
      if (release) release(body)
      output.set(cipher.getAuthTag(), outAt + length)
      outAt += length + TAG_BYTES
    } else {
      if (length < TAG_BYTES) return k
      const bodyLength = length - TAG_BYTES
      const decipher = crypto.createDecipheriv("aes-256-gcm", aeadKey, nonce)
      decipher.setAuthTag(input.subarray(inAt + bodyLength, inAt + length))
      const body = decipher.update(input.subarray(inAt, inAt + bodyLength))
      try {
        decipher.final()
      } catch {
        return k
      }
      output.set(body, outAt)
      if (release) release(body)
      outAt += bodyLength
    }
    inAt += length
  }
  return -1
}

/** Seals one chunk in-process. */
export const sealChunk = (keys: DerivedKeys, index: number, plaintext: Uint8Array): Uint8Array => {
  const out = new Uint8Array(plaintext.length + TAG_BYTES)
  cipherSegment(SEAL, keys.aeadKey, keys.baseNonce, index, plaintext, [plaintext.length], out)
  return out
}

/** Opens one chunk in-process; `undefined` when it fails authentication (or is shorter than a tag). */
export const openChunk = (keys: DerivedKeys, index: number, sealed: Uint8Array): Uint8Array | undefined => {
  if (sealed.length < TAG_BYTES) return undefined
  const out = new Uint8Array(sealed.length - TAG_BYTES)
  return cipherSegment(OPEN, keys.aeadKey, keys.baseNonce, index, sealed, [sealed.length], out) === -1 ? out : undefined
}

/** Overwrites derived secrets (best effort: V8 may have copied them). */
export const wipeKeys = (keys: DerivedKeys | undefined): void => {
  keys?.aeadKey.fill(0)
  keys?.baseNonce.fill(0)
}
