/**
 * What the user can do next, in this command line's terms. The libraries' errors carry facts
 * (paths, chunks, reasons); the hints that name `cage` commands and flags live here, keyed
 * on each error's tag and reason, so another application built on the libraries words its
 * own. `Errors.report` appends the hint to the message.
 *
 * @module
 */
import * as nodePath from "node:path"

interface Tagged {
  readonly _tag?: unknown
  readonly reason?: unknown
  readonly backend?: unknown
  readonly path?: unknown
  readonly version?: unknown
  readonly detail?: unknown
  readonly cause?: unknown
}

/** The hint for `error` (looking through a processor's failure to its cause), or undefined. */
export const hintFor = (error: unknown): string | undefined => {
  const e = error as Tagged | undefined
  switch (e?._tag) {
    case "ProcessorError":
    case "UserFacing":
      return e.cause === undefined ? undefined : hintFor(e.cause)
    case "ResumeRefused":
      return "run again with --no-resume to start over"
    case "RegistryCorrupt":
      return `run \`cage backup recover --dir ${nodePath.dirname(String(e.path))}\` to rebuild it`
    case "SourceChanged":
      return "run `cage backup create` again once the file no longer changes (a file that is always being written needs a snapshot or a copy first)"
    case "GenerationNotFound":
      return e.detail === "it is incomplete" ? "run `cage backup resume` first" : undefined
    case "UnsupportedVersion":
      return e.version === 1 ? "decrypt it with --legacy-v1, or rewrite it as AGCM v2 with `cage migrate`" : undefined
    case "AgeError":
      if (e.reason === "AgeMissing" || e.reason === "AgeTooOld") return "--backend age-lib needs no age CLI"
      if (e.reason === "Unsupported" && e.backend === "age-lib") return "use --backend age for SSH keys"
      return undefined
    default:
      return undefined
  }
}
