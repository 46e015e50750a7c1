/**
 * Retention policies: which complete generations of one source a prune keeps.
 *
 * - `keep_all`: every generation.
 * - `keep_last:N`: the N newest generations (N ≥ 1).
 * - `keep_days:D`: generations created less than D days (D × 86 400 000 ms) ago.
 * - `keep_last_and_days:N,D`: the union of the two: the N newest and any younger than D days.
 * - `keep_hourly:N`, `keep_daily:N`, `keep_weekly:N`, `keep_monthly:N`, `keep_yearly:N`:
 *   restic's `forget --keep-*` rules: going from the newest, the newest generation of each
 *   of the last N hours (days, ISO weeks, months, years) that have one. Periods are UTC.
 * - Several policies joined by `+` (`keep_last:3+keep_daily:7+keep_weekly:4`) keep the
 *   union of what each keeps, as restic's flags do.
 *
 * The default is `keep_last:3`. Whatever the policy says, prune never deletes the newest
 * generation that verifies (see `prune`).
 *
 * @module
 */
import { BackupUsageError } from "./Error.js"
import type { Generation } from "./Registry.js"

/** The calendar periods of restic's `--keep-hourly/daily/weekly/monthly/yearly`. */
export type Period = "hourly" | "daily" | "weekly" | "monthly" | "yearly"
const PERIODS: ReadonlyArray<Period> = ["hourly", "daily", "weekly", "monthly", "yearly"]

export type RetentionPolicy =
  | { readonly _tag: "KeepAll" }
  | { readonly _tag: "KeepLast"; readonly last: number }
  | { readonly _tag: "KeepDays"; readonly days: number }
  | { readonly _tag: "KeepLastAndDays"; readonly last: number; readonly days: number }
  | { readonly _tag: "KeepPeriods"; readonly period: Period; readonly count: number }
  | { readonly _tag: "Union"; readonly policies: ReadonlyArray<RetentionPolicy> }

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
  const parts = text.split("+")
  if (parts.length > 1) {
    const policies = parts.map((part) => parseOne(part, text))
    if (policies.some((p) => p._tag === "KeepAll")) {
      throw new BackupUsageError({ reason: "Retention", detail: `retention policy "${text}": keep_all keeps everything, it cannot be combined with +` })
    }
    return { _tag: "Union", policies }
  }
  return parseOne(text, text)
}

const parseOne = (one: string, text: string): RetentionPolicy => {
  const t = one.trim()
  if (t === "keep_all") return { _tag: "KeepAll" }
  const [kind, arg = "", ...rest] = t.split(":")
  if (rest.length === 0) {
    if (kind === "keep_last") return { _tag: "KeepLast", last: positive(arg, "N", t) }
    if (kind === "keep_days") return { _tag: "KeepDays", days: positive(arg, "D", t) }
    if (kind === "keep_last_and_days") {
      const [n = "", d = "", ...more] = arg.split(",")
      if (more.length === 0) return { _tag: "KeepLastAndDays", last: positive(n, "N", t), days: positive(d, "D", t) }
    }
    const period = PERIODS.find((p) => kind === `keep_${p}`)
    if (period !== undefined) return { _tag: "KeepPeriods", period, count: positive(arg, "N", t) }
  }
  throw new BackupUsageError({
    reason: "Retention",
    detail: `unknown retention policy "${text}": use keep_all, keep_last:N, keep_days:D, keep_last_and_days:N,D, keep_hourly:N, keep_daily:N, keep_weekly:N, keep_monthly:N or keep_yearly:N, several joined by +`
  })
}

/** Formats a policy back to its text form. */
export const formatPolicy = (p: RetentionPolicy): string =>
  p._tag === "KeepAll" ? "keep_all"
  : p._tag === "KeepLast" ? `keep_last:${p.last}`
  : p._tag === "KeepDays" ? `keep_days:${p.days}`
  : p._tag === "KeepLastAndDays" ? `keep_last_and_days:${p.last},${p.days}`
  : p._tag === "KeepPeriods" ? `keep_${p.period}:${p.count}`
  : p.policies.map(formatPolicy).join("+")

/** The UTC calendar period of `ms` (since the epoch) for `period`: `2026-12-05T06`, `2026-W49`, `2026-12`… */
export const periodOf = (period: Period, ms: number): string => {
  const iso = new Date(ms).toISOString()
  switch (period) {
    case "hourly":
      return iso.slice(0, 13)
    case "daily":
      return iso.slice(0, 10)
    case "monthly":
      return iso.slice(0, 7)
    case "yearly":
      return iso.slice(0, 4)
    case "weekly": {
      // ISO 8601 week: the week holding the Thursday of this date's Monday-based week.
      const d = new Date(ms)
      const day = (d.getUTCDay() + 6) % 7
      const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3)
      const year = new Date(thursday).getUTCFullYear()
      const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS))
      return `${year}-W${String(week).padStart(2, "0")}`
    }
  }
}

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
    case "KeepPeriods": {
      // restic: newest first, keep a generation when its period differs from the last kept
      // one's, until N periods are kept.
      let last: string | undefined
      let count = 0
      for (const g of newestFirst) {
        if (count >= policy.count) break
        const p = periodOf(policy.period, Date.parse(g.createdAt))
        if (p === last) continue
        keep.add(g.id)
        last = p
        count++
      }
      break
    }
    case "Union":
      for (const p of policy.policies) for (const id of kept(p, generations, now)) keep.add(id)
      break
  }
  return keep
}
