/**
 * Recipient fingerprints: what the audit log records instead of a recipient.
 *
 * @module
 */
import { createHash } from "node:crypto"

/**
 * `sha256:<64 hex>` of a recipient's text form (e.g. an `age1…` public key, UTF-8) or
 * bytes. Links log entries to a recipient the operator knows without writing it down.
 */
export const fingerprint = (recipient: string | Uint8Array): string =>
  `sha256:${createHash("sha256").update(recipient).digest("hex")}`
