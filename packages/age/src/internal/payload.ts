/**
 * age's STREAM payload decryption (age spec, "Payload"; age `internal/stream/stream.go`)
 * on node:crypto's ChaCha20-Poly1305, for the library backend. typage parses the header
 * (`Decrypter.decryptHeader`); this decrypts the payload natively, several times faster
 * than typage's JS cipher, and with the Go implementation's exact release rules: every
 * authenticated chunk is released before a later failure is reported.
 */
import { createDecipheriv, hkdfSync } from "node:crypto"

/** Plaintext bytes per chunk. */
export const CHUNK_BYTES = 64 * 1024
const TAG_BYTES = 16
const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES
/** Payload nonce (the HKDF salt) length in bytes. */
export const PAYLOAD_NONCE_BYTES = 16

/** A header that could not be located (no MAC line, or no payload nonce). */
export class HeaderSplitError extends Error {}
/** A payload failure; the message follows age's wording. */
export class PayloadError extends Error {}

/** Largest header accepted, in bytes: real headers are a few hundred bytes per recipient. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024

/** Pull-based byte reader over an async iterator of buffers. */
class Reader {
  private buffered: Array<Buffer> = []
  private length = 0
  private done = false
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Ensures at least `n` bytes are buffered, or the source ended. Returns the buffered length. */
  async fill(n: number): Promise<number> {
    while (this.length < n && !this.done) {
      const r = await this.source.next()
      if (r.done) this.done = true
      else if (r.value.length > 0) {
        this.buffered.push(r.value)
        this.length += r.value.length
      }
    }
    return this.length
  }

  /** The first `n` buffered bytes as one buffer (n <= buffered length), without consuming them. */
  peek(n: number): Buffer {
    if (this.buffered.length > 1 && this.buffered[0]!.length < n) {
      this.buffered = [Buffer.concat(this.buffered)]
    }
    return this.buffered.length === 0 ? Buffer.alloc(0) : this.buffered[0]!.subarray(0, n)
  }

  consume(n: number): void {
    let left = n
    while (left > 0) {
      const first = this.buffered[0]!
      if (first.length <= left) {
        this.buffered.shift()
        left -= first.length
      } else {
        this.buffered[0] = first.subarray(left)
        left = 0
      }
    }
    this.length -= n
  }

  get available(): number {
    return this.length
  }
}

/**
 * Reads the header (intro line to the MAC line, newline included) and the 16-byte payload
 * nonce. Fails with {@link HeaderSplitError} when either is missing.
 */
export const splitHeader = async (source: AsyncIterator<Buffer>): Promise<{ header: Buffer; nonce: Buffer; reader: Reader }> => {
  const reader = new Reader(source)
  let want = 4096
  for (;;) {
    const have = await reader.fill(want)
    const view = reader.peek(have)
    const mac = view.indexOf("\n---")
    const end = mac < 0 ? -1 : view.indexOf(0x0a, mac + 1)
    if (end >= 0) {
      const header = Buffer.from(view.subarray(0, end + 1))
      reader.consume(end + 1)
      if (await reader.fill(PAYLOAD_NONCE_BYTES) < PAYLOAD_NONCE_BYTES) throw new HeaderSplitError("failed to read nonce")
      const nonce = Buffer.from(reader.peek(PAYLOAD_NONCE_BYTES))
      reader.consume(PAYLOAD_NONCE_BYTES)
      return { header, nonce, reader }
    }
    if (have < want) {
      // End of input before a complete MAC line: hand what there is to the header parser.
      const header = Buffer.from(view)
      reader.consume(have)
      return { header, nonce: Buffer.alloc(0), reader }
    }
    if (want >= MAX_HEADER_BYTES) throw new HeaderSplitError("header too long")
    want *= 2
  }
}

/** Decrypts the STREAM payload, yielding each authenticated chunk's plaintext. */
export async function* decryptPayload(fileKey: Uint8Array, payloadNonce: Uint8Array, reader: Reader): AsyncGenerator<Buffer> {
  const key = Buffer.from(hkdfSync("sha256", fileKey, payloadNonce, "payload", 32))
  const nonce = Buffer.alloc(12)
  let counter = 0
  const open = (sealed: Buffer, last: boolean): Buffer | undefined => {
    nonce.writeUIntBE(Math.floor(counter / 2 ** 32), 3, 4)
    nonce.writeUInt32BE(counter >>> 0, 7)
    nonce[11] = last ? 1 : 0
    if (sealed.length < TAG_BYTES) return undefined
    const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES })
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
    try {
      const a = d.update(sealed.subarray(0, sealed.length - TAG_BYTES))
      const b = d.final()
      return b.length === 0 ? a : Buffer.concat([a, b])
    } catch {
      return undefined
    }
  }
  for (;;) {
    const have = await reader.fill(SEALED_CHUNK_BYTES)
    const n = Math.min(have, SEALED_CHUNK_BYTES)
    // A message cannot end without a chunk marked last: this one is truncated.
    if (n === 0) throw new PayloadError("unexpected EOF")
    let last = n < SEALED_CHUNK_BYTES
    // The last chunk may be short, but empty only when it is the first and only chunk.
    if (last && counter !== 0 && n === TAG_BYTES) throw new PayloadError("last chunk is empty")
    const sealed = reader.peek(n)
    let plain = open(sealed, last)
    if (plain === undefined && !last) {
      // A full-length chunk can still be the last one.
      last = true
      plain = open(sealed, true)
    }
    if (plain === undefined) throw new PayloadError("failed to decrypt and authenticate payload chunk")
    reader.consume(n)
    counter++
    yield plain
    if (last) {
      if (await reader.fill(1) > 0) throw new PayloadError("trailing data after end of encrypted file")
      return
    }
  }
}
