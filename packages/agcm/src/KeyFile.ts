/**
 * The Cage key file format (written by `cage keygen`, mode 0600), parsed here so that every
 * program that reads key files (the CLI, a cluster runner) reads them the same way:
 *
 * ```
 * # cage key: AGCM v2 raw 256-bit key. Keep this file secret.
 * cage-key-1:<32 bytes as base64url (43 characters) or hex (64 characters)>
 * ```
 *
 * A file holding just the 64 hex characters is accepted too (as other tools and the
 * Wycheproof vectors store keys). Blank lines and `#` comments are ignored.
 *
 * @module
 */

/** Prefix of a key line in a Cage key file. */
export const KEY_PREFIX = "cage-key-1:"
/** Key length in bytes (AES-256). */
export const KEY_FILE_BYTES = 32

/** Parses key-file text: the 32-byte key, or `undefined` when the text holds no valid key. */
export const parseKeyText = (text: string): Uint8Array | undefined => {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
  if (lines.length !== 1) return undefined
  let body = lines[0]
  if (body.startsWith(KEY_PREFIX)) body = body.slice(KEY_PREFIX.length)
  if (/^[0-9a-fA-F]{64}$/.test(body)) return Buffer.from(body, "hex")
  if (/^[A-Za-z0-9_-]{43}$/.test(body)) {
    const b = Buffer.from(body, "base64url")
    return b.length === KEY_FILE_BYTES ? b : undefined
  }
  return undefined
}
