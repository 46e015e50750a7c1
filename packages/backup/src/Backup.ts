/**
 * Backup operations: create, resume, verify, restore, list and prune generations.
 *
 * Layout of a backup directory:
 * - `<name>.<tag>.g<N>.cage`: generation N of a source (`tag` = 8 hex digits of the SHA-256
 *   of the source's absolute path, so equal names from different directories never clash);
 *   `.partial` while being written.
 * - `.cage_backups.json` (+ `.bak`): the registry (see `Registry.ts`).
 * - `.cage_backups.d/<file>.manifest.json`: each complete generation's manifest (its
 *   registry entry, the chunk layout, digests); `<file>.checkpoint.json` while in progress;
 *   `<file>.layout.json` (direct-mode ciphers) from the cipher's `init` until the manifest
 *   is written; `<file>.lock` while a process writes that generation.
 * - `.cage_backups.lock`: the registry lock (see `Lock.ts`).
 *
 * The operations live in `Create.ts` (create, resume), `Verify.ts`, `Restore.ts` and
 * `Prune.ts` (list, prune, recover); this module re-exports them.
 *
 * Concurrency: the lock is held only for registry read-modify-writes (allocating a
 * generation number, committing it, pruning), so concurrent creates encrypt in parallel and
 * every entry survives. Durability order: registry entry `"partial"`, backup file committed
 * (fsync + link), then manifest (atomic), layout record removed, then registry (atomic);
 * prune updates the registry durably before it deletes any file.
 *
 * @module
 */
export * from "./Create.js"
export { type BackupCipher, type CommonOptions, findGeneration } from "./internal/common.js"
export * from "./Prune.js"
export * from "./Restore.js"
export * from "./Verify.js"
