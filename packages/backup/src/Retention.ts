/**
 * Retention policies: which complete generations of one source a prune keeps.
 *
 * - `keep_all`: every generation.
 * - `keep_last:N`: the N newest generations (N ≥ 1).
 * - `keep_days:D`: generations created less than D days (D × 86 400 000 ms) ago.
 * - `keep_last_and_days:N,D`: the union of the two: the N newest and any younger than D days.
 *
 * The default is `keep_last:3`. Whatever the policy says, prune never deletes the newest
 * generation that verifies (see `prune`).
 *
 * @module
 */
import { BackupUsageError } from "./Error.js"
import type { Generation } from "./Registry.js"

export type RetentionPolicy =
  | { readonly _tag: "KeepAll" }
  | { readonly _tag: "KeepLast"; readonly last: number }
  | { readonly _tag: "KeepDays"; readonly days: number }
  | { readonly _tag: "KeepLastAndDays"; readonly last: number; readonly days: number }

export const DEFAULT_POLICY: RetentionPolicy = { _tag: "KeepLast", last: 3 }

const DAY_MS = 86_400_000

const positive = (text: string, what: string, policy: string): number => {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new BackupUsageError({ reason: "Retention", detail: `retention policy "${policy}": ${what} must be a whole number ≥ 1, got "${text}"` })
  }
  return Number(text)
}

/**
 * Parses `keep_all`, `keep_last:N`, `keep_days:D` or `keep_last_and_days:N,D`.
 *
 * @throws BackupUsageError (exit code 2) naming the accepted forms.
 */
export const parsePolicy = (text: string): RetentionPolicy => {
  const t = text.trim()
  if (t === "keep_all") return { _tag: "KeepAll" }
  const [kind, arg = "", ...rest] = t.split(":")
  if (rest.length === 0) {
    if (kind === "keep_last") return { _tag: "KeepLast", last: positive(arg, "N", t) }
    if (kind === "keep_days") return { _tag: "KeepDays", days: positive(arg, "D", t) }
    if (kind === "keep_last_and_days") {
      const [n = "", d = "", ...more] = arg.split(",")
      if (more.length === 0) return { _tag: "KeepLastAndDays", last: positive(n, "N", t), days: positive(d, "D", t) }
    }
  }
  throw new BackupUsageError({ reason: "Retention", detail: `unknown retention policy "${text}": use keep_all, keep_last:N, keep_days:D or keep_last_and_days:N,D` })
}

/** Formats a policy back to its text form. */
export const formatPolicy = (p: RetentionPolicy): string =>
  p._tag === "KeepAll" ? "keep_all"
  : p._tag === "KeepLast" ? `keep_last:${p.last}`
  : p._tag === "KeepDays" ? `keep_days:${p.days}`
  : `keep_last_and_days:${p.last},${p.days}`

/**
 * The generations of ONE source that `policy` keeps, given `now` (ms since the epoch).
 * Partial generations are not considered (prune leaves them alone).
 */
export const kept = (policy: RetentionPolicy, generations: ReadonlyArray<Pick<Generation, "id" | "generation" | "status" | "createdAt">>, now: number): Set<string> => {
  const newestFirst = [...generations].filter((g) => g.status === "complete").sort((a, b) => b.generation - a.generation)
  const keep = new Set<string>()
  const byLast = (n: number) => {
    for (const g of newestFirst.slice(0, n)) keep.add(g.id)
  }
  const byDays = (d: number) => newestFirst.forEach((g) => {
    if (now - Date.parse(g.createdAt) < d * DAY_MS) keep.add(g.id)
  })
  switch (policy._tag) {
    case "KeepAll":
      for (const g of newestFirst) keep.add(g.id)
      break
    case "KeepLast":
      byLast(policy.last)
      break
    case "KeepDays":
      byDays(policy.days)
      break
    case "KeepLastAndDays":
      byLast(policy.last)
      byDays(policy.days)
      break
  }
  return keep
}
