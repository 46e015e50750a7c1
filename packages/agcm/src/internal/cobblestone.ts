/**
 * The Cobblestone-256 core (c2sp.org/chunked-encryption): key derivation and the one
 * seal/open loop every AGCM path runs (in-process, segment workers, streams, range reads,
 * Wycheproof conformance tests).
 *
 * `cipherSegment` is deliberately self-contained (no imports, no closures, `crypto` passed
 * in): the worker pool ships its source text to worker threads, so workers run this exact
 * function rather than a copy that could drift.
 */
import * as crypto from "node:crypto"

/** Cobblestone-256 HKDF info label (c2sp.org/chunked-encryption, "Key derivation"). */
export const LABEL = "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM"
export const KEY_BYTES = 32
export const SALT_BYTES = 24
export const COMMITMENT_BYTES = 32
export const NONCE_BYTES = 12
export const TAG_BYTES = 16
/** Chunk indices fit the 5 nonce bytes the counter is XORed into. */
export const MAX_CHUNKS = 2 ** 40

/** Per-file secrets derived from the key, salt and context. */
export interface DerivedKeys {
  readonly aeadKey: Buffer
  readonly baseNonce: Buffer
  readonly commitment: Buffer
}

/**
 * HKDF-Expand (RFC 5869 section 2.3) with SHA-512, PRK = `key`. Cobblestone uses Expand
 * only (no Extract), which `crypto.hkdf` does not offer, hence this loop.
 */
export const hkdfExpandSha512 = (prk: Uint8Array, info: Uint8Array, length: number): Buffer => {
  const blocks: Array<Buffer> = []
  let previous = Buffer.alloc(0)
  for (let i = 1; blocks.length * 64 < length; i++) {
    previous = crypto.createHmac("sha512", prk).update(previous).update(info).update(Buffer.of(i)).digest()
    blocks.push(previous)
  }
  return Buffer.concat(blocks).subarray(0, length)
}

/** Derives AEAD key ‖ base nonce ‖ commitment from `key` (32 bytes), `salt` (24 bytes) and `context`. */
export const deriveKeys = (key: Uint8Array, salt: Uint8Array, context: Uint8Array): DerivedKeys => {
  const info = Buffer.concat([Buffer.from(LABEL, "latin1"), Buffer.of(0), salt, context])
  const okm = hkdfExpandSha512(key, info, KEY_BYTES + NONCE_BYTES + COMMITMENT_BYTES)
  const out = {
    aeadKey: Buffer.from(okm.subarray(0, KEY_BYTES)),
    baseNonce: Buffer.from(okm.subarray(KEY_BYTES, KEY_BYTES + NONCE_BYTES)),
    commitment: Buffer.from(okm.subarray(KEY_BYTES + NONCE_BYTES))
  }
  okm.fill(0)
  return out
}

/** Constant-time commitment comparison. */
export const commitmentMatches = (expected: Uint8Array, actual: Uint8Array): boolean =>
  expected.length === actual.length && crypto.timingSafeEqual(expected, actual)

/** Seal = 0, open = 1 (numbers, so the job message stays plain data). */
export const SEAL = 0
export const OPEN = 1

/**
 * Seals or opens a run of consecutive chunks `firstIndex, firstIndex + 1, ...`.
 *
 * - `input` holds the chunks back to back; `lengths[k]` is chunk k's input length in bytes
 *   (plaintext for seal, ciphertext ‖ 16-byte tag for open, which must be >= 16).
 * - `output` receives the results back to back (each `len + 16` for seal, `len - 16` for open).
 * - Nonce of chunk i: `baseNonce` XOR i as a 40-bit big-endian integer in bytes 7..11.
 *
 * Returns -1 on success, or the position k (within the run) of the first chunk that failed
 * authentication; output bytes from chunk k on are garbage and must be discarded.
 * Must not reference anything outside its parameters (see the module comment).
 */
export function cipherSegment(
  nodeCrypto: typeof import("node:crypto"),
  op: number,
  aeadKey: Uint8Array,
  baseNonce: Uint8Array,
  firstIndex: number,
  input: Uint8Array,
  lengths: ArrayLike<number>,
  output: Uint8Array,
  release?: (consumed: Uint8Array) => void
): number {
  const nonce = new Uint8Array(12)
  let inAt = 0
  let outAt = 0
  for (let k = 0; k < lengths.length; k++) {
    const index = firstIndex + k
    nonce.set(baseNonce)
    // 40-bit big-endian counter: low 32 bits with >>>, high 8 bits by division (index < 2^40).
    const low = index >>> 0
    const high = Math.floor(index / 4294967296) & 0xff
    nonce[7] ^= high
    nonce[8] ^= (low >>> 24) & 0xff
    nonce[9] ^= (low >>> 16) & 0xff
    nonce[10] ^= (low >>> 8) & 0xff
    nonce[11] ^= low & 0xff
    const length = lengths[k]
    if (op === 0) {
      const cipher = nodeCrypto.createCipheriv("aes-256-gcm", aeadKey, nonce)
      const body = cipher.update(input.subarray(inAt, inAt + length))
      cipher.final()
      output.set(body, outAt)
      if (release) release(body)
      output.set(cipher.getAuthTag(), outAt + length)
      outAt += length + 16
    } else {
      if (length < 16) return k
      const bodyLength = length - 16
      const decipher = nodeCrypto.createDecipheriv("aes-256-gcm", aeadKey, nonce)
      decipher.setAuthTag(input.subarray(inAt + bodyLength, inAt + length))
      const body = decipher.update(input.subarray(inAt, inAt + bodyLength))
      try {
        decipher.final()
      } catch {
        return k
      }
      output.set(body, outAt)
      if (release) release(body)
      outAt += bodyLength
    }
    inAt += length
  }
  return -1
}

/** Seals one chunk in-process. */
export const sealChunk = (keys: DerivedKeys, index: number, plaintext: Uint8Array): Uint8Array => {
  const out = new Uint8Array(plaintext.length + TAG_BYTES)
  cipherSegment(crypto, SEAL, keys.aeadKey, keys.baseNonce, index, plaintext, [plaintext.length], out)
  return out
}

/** Opens one chunk in-process; `undefined` when it fails authentication (or is shorter than a tag). */
export const openChunk = (keys: DerivedKeys, index: number, sealed: Uint8Array): Uint8Array | undefined => {
  if (sealed.length < TAG_BYTES) return undefined
  const out = new Uint8Array(sealed.length - TAG_BYTES)
  return cipherSegment(crypto, OPEN, keys.aeadKey, keys.baseNonce, index, sealed, [sealed.length], out) === -1 ? out : undefined
}

/** Overwrites derived secrets (best effort: V8 may have copied them). */
export const wipeKeys = (keys: DerivedKeys | undefined): void => {
  keys?.aeadKey.fill(0)
  keys?.baseNonce.fill(0)
}

/**
 * Most trailing bytes the decryptor looks for after a final chunk that fails to open.
 * Each candidate costs one GCM open of up to a chunk, so the probe is bounded; longer
 * appendages are reported as an authentication failure of the chunk they landed in.
 */
export const TRAILING_PROBE_BYTES = 256

/**
 * Trailing-data probe: `sealed` is chunk `index`'s bytes as laid out in the file (starting at
 * its chunk boundary), `bytesToEnd` the bytes from that boundary to the end of input. Tries
 * each shorter prefix as the short final chunk, for 1..TRAILING_PROBE_BYTES trailing bytes.
 * Returns the number of trailing bytes when a prefix opens, else undefined.
 */
export const probeTrailing = (
  keys: DerivedKeys,
  index: number,
  sealed: Uint8Array,
  bytesToEnd: number,
  chunkSize: number
): number | undefined => {
  for (let trailing = 1; trailing <= TRAILING_PROBE_BYTES; trailing++) {
    const length = bytesToEnd - trailing
    if (length < TAG_BYTES) break
    // A final chunk holds less than chunkSize plaintext bytes.
    if (length > chunkSize + TAG_BYTES - 1 || length > sealed.length) continue
    if (openChunk(keys, index, sealed.subarray(0, length)) !== undefined) return trailing
  }
  return undefined
}

/** A segment to seal or open straight from one file to another (direct mode). Plain data. */
export interface DirectJob {
  readonly op: number
  readonly first: number
  /** Input length of each chunk, in bytes. */
  readonly lengths: ArrayLike<number>
  readonly inFd: number
  readonly inPos: number
  readonly outFd: number
  readonly outPos: number
  readonly inputBytes: number
  readonly outputBytes: number
}

/** What a direct job reports: `failedAt` as for `cipherSegment`, or where I/O went wrong. */
export interface DirectOutcome {
  readonly failedAt: number
  /** Bytes the input held at `inPos` when it ended early (the file shrank). */
  readonly short?: number
  /** A read or write failed: the syscall, errno code and message. */
  readonly ioError?: { readonly operation: "read" | "write"; readonly code: string; readonly message: string }
}

/**
 * Reads a segment with pread, seals or opens it with `seg` (= {@link cipherSegment}) and
 * writes the output with pwrite: opening writes only the chunks that authenticated.
 * `buffers` holds reusable buffers (`input`, `output`), grown on demand.
 * Self-contained like {@link cipherSegment}: worker threads run its source text.
 */
export function directSegment(
  nodeFs: typeof import("node:fs"),
  nodeCrypto: typeof import("node:crypto"),
  seg: typeof cipherSegment,
  aeadKey: Uint8Array,
  baseNonce: Uint8Array,
  job: DirectJob,
  buffers: { input?: Uint8Array; output?: Uint8Array },
  release?: (consumed: Uint8Array) => void
): DirectOutcome {
  if (!buffers.input || buffers.input.length < job.inputBytes) buffers.input = new Uint8Array(Buffer.allocUnsafeSlow(job.inputBytes).buffer, 0, job.inputBytes)
  const input = buffers.input.subarray(0, job.inputBytes)
  let got = 0
  try {
    while (got < job.inputBytes) {
      const n = nodeFs.readSync(job.inFd, input, got, job.inputBytes - got, job.inPos + got)
      if (n === 0) return { failedAt: -1, short: got }
      got += n
    }
  } catch (e) {
    return { failedAt: -1, ioError: { operation: "read", code: String((e as { code?: unknown }).code ?? ""), message: String((e as Error).message ?? e) } }
  }
  let output: Uint8Array
  if (job.op === 1) {
    // Opening shrinks every chunk by its tag, so plaintext can overwrite its own ciphertext.
    output = input
  } else {
    if (!buffers.output || buffers.output.length < job.outputBytes) buffers.output = new Uint8Array(Buffer.allocUnsafeSlow(job.outputBytes).buffer, 0, job.outputBytes)
    output = buffers.output
  }
  const failedAt = seg(nodeCrypto, job.op, aeadKey, baseNonce, job.first, input, job.lengths, output, release)
  let bytes = job.outputBytes
  if (failedAt >= 0) {
    bytes = 0
    for (let k = 0; k < failedAt; k++) bytes += job.op === 1 ? job.lengths[k] - 16 : job.lengths[k] + 16
  }
  try {
    let put = 0
    while (put < bytes) put += nodeFs.writeSync(job.outFd, output, put, bytes - put, job.outPos + put)
  } catch (e) {
    return { failedAt, ioError: { operation: "write", code: String((e as { code?: unknown }).code ?? ""), message: String((e as Error).message ?? e) } }
  }
  return { failedAt }
}

/**
 * Raises glibc malloc's dynamic mmap and trim thresholds (to about 30 and 60 MiB) by
 * allocating and freeing one 30 MiB block: glibc adopts the size of a freed mmapped block
 * as its new thresholds. Every chunk's cipher.update() mallocs its output, and each
 * scavenge frees a few MiB of them at once; under the default 128 KiB trim threshold glibc
 * hands those pages back to the kernel and faults them in again right after, which cost
 * a third of the throughput (measured 1.24 → 1.86 GB/s on 2 workers, same peak RSS). The
 * thresholds are process-wide: each worker runs this when it starts, the calling thread
 * before its first in-process segment, and repeats are harmless; elsewhere than glibc it
 * only costs one short-lived allocation. Self-contained: worker threads run its source.
 */
export function raiseMallocThresholds(minorGc: () => void): void {
  let block: Buffer | null = Buffer.allocUnsafeSlow(30 * 1024 * 1024)
  block[0] = 1
  block = null
  minorGc()
}


/** What {@link bufferReleaser} returns: call it on a consumed cipher output. */
export interface BufferReleaser {
  (consumed: Uint8Array): void
  /**
   * False once a detach failed, or a cipher output of 4 KiB or more could not be detached
   * (it shares its ArrayBuffer): callers then scavenge as often as without a releaser.
   */
  healthy: boolean
}

/**
 * A function that frees a cipher output's memory at once by detaching its ArrayBuffer
 * (`ArrayBuffer.prototype.transfer(0)`), for the outputs of `cipher.update()` once they are
 * copied into place; `undefined` where that is not available.
 *
 * Why: every chunk's `cipher.update()` mallocs its output outside the V8 heap, and V8 frees
 * such memory only when a GC finds the buffer dead. Periodic scavenges kept RSS flat but cost
 * about 15% of a 1 GiB seal (profile of `cage encrypt`: 120 ms of GC per thread); detaching
 * frees each 64 KiB output right after its copy, with neither GC nor RSS growth.
 *
 * `transfer` is built in from V8 11.4 (Node 21 and later); V8 11.3 (Node 20) has it behind
 * `--harmony-rab-gsab-transfer`, a flag that applies to contexts created after it is set:
 * worker threads started later get it natively, the calling thread borrows the function
 * from a fresh `vm` context (builtins work on any context's ArrayBuffers). Other versions
 * get `undefined` (no flag is set, so V8 prints nothing).
 *
 * Callers pass only buffers they own and no longer read: `cipher.update()` outputs after
 * their copy. The checks here only skip what cannot be detached whole (a view that does not
 * span its ArrayBuffer, shared memory); they do not make other buffers safe to pass.
 * Self-contained: worker threads run its source.
 */
export function bufferReleaser(nodeV8: typeof import("node:v8"), nodeVm: typeof import("node:vm")): BufferReleaser | undefined {
  type Transfer = (this: ArrayBuffer, length: number) => ArrayBuffer
  let transfer = (ArrayBuffer.prototype as unknown as { transfer?: Transfer }).transfer
  if (typeof transfer !== "function") {
    if (!/^11\.3\./.test(process.versions.v8)) return undefined
    try {
      nodeV8.setFlagsFromString("--harmony-rab-gsab-transfer")
      transfer = nodeVm.runInNewContext("ArrayBuffer.prototype.transfer") as Transfer | undefined
    } catch {
      return undefined
    }
    if (typeof transfer !== "function") return undefined
  }
  const detach = transfer
  const release = ((b: Uint8Array) => {
    if (!release.healthy) return
    const ab = b.buffer
    if (b.byteOffset !== 0 || ab.byteLength !== b.byteLength || Object.prototype.toString.call(ab) !== "[object ArrayBuffer]") {
      // Small outputs may legitimately come from a shared pool; large ones must not pile up.
      if (b.byteLength >= 4096) release.healthy = false
      return
    }
    try {
      detach.call(ab as ArrayBuffer, 0)
    } catch {
      // A non-detachable buffer: leave this and every later one to the GC.
      release.healthy = false
    }
  }) as BufferReleaser
  release.healthy = true
  return release
}
