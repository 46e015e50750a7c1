/**
 * The one error of @acme/cage-processor-redact. Its `exitCode` follows the `cage` CLI
 * contract (`ExitCode` in @cage/core): the engine wraps it in `ProcessorError`, which
 * exits with the code found here.
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/** Why the redactor refused to run. */
export type RedactErrorReason =
  /** An option is missing or out of range: thrown by the factory (exit code 2). */
  | "BadOption"
  /** The checkpoint's state is not one this processor wrote (exit code 5: start over). */
  | "BadSnapshot"

/** A failure of `redact()`. */
export class RedactError extends Data.TaggedError("RedactError")<{
  readonly reason: RedactErrorReason
  readonly detail: string
}> {
  get exitCode(): ExitCode {
    return this.reason === "BadOption" ? ExitCode.Usage : ExitCode.ResumeRefused
  }
  override get message() {
    return this.detail
  }
}
