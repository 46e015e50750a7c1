/**
 * Tagged errors of AGCM. Every failure of a seal, open, header parse, range read or
 * worker run is one of these, so callers can tell truncation, tampering, trailing data,
 * a wrong key and a crashed worker apart (FiloSottile/age `internal/stream` keeps the same
 * distinctions).
 *
 * Exit codes follow the `cage` CLI contract (`ExitCode` in `@cage/core`): 2 usage,
 * 3 integrity or authentication, 4 input/output. No error ever carries key material or
 * plaintext.
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/** The bytes do not start with the `"AGCM"` magic. Exit code 3. */
export class NotAgcm extends Data.TaggedError("NotAgcm")<{ readonly detail: string }> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `not an AGCM file: ${this.detail}`
  }
}

/**
 * The header names a version this reader does not handle (v1 without `legacyV1`, or a
 * future version). Exit code 3.
 */
export class UnsupportedVersion extends Data.TaggedError("UnsupportedVersion")<{
  readonly version: number
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `unsupported AGCM version ${this.version}: ${this.detail}`
  }
}

/** A header field holds a value v2 does not allow (chunk size, key mode, KDF cost). Exit code 3. */
export class InvalidHeader extends Data.TaggedError("InvalidHeader")<{ readonly field: string; readonly detail: string }> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `invalid AGCM header: ${this.field}: ${this.detail}`
  }
}

/**
 * The header commitment does not match: the key (or passphrase) is wrong, or a header
 * byte (magic, version, parameters, salt, commitment) was edited. Checked before any chunk
 * is opened. Exit code 3.
 */
export class HeaderAuthFailed extends Data.TaggedError("HeaderAuthFailed")<Record<never, never>> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return "wrong key or passphrase, or the header was tampered with (commitment mismatch)"
  }
}

/**
 * Chunk `chunk` (0-based) failed AES-GCM authentication: it was modified, moved,
 * duplicated or swapped, or, when `final`, the file may also have been cut inside it.
 * Exit code 3.
 */
export class ChunkAuthFailed extends Data.TaggedError("ChunkAuthFailed")<{
  readonly chunk: number
  readonly final: boolean
}> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return this.final
      ? `chunk ${this.chunk} (the final chunk) failed authentication: it was modified, or the file was cut inside it`
      : `chunk ${this.chunk} failed authentication: it was modified, reordered or replaced`
  }
}

/**
 * The file ends too early: inside the header, where a chunk must follow, or with a final
 * chunk shorter than its 16-byte tag. `at` is the offset in bytes where input ended.
 * Exit code 3.
 */
export class Truncated extends Data.TaggedError("Truncated")<{ readonly at: number; readonly detail: string }> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `truncated AGCM file (input ends at byte ${this.at}): ${this.detail}`
  }
}

/** Bytes follow a valid final chunk. `bytes` is how many. Exit code 3. */
export class TrailingData extends Data.TaggedError("TrailingData")<{ readonly bytes: number }> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `${this.bytes} bytes of trailing data after the final chunk`
  }
}

/** The passphrase KDF cost in the header exceeds the reader's cap (a CPU/memory denial of service). Exit code 3. */
export class KdfCostTooHigh extends Data.TaggedError("KdfCostTooHigh")<{ readonly logN: number; readonly maxLogN: number }> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `scrypt cost 2^${this.logN} exceeds the allowed maximum 2^${this.maxLogN} (raise maxScryptLogN to accept it)`
  }
}

/** What was wrong in an {@link AgcmUsageError}. */
export type AgcmUsageReason =
  /** A chunk size that is not a power of two from 16 KiB to 4 MiB, or not the one a resumed checkpoint used. */
  | "ChunkSize"
  /** A worker count that is not an integer from 1 to 256. */
  | "Workers"
  /** Key material that does not fit: a key that is not 32 bytes, an empty passphrase, or the other kind than the file's (key or passphrase). */
  | "Key"
  /** A scrypt cost (`scryptLogN`) outside 10..20. */
  | "ScryptCost"
  /** A resumed checkpoint's agcm-encrypt snapshot that is unreadable (or holds a salt of the wrong size). */
  | "Checkpoint"
  /** Range bounds that are invalid or end past the plaintext. */
  | "Range"
  /** An incremental encryptor written to after its end. */
  | "WriteAfterEnd"
  /** A transform before the cipher whose name the header cannot record (see `HeaderParams.transforms`). */
  | "Transforms"

/** Bad options or calls: see {@link AgcmUsageReason}; `detail` holds the facts. Exit code 2. */
export class AgcmUsageError extends Data.TaggedError("AgcmUsageError")<{ readonly reason: AgcmUsageReason; readonly detail: string }> {
  readonly exitCode: ExitCode = ExitCode.Usage
  override get message() {
    return this.detail
  }
}

/**
 * The file records reversible transforms applied before encryption (gzip…), and the
 * processors right after `agcm-decrypt` do not undo them, last first: decrypting would
 * publish their output (compressed bytes) as if it were the data. `recorded` is the
 * header's list in the order applied; `undone` what the following processors declare they
 * undo, in pipeline order. Exit code 2.
 */
export class TransformsNotUndone extends Data.TaggedError("TransformsNotUndone")<{
  readonly recorded: ReadonlyArray<string>
  readonly undone: ReadonlyArray<string>
}> {
  readonly exitCode: ExitCode = ExitCode.Usage
  override get message() {
    const needed = [...this.recorded].reverse()
    return `the plaintext went through ${this.recorded.join(", then ")} before encryption: after agcm-decrypt the pipeline must undo ${needed.join(", then ")}` +
      (this.undone.length > 0 ? ` (it undoes ${this.undone.join(", then ")})` : " (nothing after agcm-decrypt undoes a transform)")
  }
}

/**
 * A segment worker threw, exited or stopped answering. Names the segment (its first chunk
 * index and chunk count) so the failure is never anonymous. Exit code 1 (a fault of this
 * process, not of the file).
 */
export class SegmentWorkerError extends Data.TaggedError("SegmentWorkerError")<{
  readonly reason: "Crashed" | "Exited" | "Timeout" | "Closed"
  readonly firstChunk: number
  readonly chunks: number
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.Failure
  override get message() {
    return `segment worker failed on chunks ${this.firstChunk}..${this.firstChunk + this.chunks - 1}: ${this.reason}: ${this.detail}`
  }
}

/** A v1 (harpocrates) frame is malformed: wrong length prefix, too long, or failed authentication. Exit code 3. */
export class LegacyFrameError extends Data.TaggedError("LegacyFrameError")<{
  readonly frame: number
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.Integrity
  override get message() {
    return `AGCM v1 frame ${this.frame}: ${this.detail}`
  }
}

/** Any AGCM failure (I/O failures are `IoError` from `@cage/core`). */
export type AgcmError =
  | NotAgcm
  | UnsupportedVersion
  | InvalidHeader
  | HeaderAuthFailed
  | ChunkAuthFailed
  | Truncated
  | TrailingData
  | KdfCostTooHigh
  | AgcmUsageError
  | SegmentWorkerError
  | LegacyFrameError
