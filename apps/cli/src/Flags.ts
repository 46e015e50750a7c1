/**
 * Flags that several commands share, defined once (each command file owns the rest).
 *
 * @module
 */
import { Argument, Flag } from "effect/cli"

/** `--json` of the commands that print a result: machine-readable JSON on stdout. */
export const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
/** `-q/--quiet` of the commands without a progress bar: no notes on stderr. */
export const quietFlag = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No notes on stderr"), Flag.withDefault(false))

/** Flags shared by encrypt and decrypt (and, some of them, by migrate and the backup commands). */
export const commonFlags = {
  key: Flag.String("key").pipe(Flag.withDescription("Key file (from `cage keygen`, or 64 hex characters)"), Flag.optional),
  passphraseFile: Flag.String("passphrase-file").pipe(Flag.withDescription("File whose first line is the passphrase (never pass a passphrase on the command line)"), Flag.optional),
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file, or - for stdout"), Flag.optional),
  workers: Flag.Int("workers").pipe(Flag.withDescription("Worker threads (default: available cores; 1 = in-process)"), Flag.optional),
  noResume: Flag.Boolean("no-resume").pipe(Flag.withDescription("Ignore and discard an existing checkpoint; start over"), Flag.withDefault(false)),
  noFsync: Flag.Boolean("no-fsync").pipe(Flag.withDescription("Do not fsync the output (survives kill -9, not a power loss; faster on slow disks)"), Flag.withDefault(false)),
  limitRate: Flag.String("limit-rate").pipe(Flag.withDescription("Cap the input read rate in bytes per second (100MiB, 50MB; default: no limit, or cage.toml limit_rate)"), Flag.optional),
  checkpointInterval: Flag.Int("checkpoint-interval").pipe(Flag.withDescription("Minimum ms between checkpoints (default 1000)"), Flag.withDefault(1000)),
  force: Flag.Boolean("force").pipe(Flag.withDescription("Replace an existing output file"), Flag.withDefault(false)),
  quiet: Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No progress bar or notes"), Flag.withDefault(false)),
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the run summary as JSON on stdout"), Flag.withDefault(false)),
  backend: Flag.Literals("backend", ["agcm", "age", "age-lib"] as const).pipe(Flag.withDescription("Cipher backend (default agcm, or from cage.toml)"), Flag.optional),
  input: Argument.String("input").pipe(Argument.withDescription("Input file, or - for stdin"))
}

