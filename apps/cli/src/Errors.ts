/**
 * How the `cage` CLI reports failures: one line on stderr naming the file and what is
 * wrong, and a distinct exit code.
 *
 * Exit codes (documented in the README):
 * 0 success; 1 other failure; 2 usage error; 3 integrity or authentication failure
 * (tampered, truncated, wrong key); 4 input or output error (missing file, permission, disk
 * full, an input that changed while it was read); 5 resume refused; 6 busy (another cage
 * process writes the same output); 128 + signal when interrupted (130 SIGINT, 143 SIGTERM,
 * 129 SIGHUP; the checkpoint is kept); 141 when standard output was closed by its reader.
 *
 * @module
 */
import { ExitCode, exitCodeOf, UsageError, type UsageReason } from "@cage/core"
import { Data, Effect } from "effect"
import { hintFor } from "./Hints.js"

export { ExitCode, UsageError }

/** The message for any error: its `message`, never its stack or cause chain (which could echo input). */
export const describe = (error: unknown): string => {
  if (error instanceof Error) return error.message
  if (typeof error === "object" && error !== null && "message" in error) return String((error as { message: unknown }).message)
  return String(error)
}

/** Exit status of a run whose standard output was closed by its reader (128 + SIGPIPE). */
export const EXIT_PIPE_CLOSED = 141

/** A write to standard output failed because its reader went away (`| head`). */
const isClosedPipe = (error: unknown) => {
  const e = error as { _tag?: unknown; path?: unknown; detail?: unknown } | undefined
  return e?._tag === "IoError" && e.path === "stdout" && typeof e.detail === "string" && /\bEPIPE\b/.test(e.detail)
}

/**
 * Whether failures are reported as JSON: a run given `--json` gets its failure as one line
 * of JSON on standard output, `{"error": message, "exitCode": n, "kind": tag}`, where its
 * result would have been, so a script parses stdout whatever happened.
 */
export const jsonErrors = () => process.argv.slice(2).includes("--json")

let jsonPrinted = false
/** Records that the command printed its JSON result (a report of the failure itself, as `backup verify` does). */
export const markJsonPrinted = () => {
  jsonPrinted = true
}

/** Prints `cage: error: …` (or its JSON) and sets the exit code; a closed standard output ends quietly (141). */
export const report = (error: unknown): Effect.Effect<void> =>
  Effect.sync(() => {
    if (isClosedPipe(error)) {
      process.exitCode = EXIT_PIPE_CLOSED
      return
    }
    const code = exitCodeOf(error)
    if (jsonErrors() && jsonPrinted) {
      // The command's own JSON already describes the failure: one document on stdout.
      process.exitCode = code
      return
    }
    if (jsonErrors()) {
      // A failure reworded by its command is still of its original kind.
      const e = error as { _tag?: unknown; cause?: { _tag?: unknown } } | undefined
      const kind = e?._tag === "UserFacing" && typeof e.cause?._tag === "string" ? e.cause._tag : e?._tag
      const hint = hintFor(error)
      process.stdout.write(JSON.stringify({ error: describe(error), exitCode: code, kind: typeof kind === "string" ? kind : "Error", ...(hint ? { hint } : {}) }) + "\n")
      process.exitCode = code
      return
    }
    const hint = hintFor(error)
    process.stderr.write(`cage: error: ${describe(error)}${hint ? ` (${hint})` : ""}\n`)
    process.exitCode = code
  })

/**
 * A failure already put in the user's terms (the file, flag or `cage.toml` key they gave)
 * by the command that knows them; keeps the original's exit code.
 */
export class UserFacing extends Data.TaggedError("UserFacing")<{ readonly detail: string; readonly exitCode: ExitCode; readonly cause?: unknown }> {
  override get message() {
    return this.detail
  }
}

/** Fails with a usage error (exit 2). */
export const usage = (reason: UsageReason, detail: string) => Effect.fail(new UsageError({ reason, detail }))
