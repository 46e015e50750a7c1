/**
 * @cage/backup: encrypted backup generations with chunk manifests, retention, verify and
 * restore. See README.md.
 *
 * @module
 */
export * from "./Backup.js"
export * from "./Error.js"
export * as Registry from "./Registry.js"
export type { Generation, Manifest, Registry as RegistryDocument } from "./Registry.js"
export * as Retention from "./Retention.js"
export { formatPolicy, parsePolicy, type RetentionPolicy } from "./Retention.js"
export { LOCK_FILE, type LockOptions, withLock } from "./Lock.js"
export { chunkRanges, expectedSize, layoutOf, rootOf } from "./Manifest.js"
export { type AgcmCipherOptions, agcmCipher } from "./Agcm.js"
export * as Store from "./Store.js"
