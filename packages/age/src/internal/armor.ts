/**
 * Streaming ASCII armor for age files (age spec, "ASCII armor": RFC 7468 strict encoding,
 * label `AGE ENCRYPTED FILE`, 64-column standard base64 lines with padding).
 *
 * Both backends decode armor here rather than in age 1.1.1 or typage: age 1.1.1 accepts
 * some malformed armor (an empty last line) and rejects some valid armor (leading
 * whitespace), and typage only decodes whole strings. Memory is bounded by one line.
 */

export const ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
export const ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
/** Base64 columns per armor line. */
const COLUMNS = 64
/** Plaintext bytes per full armor line. */
const BYTES_PER_LINE = (COLUMNS / 4) * 3
const BINARY_INTRO = "age-encryption.org/"
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/

/** Why armor failed to decode (the text goes into `AgeError.detail`). */
export class ArmorDecodeError extends Error {}

const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d

/**
 * Decides from the first bytes of a file whether it is armored: whatever is not empty and,
 * after leading whitespace, does not start with the binary intro is treated as armor, so
 * that garbage before an armor block is an armor failure, as the CCTV suite expects.
 * Returns `undefined` when `prefix` is too short to tell and more input exists.
 */
export const looksArmored = (prefix: Uint8Array, atEof: boolean): boolean | undefined => {
  let i = 0
  while (i < prefix.length && isSpace(prefix[i]!)) i++
  const rest = Buffer.from(prefix.subarray(i, i + BINARY_INTRO.length)).toString("latin1")
  if (rest.length === 0) return atEof ? i > 0 : undefined
  if (BINARY_INTRO.startsWith(rest)) return rest.length < BINARY_INTRO.length && !atEof ? undefined : false
  return true
}

/** Streaming armor encoder: `push` plaintext (an age binary file), then `end`. */
export class ArmorEncoder {
  private carry: Buffer = Buffer.alloc(0)
  private started = false

  push(bytes: Uint8Array): Buffer {
    const all = this.carry.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.carry, bytes])
    // Keep at least one byte back so `end` knows the final line (a full final line is allowed).
    const full = Math.floor(Math.max(0, all.length - 1) / BYTES_PER_LINE) * BYTES_PER_LINE
    this.carry = Buffer.from(all.subarray(full))
    const lines: Array<string> = []
    if (!this.started) {
      lines.push(ARMOR_BEGIN)
      this.started = true
    }
    for (let o = 0; o < full; o += BYTES_PER_LINE) lines.push(all.subarray(o, o + BYTES_PER_LINE).toString("base64"))
    return lines.length === 0 ? Buffer.alloc(0) : Buffer.from(`${lines.join("\n")}\n`, "latin1")
  }

  end(): Buffer {
    const head = this.started ? "" : `${ARMOR_BEGIN}\n`
    this.started = true
    const last = this.carry.length > 0 ? `${this.carry.toString("base64")}\n` : ""
    this.carry = Buffer.alloc(0)
    return Buffer.from(`${head}${last}${ARMOR_END}\n`, "latin1")
  }
}

type State = "lead" | "begin" | "body" | "trail"

/**
 * Streaming strict armor decoder. `push` returns the decoded bytes available so far and
 * throws {@link ArmorDecodeError} at the first violation; `end` throws when the armor is
 * incomplete. Leading and trailing whitespace around the armor block is accepted; CRLF or
 * LF line endings are accepted.
 */
export class ArmorDecoder {
  private state: State = "lead"
  private line: Array<Buffer> = []
  private lineLength = 0
  private previousShort = false
  private previousPadded = false
  private failed = false

  push(bytes: Uint8Array): Buffer {
    if (this.failed) throw new ArmorDecodeError("armor decoder used after a failure")
    const out: Array<Buffer> = []
    try {
      let i = 0
      const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
      while (i < b.length) {
        if (this.state === "lead") {
          while (i < b.length && isSpace(b[i]!)) i++
          if (i < b.length) this.state = "begin"
          continue
        }
        if (this.state === "trail") {
          for (; i < b.length; i++) if (!isSpace(b[i]!)) throw new ArmorDecodeError("trailing data after the armor")
          continue
        }
        const nl = b.indexOf(0x0a, i)
        const stop = nl < 0 ? b.length : nl
        this.line.push(b.subarray(i, stop))
        this.lineLength += stop - i
        // A line is at most 64 columns plus "\r"; the BEGIN/END lines are shorter than that.
        if (this.lineLength > COLUMNS + 1) throw new ArmorDecodeError("column limit exceeded")
        if (nl < 0) break
        i = nl + 1
        const decoded = this.takeLine(true)
        if (decoded) out.push(decoded)
      }
    } catch (e) {
      this.failed = true
      throw e
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }

  end(): Buffer {
    if (this.failed) throw new ArmorDecodeError("armor decoder used after a failure")
    this.failed = true
    let out: Buffer | undefined
    // The END line may lack its final newline.
    if (this.lineLength > 0 && (this.state === "body" || this.state === "begin")) out = this.takeLine(false)
    if (this.state !== "trail") throw new ArmorDecodeError(this.state === "lead" ? "empty armor" : "unexpected end of armor (no END line)")
    return out ?? Buffer.alloc(0)
  }

  private takeLine(hadNewline: boolean): Buffer | undefined {
    let text = Buffer.concat(this.line).toString("latin1")
    this.line = []
    this.lineLength = 0
    if (text.endsWith("\r") && hadNewline) text = text.slice(0, -1)
    if (this.state === "begin") {
      if (text !== ARMOR_BEGIN) throw new ArmorDecodeError("invalid BEGIN line")
      this.state = "body"
      return undefined
    }
    if (text === ARMOR_END) {
      this.state = "trail"
      return undefined
    }
    if (text.length > COLUMNS) throw new ArmorDecodeError("column limit exceeded")
    if (text.length === 0) throw new ArmorDecodeError("empty line in the armor")
    if (this.previousShort || this.previousPadded) throw new ArmorDecodeError("a short or padded line is not the last line")
    if (!BASE64_LINE.test(text) || text.length % 4 !== 0) throw new ArmorDecodeError("invalid base64 line")
    const bytes = Buffer.from(text, "base64")
    // Strict (canonical) base64: no stray bits in the padding.
    if (bytes.toString("base64") !== text) throw new ArmorDecodeError("non-canonical base64")
    this.previousShort = text.length < COLUMNS
    this.previousPadded = text.includes("=")
    return bytes
  }
}
