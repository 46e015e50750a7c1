/**
 * Options of the AGCM processors and streams (`agcmEncrypt`, `createEncryptStream`, …):
 * key material plus how the work is spread over threads.
 *
 * @module
 */
import type { KeyMaterial } from "./Format.js"

/** Options shared by encryption and decryption. */
export interface AgcmCommonOptions {
  /**
   * Worker threads that seal/open segments. Default `os.availableParallelism()`;
   * 1 runs in-process with no pool. Inputs under 8 MiB always run in-process.
   */
  readonly workers?: number
  /** A worker that does not answer a segment within this many ms fails the run. Default 120000. */
  readonly workerTimeoutMs?: number
  /**
   * Let segment buffers move to workers uncopied (the caller's buffer is detached). Only
   * when the caller never touches a segment's buffer after `processSegment`. Default false:
   * `@cage/core`'s engine reuses its read buffers, and a 1 MiB copy per segment costs less
   * than the fresh buffer the engine would otherwise allocate per segment (promoted
   * buffers set off full GCs; `@cage/core`'s README, "Memory").
   */
  readonly transferInputs?: boolean
}

/** Options of `agcmEncrypt` and the encrypting streams. */
export type AgcmEncryptOptions = KeyMaterial & AgcmCommonOptions & {
  /** Plaintext bytes per chunk: a power of two from 16 KiB to 4 MiB. Default 64 KiB. */
  readonly chunkSize?: number
}

/** Options of `agcmDecrypt` and the decrypting streams. */
export type AgcmDecryptOptions = KeyMaterial & AgcmCommonOptions & {
  /** Accept harpocrates AGCM v1 input (insecure; prints `LEGACY_V1_WARNING` every time). Default false. */
  readonly legacyV1?: boolean
  /** Where the v1 warning goes. Default: standard error. */
  readonly onWarning?: (message: string) => void
}
