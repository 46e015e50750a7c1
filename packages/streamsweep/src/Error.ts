/**
 * Tagged errors of StreamSweep. Each carries `exitCode` per the `cage` CLI contract
 * (see `ExitCode` in `@cage/core`): 3 when the data is not what it must be (invalid JSON),
 * 2 for bad options or arguments. I/O failures are `@cage/core`'s `IoError` (exit code 4).
 *
 * @module
 */
import type { ExitCode } from "@cage/core"
import * as Data from "effect/Data"
import type { ScanFailure, ScanReason } from "./internal/scanner.js"

// `ExitCode` values from @cage/core, as literals: this module is part of the dependency-free
// `@cage/streamsweep/validator` entry, which must not load the engine's module graph.
const INTEGRITY: ExitCode = 3
const USAGE: ExitCode = 2

/** Why a document is not valid JSON (RFC 8259) or breaks a configured limit. */
export type JsonErrorReason = ScanReason

/**
 * The input is not valid JSON: the first error, with its position and what was expected.
 * Exit code 3 (the data failed an integrity check).
 *
 * - `offset`: absolute byte offset of the offending byte (or the input length for `UnexpectedEnd`).
 * - `line`: 1-based line; `column`: 1-based column counted in bytes (not characters).
 */
export class JsonSyntaxError extends Data.TaggedError("JsonSyntaxError")<{
  readonly reason: JsonErrorReason
  readonly input: string
  readonly offset: number
  readonly line: number
  readonly column: number
  readonly expected: string
  readonly found: string
}> {
  readonly exitCode: ExitCode = INTEGRITY
  override get message() {
    return `${this.input}:${this.line}:${this.column}: invalid JSON (${this.reason}) at byte ${this.offset}: expected ${this.expected}, found ${this.found}`
  }
  /** A JSON-able form for `--json` output. */
  override toJSON() {
    return {
      _tag: this._tag, reason: this.reason, input: this.input, offset: this.offset, line: this.line,
      column: this.column, expected: this.expected, found: this.found, message: this.message
    }
  }
}

/**
 * Which argument {@link StreamSweepUsageError} refuses:
 * - `Option`: a numeric option out of range (a target size that is not a positive number of
 *   bytes, a depth limit that is not a positive integer, a negative inspect limit);
 * - `Format`: a format name the operation does not know;
 * - `Offset`: a cut offset outside the input.
 */
export type StreamSweepUsageReason = "Option" | "Format" | "Offset"

/** Bad options: an option out of range, an unknown format, a cut outside the input (see {@link StreamSweepUsageReason}). `detail` says what was wrong. Exit code 2. */
export class StreamSweepUsageError extends Data.TaggedError("StreamSweepUsageError")<{
  readonly reason: StreamSweepUsageReason
  readonly detail: string
}> {
  readonly exitCode: ExitCode = USAGE
  override get message() {
    return this.detail
  }
}

/** The one place a scanner failure becomes a {@link JsonSyntaxError}. */
export const fromScanFailure = (input: string, f: ScanFailure): JsonSyntaxError =>
  new JsonSyntaxError({ input, ...f })
