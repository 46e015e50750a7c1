/**
 * The chunk store's keys (design: the package README, "a chunk store"). Every key derives
 * from the backup's 32-byte master key with HKDF-SHA-256 (RFC 5869), salted with the
 * store's random 16-byte id and labelled by purpose, so one key never serves two purposes
 * and two stores under one master key share no key. The master key never enters the store.
 *
 * @internal
 */
import * as crypto from "node:crypto"

/** Bytes of every derived key, and of the master key. */
export const KEY_BYTES = 32
/** Bytes of a store id (random, in the store's config). */
export const STORE_ID_BYTES = 16
/** Bytes of a chunk id (HMAC-SHA-256). */
export const CHUNK_ID_BYTES = 32
const LABEL = "cage.dev/backup/store/v1/"

/** The derived keys: never written anywhere, wiped by {@link wipeStoreKeys}. */
export interface StoreKeys {
  /** HMAC-SHA-256 key naming chunks by their plaintext. */
  readonly chunkId: Buffer
  /** AES-256-GCM key of the chunks (blobs) in packs. */
  readonly blob: Buffer
  /** AES-256-GCM key of pack tables and index files. */
  readonly index: Buffer
  /** AES-256-GCM key of snapshots (generation manifests). */
  readonly snapshot: Buffer
  /** HMAC-SHA-256 key of the store's config (so no key serves two primitives). */
  readonly config: Buffer
}

const derive = (master: Uint8Array, storeId: Uint8Array, purpose: string): Buffer =>
  Buffer.from(crypto.hkdfSync("sha256", master, storeId, `${LABEL}${purpose}`, KEY_BYTES))

/** Derives the store's keys from the 32-byte master key and the store id; throws a RangeError on wrong sizes (a caller's bug). */
export const deriveStoreKeys = (master: Uint8Array, storeId: Uint8Array): StoreKeys => {
  if (master.length !== KEY_BYTES) throw new RangeError(`the master key must be ${KEY_BYTES} bytes, got ${master.length}`)
  if (storeId.length !== STORE_ID_BYTES) throw new RangeError(`a store id is ${STORE_ID_BYTES} bytes, got ${storeId.length}`)
  return {
    chunkId: derive(master, storeId, "chunk-id"),
    blob: derive(master, storeId, "blob"),
    index: derive(master, storeId, "index"),
    snapshot: derive(master, storeId, "snapshot"),
    config: derive(master, storeId, "config")
  }
}

/** Zero-fills every derived key. */
export const wipeStoreKeys = (keys: StoreKeys): void => {
  for (const k of [keys.chunkId, keys.blob, keys.index, keys.snapshot, keys.config]) k.fill(0)
}

/**
 * A chunk's id: HMAC-SHA-256 of its plaintext under the chunk-id key. Keyed, so holding the
 * store does not let anyone confirm that it contains a file they guess (a bare SHA-256 would).
 */
export const chunkId = (keys: StoreKeys, plaintext: Uint8Array): Buffer =>
  crypto.createHmac("sha256", keys.chunkId).update(plaintext).digest()
