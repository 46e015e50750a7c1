/**
 * The AGCM v2 header: layout, parsing, key derivation and `inspect` (see FORMAT.md).
 *
 * ```
 * offset size  field
 * 0      4     magic "AGCM"
 * 4      4     version, u32 little-endian = 2
 * 8      1     log2(chunk size in bytes), 14..22 (16 KiB..4 MiB)
 * 9      1     key mode: 0 = raw 256-bit key, 1 = scrypt passphrase
 * 10     1     (scrypt only) log2(N), r = 8, p = 1
 * 11     16    (scrypt only) scrypt salt
 * ..     2+L   (flag 0x80 of the key mode only) u16 LE L, then L bytes: the names of the
 *              reversible transforms applied before encryption, in order, "\n"-separated
 * ..     24    Cobblestone salt
 * ..     32    Cobblestone commitment
 * ```
 *
 * Every byte before the Cobblestone salt is the Cobblestone context, so editing any of them
 * changes the derived commitment and the header is rejected before a chunk is opened.
 *
 * @module
 */
import { ChunkSpec } from "@cage/core"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { AgcmUsageError, HeaderAuthFailed, InvalidHeader, KdfCostTooHigh, NotAgcm, Truncated, UnsupportedVersion } from "./Error.js"
import { commitmentMatches, COMMITMENT_BYTES, deriveKeys, type DerivedKeys, KEY_BYTES, SALT_BYTES } from "./internal/cobblestone.js"

/** `"AGCM"`. */
export const MAGIC = Buffer.from("AGCM", "latin1")
/** The version this package writes. */
export const VERSION = 2
/** The harpocrates format, readable with `legacyV1`. */
export const LEGACY_VERSION = 1
/** Smallest chunk size, 16 KiB (the Cobblestone-256 chunk size). */
export const MIN_CHUNK_SIZE = 16 * 1024
/** Largest chunk size, 4 MiB. */
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024
/** Default chunk size, 64 KiB: the per-chunk GCM setup cost (about 3 us) dominates below it. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024
/** Default scrypt cost for new passphrase files: N = 2^17, r = 8 (128 MiB, OWASP's floor). */
export const DEFAULT_SCRYPT_LOG_N = 17
/** Smallest and largest scrypt cost accepted when encrypting. */
export const MIN_SCRYPT_LOG_N = 10
export const MAX_SCRYPT_LOG_N = 20
/** Default cap on the scrypt cost a decryptor accepts from a header (256 MiB of memory). */
export const DEFAULT_MAX_SCRYPT_LOG_N = 18
export const SCRYPT_R = 8
export const SCRYPT_P = 1
export const SCRYPT_SALT_BYTES = 16
const SCRYPT_LABEL = Buffer.from("cage.dev/agcm/v2/scrypt", "latin1")

export const KEY_MODE_RAW = 0
export const KEY_MODE_SCRYPT = 1
/** Set in the key mode byte when the header records transforms (see {@link HeaderParams}). */
export const TRANSFORMS_FLAG = 0x80
/** Header length of a raw-key file (66 bytes) and of a passphrase file (83 bytes), without transforms. */
export const RAW_HEADER_BYTES = 10 + SALT_BYTES + COMMITMENT_BYTES
export const SCRYPT_HEADER_BYTES = 10 + 1 + SCRYPT_SALT_BYTES + SALT_BYTES + COMMITMENT_BYTES
/** Most bytes the transforms list may take (its UTF-8 names and separators), 1 KiB. */
export const MAX_TRANSFORMS_BYTES = 1024
/** Enough bytes to parse any v2 header: a passphrase header with the longest transforms list (1109). */
export const MAX_HEADER_BYTES = SCRYPT_HEADER_BYTES + 2 + MAX_TRANSFORMS_BYTES
/** A transform's name as the header stores it: printable ASCII without spaces (npm names, `a/b` subpaths). */
const TRANSFORM_NAME = /^[\x21-\x7e]{1,214}$/
/** v1 header: magic, version, 12-byte nonce, chunk size u32 LE. */
export const LEGACY_HEADER_BYTES = 24

/**
 * Key material: a raw 32-byte key, or a passphrase (scrypt). Never stored, logged or put in
 * a checkpoint; {@link wipeKey} zero-fills it once it is no longer needed.
 *
 * - `scryptLogN`: log2 of the scrypt cost N used when encrypting (10..20, default 17).
 * - `maxScryptLogN`: the highest cost a header may ask for when decrypting (default 18);
 *   a higher one fails with `KdfCostTooHigh` before any work.
 */
export type KeyMaterial =
  | { readonly key: Uint8Array }
  | { readonly passphrase: Uint8Array; readonly scryptLogN?: number; readonly maxScryptLogN?: number }

/** Zero-fills the key or passphrase bytes of `k` (best effort: copies made elsewhere stay). */
export const wipeKey = (k: KeyMaterial): void => {
  const m = k as { key?: Uint8Array; passphrase?: Uint8Array }
  m.key?.fill(0)
  m.passphrase?.fill(0)
}

/** Non-secret parameters of a v2 file. */
export interface HeaderParams {
  readonly chunkSize: number
  readonly keyMode: "raw" | "scrypt"
  /** Present when `keyMode` is `"scrypt"`. */
  readonly scrypt?: { readonly logN: number; readonly salt: Uint8Array }
  /** Cobblestone salt, 24 bytes. */
  readonly salt: Uint8Array
  /**
   * The reversible transforms (gzip…) the plaintext went through before encryption, in
   * order, by processor name: decrypting gives their output back, which processors that
   * undo them turn into the data. Stored in the header (not secret: readable without the
   * key, and authenticated by the commitment like every header byte). Absent or empty: none.
   */
  readonly transforms?: ReadonlyArray<string>
}

/** A parsed (not yet authenticated) v2 header. */
export interface ParsedHeader extends HeaderParams {
  readonly version: 2
  /** Header length in bytes (66 raw, 83 scrypt, plus 2 + the list's bytes with transforms). */
  readonly headerBytes: number
  /** The bytes before the salt: the Cobblestone context. */
  readonly context: Uint8Array
  readonly commitment: Uint8Array
}

/** A parsed harpocrates v1 header. */
export interface LegacyHeader {
  readonly version: 1
  readonly headerBytes: 24
  readonly nonce: Uint8Array
  readonly chunkSize: number
}

/** True when the key material is a raw key (tolerates `{ key: undefined, passphrase }`). */
export const isRawKey = (m: KeyMaterial): m is { readonly key: Uint8Array } =>
  (m as { key?: unknown }).key !== undefined

/** True when `bytes` start with the AGCM magic (any version). */
export const isAgcm = (bytes: Uint8Array): boolean =>
  bytes.length >= MAGIC.length && Buffer.from(bytes.buffer, bytes.byteOffset, MAGIC.length).equals(MAGIC)

const log2 = (n: number) => Math.log2(n)

/** True when `bytes` start a harpocrates v1 stream: the magic and version 1 (8 bytes at least). */
export const isLegacyV1 = (bytes: Uint8Array): boolean => bytes.length >= 8 && isAgcm(bytes) && u32(bytes, 4) === LEGACY_VERSION

/**
 * How many leading bytes of a stream the v2 header needs, judged from the `prefix` read so
 * far (bytes): at least 10 (magic, version, chunk size, key mode); then the header's whole
 * length once the key mode, and the transforms list's length, are known. A prefix that is not
 * a v2 header (wrong magic or version, unknown key mode, a transforms length out of range)
 * needs nothing more: `parseHeader` rejects it as it is. So a reader of a pipe that starts
 * with the 4-byte magic asks for the header in at most four short reads and fails on garbage
 * at once, instead of waiting for {@link MAX_HEADER_BYTES}. Source: FORMAT.md's header layout.
 */
export const headerBytesWanted = (prefix: Uint8Array): number => {
  const b = prefix
  const known = Math.min(b.length, 4)
  for (let i = 0; i < known; i++) if (b[i] !== MAGIC[i]) return b.length
  if (b.length < 10) return 10
  if (u32(b, 4) !== VERSION) return b.length
  const mode = b[9] & ~TRANSFORMS_FLAG
  if (mode !== KEY_MODE_RAW && mode !== KEY_MODE_SCRYPT) return b.length
  const fixed = mode === KEY_MODE_RAW ? RAW_HEADER_BYTES : SCRYPT_HEADER_BYTES
  if ((b[9] & TRANSFORMS_FLAG) === 0) return fixed
  const at = fixed - SALT_BYTES - COMMITMENT_BYTES
  if (b.length < at + 2) return at + 2
  const listBytes = b[at] | (b[at + 1] << 8)
  return listBytes === 0 || listBytes > MAX_TRANSFORMS_BYTES ? b.length : fixed + 2 + listBytes
}

/** The chunk sizes AGCM v2 accepts (FORMAT.md): powers of two from 16 KiB to 4 MiB. */
export const CHUNK_SIZE_RULE: ChunkSpec.ChunkSizeRule = { min: MIN_CHUNK_SIZE, max: MAX_CHUNK_SIZE, powerOfTwo: true }

/**
 * How encryption cuts plaintext: chunks of `chunkSize` bytes (default 64 KiB), no header,
 * C2SP's short final chunk. The one check of an AGCM chunk size (against
 * {@link CHUNK_SIZE_RULE}, with core's message); fails with `AgcmUsageError` (`"ChunkSize"`).
 */
export const encryptFraming = (chunkSize: number = DEFAULT_CHUNK_SIZE): Effect.Effect<ChunkSpec.Framing, AgcmUsageError> => {
  const problem = ChunkSpec.checkChunkBytes(chunkSize, CHUNK_SIZE_RULE)
  return problem === undefined
    ? Effect.succeed({ headerBytes: 0, chunkBytes: chunkSize, shortFinal: true })
    : Effect.fail(new AgcmUsageError({ reason: "ChunkSize", detail: problem }))
}

/**
 * The transforms list as the header stores it, or a problem with it: each name printable
 * ASCII without spaces, 1 to 214 bytes, the whole list at most {@link MAX_TRANSFORMS_BYTES}.
 */
export const encodeTransforms = (transforms: ReadonlyArray<string>): Buffer | string => {
  const bad = transforms.find((t) => !TRANSFORM_NAME.test(t))
  if (bad !== undefined) return `a transform name must be 1 to 214 printable ASCII characters without spaces, got ${JSON.stringify(bad)}`
  const list = Buffer.from(transforms.join("\n"), "latin1")
  return list.length > MAX_TRANSFORMS_BYTES ? `the transforms list takes ${list.length} bytes, more than ${MAX_TRANSFORMS_BYTES}` : list
}

/** The context bytes (everything before the salt) for `params` (its transforms were checked by {@link newParams}). */
export const encodeContext = (params: Omit<HeaderParams, "salt">): Buffer => {
  const transforms = params.transforms ?? []
  const fixed = Buffer.alloc(10)
  MAGIC.copy(fixed, 0)
  fixed.writeUInt32LE(VERSION, 4)
  fixed[8] = log2(params.chunkSize)
  fixed[9] = (params.keyMode === "raw" ? KEY_MODE_RAW : KEY_MODE_SCRYPT) | (transforms.length > 0 ? TRANSFORMS_FLAG : 0)
  const parts: Array<Uint8Array> = [fixed]
  if (params.keyMode === "scrypt") parts.push(Buffer.of(params.scrypt!.logN), Buffer.from(params.scrypt!.salt))
  if (transforms.length > 0) {
    const list = encodeTransforms(transforms)
    if (typeof list === "string") throw new Error(`internal error: ${list}`)
    const length = Buffer.alloc(2)
    length.writeUInt16LE(list.length)
    parts.push(length, list)
  }
  return Buffer.concat(parts)
}

/** Encodes a complete header with `commitment`. */
export const encodeHeader = (params: HeaderParams, commitment: Uint8Array): Uint8Array =>
  Buffer.concat([encodeContext(params), params.salt, commitment])

/** Reads a u32 LE from a byte array. */
const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000

/**
 * Parses the header at the start of `bytes` (give at least {@link MAX_HEADER_BYTES}, or all
 * of a shorter file). Checks structure only; the commitment is checked by {@link openHeader}.
 *
 * @throws NotAgcm, UnsupportedVersion (1 or > 2), Truncated, InvalidHeader
 */
export const parseHeader = (
  bytes: Uint8Array
): Effect.Effect<ParsedHeader, NotAgcm | UnsupportedVersion | Truncated | InvalidHeader> =>
  Effect.suspend((): Effect.Effect<ParsedHeader, NotAgcm | UnsupportedVersion | Truncated | InvalidHeader> => {
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
    if (b.length < 4) {
      return MAGIC.subarray(0, b.length).equals(b) && b.length > 0
        ? Effect.fail(new Truncated({ at: b.length, detail: "inside the magic" }))
        : Effect.fail(new NotAgcm({ detail: b.length === 0 ? "empty input" : "no AGCM magic" }))
    }
    if (!isAgcm(b)) return Effect.fail(new NotAgcm({ detail: "no AGCM magic" }))
    if (b.length < 8) return Effect.fail(new Truncated({ at: b.length, detail: "inside the version field" }))
    const version = u32(b, 4)
    if (version === LEGACY_VERSION) {
      return Effect.fail(new UnsupportedVersion({ version, detail: "this is a harpocrates v1 stream (insecure: shared nonce, no position or end binding), which only the legacy v1 reader opens" }))
    }
    if (version !== VERSION) return Effect.fail(new UnsupportedVersion({ version, detail: `this reader handles version ${VERSION}` }))
    if (b.length < 10) return Effect.fail(new Truncated({ at: b.length, detail: "inside the parameters" }))
    const logChunk = b[8]
    if (logChunk < log2(MIN_CHUNK_SIZE) || logChunk > log2(MAX_CHUNK_SIZE)) {
      return Effect.fail(new InvalidHeader({ field: "chunk size", detail: `2^${logChunk} is outside 16 KiB..4 MiB` }))
    }
    const mode = b[9] & ~TRANSFORMS_FLAG
    const hasTransforms = (b[9] & TRANSFORMS_FLAG) !== 0
    if (mode !== KEY_MODE_RAW && mode !== KEY_MODE_SCRYPT) {
      return Effect.fail(new InvalidHeader({ field: "key mode", detail: `unknown key mode ${b[9]}` }))
    }
    let contextBytes = mode === KEY_MODE_RAW ? RAW_HEADER_BYTES - SALT_BYTES - COMMITMENT_BYTES : SCRYPT_HEADER_BYTES - SALT_BYTES - COMMITMENT_BYTES
    let transforms: ReadonlyArray<string> = []
    if (hasTransforms) {
      if (b.length < contextBytes + 2) return Effect.fail(new Truncated({ at: b.length, detail: "inside the transforms list's length" }))
      const length = b.readUInt16LE(contextBytes)
      if (length === 0 || length > MAX_TRANSFORMS_BYTES) return Effect.fail(new InvalidHeader({ field: "transforms", detail: `a list of ${length} bytes is outside 1..${MAX_TRANSFORMS_BYTES}` }))
      if (b.length < contextBytes + 2 + length) return Effect.fail(new Truncated({ at: b.length, detail: "inside the transforms list" }))
      transforms = b.subarray(contextBytes + 2, contextBytes + 2 + length).toString("latin1").split("\n")
      const bad = transforms.find((t) => !TRANSFORM_NAME.test(t))
      if (bad !== undefined) return Effect.fail(new InvalidHeader({ field: "transforms", detail: `${JSON.stringify(bad)} is not a processor name` }))
      contextBytes += 2 + length
    }
    const headerBytes = contextBytes + SALT_BYTES + COMMITMENT_BYTES
    if (b.length < headerBytes) return Effect.fail(new Truncated({ at: b.length, detail: `inside the ${headerBytes}-byte header` }))
    let scrypt: ParsedHeader["scrypt"]
    if (mode === KEY_MODE_SCRYPT) {
      const logN = b[10]
      if (logN < MIN_SCRYPT_LOG_N) return Effect.fail(new InvalidHeader({ field: "scrypt cost", detail: `2^${logN} is below the minimum 2^${MIN_SCRYPT_LOG_N}` }))
      scrypt = { logN, salt: Uint8Array.from(b.subarray(11, 11 + SCRYPT_SALT_BYTES)) }
    }
    return Effect.succeed({
      version: VERSION,
      chunkSize: 2 ** logChunk,
      keyMode: mode === KEY_MODE_RAW ? "raw" : "scrypt",
      ...(scrypt ? { scrypt } : {}),
      ...(transforms.length > 0 ? { transforms } : {}),
      headerBytes,
      context: Uint8Array.from(b.subarray(0, contextBytes)),
      salt: Uint8Array.from(b.subarray(contextBytes, contextBytes + SALT_BYTES)),
      commitment: Uint8Array.from(b.subarray(contextBytes + SALT_BYTES, headerBytes))
    } satisfies ParsedHeader)
  })

/** Parses a harpocrates v1 header (24 bytes). */
export const parseLegacyHeader = (bytes: Uint8Array): Effect.Effect<LegacyHeader, NotAgcm | UnsupportedVersion | Truncated | InvalidHeader> =>
  Effect.suspend((): Effect.Effect<LegacyHeader, NotAgcm | UnsupportedVersion | Truncated | InvalidHeader> => {
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
    if (!isAgcm(b)) return Effect.fail(b.length < 4 && b.length > 0 && MAGIC.subarray(0, b.length).equals(b) ? new Truncated({ at: b.length, detail: "inside the magic" }) : new NotAgcm({ detail: "no AGCM magic" }))
    if (b.length < 8) return Effect.fail(new Truncated({ at: b.length, detail: "inside the version field" }))
    const version = u32(b, 4)
    if (version !== LEGACY_VERSION) return Effect.fail(new UnsupportedVersion({ version, detail: "the legacy reader handles version 1 only" }))
    if (b.length < LEGACY_HEADER_BYTES) return Effect.fail(new Truncated({ at: b.length, detail: "inside the 24-byte v1 header" }))
    const chunkSize = u32(b, 20)
    // Harpocrates accepts any chunk size; cap it so one frame always fits memory.
    if (chunkSize < 1 || chunkSize > 64 * 1024 * 1024) return Effect.fail(new InvalidHeader({ field: "v1 chunk size", detail: `${chunkSize} is outside 1..64 MiB` }))
    return Effect.succeed({ version: LEGACY_VERSION, headerBytes: LEGACY_HEADER_BYTES, nonce: Uint8Array.from(b.subarray(8, 20)), chunkSize } satisfies LegacyHeader)
  })

const scrypt = (passphrase: Uint8Array, salt: Uint8Array, logN: number) =>
  Effect.callback<Buffer>((resume) => {
    const N = 2 ** logN
    crypto.scrypt(passphrase, Buffer.concat([SCRYPT_LABEL, salt]), KEY_BYTES, { N, r: SCRYPT_R, p: SCRYPT_P, maxmem: 128 * N * SCRYPT_R + 16 * 1024 * 1024 }, (err, key) => {
      // Parameters are validated before; a failure here is a broken invariant.
      if (err) resume(Effect.die(new Error(`internal error: scrypt failed: ${err.message}`)))
      else resume(Effect.succeed(key))
    })
  })

/** The Cobblestone key (32 bytes) for a header: the raw key, or scrypt of the passphrase. */
export const fileKey = (
  params: Pick<HeaderParams, "keyMode" | "scrypt">,
  material: KeyMaterial,
  maxLogN = MAX_SCRYPT_LOG_N
): Effect.Effect<Buffer, AgcmUsageError | KdfCostTooHigh> =>
  Effect.suspend((): Effect.Effect<Buffer, AgcmUsageError | KdfCostTooHigh> => {
    if (params.keyMode === "raw") {
      if (!isRawKey(material)) return Effect.fail(new AgcmUsageError({ reason: "Key", detail: "this file was encrypted with a raw key, not a passphrase" }))
      if (material.key.length !== KEY_BYTES) return Effect.fail(new AgcmUsageError({ reason: "Key", detail: `the key must be ${KEY_BYTES} bytes, got ${material.key.length}` }))
      return Effect.succeed(Buffer.from(material.key))
    }
    if (isRawKey(material) || !material.passphrase) return Effect.fail(new AgcmUsageError({ reason: "Key", detail: "this file was encrypted with a passphrase, not a raw key" }))
    if (material.passphrase.length === 0) return Effect.fail(new AgcmUsageError({ reason: "Key", detail: "the passphrase is empty" }))
    const { logN, salt } = params.scrypt!
    if (logN > maxLogN) return Effect.fail(new KdfCostTooHigh({ logN, maxLogN }))
    return scrypt(material.passphrase, salt, logN)
  })

/** Non-secret parameters for a new file (fresh salts), validating the key options; `chunkSize` was checked by {@link encryptFraming}. */
export const newParams = (
  material: KeyMaterial,
  chunkSize: number,
  salts?: { readonly salt: Uint8Array; readonly scryptSalt?: Uint8Array; readonly scryptLogN?: number },
  transforms: ReadonlyArray<string> = []
): Effect.Effect<HeaderParams, AgcmUsageError> =>
  Effect.gen(function*() {
    const salt = salts?.salt ?? crypto.randomBytes(SALT_BYTES)
    if (salt.length !== SALT_BYTES) return yield* new AgcmUsageError({ reason: "Checkpoint", detail: `salt must be ${SALT_BYTES} bytes` })
    const list = encodeTransforms(transforms)
    if (typeof list === "string") return yield* new AgcmUsageError({ reason: "Transforms", detail: list })
    const recorded = transforms.length > 0 ? { transforms } : {}
    if (isRawKey(material)) {
      if (material.key.length !== KEY_BYTES) return yield* new AgcmUsageError({ reason: "Key", detail: `the key must be ${KEY_BYTES} bytes, got ${material.key.length}` })
      return { chunkSize, keyMode: "raw", salt, ...recorded } as const
    }
    const logN = salts?.scryptLogN ?? material.scryptLogN ?? DEFAULT_SCRYPT_LOG_N
    if (!Number.isInteger(logN) || logN < MIN_SCRYPT_LOG_N || logN > MAX_SCRYPT_LOG_N) {
      return yield* new AgcmUsageError({ reason: "ScryptCost", detail: `scrypt log2(N) must be from ${MIN_SCRYPT_LOG_N} to ${MAX_SCRYPT_LOG_N}, got ${logN}` })
    }
    const scryptSalt = salts?.scryptSalt ?? crypto.randomBytes(SCRYPT_SALT_BYTES)
    return { chunkSize, keyMode: "scrypt", scrypt: { logN, salt: scryptSalt }, salt, ...recorded } as const
  })

/** Derives the per-file keys for `params` and returns them with the encoded header. */
export const sealHeader = (
  params: HeaderParams,
  material: KeyMaterial
): Effect.Effect<{ readonly header: Uint8Array; readonly keys: DerivedKeys }, AgcmUsageError | KdfCostTooHigh> =>
  Effect.gen(function*() {
    const key = yield* fileKey(params, material)
    const keys = deriveKeys(key, params.salt, encodeContext(params))
    key.fill(0)
    return { header: encodeHeader(params, keys.commitment), keys }
  })

/**
 * Derives the keys for a parsed header and checks its commitment.
 *
 * @throws HeaderAuthFailed (wrong key or edited header), KdfCostTooHigh, AgcmUsageError (key kind or size)
 */
export const openHeader = (
  header: ParsedHeader,
  material: KeyMaterial
): Effect.Effect<DerivedKeys, HeaderAuthFailed | AgcmUsageError | KdfCostTooHigh> =>
  Effect.gen(function*() {
    const maxLogN = (isRawKey(material) ? undefined : material.maxScryptLogN) ?? DEFAULT_MAX_SCRYPT_LOG_N
    const key = yield* fileKey(header, material, maxLogN)
    const keys = deriveKeys(key, header.salt, header.context)
    key.fill(0)
    if (!commitmentMatches(keys.commitment, header.commitment)) {
      keys.aeadKey.fill(0)
      return yield* new HeaderAuthFailed()
    }
    return keys
  })

/** What `inspect` reports: JSON-able, no secrets. */
export interface HeaderDescription {
  readonly format: "agcm"
  readonly version: number
  /** Header length in bytes. */
  readonly headerBytes: number
  /** Plaintext bytes per chunk. */
  readonly chunkSize: number
  readonly keyMode: "raw" | "scrypt" | "raw (v1)"
  readonly scrypt?: { readonly logN: number; readonly r: number; readonly p: number }
  /** Ciphertext bytes per full chunk (with tag, and for v1 with its length prefix). */
  readonly sealedChunkBytes: number
  /** The reversible transforms applied before encryption, in order (v2; absent when none). */
  readonly transforms?: ReadonlyArray<string>
  readonly warning?: string
}

/** The weaknesses of v1, printed every time a v1 stream is read. */
export const LEGACY_V1_WARNING =
  "warning: reading an AGCM v1 (harpocrates) stream. v1 is insecure: every chunk shares one GCM nonce (leaking the XOR of plaintext chunks and allowing forgeries), and nothing binds a chunk's position or the end of the stream, so chunks can be reordered, dropped, duplicated or truncated without detection. Migrate it to v2 (cage migrate) and retire the v1 file."

/**
 * Describes the header at the start of `bytes` for `cage chunk inspect`. Does not need or
 * check the key. Accepts v1 and v2.
 *
 * @throws NotAgcm, UnsupportedVersion (> 2), Truncated, InvalidHeader
 */
export const inspect = (
  bytes: Uint8Array
): Effect.Effect<HeaderDescription, NotAgcm | UnsupportedVersion | Truncated | InvalidHeader> =>
  Effect.suspend(() => {
    if (isLegacyV1(bytes)) {
      return parseLegacyHeader(bytes).pipe(Effect.map((h): HeaderDescription => ({
        format: "agcm",
        version: 1,
        headerBytes: h.headerBytes,
        chunkSize: h.chunkSize,
        keyMode: "raw (v1)",
        sealedChunkBytes: h.chunkSize + 20,
        warning: LEGACY_V1_WARNING
      })))
    }
    return parseHeader(bytes).pipe(Effect.map((h): HeaderDescription => ({
      format: "agcm",
      version: h.version,
      headerBytes: h.headerBytes,
      chunkSize: h.chunkSize,
      keyMode: h.keyMode,
      ...(h.scrypt ? { scrypt: { logN: h.scrypt.logN, r: SCRYPT_R, p: SCRYPT_P } } : {}),
      sealedChunkBytes: h.chunkSize + 16,
      ...(h.transforms ? { transforms: h.transforms } : {})
    })))
  })
