/**
 * Tagged errors of `@cage/audit`, each with the `cage` CLI `exitCode`
 * (2 usage, 3 integrity, 4 input/output). File errors are `@cage/core`'s `IoError` (4).
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/** Bad options: a non-positive rotation size, an unknown anomaly threshold. Exit code 2. */
export class AuditUsageError extends Data.TaggedError("AuditUsageError")<{ readonly detail: string }> {
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
