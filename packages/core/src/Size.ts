/**
 * Sizes for humans: `64KiB` in a flag or a configuration file, `1.50 GiB` in a message.
 *
 * @module
 */
const SIZE_RE = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i
const UNIT: Record<string, number> = { b: 1, k: 1024, kb: 1000, kib: 1024, m: 1 << 20, mb: 1e6, mib: 1 << 20, g: 1 << 30, gb: 1e9, gib: 1 << 30 }

/**
 * Parses a human size: `65536`, `64k`, `64KiB` (1024-based), `64KB` (1000-based), `4MiB`, `1G`.
 * Returns bytes, or `undefined` when the text is not a size.
 */
export const parse = (text: string): number | undefined => {
  const m = SIZE_RE.exec(text.trim())
  if (!m) return undefined
  const n = Number(m[1]) * UNIT[(m[2] ?? "b").toLowerCase()]
  return Number.isSafeInteger(n) ? n : undefined
}

/** Formats bytes with binary units for humans: `65536` → `64 KiB`. */
export const format = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${n} B` : `${Number.isInteger(v) ? v : v.toFixed(2)} ${units[u]}`
}

/**
 * Parses a byte range `START:END` (half-open: END exclusive; either side may use units, and
 * may be empty: START defaults to 0, an empty END means "to the end"). Returns `undefined`
 * when the text is not of that shape; whether the range fits its file is the caller's rule.
 *
 * @example parseRange("1MiB:2MiB") // { start: 1048576, end: 2097152 }
 * @example parseRange("4096:") // { start: 4096, end: undefined }
 */
export const parseRange = (text: string): { readonly start: number; readonly end: number | undefined } | undefined => {
  const m = /^([^:]*):([^:]*)$/.exec(text.trim())
  if (!m) return undefined
  const start = m[1].trim() === "" ? 0 : parse(m[1])
  const end = m[2].trim() === "" ? undefined : parse(m[2])
  if (start === undefined || (m[2].trim() !== "" && end === undefined)) return undefined
  return { start, end }
}
