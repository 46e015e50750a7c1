/**
 * Tagged errors of the age adapter.
 *
 * Every failure of either backend is an {@link AgeError} with a literal `reason` (or core's
 * `IoError` for the caller's own input/output). The foreign failure texts are translated in
 * exactly one function per backend: {@link fromAgeExit} for the `age` CLI (exit status and
 * stderr) and {@link fromLibraryError} for `age-encryption` (typage). Nothing else inspects
 * age's stderr.
 *
 * Messages never contain a passphrase or terminal output: {@link fromAgeExit} only keeps
 * the `age: error:` line, after {@link redact} has removed the secret.
 *
 * Exit codes follow `@cage/core`'s `ExitCode`: 3 for integrity/authentication failures
 * (wrong key, tampered or malformed file), 2 for usage and configuration, 4 for I/O, 1 else.
 *
 * @module
 */
import { ExitCode } from "@cage/core"
import { Data } from "effect"

/**
 * Why an age operation failed.
 *
 * Integrity/authentication (exit 3), named after the CCTV age suite's `expect` classes
 * (c2sp.org/CCTV/age):
 * - `NoMatch`: the header parsed but no identity unwrapped any recipient stanza.
 * - `WrongPassphrase`: the passphrase did not unwrap the scrypt stanza (a `NoMatch` for passphrases).
 * - `HmacFailure`: a file key was unwrapped but the header MAC does not match.
 * - `HeaderFailure`: the header does not parse (intro, stanzas, MAC line, nonce).
 * - `PayloadFailure`: the STREAM payload failed to authenticate, was truncated or has trailing data.
 * - `ArmorFailure`: the ASCII armor (`-----BEGIN AGE ENCRYPTED FILE-----`) is malformed.
 *
 * Usage and configuration (exit 2):
 * - `AgeMissing`: no `age` binary was found; `AgeTooOld`: the binary is older than 1.0.0.
 * - `BadRecipient`, `BadIdentity`, `BadPassphrase`: an argument was refused before any data moved.
 * - `Unsupported`: this backend cannot do what was asked (an identity or recipient type it
 *   does not know, e.g. ML-KEM hybrid keys with age 1.1.1, or SSH keys with the library).
 *
 * Other (exit 1):
 * - `PromptTimeout`: age did not show the expected passphrase prompt, or did not turn the
 *   terminal's echo off, within the time limit.
 * - `Failed`: age exited non-zero with a message not listed above.
 */
export type AgeErrorReason =
  | "NoMatch"
  | "WrongPassphrase"
  | "HmacFailure"
  | "HeaderFailure"
  | "PayloadFailure"
  | "ArmorFailure"
  | "AgeMissing"
  | "AgeTooOld"
  | "BadRecipient"
  | "BadIdentity"
  | "BadPassphrase"
  | "Unsupported"
  | "PromptTimeout"
  | "Failed"

const integrity: ReadonlySet<AgeErrorReason> = new Set([
  "NoMatch",
  "WrongPassphrase",
  "HmacFailure",
  "HeaderFailure",
  "PayloadFailure",
  "ArmorFailure"
])
const usage: ReadonlySet<AgeErrorReason> = new Set([
  "AgeMissing",
  "AgeTooOld",
  "BadRecipient",
  "BadIdentity",
  "BadPassphrase",
  "Unsupported"
])

/** Install hint shown with `AgeMissing` / `AgeTooOld`. */
export const AGE_INSTALL_HINT =
  "install age 1.1 or later (`apt-get install age`) or set CAGE_AGE_BIN to its path"

/** An age operation failed. `detail` is safe to show: it never holds a secret or raw terminal output. */
export class AgeError extends Data.TaggedError("AgeError")<{
  readonly reason: AgeErrorReason
  /** `"age"` (the CLI) or `"age-lib"` (age-encryption). */
  readonly backend: "age" | "age-lib"
  readonly detail: string
}> {
  get exitCode(): ExitCode {
    return integrity.has(this.reason) ? ExitCode.Integrity : usage.has(this.reason) ? ExitCode.Usage : ExitCode.Failure
  }
  override get message() {
    const what: Record<AgeErrorReason, string> = {
      NoMatch: "no identity matched any of the file's recipients",
      WrongPassphrase: "incorrect passphrase",
      HmacFailure: "header MAC mismatch (wrong file key or tampered header)",
      HeaderFailure: "malformed age header",
      PayloadFailure: "payload failed to authenticate (tampered, truncated or trailing data)",
      ArmorFailure: "malformed ASCII armor",
      AgeMissing: `the age CLI was not found; ${AGE_INSTALL_HINT}`,
      AgeTooOld: `the age CLI is too old; ${AGE_INSTALL_HINT}`,
      BadRecipient: "invalid recipient",
      BadIdentity: "invalid identity",
      BadPassphrase: "unusable passphrase",
      Unsupported: "not supported by this backend",
      PromptTimeout: "age did not prompt for the passphrase in time",
      Failed: "age failed"
    }
    return this.detail === "" ? `${this.backend}: ${what[this.reason]}` : `${this.backend}: ${what[this.reason]}: ${this.detail}`
  }
}

/** True for the failures that mean "this file, this key": wrong key, tampering, malformed input. */
export const isIntegrityFailure = (e: AgeError): boolean => integrity.has(e.reason)

const REDACTED = "[redacted]"

/**
 * Removes every occurrence of `secret` (as UTF-8) from `text`, and every control character
 * except newline, so terminal output can be inspected without leaking what was typed.
 */
export const redact = (text: string, secret: Uint8Array | undefined): string => {
  let out = text
  if (secret !== undefined && secret.length > 0) {
    const s = Buffer.from(secret).toString("utf8")
    out = out.split(s).join(REDACTED)
  }
  // eslint-disable-next-line no-control-regex
  return out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/[\x00-\x09\x0b-\x1f\x7f]/g, "")
}

/** What {@link fromAgeExit} knows about the run, to tell apart messages age 1.1.1 conflates. */
export interface AgeExitContext {
  readonly operation: "encrypt" | "decrypt"
  /** True when the only key material was a passphrase. */
  readonly passphrase: boolean
  /**
   * Whether the header's MAC line (`--- ` and 43 canonical base64 characters) is well formed,
   * when known: typage reports a malformed MAC line as a MAC mismatch.
   */
  readonly macLineValid?: boolean | undefined
}

/** The `age: error: ...` line (the first one), or the last non-empty line. Never the whole output. */
const errorLine = (stderr: string): string => {
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0)
  const line = lines.find((l) => l.startsWith("age: error:")) ?? lines.at(-1) ?? ""
  const text = line.replace(/^age: error:\s*/, "")
  return text.length > 300 ? `${text.slice(0, 300)}...` : text
}

/**
 * The one place where `age`'s exit status and stderr become tagged errors.
 *
 * Matches the wording of age 1.0 to 1.2 (`age/cmd/age`, `age/armor`, `age/internal/format`,
 * `age/internal/stream`). `stderr` must already be {@link redact}ed when it came through a
 * terminal that saw a passphrase.
 */
export const fromAgeExit = (exitCode: number | null, signal: string | null, stderr: string, context: AgeExitContext): AgeError => {
  const line = errorLine(stderr)
  const make = (reason: AgeErrorReason, detail = line) => new AgeError({ reason, backend: "age", detail })
  if (exitCode === null) return make("Failed", `age was killed by ${signal ?? "a signal"}`)
  const l = line.toLowerCase()
  if (l.includes("incorrect passphrase")) return make("WrongPassphrase", "")
  if (context.operation === "encrypt") {
    // Encryption reads no age file: its failures are about the recipients or the I/O.
    if (l.includes("recipient")) return make("BadRecipient")
    return make("Failed")
  }
  if (l.includes("unknown identity type")) {
    return make("Unsupported", `this age does not know an identity in the file (${line})`)
  }
  if (l.includes("passphrase-encrypted but identities")) return make("BadIdentity", "the file is passphrase-encrypted: decrypt it with a passphrase")
  if (l.includes("invalid armor")) return make("ArmorFailure")
  if (l.includes("no identity matched")) return make("NoMatch")
  if (l.includes("bad header mac")) return make("HmacFailure")
  if (l.includes("unexpected intro")) {
    // age 1.1.1 only recognises armor that starts at byte 0: an intro line that is not the
    // binary "age-encryption.org/" intro can only have been an attempt at armor.
    const intro = /unexpected intro: "(.*)"/.exec(line)?.[1] ?? ""
    return intro.startsWith("age-encryption.org/") ? make("HeaderFailure") : make("ArmorFailure")
  }
  if (
    l.includes("failed to read header") || l.includes("invalid header") || l.includes("failed to read nonce") ||
    l.includes("recipient block") || l.includes("recipient:") || l.includes("parse x25519 recipient") ||
    l.includes("scrypt") || l.includes("malformed") || l.includes("work factor") || l.includes("file key size")
  ) {
    return make("HeaderFailure")
  }
  if (
    l.includes("decrypt and authenticate payload") || l.includes("trailing data") || l.includes("last chunk is empty") ||
    l.includes("unexpected eof")
  ) {
    return make("PayloadFailure")
  }
  if (l.includes("identity") && (l.includes("reading") || l.includes("failed to read") || l.includes("no identities"))) {
    return make("BadIdentity")
  }
  if (l.includes("recipient")) return make("HeaderFailure")
  return make("Failed")
}

/** Library failure texts (age-encryption 0.3.x, `lib/format.ts`, `lib/recipients.ts`, `lib/stream.ts`). */
const LIB_HEADER = [
  "invalid header",
  "invalid stanza",
  "invalid version",
  "invalid non-ascii byte in header",
  "invalid x25519 stanza",
  "invalid scrypt stanza",
  "invalid mlkem768x25519 stanza",
  "scrypt work factor is too high",
  "scrypt recipient is not the only one",
  "cbor:",
  "invalid line length"
]

/**
 * The one place where `age-encryption` (typage) exceptions become tagged errors.
 * `phase` says what typage was doing: taking the keys, reading the header, or the payload
 * (typage reports payload and header problems with overlapping texts).
 */
export const fromLibraryError = (cause: unknown, phase: "keys" | "header" | "payload", context: AgeExitContext): AgeError => {
  const text = cause instanceof Error ? cause.message : String(cause)
  const l = text.toLowerCase()
  const make = (reason: AgeErrorReason) => new AgeError({ reason, backend: "age-lib", detail: text.slice(0, 300) })
  if (phase === "payload") return make("PayloadFailure")
  // Adding a recipient, identity or passphrase to typage: the argument was refused.
  if (phase === "keys") return make(l.includes("passphrase") ? "BadPassphrase" : context.operation === "encrypt" ? "BadRecipient" : "BadIdentity")
  if (l.includes("no identity matched")) return make(context.passphrase ? "WrongPassphrase" : "NoMatch")
  if (l.includes("invalid header hmac")) return make(context.macLineValid === false ? "HeaderFailure" : "HmacFailure")
  if (l.includes("unrecognized identity type") || l.includes("unsupported identity version")) return make("BadIdentity")
  if (l.includes("invalid identity")) return make("BadIdentity")
  if (l.includes("unrecognized recipient type") || l.includes("invalid recipient")) return make("BadRecipient")
  if (l.includes("can't encrypt") || l.includes("can encrypt to at most")) return make("BadPassphrase")
  if (LIB_HEADER.some((m) => l.includes(m)) || l.includes("stream ended before reading")) return make("HeaderFailure")
  // Anything else typage throws while reading a header (base64 and curve errors from its
  // dependencies: "Unknown letter", "Non-zero padding", "invalid private or public key")
  // is a malformed header; while encrypting it is not.
  return make(context.operation === "decrypt" ? "HeaderFailure" : "Failed")
}
