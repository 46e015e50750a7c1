/**
 * Lock files: one owner per resource across processes, never left stuck by a crashed owner.
 *
 * A lock is a file created complete or not at all (written under a private name, then
 * `link`ed, which fails with `EEXIST` when the name is taken) holding a {@link Holder}:
 * pid, host, the process's start time (Linux `/proc/<pid>/stat` field 22, so a reused pid
 * is not mistaken for the owner), a random token and the time it was taken. An owner on
 * this host whose process is gone (`kill -9`, a crash) is detected at once, and its lock is
 * broken: renamed aside to a unique name first, so of two processes that both judged it
 * stale exactly one removes it; a lock that turned out to be fresh is put back with `link`.
 *
 * Not covered: owners on other hosts sharing a network filesystem. Their liveness cannot
 * be checked from here, so their locks are never broken by {@link acquireOrRefuse}; the
 * message names the host and the lock file to remove once that process is known gone.
 *
 * Used by `ChunkOutput.toFile` (one writer per output) and by `@cage/backup`'s registry lock.
 *
 * @module
 */
import { Data, Effect } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import { hostname } from "node:os"
import { ExitCode, fromSystemError, type IoError } from "./Error.js"

/** What a lock file holds (JSON). */
export interface Holder {
  readonly pid: number
  readonly host: string
  /** The owner's start time in clock ticks since boot (Linux), or `null` where unknown. */
  readonly startTicks: string | null
  readonly token: string
  /** ISO time the lock was taken. */
  readonly at: string
  /**
   * Set when a cluster job (`cage cluster submit backup`) holds the lock for its whole run,
   * on behalf of runners on many machines: its job id. Such a lock has no process to check
   * (`pid` 0), so it is never judged stale; the job releases it when it ends.
   */
  readonly job?: string
}

/** A lock file and, when it could be read, its holder; `mtimeMs` is the file's mtime. */
export interface LockInfo {
  readonly holder: Holder | undefined
  readonly mtimeMs: number
}

/**
 * The resource is held by another live process. Exit code 6 (busy): retrying later may
 * succeed. `holder` describes the owner (`pid 123 on host h since 2026-…`).
 */
export class LockBusy extends Data.TaggedError("LockBusy")<{
  /** The resource the user named (an output file). */
  readonly resource: string
  /** The lock file. */
  readonly lock: string
  readonly holder: Holder | undefined
}> {
  readonly exitCode = ExitCode.Busy
  override get message() {
    const h = this.holder
    if (h === undefined) return `${this.resource} is being written by another cage process (lock ${this.lock})`
    if (h.job !== undefined) return `${this.resource} is being written by cluster job ${h.job} (since ${h.at}): cage cluster status ${h.job} shows it; if that job no longer exists, remove ${this.lock}`
    const remote = h.host !== hostname() ? ` on host ${h.host}; if that process is gone, remove ${this.lock}` : ""
    return `${this.resource} is being written by another cage process, pid ${h.pid}${remote} (since ${h.at})`
  }
}

/** The start time of process `pid` in clock ticks since boot, or `null` (not Linux, or gone). */
export const processStartTicks = (pid: number): string | null => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Field 2 (comm) may contain spaces and parentheses: count fields after its last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return rest[19] ?? null // field 22 overall; fields from 3 on start at rest[0]
  } catch {
    return null
  }
}

/** A holder describing this process, with a fresh token. */
export const selfHolder = (): Holder => ({
  pid: process.pid,
  host: hostname(),
  startTicks: processStartTicks(process.pid),
  token: randomUUID(),
  at: new Date().toISOString()
})

/**
 * Whether `holder`'s process still runs: `true`/`false` on this host (pid present and,
 * where known, with the recorded start time), `undefined` on another host (cannot tell).
 */
export const holderAlive = (holder: Holder): boolean | undefined => {
  if (holder.host !== hostname() || holder.job !== undefined) return undefined
  try {
    process.kill(holder.pid, 0)
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  if (holder.startTicks !== null && holder.startTicks !== undefined) {
    const now = processStartTicks(holder.pid)
    if (now !== null && now !== holder.startTicks) return false // the pid was reused
  }
  return true
}

/** Reads a lock file; `undefined` when there is none. A lock being written or garbage has no holder. */
export const readLock = (path: string): LockInfo | undefined => {
  try {
    const st = fs.statSync(path)
    let holder: Holder | undefined
    try {
      const parsed = JSON.parse(fs.readFileSync(path, "utf8")) as Holder
      holder = typeof parsed?.pid === "number" && typeof parsed.host === "string" ? { ...parsed, startTicks: parsed.startTicks ?? null } : undefined
    } catch {
      holder = undefined
    }
    return { holder, mtimeMs: st.mtimeMs }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

/** Creates the lock file complete or not at all; `false` when it exists. Throws other errors. */
export const tryCreate = (path: string, holder: Holder): boolean => {
  const tmp = `${path}.${holder.token}`
  try {
    fs.writeFileSync(tmp, JSON.stringify(holder), { mode: 0o600 })
    fs.linkSync(tmp, path)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

/**
 * Removes a lock judged stale from `judged`, unless it changed meanwhile: it is renamed to a
 * unique name first; if what was moved is not the lock that was judged, it is put back.
 */
export const breakStale = (path: string, judged: LockInfo): void => {
  const aside = `${path}.stale-${randomUUID()}`
  try {
    fs.renameSync(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return // someone else broke it
    throw e
  }
  const now = readLock(aside)
  const same = now !== undefined && (now.holder?.token ?? null) === (judged.holder?.token ?? null)
  if (!same) {
    try {
      fs.linkSync(aside, path)
    } catch {
      // Another process took the lock meanwhile; the owner we displaced finds out on release.
    }
  }
  fs.rmSync(aside, { force: true })
}

/** Removes the lock if it is still ours (best effort: a leftover lock is stale once we are gone). */
export const release = (path: string, holder: Holder): void => {
  try {
    if (readLock(path)?.holder?.token === holder.token) fs.rmSync(path, { force: true })
  } catch {
    // see above
  }
}

/**
 * Takes the lock at `path` for `resource` at once, or fails with {@link LockBusy} when a
 * live process (or one on another host) holds it. A lock whose owner on this host is gone
 * is broken and taken (`holder`: whom the lock names, this process by default). A lock file without a readable holder (being written, or garbage)
 * counts as busy until it is `garbageMs` old (default 10 s), then as stale.
 *
 * Fails with `IoError` when the lock cannot be created (directory missing or not writable).
 */
export const acquireOrRefuse = (path: string, resource: string, options: { readonly garbageMs?: number; readonly holder?: Holder } = {}): Effect.Effect<Holder, LockBusy | IoError> =>
  Effect.suspend((): Effect.Effect<Holder, LockBusy | IoError> => {
    const holder = options.holder ?? selfHolder()
    const garbageMs = options.garbageMs ?? 10_000
    // A few rounds: after breaking a stale lock, another process may win the race to retake it.
    for (let round = 0; round < 3; round++) {
      let created: boolean
      try {
        created = tryCreate(path, holder)
      } catch (e) {
        return Effect.fail(fromSystemError("create lock", path, e))
      }
      if (created) return Effect.succeed(holder)
      let info: LockInfo | undefined
      try {
        info = readLock(path)
      } catch (e) {
        return Effect.fail(fromSystemError("read lock", path, e))
      }
      if (info === undefined) continue // released meanwhile
      const alive = info.holder ? holderAlive(info.holder) : Date.now() - info.mtimeMs < garbageMs
      if (alive !== false) return Effect.fail(new LockBusy({ resource, lock: path, holder: info.holder }))
      try {
        breakStale(path, info)
      } catch (e) {
        return Effect.fail(fromSystemError("break stale lock", path, e))
      }
    }
    return Effect.fail(new LockBusy({ resource, lock: path, holder: readLock(path)?.holder }))
  })
