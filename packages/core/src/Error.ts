/**
 * Tagged errors of the chunk engine. Every failure a run can end with is one of these
 * (or a processor's own tagged error, wrapped in {@link ProcessorError}).
 *
 * Each error carries an `exitCode` following the `cage` CLI contract:
 * 2 usage, 3 integrity/authentication, 4 input/output (also an input that changed while it
 * was read), 5 resume refused, 6 output busy (another process writes it).
 *
 * @module
 */
import { Data } from "effect"
import type { LockBusy } from "./Lock.js"

/** Exit codes of the `cage` CLI, shared by every package so each error maps to one code. */
export const ExitCode = {
  Success: 0,
  Failure: 1,
  Usage: 2,
  Integrity: 3,
  Io: 4,
  ResumeRefused: 5,
  /** Another cage process is writing the same output (see `Lock`). */
  Busy: 6
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** Why an I/O operation failed, from the errno translated in {@link fromSystemError}. */
export type IoReason = "NotFound" | "PermissionDenied" | "AlreadyExists" | "NoSpace" | "IsDirectory" | "Busy" | "Unknown"

/** A source or sink could not be opened, read, written, synced or renamed. Exit code 4. */
export class IoError extends Data.TaggedError("IoError")<{
  readonly reason: IoReason
  readonly operation: string
  readonly path: string
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.Io
  override get message() {
    const what: Record<IoReason, string> = {
      NotFound: "no such file or directory",
      PermissionDenied: "permission denied",
      AlreadyExists: "already exists (refusing to overwrite)",
      NoSpace: "no space left on device",
      IsDirectory: "is a directory",
      Busy: "resource busy",
      Unknown: this.detail
    }
    return `${this.path}: ${this.operation} failed: ${what[this.reason]}`
  }
}

/** The one place errno values become {@link IoError}s. */
export const fromSystemError = (operation: string, path: string, cause: unknown): IoError => {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code
  const reason: IoReason =
    code === "ENOENT" ? "NotFound"
    : code === "EACCES" || code === "EPERM" ? "PermissionDenied"
    : code === "EEXIST" ? "AlreadyExists"
    : code === "ENOSPC" || code === "EDQUOT" ? "NoSpace"
    : code === "EISDIR" ? "IsDirectory"
    : code === "EBUSY" ? "Busy"
    : "Unknown"
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new IoError({ reason, operation, path, detail })
}

/**
 * The input changed while it was being read (its size, modification or status-change time
 * differ from when it was opened, or it shrank under a read), so the output would mix two
 * versions of it. Permanent for this run: the engine removes the partial output and the
 * checkpoint (they are worthless), so running the same command again starts clean.
 * Exit code 4.
 */
export class InputChanged extends Data.TaggedError("InputChanged")<{
  readonly path: string
  /** What changed, e.g. `size: was 1024, now 512`. */
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.Io
  override get message() {
    return `${this.path} changed while it was being read (${this.detail}); nothing was published and the partial output was removed: run the command again once the file no longer changes`
  }
}

/**
 * A processor failed on a chunk (or in `init`/`finalize`, where `chunk` is undefined).
 * `cause` is the processor's own error; `fatal` failures stop the run at once,
 * and the engine treats every processor failure as fatal for output integrity.
 */
export class ProcessorError extends Data.TaggedError("ProcessorError")<{
  readonly processor: string
  readonly phase: "init" | "process" | "finalize"
  readonly chunk?: number | undefined
  readonly cause: unknown
}> {
  get exitCode(): ExitCode {
    const inner = this.cause as { exitCode?: unknown } | undefined
    return typeof inner?.exitCode === "number" ? (inner.exitCode as ExitCode) : ExitCode.Failure
  }
  override get message() {
    const where = this.chunk === undefined ? this.phase : `${this.phase} of chunk ${this.chunk}`
    return `${this.processor}: ${where} failed: ${describeCause(this.cause)}`
  }
}

/** A cause's message, never throwing (some objects cannot be converted to strings). */
const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  const m = (cause as { message?: unknown } | null | undefined)?.message
  if (typeof m === "string") return m
  try {
    return typeof cause === "object" && cause !== null ? JSON.stringify(cause) ?? "unknown error" : String(cause)
  } catch {
    return "unknown error"
  }
}

/** What a checkpoint disagreed with on resume. */
export type ResumeMismatch =
  | "SourceChanged"
  | "ChunkSizeChanged"
  | "PipelineChanged"
  | "OutputChanged"
  | "CheckpointCorrupt"
  | "OutputMissing"
  | "NotResumable"

/** A checkpoint exists but resuming from it would be unsafe. Exit code 5. */
export class ResumeRefused extends Data.TaggedError("ResumeRefused")<{
  readonly reason: ResumeMismatch
  readonly checkpoint: string
  readonly detail: string
}> {
  readonly exitCode: ExitCode = ExitCode.ResumeRefused
  override get message() {
    return `refusing to resume from ${this.checkpoint}: ${this.detail}`
  }
}

/**
 * Why a {@link UsageError} was raised:
 * - `"Pipeline"`: the processors cannot run as composed (none, two framers, a framer or a
 *   header writer in the wrong place);
 * - `"Processor"`: a processor broke the plugin contract (another API version, reading the
 *   input header twice or when not first, a bad direct-mode declaration);
 * - `"ChunkSize"`: a chunk size its owner does not accept, or given two ways;
 * - `"Option"`: an option value is not valid (a size, a range, a list);
 * - `"Conflict"`: options that exclude each other or do not apply together;
 * - `"Input"`: the input is not what the operation reads (not a regular file, another format);
 * - `"Output"`: the output cannot be written as asked (a terminal, a file the run reads);
 * - `"Config"`: a configuration file or one of its settings is not valid;
 * - `"Key"`: key material is missing or cannot be obtained.
 */
export type UsageReason = "Pipeline" | "Processor" | "ChunkSize" | "Option" | "Conflict" | "Input" | "Output" | "Config" | "Key"

/** Bad arguments or configuration; `detail` says what, in the caller's terms. Exit code 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: UsageReason; readonly detail: string }> {
  readonly exitCode: ExitCode = ExitCode.Usage
  override get message() {
    return this.detail
  }
}

/** Any error a run can end with. */
export type EngineError = IoError | ProcessorError | ResumeRefused | UsageError | InputChanged | LockBusy

/** Exit code for any error: its own `exitCode` when it has one, else 1. */
export const exitCodeOf = (error: unknown): ExitCode => {
  const code = (error as { exitCode?: unknown } | undefined)?.exitCode
  return typeof code === "number" ? (code as ExitCode) : ExitCode.Failure
}
