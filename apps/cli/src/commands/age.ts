/**
 * `cage encrypt/decrypt --backend age|age-lib`: the same commands through @cage/age (the
 * real age CLI, or the age-encryption library). Outputs are plain age files.
 *
 * @module
 */
import { decrypt, type Descriptor, descriptorInput, descriptorOutput, encrypt } from "@cage/age"
import type { ChunkInput } from "@cage/core"
import { fingerprint } from "@cage/audit"
import * as fs from "node:fs"
import { Effect, Option } from "effect"
import * as ProgressBar from "../ProgressBar.js"
import type { Settings } from "../Config.js"
import { note, openInput, openOutput, printJson, type ReadFile, readFiles } from "../Io.js"
import type { IoError } from "@cage/core"
import { readPassphraseFile } from "../Keys.js"
import { usage } from "../Errors.js"
import { audited, openAudit } from "../AuditTrail.js"
import * as nodePath from "node:path"

// age runs with its own working directory under a PTY: hand it absolute paths.
const absolute = (p: string) => (p === "-" ? p : nodePath.resolve(p))

// For "-", age reads fd 0 / writes fd 1 itself: wrapping stdin in a Node stream would start
// consuming it in this process (and copy every byte through Node).
const ageInput = (p: string): Effect.Effect<ChunkInput.ChunkInput | Descriptor, IoError> =>
  p === "-" ? Effect.succeed(descriptorInput(0)) : openInput(absolute(p))
const ageOutput = (p: string, force: boolean, fsync: boolean, reads: ReadonlyArray<ReadFile>) =>
  p === "-" ? (process.stdout.isTTY ? usage("Output", "refusing to write binary output to a terminal: use -o FILE or a pipe") : Effect.succeed(descriptorOutput(1))) : openOutput(absolute(p), force, fsync, reads)
const closeInput = (input: ChunkInput.ChunkInput | Descriptor) => ("_tag" in input ? Effect.void : input.close())
const sizeOf = (input: ChunkInput.ChunkInput | Descriptor) => ("_tag" in input ? undefined : input.size)

interface AgeFlags {
  readonly backend: "age" | "age-lib"
  readonly settings: Settings
  readonly key: Option.Option<string>
  readonly passphraseFile: Option.Option<string>
  readonly output: Option.Option<string>
  readonly input: string
  readonly force: boolean
  readonly limitRate: Option.Option<string>
  readonly noFsync: boolean
  readonly quiet: boolean
  readonly json: boolean
  readonly auditLog: Option.Option<string>
}

/** Recipients listed in an `-R` file; an unreadable file is left for age to report. */
const recipientLines = (file: string): Array<string> => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
  } catch {
    return []
  }
}

const strategyOf = (f: { strategy?: Option.Option<"pipe" | "tempfile" | "auto"> }, settings: Settings) =>
  f.strategy && Option.isSome(f.strategy) ? f.strategy.value : settings.streamingStrategy.value

const withProgress = <A, E>(quiet: boolean, label: string, total: number | undefined, run: (onProgress: (n: number) => void) => Effect.Effect<A, E>) =>
  Effect.suspend(() => {
    const bar = ProgressBar.terminal({ quiet, label })
    bar.start(total, 0)
    return run((n) => bar.update(n, 0)).pipe(Effect.ensuring(Effect.sync(() => bar.stop())))
  })

const passphrase = (f: AgeFlags) =>
  Option.isSome(f.passphraseFile) ? readPassphraseFile(f.passphraseFile.value).pipe(Effect.map((p) => ({ passphrase: p }))) : Effect.succeed({})

/** `cage encrypt --backend age|age-lib`: recipients (`-r`, `-R`) or a passphrase file; `-a` armor. */
export const ageEncryptCommand = (f: AgeFlags & {
  readonly recipient: ReadonlyArray<string>
  readonly recipientsFile: ReadonlyArray<string>
  readonly armor: boolean
  readonly strategy: Option.Option<"pipe" | "tempfile" | "auto">
}) =>
  Effect.gen(function*() {
    if (Option.isSome(f.key)) return yield* usage("Conflict", "--key is an AGCM key; with --backend age use -r/-R recipients or --passphrase-file")
    if (Option.isSome(f.limitRate)) return yield* usage("Conflict", "--limit-rate needs the AGCM backend (the age CLI reads its input itself)")
    const hasRecipients = f.recipient.length + f.recipientsFile.length > 0
    if (hasRecipients === Option.isSome(f.passphraseFile)) return yield* usage("Conflict", "with --backend age give recipients (-r/-R) or --passphrase-file, not both and not neither")
    const outputPath = Option.getOrElse(f.output, () => (f.input === "-" ? "-" : `${f.input}.age`))
    const pass = yield* passphrase(f)
    const audit = yield* openAudit(f.auditLog, f.settings)
    // The audit trail names recipients only by SHA-256 fingerprint, never in clear.
    const recipients = [...f.recipient, ...f.recipientsFile.flatMap(recipientLines)]
    const input = yield* ageInput(f.input)
    const output = yield* ageOutput(outputPath, f.force, !f.noFsync, [
      ...readFiles(f),
      ...f.recipientsFile.map((p): ReadFile => ["the -R file", p])
    ])
    const summary = yield* audited(audit, { operation: "encrypt", strategy: `${f.backend}:${strategyOf(f, f.settings)}`, recipients: recipients.map(fingerprint) }, withProgress(f.quiet, "encrypt", sizeOf(input), (onProgress) =>
      encrypt({
        input,
        output,
        ...pass,
        recipients: f.recipient,
        recipientFiles: f.recipientsFile,
        armor: f.armor,
        backend: f.backend,
        strategy: strategyOf(f, f.settings),
        onProgress,
        onVerbose: (m) => void Effect.runSync(note(f.quiet || f.json, m))
      }))).pipe(
        Effect.ensuring(closeInput(input)),
        Effect.ensuring(Effect.sync(() => audit?.close())),
        Effect.ensuring(Effect.sync(() => "passphrase" in pass && pass.passphrase?.fill(0)))
      )
    if (f.json) yield* printJson({ input: f.input, output: outputPath, ...summary })
    else yield* note(f.quiet, `encrypt ${f.input} → ${outputPath} with ${summary.backend} (${summary.strategy}): ${summary.bytesIn} bytes in ${(summary.durationMs / 1000).toFixed(2)} s`)
  })

/** `cage decrypt --backend age|age-lib`: identities (`-i`) or a passphrase file. */
export const ageDecryptCommand = (f: AgeFlags & { readonly identity: ReadonlyArray<string>; readonly range: Option.Option<string> }) =>
  Effect.gen(function*() {
    if (Option.isSome(f.key)) return yield* usage("Conflict", "--key is an AGCM key; with --backend age use -i IDENTITY or --passphrase-file")
    if (Option.isSome(f.limitRate)) return yield* usage("Conflict", "--limit-rate needs the AGCM backend (the age CLI reads its input itself)")
    if (Option.isSome(f.range)) return yield* usage("Conflict", "--range is an AGCM feature (age files are not seekable here)")
    if ((f.identity.length > 0) === Option.isSome(f.passphraseFile)) return yield* usage("Conflict", "with --backend age give -i IDENTITY or --passphrase-file, not both and not neither")
    const outputPath = Option.isSome(f.output) ? f.output.value : f.input === "-" ? "-" : f.input.endsWith(".age") ? f.input.slice(0, -4) : undefined
    if (outputPath === undefined) return yield* usage("Output", `${f.input} does not end in .age: name the output with -o FILE`)
    const pass = yield* passphrase(f)
    const audit = yield* openAudit(f.auditLog, f.settings)
    const input = yield* ageInput(f.input)
    const output = yield* ageOutput(outputPath, f.force, !f.noFsync, [
      ...readFiles(f),
      ...f.identity.map((p): ReadFile => ["the -i identity file", p])
    ])
    const summary = yield* audited(audit, { operation: "decrypt", strategy: `${f.backend}:${f.settings.streamingStrategy.value}` }, withProgress(f.quiet, "decrypt", sizeOf(input), (onProgress) =>
      decrypt({ input, output, ...pass, identityFiles: f.identity, backend: f.backend, strategy: f.settings.streamingStrategy.value, onProgress }))).pipe(
        Effect.ensuring(closeInput(input)),
        Effect.ensuring(Effect.sync(() => audit?.close())),
        Effect.ensuring(Effect.sync(() => "passphrase" in pass && pass.passphrase?.fill(0)))
      )
    if (f.json) yield* printJson({ input: f.input, output: outputPath, ...summary })
    else yield* note(f.quiet, `decrypt ${f.input} → ${outputPath} with ${summary.backend} (${summary.strategy}): ${summary.bytesOut} bytes in ${(summary.durationMs / 1000).toFixed(2)} s`)
  })
