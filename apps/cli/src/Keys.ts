/**
 * Key material for the CLI: key files, passphrase files and no-echo prompts.
 *
 * Secrets never come from argv or the environment: `--key FILE` and `--passphrase-file FILE`
 * name files, and without either a passphrase is prompted for on the terminal with echo off.
 * Errors name the file and what is wrong, never its content.
 *
 * Key file format (written by `cage keygen`, mode 0600):
 *
 * ```
 * # cage key: AGCM v2 raw 256-bit key. Keep this file secret.
 * cage-key-1:<32 bytes as base64url (43 characters) or hex (64 characters)>
 * ```
 *
 * `--key` also accepts a file holding just the 64 hex characters (as other tools and the
 * Wycheproof vectors store keys). Blank lines and `#` comments are ignored.
 *
 * @module
 */
import { KEY_FILE_BYTES, KEY_PREFIX, type KeyMaterial, parseKeyText, wipeKey } from "@cage/agcm"
import { fromSystemError, type IoError, UsageError } from "@cage/core"
import { Data, Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as tty from "node:tty"

/** Key length in bytes (AES-256). */
export const KEY_BYTES = KEY_FILE_BYTES

/** A key or passphrase file is unusable. Exit code 2 (a usage problem, not an integrity failure). */
export class KeyFileError extends Data.TaggedError("KeyFileError")<{ readonly path: string; readonly detail: string }> {
  readonly exitCode = 2
  override get message() {
    return `${this.path}: ${this.detail}`
  }
}

// A file that cannot be read is an I/O error (exit 4, as for any file the user names); one
// that reads but holds no key is a usage error (KeyFileError, exit 2).
const readSecretFile = (path: string, what: string) =>
  Effect.tryPromise({
    try: () => fs.promises.readFile(path),
    catch: (e) => fromSystemError(`read ${what}`, path, e)
  })

export { KEY_PREFIX, parseKeyText }

/** Reads a 32-byte key from `path`. The caller zeroes it after use. */
export const readKeyFile = (path: string): Effect.Effect<Uint8Array, KeyFileError | IoError> =>
  Effect.gen(function*() {
    const raw = yield* readSecretFile(path, "key file")
    const key = parseKeyText(raw.toString("utf8"))
    raw.fill(0)
    if (!key) {
      return yield* Effect.fail(new KeyFileError({ path, detail: `not a key file: expected one line "${KEY_PREFIX}" followed by 32 bytes as base64url or hex, or 64 hex characters` }))
    }
    warnIfShared(path)
    // A key of zeros is public knowledge (test vectors use it): say so, once per run.
    if (key.every((b) => b === 0)) process.stderr.write(`cage: warning: ${path} holds an all-zero key: anyone can decrypt what it encrypts\n`)
    return key
  })

/** Reads a passphrase: the file's first line, without its line ending. */
export const readPassphraseFile = (path: string): Effect.Effect<Uint8Array, KeyFileError | IoError> =>
  Effect.gen(function*() {
    const raw = yield* readSecretFile(path, "passphrase file")
    let end = raw.indexOf(0x0a)
    if (end < 0) end = raw.length
    if (end > 0 && raw[end - 1] === 0x0d) end--
    const pass = Uint8Array.prototype.slice.call(raw, 0, end)
    raw.fill(0)
    if (pass.length === 0) return yield* Effect.fail(new KeyFileError({ path, detail: "the passphrase file is empty (its first line is the passphrase)" }))
    warnIfShared(path)
    return pass
  })

const warnIfShared = (path: string) => {
  try {
    const mode = fs.statSync(path).mode
    if (mode & 0o077) process.stderr.write(`cage: warning: ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it\n`)
  } catch {
    // stat raced with a delete: the read already succeeded, nothing to warn about
  }
}

/**
 * Writes a new random key to `path` with mode 0600. Refuses to overwrite an existing file.
 */
export const writeNewKeyFile = (path: string): Effect.Effect<void, KeyFileError> =>
  Effect.tryPromise({
    try: async () => {
      const key = randomBytes(KEY_BYTES)
      const text = `# cage key: AGCM v2 raw 256-bit key, created ${new Date().toISOString()}. Keep this file secret.\n${KEY_PREFIX}${key.toString("base64url")}\n`
      key.fill(0)
      // "wx": fails with EEXIST rather than replacing a key someone depends on.
      const h = await fs.promises.open(path, "wx", 0o600)
      try {
        await h.writeFile(text)
        await h.sync()
      } finally {
        await h.close()
      }
    },
    catch: (e) =>
      new KeyFileError({
        path,
        detail: (e as NodeJS.ErrnoException).code === "EEXIST" ? "already exists; refusing to overwrite a key file" : `cannot create (${(e as NodeJS.ErrnoException).code ?? "error"})`
      })
  })

/**
 * Prompts for a passphrase on the controlling terminal (/dev/tty) with echo off, so it works
 * even when stdin carries data. Fails with a usage error when there is no terminal.
 */
export const promptPassphrase = (options: { readonly confirm: boolean }): Effect.Effect<Uint8Array, UsageError> =>
  Effect.tryPromise({
    try: async () => {
      const fd = fs.openSync("/dev/tty", "r+")
      const input = new tty.ReadStream(fd)
      const ask = (label: string) =>
        new Promise<Buffer>((resolve, reject) => {
          fs.writeSync(fd, label)
          const bytes: Array<number> = []
          input.setRawMode(true)
          const onData = (d: Buffer) => {
            for (const b of d) {
              if (b === 0x03) { // Ctrl-C
                cleanup()
                return reject(new Error("cancelled"))
              }
              if (b === 0x0d || b === 0x0a) {
                cleanup()
                const out = Buffer.from(bytes)
                bytes.fill(0)
                return resolve(out)
              }
              if (b === 0x7f || b === 0x08) bytes.pop()
              else bytes.push(b)
            }
          }
          const cleanup = () => {
            input.off("data", onData)
            input.setRawMode(false)
            fs.writeSync(fd, "\n")
          }
          input.on("data", onData)
        })
      try {
        const first = await ask("Passphrase: ")
        if (first.length === 0) throw new Error("the passphrase is empty")
        if (options.confirm) {
          const second = await ask("Confirm passphrase: ")
          const same = second.equals(first)
          second.fill(0)
          if (!same) {
            first.fill(0)
            throw new Error("the passphrases do not match")
          }
        }
        const out = new Uint8Array(first)
        first.fill(0)
        return out
      } finally {
        input.destroy()
      }
    },
    catch: (e) =>
      new UsageError({
        reason: "Key",
        detail: (e as NodeJS.ErrnoException).code
          ? "no key given: use --key FILE or --passphrase-file FILE (no terminal to prompt for a passphrase)"
          : `passphrase prompt: ${(e as Error).message}`
      })
  })

/** Resolves --key / --passphrase-file / a terminal prompt into key material. */
export const keyMaterial = (flags: { key: Option.Option<string>; passphraseFile: Option.Option<string> }, confirm: boolean) =>
  Effect.gen(function*() {
    if (Option.isSome(flags.key) && Option.isSome(flags.passphraseFile)) return yield* Effect.fail(new UsageError({ reason: "Conflict", detail: "give either --key or --passphrase-file, not both" }))
    if (Option.isSome(flags.key)) return { key: yield* readKeyFile(flags.key.value) } as KeyMaterial
    if (Option.isSome(flags.passphraseFile)) return { passphrase: yield* readPassphraseFile(flags.passphraseFile.value) } as KeyMaterial
    return { passphrase: yield* promptPassphrase({ confirm }) } as KeyMaterial
  })

/** Zeroes key material once a run is over. */
export const wipe = (k: KeyMaterial) => Effect.sync(() => wipeKey(k))

