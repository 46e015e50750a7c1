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
