/**
 * The errors of @acme/cage-processor-gzip. Each carries the `exitCode` of the `cage` CLI
 * contract (see `ExitCode` in @cage/core): 2 for bad options, 3 for input that is not what
 * `gzip()` wrote (corrupt, truncated, foreign or oversized members).
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/** Why decompression or configuration failed. */
export type GzipErrorReason =
  /** An option is out of range (exit code 2). */
  | "BadOption"
  /** The bytes are not a gzip member (wrong magic or method) (exit code 3). */
  | "NotGzip"
  /** A gzip member without the size field `gzip()` writes: a plain gzip file, use `gunzip` (exit code 3). */
  | "NoSizeField"
  /** A member failed its CRC-32 or length check, or its deflate data is invalid (exit code 3). */
  | "Corrupt"
  /** The input ends inside a member, or holds no member at all (exit code 3). */
  | "Truncated"
  /** A member, or its decompressed data, exceeds `maxMemberBytes` (exit code 3). */
  | "TooLarge"

/** A failure of `gzip()`/`gunzip()`. `chunk` is the input chunk index when known. */
export class GzipError extends Data.TaggedError("GzipError")<{
  readonly reason: GzipErrorReason
  readonly detail: string
  readonly chunk?: number | undefined
}> {
  get exitCode(): ExitCode {
    return this.reason === "BadOption" ? ExitCode.Usage : ExitCode.Integrity
  }
  override get message() {
    return this.detail
  }
}

/** The one place zlib's errors become {@link GzipError}s. */
export const fromZlibError = (cause: unknown, chunk: number, maxMemberBytes: number): GzipError => {
  const code = (cause as { code?: unknown } | undefined)?.code
  const text = cause instanceof Error ? cause.message : String(cause)
  if (code === "ERR_BUFFER_TOO_LARGE" || /too large|maxOutputLength/i.test(text)) {
    return new GzipError({ reason: "TooLarge", chunk, detail: `a gzip member decompresses to more than ${maxMemberBytes} bytes (maxMemberBytes)` })
  }
  return new GzipError({ reason: "Corrupt", chunk, detail: `corrupt gzip member: ${text}` })
}
