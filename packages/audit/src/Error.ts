/**
 * Tagged errors of `@cage/audit`, each with the `cage` CLI `exitCode`
 * (2 usage, 3 integrity, 4 input/output). File errors are `@cage/core`'s `IoError` (4).
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/**
 * Which argument {@link AuditUsageError} refuses:
 * - `Option`: a writer option out of range (`maxBytes` not a positive integer, `maxFiles`
 *   not a whole number).
 */
export type AuditUsageReason = "Option"

/** Bad options (see {@link AuditUsageReason}); `detail` says what was wrong. Exit code 2. */
export class AuditUsageError extends Data.TaggedError("AuditUsageError")<{
  readonly reason: AuditUsageReason
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Usage
  override get message() {
    return this.detail
  }
}

/**
 * An audit log has no valid event at all (not a Cage audit log, or destroyed). Single bad
 * lines are skipped and counted in the summary instead. Exit code 3.
 */
export class AuditLogInvalid extends Data.TaggedError("AuditLogInvalid")<{
  readonly path: string
  readonly lines: number
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Integrity
  override get message() {
    return `${this.path}: not a Cage audit log (${this.lines} lines, none valid: ${this.detail})`
  }
}

export type AuditError = AuditUsageError | AuditLogInvalid
