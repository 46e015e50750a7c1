/**
 * Pack files of the chunk store: many sealed chunks (blobs) in one file of a few MiB, so a
 * store of a million chunks is a few hundred thousand files fewer than one file per chunk.
 *
 * ```
 * pack    := blob_0 ‖ … ‖ blob_n-1 ‖ table ‖ trailer
 * blob_k  := nonce (12, random) ‖ AES-256-GCM(blob key, nonce, body,
 *            AAD = "cage.dev/backup/store/v1/blob" ‖ chunk id) ‖ tag (16)
 * body    := the chunk's plaintext, or its Brotli compression (RFC 7932, quality 1) when
 *            that is smaller: a blob is compressed exactly when its sealed length is
 *            less than plaintext length + 28
 * table   := nonce (12, random) ‖ AES-256-GCM(index key, nonce, entries,
 *            AAD = "cage.dev/backup/store/v1/pack-table") ‖ tag (16)
 * entries := per blob, in file order: chunk id (32) ‖ offset u32 LE ‖ sealed length u32 LE
 *            ‖ plaintext length u32 LE (44 bytes; the plaintext length is the chunk's,
 *            before compression)
 * trailer := table length u32 LE ‖ "CGP1"
 * ```
 *
 * A pack's name is the SHA-256 of its bytes (hex), so a pack is written once and never
 * changed, and checking a pack's bytes needs no key. Binding the chunk id into each blob's
 * AAD means a blob opens only as the chunk it was sealed for; the reader also checks the
 * plaintext's HMAC against the id. Nonces are random 96-bit values under keys that serve
 * one store: at a million blobs the chance of a repeat is about 2^-57 (NIST SP 800-38D
 * allows 2^32 random nonces per key).
 *
 * @internal
 */
import * as crypto from "node:crypto"
import * as zlib from "node:zlib"
import { PackDamaged } from "../../Error.js"
import { CHUNK_ID_BYTES, chunkId, type StoreKeys } from "./keys.js"

const NONCE_BYTES = 12
const TAG_BYTES = 16
const ENTRY_BYTES = CHUNK_ID_BYTES + 12
const TRAILER_BYTES = 8
const UPDATE_BYTES = 64 * 1024
const MAGIC = Buffer.from("CGP1", "latin1")
const BLOB_AAD = Buffer.from("cage.dev/backup/store/v1/blob", "latin1")
const TABLE_AAD = Buffer.from("cage.dev/backup/store/v1/pack-table", "latin1")
/** Bytes of a chunk compressed first to decide whether the rest is worth compressing. */
const PROBE_BYTES = 64 * 1024
/** A chunk is stored compressed only when its probe shrinks below this share. */
const PROBE_RATIO = 0.9
const brotli = (bytes: Uint8Array) =>
  zlib.brotliCompressSync(bytes, {
    params: {
      // Quality 1: about 220 MB/s on text on one core here, a quarter of the size; and it
      // gives up on random bytes at over 1.5 GB/s.
      [zlib.constants.BROTLI_PARAM_QUALITY]: 1,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length
    }
  })

/**
 * The Brotli compression of `chunk`, or undefined when it would not be smaller. Probes of
 * 64 KiB at its start, middle and end decide first, so incompressible chunks (already
 * compressed or encrypted data) cost three small compressions, not a whole one; a chunk
 * only partly compressible (a run of zeros written into random data) is still compressed
 * when any probe shrinks.
 */
export const compress = (chunk: Uint8Array): Buffer | undefined => {
  if (chunk.length > 3 * PROBE_BYTES) {
    const middle = Math.floor((chunk.length - PROBE_BYTES) / 2)
    const worth = [0, middle, chunk.length - PROBE_BYTES].some((at) => brotli(chunk.subarray(at, at + PROBE_BYTES)).length <= PROBE_BYTES * PROBE_RATIO)
    if (!worth) return undefined
  } else if (chunk.length > PROBE_BYTES && brotli(chunk.subarray(0, PROBE_BYTES)).length > PROBE_BYTES * PROBE_RATIO) return undefined
  const packed = brotli(chunk)
  return packed.length < chunk.length ? packed : undefined
}

/** Largest pack this format can describe (u32 offsets): 4 GiB − 1. */
const MAX_PACK_BYTES = 2 ** 32 - 1

/** Where a chunk lives in a pack, in bytes. */
export interface PackEntry {
  /** The chunk id (32 bytes). */
  readonly id: Buffer
  /** Offset of the blob in the pack. */
  readonly offset: number
  /** Blob length: body + 28 (nonce and tag); less than `plainBytes + 28` when the body is compressed. */
  readonly sealedBytes: number
  /** The chunk's length, uncompressed. */
  readonly plainBytes: number
}

/** A finished pack: its name (SHA-256 hex of `bytes`), its bytes and its entries. */
export interface FinishedPack {
  readonly packId: string
  readonly bytes: Buffer
  readonly entries: ReadonlyArray<PackEntry>
  /** The whole buffer `bytes` lies in: once `bytes` is written, it can be handed to the next {@link PackWriter}. */
  readonly buffer: Buffer
}

/** AES-256-GCM with a random nonce: nonce ‖ ciphertext ‖ tag. */
export const seal = (key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer => {
  const nonce = crypto.randomBytes(NONCE_BYTES)
  const c = crypto.createCipheriv("aes-256-gcm", key, nonce)
  c.setAAD(aad)
  return Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()])
}

/** The plaintext of a sealed box, or undefined when it does not authenticate. */
export const open = (key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined => {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined
  const d = crypto.createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES))
  d.setAAD(aad)
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
  try {
    return Buffer.concat([d.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), d.final()])
  } catch {
    return undefined
  }
}

/** Collects sealed chunks in memory until the caller finishes the pack (a few MiB: see the store's pack target). */
export class PackWriter {
  // One growing buffer for the whole pack: each blob is sealed straight into it (one copy
  // of the cipher's output, no per-blob buffers to concatenate), which keeps a backup's
  // memory close to its packs in flight.
  private buffer: Buffer
  private readonly entries: Array<PackEntry> = []
  private size = 0

  /**
   * `expectBytes`: about how large the pack will grow (its buffer starts that size).
   * `reuse`: a finished pack's buffer whose bytes were written, used when large enough (a
   * backup cycles a few buffers instead of leaving one for the collector per pack).
   */
  constructor(private readonly keys: StoreKeys, expectBytes = 0, reuse?: Buffer) {
    const want = Math.max(expectBytes, 64 * 1024)
    this.buffer = reuse !== undefined && reuse.length >= want ? reuse : Buffer.allocUnsafe(want)
  }

  /** Bytes of blobs so far (the table and trailer add 36 + 44 per blob). */
  get bytes(): number {
    return this.size
  }

  /** Blobs so far. */
  get count(): number {
    return this.entries.length
  }

  private reserve(bytes: number): void {
    if (this.size + bytes <= this.buffer.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.size + bytes, this.buffer.length * 2))
    this.buffer.copy(grown, 0, 0, this.size)
    this.buffer = grown
  }

  /** Seals `chunk` (compressed when that makes it smaller) as the chunk `id` (its {@link chunkId}) and appends it. */
  add(id: Buffer, chunk: Uint8Array): PackEntry {
    if (id.length !== CHUNK_ID_BYTES) throw new RangeError(`a chunk id is ${CHUNK_ID_BYTES} bytes, got ${id.length}`)
    const plaintext = compress(chunk) ?? chunk
    const sealedBytes = NONCE_BYTES + plaintext.length + TAG_BYTES
    if (this.size + sealedBytes > MAX_PACK_BYTES - 2 ** 20) throw new RangeError("internal error: a pack grew past its format's 4 GiB")
    this.reserve(sealedBytes)
    const at = this.size
    const nonce = crypto.randomBytes(NONCE_BYTES)
    nonce.copy(this.buffer, at)
    const c = crypto.createCipheriv("aes-256-gcm", this.keys.blob, nonce)
    c.setAAD(Buffer.concat([BLOB_AAD, id]))
    let w = at + NONCE_BYTES
    // In 64 KiB pieces: each output is copied into the pack and dropped at once, so the
    // cipher's garbage stays small between collections (one output per chunk would be up
    // to the largest chunk, 8 MiB, each).
    for (let i = 0; i < plaintext.length; i += UPDATE_BYTES) w += c.update(plaintext.subarray(i, i + UPDATE_BYTES)).copy(this.buffer, w)
    w += c.final().copy(this.buffer, w)
    c.getAuthTag().copy(this.buffer, w)
    const entry: PackEntry = { id: Buffer.from(id), offset: at, sealedBytes, plainBytes: chunk.length }
    this.entries.push(entry)
    this.size += sealedBytes
    return entry
  }

  /** The pack's bytes, with its sealed table and trailer, and its name. */
  finish(): FinishedPack {
    const table = Buffer.alloc(this.entries.length * ENTRY_BYTES)
    this.entries.forEach((e, k) => {
      const at = k * ENTRY_BYTES
      e.id.copy(table, at)
      table.writeUInt32LE(e.offset, at + CHUNK_ID_BYTES)
      table.writeUInt32LE(e.sealedBytes, at + CHUNK_ID_BYTES + 4)
      table.writeUInt32LE(e.plainBytes, at + CHUNK_ID_BYTES + 8)
    })
    const sealedTable = seal(this.keys.index, table, TABLE_AAD)
    this.reserve(sealedTable.length + TRAILER_BYTES)
    sealedTable.copy(this.buffer, this.size)
    const end = this.size + sealedTable.length
    this.buffer.writeUInt32LE(sealedTable.length, end)
    MAGIC.copy(this.buffer, end + 4)
    const bytes = this.buffer.subarray(0, end + TRAILER_BYTES)
    return { packId: crypto.createHash("sha256").update(bytes).digest("hex"), bytes, entries: [...this.entries], buffer: this.buffer }
  }
}

/**
 * The entries of a pack from its bytes (the whole pack; what `recover` rebuilds the index
 * from). Checks the trailer, authenticates the table and checks that its entries tile the
 * blob area exactly.
 *
 * @throws PackDamaged naming the pack and what is wrong
 */
export const readTable = (packId: string, bytes: Uint8Array, keys: StoreKeys): ReadonlyArray<PackEntry> => {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const damaged = (detail: string, offset?: number) => new PackDamaged({ pack: packId, detail, ...(offset === undefined ? {} : { offset }) })
  if (b.length < TRAILER_BYTES || !b.subarray(b.length - 4).equals(MAGIC)) throw damaged("no pack trailer (truncated, or not a pack)", Math.max(0, b.length - 4))
  const tableBytes = b.readUInt32LE(b.length - TRAILER_BYTES)
  const tableAt = b.length - TRAILER_BYTES - tableBytes
  if (tableBytes < NONCE_BYTES + TAG_BYTES || tableAt < 0) throw damaged(`the table length ${tableBytes} does not fit the ${b.length}-byte pack`, b.length - TRAILER_BYTES)
  const table = open(keys.index, b.subarray(tableAt, tableAt + tableBytes), TABLE_AAD)
  if (table === undefined) throw damaged("the pack table does not authenticate (damaged, or another store's key)", tableAt)
  if (table.length % ENTRY_BYTES !== 0) throw damaged(`the table holds ${table.length} bytes, not whole ${ENTRY_BYTES}-byte entries`, tableAt)
  const entries: Array<PackEntry> = []
  let expected = 0
  for (let at = 0; at < table.length; at += ENTRY_BYTES) {
    const e: PackEntry = {
      id: Buffer.from(table.subarray(at, at + CHUNK_ID_BYTES)),
      offset: table.readUInt32LE(at + CHUNK_ID_BYTES),
      sealedBytes: table.readUInt32LE(at + CHUNK_ID_BYTES + 4),
      plainBytes: table.readUInt32LE(at + CHUNK_ID_BYTES + 8)
    }
    // Authenticated, so only a writer bug could break these: still refuse rather than misread.
    if (e.offset !== expected || e.sealedBytes > e.plainBytes + NONCE_BYTES + TAG_BYTES || e.sealedBytes < NONCE_BYTES + TAG_BYTES) throw damaged(`table entry ${at / ENTRY_BYTES} does not follow the previous blob`, tableAt)
    expected += e.sealedBytes
    entries.push(e)
  }
  if (expected !== tableAt) throw damaged(`the blobs end at ${expected}, the table starts at ${tableAt}`, tableAt)
  return entries
}

/**
 * The plaintext of the blob `sealed` (the `entry.sealedBytes` bytes at `entry.offset` of the
 * pack): it must authenticate as the chunk `entry.id`, and its HMAC must be that id.
 *
 * @throws PackDamaged naming the pack, the blob's offset and the chunk id
 */
export const openBlob = (packId: string, entry: PackEntry, sealed: Uint8Array, keys: StoreKeys): Buffer => {
  const damaged = (detail: string) => new PackDamaged({ pack: packId, offset: entry.offset, chunk: entry.id.toString("hex"), detail })
  if (sealed.length !== entry.sealedBytes) throw damaged(`expected ${entry.sealedBytes} bytes, got ${sealed.length} (truncated pack?)`)
  const body = open(keys.blob, sealed, Buffer.concat([BLOB_AAD, entry.id]))
  if (body === undefined) throw damaged("the chunk does not authenticate")
  let plaintext = body
  if (sealed.length < entry.plainBytes + NONCE_BYTES + TAG_BYTES) {
    try {
      // Bounded by the recorded length: a body can never inflate past it.
      plaintext = zlib.brotliDecompressSync(body, { maxOutputLength: Math.max(1, entry.plainBytes) })
    } catch {
      throw damaged("the chunk's compressed body does not decompress")
    }
  }
  if (plaintext.length !== entry.plainBytes) throw damaged(`the chunk holds ${plaintext.length} bytes, its entry says ${entry.plainBytes}`)
  if (!crypto.timingSafeEqual(chunkId(keys, plaintext), entry.id)) throw damaged("the chunk's contents do not match its id")
  return plaintext
}
