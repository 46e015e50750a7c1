/**
 * The default backup cipher: AGCM v2 from `@cage/agcm` (AES-256-GCM, C2SP chunked
 * encryption). Ciphertext chunk i lies at `header + i × (chunkSize + 16)`, which is what
 * lets verify hash chunks without the key and restore decrypt any range.
 *
 * @module
 */
import { agcmDecrypt, agcmEncrypt, type KeyMaterial } from "@cage/agcm"
import type { BackupCipher } from "./Backup.js"

/** Options of {@link agcmCipher}. */
export interface AgcmCipherOptions {
  /** Plaintext bytes per chunk: a power of two from 16 KiB to 4 MiB. Default 64 KiB (AGCM's default). */
  readonly chunkSize?: number
  /** Cipher worker threads. Default: available cores. */
  readonly workers?: number
}

/** AGCM v2 as a {@link BackupCipher}. */
export const agcmCipher = (key: KeyMaterial, options: AgcmCipherOptions = {}): BackupCipher => {
  const workers = options.workers === undefined ? {} : { workers: options.workers }
  return {
    name: "agcm",
    encrypt: () =>
      agcmEncrypt({
        ...("key" in key ? { key: key.key } : { passphrase: key.passphrase, ...(key.scryptLogN !== undefined ? { scryptLogN: key.scryptLogN } : {}) }),
        ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
        ...workers
      }),
    decrypt: () =>
      agcmDecrypt({
        ...("key" in key ? { key: key.key } : { passphrase: key.passphrase, ...(key.maxScryptLogN !== undefined ? { maxScryptLogN: key.maxScryptLogN } : {}) }),
        ...workers
      })
  }
}
