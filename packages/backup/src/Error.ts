/**
 * Tagged errors of `@cage/backup`. Each carries the `cage` CLI `exitCode`:
 * 2 usage, 3 integrity (damaged backup, corrupt registry), 4 input/output.
 * I/O failures of files are `@cage/core`'s `IoError` (exit code 4).
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"
import * as nodePath from "node:path"

/**
 * Which argument {@link BackupUsageError} refuses:
 * - `Retention`: a retention policy that is unknown or whose numbers are not whole numbers ≥ 1;
 * - `Range`: a restore range that does not parse, is empty, or lies outside the backup;
 * - `Cipher`: a cipher backups cannot use (it writes a trailer, or has direct mode but
 *   declares no direct output chunks, so its ciphertext chunk layout is unknown);
 * - `Key`: the operation needs the key and none was given (deep verify);
 * - `Path`: a path a directory snapshot does not hold, or a path given for a file snapshot.
 */
export type BackupUsageReason = "Retention" | "Range" | "Cipher" | "Key" | "Path"

/** Bad arguments: a retention policy, a range, a cipher or a missing key (see {@link BackupUsageReason}). `detail` says what was wrong. Exit code 2. */
export class BackupUsageError extends Data.TaggedError("BackupUsageError")<{
  readonly reason: BackupUsageReason
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Usage
  override get message() {
    return this.detail
  }
}

/**
 * The registry `.cage_backups.json` (or a generation manifest) cannot be parsed or does not
 * match its Schema. Nothing is overwritten: the previous good registry is kept as
 * `.cage_backups.json.bak` and every generation has its own manifest, so
 * `recoverRegistry` (CLI: `cage backup recover`) can rebuild it. Exit code 3.
 */
export class RegistryCorrupt extends Data.TaggedError("RegistryCorrupt")<{
  readonly path: string
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Integrity
  override get message() {
    return `${this.path}: the backup registry is corrupt (${this.detail}); it was left untouched. ` +
      `The previous good registry is ${this.path}.bak and each generation's manifest is in the manifests directory ${nodePath.dirname(this.path)}: the registry can be rebuilt from them.`
  }
}

/**
 * A lock could not be taken within the wait limit (a live holder kept it): the registry
 * lock, or a generation being written by another process. Exit code 4.
 */
export class LockTimeout extends Data.TaggedError("LockTimeout")<{
  readonly path: string
  readonly waitedMs: number
  readonly holder: string
}> {
  readonly exitCode = ExitCode.Io
  override get message() {
    return `${this.path}: could not take the lock within ${this.waitedMs} ms (held by ${this.holder})`
  }
}

/** No generation matches the request (no backup of that file, or no such generation number). Exit code 2. */
export class GenerationNotFound extends Data.TaggedError("GenerationNotFound")<{
  readonly source: string
  readonly generation?: number | undefined
  readonly detail?: string | undefined
}> {
  readonly exitCode = ExitCode.Usage
  override get message() {
    const which = this.generation === undefined ? "no complete generation" : `no generation ${this.generation}`
    return `${this.source}: ${which} in the backup registry${this.detail ? ` (${this.detail})` : ""}`
  }
}

/**
 * The source changed after it was encrypted, so its chunks can no longer be hashed for the
 * manifest (create with a direct-mode cipher re-reads the source once the backup file is
 * written). `detail` names what changed (size, times, inode). That generation is removed
 * (its backup file, layout record and registry entry: it can never be completed) and no
 * manifest is written; back the source up again. Exit code 4.
 */
export class SourceChanged extends Data.TaggedError("SourceChanged")<{
  readonly source: string
  readonly generation: number
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Io
  override get message() {
    return `${this.source}: the source changed after it was encrypted into generation ${this.generation} (${this.detail}); ` +
      `its manifest cannot be built from it, so that incomplete generation was removed`
  }
}

/** One damaged region found by verify: a chunk (with its byte range in the backup file) or the header. */
export interface Damage {
  /**
   * `"chunk"` (ciphertext digest mismatch), `"plaintext"` (deep: decryption or plaintext
   * digest failed), `"header"`, `"size"` (the file is longer or shorter than recorded), or
   * `"file"` (damaged somewhere; no per-chunk digests to say where).
   */
  readonly kind: "chunk" | "plaintext" | "header" | "size" | "file"
  /** Chunk index (0-based) for `"chunk"` and `"plaintext"`. */
  readonly chunk?: number
  /** Byte range `[start, end)` in the backup file. */
  readonly start: number
  readonly end: number
  readonly detail: string
}

/** Verify found damage. `damage` names every damaged chunk with its byte range. Exit code 3. */
export class BackupDamaged extends Data.TaggedError("BackupDamaged")<{
  readonly file: string
  readonly generation: number
  readonly damage: ReadonlyArray<Damage>
}> {
  readonly exitCode = ExitCode.Integrity
  override get message() {
    const list = this.damage.slice(0, 20).map((d) =>
      d.kind === "chunk" || d.kind === "plaintext"
        ? `chunk ${d.chunk} (bytes ${d.start}..${d.end})`
        : `${d.kind} (bytes ${d.start}..${d.end}): ${d.detail}`
    )
    const more = this.damage.length > 20 ? ` and ${this.damage.length - 20} more` : ""
    return `${this.file} (generation ${this.generation}) is damaged: ${list.join(", ")}${more}`
  }
}

/**
 * A pack file of the chunk store is damaged: its trailer or table, or one chunk (a blob),
 * which `chunk` names by its id (hex) and `offset` locates in the pack. Exit code 3.
 */
export class PackDamaged extends Data.TaggedError("PackDamaged")<{
  readonly pack: string
  readonly offset?: number
  readonly chunk?: string
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Integrity
  override get message() {
    const where = this.chunk !== undefined ? ` chunk ${this.chunk.slice(0, 16)}… at byte ${this.offset}` : this.offset !== undefined ? ` at byte ${this.offset}` : ""
    return `pack ${this.pack.slice(0, 16)}…${where} is damaged: ${this.detail}`
  }
}

/**
 * The chunk store at `dir` cannot be used: `"Key"` (the key does not open it: another key,
 * or its config was edited), `"Corrupt"` (its config, an index or a snapshot does not parse
 * or authenticate; `path` names it), `"Missing"` (a snapshot needs a chunk that no index
 * lists). Exit code 3.
 */
export class StoreRefused extends Data.TaggedError("StoreRefused")<{
  readonly reason: "Key" | "Corrupt" | "Missing"
  readonly path: string
  readonly detail: string
}> {
  readonly exitCode = ExitCode.Integrity
  override get message() {
    return `${this.path}: ${this.detail}`
  }
}

/** No snapshot `id` in the store at `dir`. Exit code 2. */
export class SnapshotNotFound extends Data.TaggedError("SnapshotNotFound")<{ readonly dir: string; readonly id: string }> {
  readonly exitCode = ExitCode.Usage
  override get message() {
    return `no snapshot ${this.id} in the store at ${this.dir}`
  }
}

/** Any error of this package (besides core's `IoError`, `ProcessorError`, `ResumeRefused`, `UsageError`). */
export type BackupError = BackupUsageError | RegistryCorrupt | LockTimeout | GenerationNotFound | BackupDamaged | SourceChanged | PackDamaged | StoreRefused | SnapshotNotFound
