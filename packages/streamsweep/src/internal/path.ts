/**
 * Tracks where the scanner is, as a JSON path (`$[12].user.name`), in memory proportional
 * to depth: per open container its kind, its current element index and its current key
 * (at most `KEY_CAPTURE_BYTES` bytes).
 *
 * @internal
 */
import { KIND_ARRAY, KIND_OBJECT, type ScanEvents } from "./scanner.js"

const decoder = new TextDecoder()
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/

/** Decodes raw key bytes (escapes included) to the key text; a cut escape falls back to the raw text. */
export const decodeKey = (bytes: Uint8Array, from: number, to: number): string => {
  const raw = decoder.decode(bytes.subarray(from, to))
  if (!raw.includes("\\")) return raw
  try {
    return JSON.parse(`"${raw}"`) as string
  } catch {
    return raw
  }
}

// Keys repeat: a direct-mapped cache of short keys (raw bytes → decoded string) skips the
// decoder and hands back the same string, so later Map and Set lookups hit a cached hash.
const CACHE_SLOTS = 4096
const CACHE_KEY_BYTES = 64
const cachedBytes: Array<Uint8Array | undefined> = new Array(CACHE_SLOTS)
const cachedText: Array<string> = new Array(CACHE_SLOTS)

/** {@link decodeKey} through the cache (keys up to 64 bytes). */
export const internKey = (bytes: Uint8Array, from: number, to: number): string => {
  const n = to - from
  if (n > CACHE_KEY_BYTES) return decodeKey(bytes, from, to)
  let h = 0x811c9dc5 ^ n
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i], 0x01000193)
  const slot = (h >>> 0) & (CACHE_SLOTS - 1)
  const hit = cachedBytes[slot]
  if (hit !== undefined && hit.length === n) {
    let same = true
    for (let i = 0; i < n; i++) {
      if (hit[i] !== bytes[from + i]) {
        same = false
        break
      }
    }
    if (same) return cachedText[slot]
  }
  const text = decodeKey(bytes, from, to)
  cachedBytes[slot] = bytes.slice(from, to)
  cachedText[slot] = text
  return text
}

/** One path step for key `k`: `.name` for identifiers, `["odd key"]` otherwise. */
export const keyStep = (k: string): string => (IDENTIFIER.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)

export class PathTracker implements ScanEvents {
  readonly eventDepth = Number.MAX_SAFE_INTEGER
  readonly wantKeys = true
  /** Kind of the first top-level value, or -1 before it starts. */
  firstTopKind = -1
  readonly isArray: Array<boolean> = [false]
  readonly index: Array<number> = [0]
  readonly keys: Array<string | undefined> = [undefined]

  /** `onFirstValue` sees the kind and offset of the first top-level value as soon as it starts. */
  constructor(readonly onFirstValue?: (kind: number, offset: number) => void) {}

  valueStart(kind: number, depth: number, offset: number): void {
    if (depth === 0 && this.firstTopKind < 0) {
      this.firstTopKind = kind
      this.onFirstValue?.(kind, offset)
    }
    if (depth > 0 && this.isArray[depth]) this.index[depth]++
    if (kind === KIND_OBJECT || kind === KIND_ARRAY) {
      const d = depth + 1
      this.isArray[d] = kind === KIND_ARRAY
      this.index[d] = -1
      this.keys[d] = undefined
    }
  }

  valueEnd(_kind: number, depth: number, _end: number): void {
    // The member is done: until the next key, a position belongs to the object itself.
    if (depth > 0 && !this.isArray[depth]) this.keys[depth] = undefined
  }

  key(bytes: Uint8Array, from: number, to: number, depth: number, truncated: boolean): void {
    this.keys[depth] = internKey(bytes, from, to) + (truncated ? "…" : "")
  }

  /** The path of the innermost element at `depth` open containers. */
  path(depth: number): string {
    let p = "$"
    for (let d = 1; d <= depth; d++) {
      if (this.isArray[d]) {
        if (this.index[d] >= 0) p += `[${this.index[d]}]`
      } else {
        const k = this.keys[d]
        if (k !== undefined) p += keyStep(k)
      }
    }
    return p
  }
}
