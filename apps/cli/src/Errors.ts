/**
 * How the `cage` CLI reports failures: one line on stderr naming the file and what is
 * wrong, and a distinct exit code.
 *
 * Exit codes (documented in the README):
 * 0 success; 1 other failure; 2 usage error; 3 integrity or authentication failure
 * (tampered, truncated, wrong key); 4 input or output error (missing file, permission, disk
 * full); 5 resume refused; 130 interrupted (SIGINT/SIGTERM; the checkpoint is kept).
 *
 * @module
 */
import { ExitCode, exitCodeOf, UsageError } from "@cage/core"
import { Effect } from "effect"

export { ExitCode, UsageError }

/** The message for any error: its `message`, never its stack or cause chain (which could echo input). */
export const describe = (error: unknown): string => {
  if (error instanceof Error) return error.message
  if (typeof error === "object" && error !== null && "message" in error) return String((error as { message: unknown }).message)
  return String(error)
}

/** Prints `cage: error: …` and sets the exit code. */
export const report = (error: unknown): Effect.Effect<void> =>
  Effect.sync(() => {
    const code = exitCodeOf(error)
    process.stderr.write(`cage: error: ${describe(error)}\n`)
    process.exitCode = code
  })

/** Fails with a usage error (exit 2). */
export const usage = (detail: string) => Effect.fail(new UsageError({ detail }))
