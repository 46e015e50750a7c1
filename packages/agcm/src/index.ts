/**
 * @cage/agcm: AGCM v2, streaming, seekable, parallel AES-256-GCM file encryption built on
 * C2SP chunked encryption (Cobblestone-256), plus a decrypt-only reader for harpocrates'
 * insecure AGCM v1. See README.md and FORMAT.md.
 *
 * @module
 */
export * from "./Error.js"
export {
  CHUNK_SIZE_RULE,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_MAX_SCRYPT_LOG_N,
  DEFAULT_SCRYPT_LOG_N,
  encryptFraming,
  type HeaderDescription,
  inspect,
  isAgcm,
  type KeyMaterial,
  LEGACY_V1_WARNING,
  MAX_CHUNK_SIZE,
  MAX_HEADER_BYTES,
  MAX_TRANSFORMS_BYTES,
  MAX_SCRYPT_LOG_N,
  MIN_CHUNK_SIZE,
  MIN_SCRYPT_LOG_N,
  VERSION,
  wipeKey
} from "./Format.js"
export { KEY_FILE_BYTES, KEY_PREFIX, parseKeyText } from "./KeyFile.js"
export { agcmDecrypt, agcmDecryptFactory, agcmEncrypt, agcmEncryptFactory, PROCESSOR_VERSION } from "./Agcm.js"
export type { AgcmDecryptOptions, AgcmEncryptOptions } from "./Options.js"
export { defaultWorkers } from "./internal/segmentCipher.js"
export {
  createDecryptStream,
  createEncryptStream,
  decryptStream,
  encryptStream,
  makeDecryptor,
  makeEncryptor,
  type StreamCipher
} from "./Stream.js"
export { decryptRange, decryptRangeTo, decryptRangeWithStats, type RangeStats } from "./Range.js"
export { createLegacyDecryptStream, type LegacyDecryptor, legacyV1Processor, type LegacyV1Options, makeLegacyDecryptor } from "./LegacyV1.js"
export { migrateV1ToV2, migrateV1File, type MigrateOptions } from "./Migrate.js"
