/**
 * The byte-level RFC 8259 state machine behind every StreamSweep operation.
 *
 * One `Scanner` consumes a document (or a sequence of documents) in any number of
 * `write` calls cut at arbitrary byte offsets, and keeps only what it needs to continue:
 * a handful of integers and one byte per open container (memory grows with nesting depth,
 * never with input size). No string is ever decoded: string bodies are checked against
 * lookup tables and UTF-8 is validated inline (Unicode 15, Table 3-7 "well-formed UTF-8
 * byte sequences", which rules out overlongs, surrogates and code points above U+10FFFF).
 *
 * Errors are reported through fields, not exceptions, so the hot loop stays exception-free;
 * once failed, a scanner stays failed.
 *
 * @internal
 */

/** Value kinds reported to {@link ScanEvents}. */
export const KIND_OBJECT = 0
export const KIND_ARRAY = 1
export const KIND_STRING = 2
export const KIND_NUMBER = 3
export const KIND_TRUE = 4
export const KIND_FALSE = 5
export const KIND_NULL = 6
export const KIND_NAMES = ["object", "array", "string", "number", "true", "false", "null"] as const

/** Top-level layout accepted by a scanner. */
export const MODE_DOCUMENT = 0 // exactly one value (RFC 8259 JSON-text)
export const MODE_SEQUENCE = 1 // zero or more whitespace-separated values (concatenated JSON)
export const MODE_NDJSON = 2 // zero or more values, each starting on a new line (NDJSON / JSON Lines)

// Structural states (whitespace is skipped before any of them).
export const S_VALUE = 0 // a value is required (top level, after ':' or after ',' in an array)
export const S_VALUE_OR_CLOSE = 1 // after '['
export const S_KEY_OR_CLOSE = 2 // after '{'
export const S_KEY = 3 // after ',' in an object
export const S_COLON = 4 // after a key
export const S_AFTER = 5 // after a complete value
// Token states.
export const S_STRING = 6
export const S_ESCAPE = 7 // after '\'
export const S_UNICODE = 8 // inside the 4 hex digits of \uXXXX
export const S_SURR_BACKSLASH = 9 // after a high-surrogate escape: '\' of the low half required
export const S_SURR_U = 10 // 'u' of the low half required
export const S_UTF8 = 11 // inside a multi-byte UTF-8 sequence cut by a write boundary
export const S_NUM_MINUS = 12
export const S_NUM_ZERO = 13
export const S_NUM_INT = 14
export const S_NUM_DOT = 15
export const S_NUM_FRAC = 16
export const S_NUM_E = 17
export const S_NUM_ESIGN = 18
export const S_NUM_EXP = 19
export const S_LITERAL = 20

/** Why a scan failed. */
export type ScanReason =
  | "UnexpectedByte"
  | "UnexpectedEnd"
  | "InvalidUtf8"
  | "InvalidEscape"
  | "LoneSurrogate"
  | "ControlCharacter"
  | "InvalidNumber"
  | "DepthLimit"
  | "TrailingData"

/** A scan failure: where (bytes, 1-based line and byte column) and what was expected. */
export interface ScanFailure {
  readonly reason: ScanReason
  /** Absolute byte offset of the offending byte (or of the end of input). */
  readonly offset: number
  readonly line: number
  readonly column: number
  readonly expected: string
  /** The offending byte as text (`'x'`, `0xC0`) or `"end of input"`. */
  readonly found: string
}

/**
 * Structural callbacks. Value events are only emitted for values at depth <= `eventDepth`
 * (0 = top-level values, 1 = elements of a top-level container), which keeps the planner
 * as fast as plain validation.
 */
export interface ScanEvents {
  readonly eventDepth: number
  /** When true, `key` is called with each object key's raw bytes (escapes not decoded). */
  readonly wantKeys: boolean
  valueStart(kind: number, depth: number, offset: number): void
  /** `end` is exclusive (absolute byte offset one past the value). */
  valueEnd(kind: number, depth: number, end: number): void
  /** Raw key bytes `bytes[from..to)` (at most {@link KEY_CAPTURE_BYTES}; `truncated` when longer). */
  key(bytes: Uint8Array, from: number, to: number, depth: number, truncated: boolean): void
  /** Lenient UTF-8 mode only: an ill-formed sequence at `offset` (absolute bytes). */
  invalidUtf8?(offset: number): void
}

/** Longest key prefix handed to {@link ScanEvents.key}, in bytes. */
export const KEY_CAPTURE_BYTES = 256

// String body byte classes.
const T_PLAIN = 0
const T_QUOTE = 1
const T_BSLASH = 2
const T_CTRL = 3
const T_U2 = 4 // C2..DF
const T_E0 = 5
const T_E1 = 6 // E1..EC, EE..EF
const T_ED = 7
const T_F0 = 8
const T_F1 = 9 // F1..F3
const T_F4 = 10
const T_BAD = 11 // 80..C1, F5..FF

const STR = new Uint8Array(256)
for (let c = 0; c < 256; c++) {
  STR[c] = c < 0x20 ? T_CTRL
    : c === 0x22 ? T_QUOTE
    : c === 0x5c ? T_BSLASH
    : c < 0x80 ? T_PLAIN
    : c < 0xc2 ? T_BAD
    : c < 0xe0 ? T_U2
    : c === 0xe0 ? T_E0
    : c === 0xed ? T_ED
    : c < 0xf0 ? T_E1
    : c === 0xf0 ? T_F0
    : c < 0xf4 ? T_F1
    : c === 0xf4 ? T_F4
    : T_BAD
}
// For each lead class: continuation bytes needed, and the allowed range of the first one.
const NEED = new Uint8Array([0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 0])
const LO = new Uint8Array([0, 0, 0, 0, 0x80, 0xa0, 0x80, 0x80, 0x90, 0x80, 0x80, 0])
const HI = new Uint8Array([0, 0, 0, 0, 0xbf, 0xbf, 0xbf, 0x9f, 0xbf, 0xbf, 0x8f, 0])

// A string run longer than this (bytes) switches from the byte loop to whole words.
const SWAR_MIN_RUN = 16

// 1 for the four JSON whitespace bytes (RFC 8259 §2).
const WS = new Uint8Array(256)
WS[0x20] = WS[0x09] = WS[0x0a] = WS[0x0d] = 1
// Hex digit values, 255 elsewhere.
const HEX = new Uint8Array(256).fill(255)
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c
// 1 for the bytes allowed after '\'.
const ESC = new Uint8Array(256)
for (const ch of "\"\\/bfnrtu") ESC[ch.charCodeAt(0)] = 1

const LITERALS = new TextEncoder().encode("truefalsenull")
const LIT_TRUE = 0
const LIT_FALSE = 4
const LIT_NULL = 9

const describeByte = (c: number): string =>
  c >= 0x21 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `0x${c.toString(16).toUpperCase().padStart(2, "0")}`

const EXPECT_VALUE = "a value (object, array, string, number, true, false or null)"

/** Options of a {@link Scanner}. */
export interface ScannerOptions {
  mode: number
  /** Most containers open at once; one more fails with `DepthLimit`. */
  readonly maxDepth: number
  readonly events?: ScanEvents | undefined
  /** Record ill-formed UTF-8 through `events.invalidUtf8` and continue, instead of failing. */
  readonly lenientUtf8?: boolean
}

// The class is defined by a factory so that each use below gets its own closures, hence its
// own type feedback and optimised code in V8: plain validation (no events) and event-driven
// scans (planner, inspector, cut checker) do not deoptimise each other's hot loop.
const defineScanner = () => class Scanner {
  mode: number
  readonly maxDepth: number
  readonly events: ScanEvents | null
  readonly lenientUtf8: boolean

  /** Absolute offset of the next byte, i.e. bytes consumed so far. */
  pos = 0
  state = S_VALUE
  /** Containers currently open. */
  depth = 0
  /** Deepest nesting seen (containers open at once). */
  maxDepthSeen = 0
  /** `stack[d]` is 1 when the container at nesting level d (1-based) is an object, 0 for an array. */
  stack: Uint8Array
  /** 1-based line of the next byte. */
  line = 1
  /** Absolute offset of the first byte of the current line. */
  lineStart = 0
  /** Complete top-level values. */
  values = 0
  failure: ScanFailure | undefined = undefined

  // Token sub-state.
  inKey = false
  tokenStart = 0 // absolute start of the current string/number/literal token
  litPos = 0
  litEnd = 0
  uCount = 0
  uValue = 0
  wantLow = false // inside the \u escape that must be a low surrogate
  utfNeed = 0
  utfLo = 0x80
  utfHi = 0xbf
  // Top-level separation (sequence and NDJSON modes).
  topEnd = -1 // absolute end of the last top-level value
  topEndLine = 0
  topBare = false // last top-level value was a number or literal (needs a separator)
  // Key capture across write boundaries.
  keyCarry: Uint8Array | undefined = undefined
  keyLen = 0
  keyTruncated = false

  constructor(options: ScannerOptions) {
    this.mode = options.mode
    this.maxDepth = options.maxDepth
    this.events = options.events ?? null
    this.lenientUtf8 = options.lenientUtf8 === true
    this.stack = new Uint8Array(Math.min(options.maxDepth, 64) + 2)
  }

  fail(reason: ScanReason, offset: number, expected: string, found: string): false {
    this.failure = {
      reason,
      offset,
      line: this.line,
      column: offset - this.lineStart + 1,
      expected,
      found
    }
    return false
  }

  /** Saves the loop's locals and fails: every error exit of `write` goes through here. */
  stop(state: number, depth: number, reason: ScanReason, offset: number, expected: string, found: string): false {
    this.state = state
    this.depth = depth
    this.pos = offset
    return this.fail(reason, offset, expected, found)
  }

  /**
   * Consumes `buf[from..to)`. Returns false on the first error (see `failure`), and keeps
   * returning false afterwards.
   */
  write(bytes: Uint8Array, from = 0, to = bytes.length): boolean {
    if (this.failure !== undefined) return false
    // Node Buffers are a Uint8Array subclass: viewing them as plain Uint8Arrays keeps the
    // element loads below monomorphic whichever kind callers pass.
    const buf = bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const ev = this.events
    const evDepth = ev === null ? -1 : ev.eventDepth
    const wantKeys = ev?.wantKeys
    const delta = this.pos - from // absolute offset of buf[i] is delta + i
    let i = from
    let state = this.state
    let depth = this.depth
    let stack = this.stack
    let keyStart = from
    let c = 0

    outer: while (i < to) {
      if (state <= S_AFTER) {
        // Whitespace, counting lines for error positions (a newline can only occur here).
        c = buf[i]
        while (c <= 0x20 && WS[c] === 1) {
          if (c === 0x0a) {
            this.line++
            this.lineStart = delta + i + 1
          }
          if (++i === to) break outer
          c = buf[i]
        }
        switch (state) {
          // biome-ignore lint/suspicious/noFallthroughSwitchClause: a value after a complete top-level one starts the next value (falls through on purpose, see below)
          case S_AFTER: {
            if (depth > 0) {
              const isObject = stack[depth] === 1
              if (c === 0x2c) {
                i++
                if (isObject && i < to && buf[i] === 0x22) {
                  // The next key's quote at once (compact JSON): started here, not through S_KEY.
                  this.beginKey(delta + i, wantKeys === true)
                  keyStart = ++i
                  state = S_STRING
                  continue outer
                }
                state = isObject ? S_KEY : S_VALUE
                continue outer
              }
              if (c === (isObject ? 0x7d : 0x5d)) {
                i++
                depth--
                if (ev !== null && depth <= evDepth) ev.valueEnd(isObject ? KIND_OBJECT : KIND_ARRAY, depth, delta + i)
                if (depth === 0) this.topLevelEnd(delta + i, false)
                continue outer
              }
              this.depth = depth
              this.state = state
              return this.stop(state, depth, "UnexpectedByte", delta + i, isObject ? "',' or '}'" : "',' or ']'", describeByte(c))
            }
            if (this.mode === MODE_DOCUMENT) {
              return this.stop(state, depth, "TrailingData", delta + i, "end of input", describeByte(c))
            }
            if (this.mode === MODE_NDJSON && this.line === this.topEndLine) {
              return this.stop(state, depth, "UnexpectedByte", delta + i, "a newline before the next value", describeByte(c))
            }
            if (delta + i === this.topEnd && (this.topBare || !(c === 0x7b || c === 0x5b || c === 0x22))) {
              return this.stop(state, depth, "UnexpectedByte", delta + i, "whitespace between values", describeByte(c))
            }
            state = S_VALUE
          }
          // falls through: a new top-level value starts
          case S_VALUE:
          case S_VALUE_OR_CLOSE: {
            if (c === 0x22) {
              if (ev !== null && depth <= evDepth) ev.valueStart(KIND_STRING, depth, delta + i)
              if (ev !== null) this.tokenStart = delta + i
              this.inKey = false
              i++
              state = S_STRING
              continue outer
            }
            if (c === 0x7b || c === 0x5b) {
              if (depth === this.maxDepth) {
                return this.stop(state, depth, "DepthLimit", delta + i, `at most ${this.maxDepth} nested containers`, describeByte(c))
              }
              const isObject = c === 0x7b
              if (ev !== null && depth <= evDepth) ev.valueStart(isObject ? KIND_OBJECT : KIND_ARRAY, depth, delta + i)
              depth++
              if (depth >= stack.length) stack = this.grow(depth)
              stack[depth] = isObject ? 1 : 0
              if (depth > this.maxDepthSeen) this.maxDepthSeen = depth
              i++
              state = isObject ? S_KEY_OR_CLOSE : S_VALUE_OR_CLOSE
              continue outer
            }
            if (c === 0x5d && state === S_VALUE_OR_CLOSE) {
              i++
              depth--
              if (ev !== null && depth <= evDepth) ev.valueEnd(KIND_ARRAY, depth, delta + i)
              if (depth === 0) this.topLevelEnd(delta + i, false)
              state = S_AFTER
              continue outer
            }
            if ((c >= 0x30 && c <= 0x39) || c === 0x2d) {
              if (ev !== null && depth <= evDepth) ev.valueStart(KIND_NUMBER, depth, delta + i)
              if (ev !== null) this.tokenStart = delta + i
              i++
              if (c !== 0x2d) {
                // A number without exponent that ends within this buffer, the usual case, is
                // taken whole here: the integer part, then '.' and digits. Anything else (an
                // exponent, a leading zero before a digit, '.' not followed by a digit, the
                // buffer's end) goes on in the state it reached.
                let numState = S_NUM_INT
                if (c === 0x30) {
                  numState = S_NUM_ZERO
                  if (i < to) c = buf[i]
                } else {
                  while (i < to && (c = buf[i]) >= 0x30 && c <= 0x39) i++
                }
                if (i + 1 < to && c === 0x2e) {
                  const d = buf[i + 1]
                  if (d >= 0x30 && d <= 0x39) {
                    i += 2
                    while (i < to && (c = buf[i]) >= 0x30 && c <= 0x39) i++
                    numState = S_NUM_FRAC
                  }
                }
                if (i < to && c !== 0x2e && c !== 0x65 && c !== 0x45 && (c < 0x30 || c > 0x39)) {
                  if (ev !== null && depth <= evDepth) ev.valueEnd(KIND_NUMBER, depth, delta + i)
                  if (depth === 0) this.topLevelEnd(delta + i, true)
                  state = S_AFTER
                  continue outer
                }
                state = numState
                continue outer
              }
              state = S_NUM_MINUS
              continue outer
            }
            const lit = c === 0x74 ? LIT_TRUE : c === 0x66 ? LIT_FALSE : c === 0x6e ? LIT_NULL : -1
            if (lit >= 0) {
              if (ev !== null && depth <= evDepth) {
                ev.valueStart(lit === LIT_TRUE ? KIND_TRUE : lit === LIT_FALSE ? KIND_FALSE : KIND_NULL, depth, delta + i)
              }
              if (ev !== null) this.tokenStart = delta + i
              // A literal whole within this buffer, the usual case: compared here at once.
              const len = lit === LIT_FALSE ? 5 : 4
              if (i + len <= to && buf[i + 1] === LITERALS[lit + 1] && buf[i + 2] === LITERALS[lit + 2] && buf[i + 3] === LITERALS[lit + 3] && (len === 4 || buf[i + 4] === LITERALS[lit + 4])) {
                i += len
                if (ev !== null && depth <= evDepth) ev.valueEnd(lit === LIT_TRUE ? KIND_TRUE : lit === LIT_FALSE ? KIND_FALSE : KIND_NULL, depth, delta + i)
                if (depth === 0) this.topLevelEnd(delta + i, true)
                state = S_AFTER
                continue outer
              }
              this.litPos = lit + 1
              this.litEnd = lit === LIT_TRUE ? 4 : lit === LIT_FALSE ? 9 : 13
              i++
              state = S_LITERAL
              continue outer
            }
            return this.stop(state, depth, "UnexpectedByte", delta + i, state === S_VALUE_OR_CLOSE ? `${EXPECT_VALUE} or ']'` : EXPECT_VALUE, describeByte(c))
          }
          case S_KEY_OR_CLOSE:
          case S_KEY: {
            if (c === 0x22) {
              this.beginKey(delta + i, wantKeys === true)
              keyStart = ++i
              state = S_STRING
              continue outer
            }
            if (c === 0x7d && state === S_KEY_OR_CLOSE) {
              i++
              depth--
              if (ev !== null && depth <= evDepth) ev.valueEnd(KIND_OBJECT, depth, delta + i)
              if (depth === 0) this.topLevelEnd(delta + i, false)
              state = S_AFTER
              continue outer
            }
            return this.stop(state, depth, "UnexpectedByte", delta + i, state === S_KEY_OR_CLOSE ? "a string key or '}'" : "a string key", describeByte(c))
          }
          case S_COLON: {
            if (c === 0x3a) {
              i++
              state = S_VALUE
              continue outer
            }
            return this.stop(state, depth, "UnexpectedByte", delta + i, "':'", describeByte(c))
          }
        }
      }

      switch (state) {
        case S_STRING: {
          for (;;) {
            // The hot loop: plain ASCII string bytes, one by one for a short run...
            const probe = to - i > SWAR_MIN_RUN ? i + SWAR_MIN_RUN : to
            while (i < probe && STR[buf[i]] === T_PLAIN) i++
            if (i === probe) {
              if (i === to) break outer
              // ...then four per step on aligned 32-bit words (SWAR). A word stops the run when
              // one of its bytes is >= 0x80, < 0x20, '"' or '\\'; the byte loop finds which.
              let a = buf.byteOffset + i
              while ((a & 3) !== 0 && STR[buf[i]] === T_PLAIN) {
                i++
                a++
              }
              if ((a & 3) === 0) {
                const words = this.wordsOf(buf)
                const last = (buf.byteOffset + to) >> 2
                let k = a >> 2
                while (k < last) {
                  const w = words[k]
                  const q = w ^ 0x22222222
                  const b = w ^ 0x5c5c5c5c
                  if (((w | (((w - 0x20202020) | 0) & ~w) | (((q - 0x01010101) | 0) & ~q) | (((b - 0x01010101) | 0) & ~b)) & 0x80808080) !== 0) break
                  k++
                }
                i = (k << 2) - buf.byteOffset
                if (i === to) break outer
              }
              while (STR[buf[i]] === T_PLAIN) {
                if (++i === to) break outer
              }
            }
            c = buf[i]
            const t = STR[c]
            if (t === T_QUOTE) {
              i++
              if (this.inKey) {
                if (wantKeys) this.emitKey(buf, keyStart, i - 1, depth)
                // ':' nearly always follows at once: taken here, not through S_COLON.
                if (i < to && buf[i] === 0x3a) {
                  i++
                  // A string value right after it (compact JSON) is scanned on in this loop.
                  if (i < to && buf[i] === 0x22) {
                    if (ev !== null && depth <= evDepth) ev.valueStart(KIND_STRING, depth, delta + i)
                    if (ev !== null) this.tokenStart = delta + i
                    this.inKey = false
                    i++
                    continue
                  }
                  state = S_VALUE
                } else state = S_COLON
              } else {
                if (ev !== null && depth <= evDepth) ev.valueEnd(KIND_STRING, depth, delta + i)
                if (depth === 0) this.topLevelEnd(delta + i, false)
                // ',' and another string right after (compact JSON: the next key of an object,
                // the next element of an array) are scanned on in this loop.
                else if (i + 1 < to && buf[i] === 0x2c && buf[i + 1] === 0x22) {
                  i += 2
                  if (stack[depth] === 1) {
                    this.beginKey(delta + i - 1, wantKeys === true)
                    keyStart = i
                  } else {
                    if (ev !== null && depth <= evDepth) ev.valueStart(KIND_STRING, depth, delta + i - 1)
                    if (ev !== null) this.tokenStart = delta + i - 1
                  }
                  continue
                }
                state = S_AFTER
              }
              continue outer
            }
            if (t === T_BSLASH) {
              i++
              state = S_ESCAPE
              continue outer
            }
            if (t === T_CTRL) {
              return this.stop(state, depth, "ControlCharacter", delta + i, "an escaped control character (\\n, \\u0000...)", describeByte(c))
            }
            if (t === T_BAD) {
              if (this.lenientUtf8) {
                ev?.invalidUtf8?.(delta + i)
                if (++i === to) break outer
                continue
              }
              return this.stop(state, depth, "InvalidUtf8", delta + i, "a UTF-8 lead byte", describeByte(c))
            }
            const need = NEED[t]
            if (i + need < to) {
              // Whole sequence in this buffer: check it inline.
              const c1 = buf[i + 1]
              let bad = c1 < LO[t] || c1 > HI[t] ? 1 : 0
              if (bad === 0 && need >= 2) {
                const c2 = buf[i + 2]
                if (c2 < 0x80 || c2 > 0xbf) bad = 2
                else if (need === 3) {
                  const c3 = buf[i + 3]
                  if (c3 < 0x80 || c3 > 0xbf) bad = 3
                }
              }
              if (bad === 0) {
                i += need + 1
                if (i === to) break outer
                continue
              }
              if (this.lenientUtf8) {
                ev?.invalidUtf8?.(delta + i)
                i += bad // resume at the byte that broke the sequence
                continue
              }
              return this.stop(state, depth, "InvalidUtf8", delta + i + bad, "a UTF-8 continuation byte in range", describeByte(buf[i + bad]))
            }
            // The sequence is cut by the end of this buffer.
            this.tokenStartUtf8 = delta + i
            this.utfNeed = need
            this.utfLo = LO[t]
            this.utfHi = HI[t]
            i++
            state = S_UTF8
            continue outer
          }
        }
        case S_UTF8: {
          while (this.utfNeed > 0) {
            c = buf[i]
            if (c < this.utfLo || c > this.utfHi) {
              if (this.lenientUtf8) {
                ev?.invalidUtf8?.(this.tokenStartUtf8)
                this.utfNeed = 0
                state = S_STRING
                continue outer
              }
              return this.stop(state, depth, "InvalidUtf8", delta + i, "a UTF-8 continuation byte in range", describeByte(c))
            }
            this.utfLo = 0x80
            this.utfHi = 0xbf
            this.utfNeed--
            if (++i === to) {
              if (this.utfNeed === 0) state = S_STRING
              break outer
            }
          }
          state = S_STRING
          continue outer
        }
        case S_ESCAPE: {
          c = buf[i]
          if (ESC[c] === 0) {
            return this.stop(state, depth, "InvalidEscape", delta + i, "one of \" \\ / b f n r t u after '\\'", describeByte(c))
          }
          i++
          if (c === 0x75) {
            this.uCount = 0
            this.uValue = 0
            this.wantLow = false
            state = S_UNICODE
          } else {
            state = S_STRING
          }
          continue outer
        }
        case S_UNICODE: {
          while (this.uCount < 4) {
            c = buf[i]
            const h = HEX[c]
            if (h === 255) {
              return this.stop(state, depth, "InvalidEscape", delta + i, "a hex digit in \\uXXXX", describeByte(c))
            }
            this.uValue = (this.uValue << 4) | h
            this.uCount++
            i++
            if (this.uCount < 4 && i === to) break outer
          }
          const u = this.uValue
          const isHigh = u >= 0xd800 && u <= 0xdbff
          const isLow = u >= 0xdc00 && u <= 0xdfff
          if (this.wantLow ? !isLow : isLow) {
            return this.stop(state, depth, "LoneSurrogate", delta + i - 6, this.wantLow ? "a low surrogate \\uDC00-\\uDFFF" : "a high surrogate escape before a low one", `\\u${u.toString(16).toUpperCase().padStart(4, "0")}`)
          }
          state = isHigh ? S_SURR_BACKSLASH : S_STRING
          continue outer
        }
        case S_SURR_BACKSLASH:
        case S_SURR_U: {
          c = buf[i]
          if (c !== (state === S_SURR_BACKSLASH ? 0x5c : 0x75)) {
            return this.stop(state, depth, "LoneSurrogate", delta + i, "\\u followed by a low surrogate after a high surrogate", describeByte(c))
          }
          i++
          if (state === S_SURR_U) {
            this.uCount = 0
            this.uValue = 0
            this.wantLow = true
            state = S_UNICODE
          } else state = S_SURR_U
          continue outer
        }
        case S_NUM_MINUS:
        case S_NUM_DOT:
        case S_NUM_ESIGN: {
          c = buf[i]
          if (c < 0x30 || c > 0x39) {
            return this.stop(state, depth, "InvalidNumber", delta + i, state === S_NUM_MINUS ? "a digit after '-'" : state === S_NUM_DOT ? "a digit after '.'" : "a digit in the exponent", describeByte(c))
          }
          i++
          state = state === S_NUM_MINUS ? (c === 0x30 ? S_NUM_ZERO : S_NUM_INT) : state === S_NUM_DOT ? S_NUM_FRAC : S_NUM_EXP
          continue outer
        }
        case S_NUM_E: {
          c = buf[i]
          if (c === 0x2b || c === 0x2d) state = S_NUM_ESIGN
          else if (c >= 0x30 && c <= 0x39) state = S_NUM_EXP
          else {
            return this.stop(state, depth, "InvalidNumber", delta + i, "a sign or digit in the exponent", describeByte(c))
          }
          i++
          continue outer
        }
        case S_NUM_INT:
        case S_NUM_FRAC:
        case S_NUM_EXP:
        case S_NUM_ZERO: {
          c = buf[i]
          if (state !== S_NUM_ZERO) {
            while (c >= 0x30 && c <= 0x39) {
              if (++i === to) break outer
              c = buf[i]
            }
          } else if (c >= 0x30 && c <= 0x39) {
            return this.stop(state, depth, "InvalidNumber", delta + i, "'.', 'e' or the end of the number (no leading zeros)", describeByte(c))
          }
          if (c === 0x2e && (state === S_NUM_INT || state === S_NUM_ZERO)) {
            i++
            state = S_NUM_DOT
            continue outer
          }
          if ((c === 0x65 || c === 0x45) && state !== S_NUM_EXP) {
            i++
            state = S_NUM_E
            continue outer
          }
          // The number ended at the previous byte; this byte is reconsidered as structure.
          if (ev !== null && depth <= evDepth) ev.valueEnd(KIND_NUMBER, depth, delta + i)
          if (depth === 0) this.topLevelEnd(delta + i, true)
          state = S_AFTER
          continue outer
        }
        case S_LITERAL: {
          const end = this.litEnd
          let p = this.litPos
          while (p < end) {
            c = buf[i]
            if (c !== LITERALS[p]) {
              return this.stop(state, depth, "UnexpectedByte", delta + i, `'${String.fromCharCode(LITERALS[p])}' (in a true, false or null literal)`, describeByte(c))
            }
            p++
            if (++i === to && p < end) {
              this.litPos = p
              break outer
            }
          }
          if (ev !== null && depth <= evDepth) {
            ev.valueEnd(end === 4 ? KIND_TRUE : end === 9 ? KIND_FALSE : KIND_NULL, depth, delta + i)
          }
          if (depth === 0) this.topLevelEnd(delta + i, true)
          state = S_AFTER
          continue outer
        }
      }
    }
    if (wantKeys && this.inKey && state >= S_STRING && state <= S_UTF8) this.carryKey(buf, keyStart, to)
    this.pos = delta + to
    this.state = state
    this.depth = depth
    return true
  }

  // A 32-bit view of the last ArrayBuffer scanned, for the SWAR string loop.
  words: Int32Array = new Int32Array(0)
  wordsBuffer: ArrayBufferLike | undefined = undefined

  wordsOf(buf: Uint8Array): Int32Array {
    if (buf.buffer !== this.wordsBuffer) {
      this.wordsBuffer = buf.buffer
      this.words = new Int32Array(buf.buffer, 0, buf.buffer.byteLength >> 2)
    }
    return this.words
  }

  /** A key's opening quote at absolute offset `at`: the state a key's string starts in. */
  beginKey(at: number, wantKeys: boolean) {
    if (this.events !== null) this.tokenStart = at
    this.inKey = true
    if (wantKeys) {
      this.keyLen = 0
      this.keyTruncated = false
    }
  }

  /** Absolute start of a UTF-8 sequence cut by a write boundary (lenient-mode reports). */
  tokenStartUtf8 = 0

  topLevelEnd(end: number, bare: boolean) {
    this.values++
    this.topEnd = end
    this.topEndLine = this.line
    this.topBare = bare
  }

  grow(depth: number): Uint8Array {
    const next = new Uint8Array(Math.min(this.maxDepth + 2, Math.max(depth + 2, this.stack.length * 2)))
    next.set(this.stack)
    this.stack = next
    return next
  }

  carryKey(buf: Uint8Array, from: number, to: number) {
    const carry = (this.keyCarry ??= new Uint8Array(KEY_CAPTURE_BYTES))
    const n = Math.min(to - from, KEY_CAPTURE_BYTES - this.keyLen)
    if (n > 0) carry.set(buf.subarray(from, from + n), this.keyLen)
    if (n < to - from) this.keyTruncated = true
    this.keyLen += Math.max(0, n)
  }

  emitKey(buf: Uint8Array, from: number, to: number, depth: number) {
    const ev = this.events!
    if (this.keyLen === 0 && !this.keyTruncated) {
      const truncated = to - from > KEY_CAPTURE_BYTES
      ev.key(buf, from, truncated ? from + KEY_CAPTURE_BYTES : to, depth, truncated)
      return
    }
    this.carryKey(buf, from, to)
    ev.key(this.keyCarry!, 0, this.keyLen, depth, this.keyTruncated)
    this.keyLen = 0
    this.keyTruncated = false
  }

  /**
   * Signals end of input. Completes a number that ends the input, then checks that the
   * input holds exactly one value (document mode) or whole values only (sequences).
   */
  end(): boolean {
    if (this.failure !== undefined) return false
    const s = this.state
    if (s === S_NUM_ZERO || s === S_NUM_INT || s === S_NUM_FRAC || s === S_NUM_EXP) {
      const ev = this.events
      if (ev !== null && this.depth <= ev.eventDepth) ev.valueEnd(KIND_NUMBER, this.depth, this.pos)
      if (this.depth === 0) this.topLevelEnd(this.pos, true)
      this.state = S_AFTER
    }
    if (this.state === S_AFTER && this.depth === 0) return true
    if (this.state === S_VALUE && this.depth === 0 && this.mode !== MODE_DOCUMENT && this.values === 0) return true
    return this.fail("UnexpectedEnd", this.pos, this.expectedAtEnd(), "end of input")
  }

  expectedAtEnd(): string {
    switch (this.state) {
      case S_VALUE:
        return EXPECT_VALUE
      case S_VALUE_OR_CLOSE:
        return `${EXPECT_VALUE} or ']'`
      case S_KEY_OR_CLOSE:
        return "a string key or '}'"
      case S_KEY:
        return "a string key"
      case S_COLON:
        return "':'"
      case S_AFTER:
        return this.stack[this.depth] === 1 ? "',' or '}'" : "',' or ']'"
      case S_LITERAL:
        return `the rest of the literal '${new TextDecoder().decode(LITERALS.subarray(this.litEnd === 4 ? 0 : this.litEnd === 9 ? 4 : 9, this.litEnd))}'`
      default:
        return this.state <= S_UTF8 ? "the end of the string ('\"')" : "the rest of the number"
    }
  }
}

/** A resumable JSON scanner for plain validation (no events). See the module documentation. */
export const Scanner = defineScanner()
export type Scanner = InstanceType<typeof Scanner>

/** The same scanner, optimised separately: for scans with {@link ScanEvents}. */
export const EventScanner = defineScanner()
