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
export { chunkRanges, expectedSize, layoutOf, rootOf, withManifest } from "./Manifest.js"
export { HashPool, hashFileRangesHere, sha256 } from "./internal/hashPool.js"
export { type AgcmCipherOptions, type AgcmKey, agcmCipher } from "./Agcm.js"
