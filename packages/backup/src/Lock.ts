/**
 * The registry lock: serializes every read-modify-write of `.cage_backups.json` across
 * processes, and cannot be left stuck by a crashed holder.
 *
 * The lock is a file `<dir>/.cage_backups.lock` created with `O_CREAT|O_EXCL` holding
 * `{ pid, host, token, at }`. A waiter treats it as stale, and breaks it, when its holder
 * is on this host and its pid no longer exists (`kill -9`), or when its mtime is older than
 * `staleMs` (a holder on another host that died: live holders touch the file every
 * `staleMs / 3`). Breaking renames the lock to a unique name first, so of two waiters that
 * both judged it stale exactly one removes it; a lock that turned out to be fresh (taken
 * between the check and the rename) is put back with `link`, which never overwrites.
 *
 * @module
 */
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import { hostname } from "node:os"
import * as nodePath from "node:path"
import { fromSystemError, type IoError } from "@cage/core"
import { LockTimeout } from "./Error.js"

/** Name of the lock file beside the registry. */
export const LOCK_FILE = ".cage_backups.lock"

/** Options of {@link withLock}. */
export interface LockOptions {
  /** A lock whose mtime is older than this many ms is stale. Default 30000. */
  readonly staleMs?: number
  /** Give up with `LockTimeout` after waiting this many ms. Default 120000. */
  readonly waitMs?: number
  /** Poll interval while waiting, in ms. Default 25. */
  readonly pollMs?: number
  /** Lock file name inside the directory. Default {@link LOCK_FILE}. */
  readonly name?: string
}

interface Holder {
  readonly pid: number
  readonly host: string
  readonly token: string
  readonly at: string
}

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const readHolder = (path: string): { holder: Holder | undefined; mtimeMs: number } | undefined => {
  try {
    const st = fs.statSync(path)
    let holder: Holder | undefined
    try {
      holder = JSON.parse(fs.readFileSync(path, "utf8")) as Holder
    } catch {
      holder = undefined // being written, or garbage: only the age decides
    }
    return { holder, mtimeMs: st.mtimeMs }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

/** Whether a lock is stale; `why` explains it for tests and logs. */
const staleness = (info: { holder: Holder | undefined; mtimeMs: number }, staleMs: number): string | undefined => {
  const h = info.holder
  if (h && h.host === hostname() && typeof h.pid === "number" && !pidAlive(h.pid)) return `holder pid ${h.pid} is gone`
  // A lock file that never got its content is stale once old enough too.
  if (Date.now() - info.mtimeMs > staleMs) return `not refreshed for ${Math.round(Date.now() - info.mtimeMs)} ms`
  return undefined
}

const tryCreate = (path: string, holder: Holder): boolean => {
  // Write the content under a private name, then link: the lock appears complete or not at all.
  const tmp = `${path}.${holder.token}`
  fs.writeFileSync(tmp, JSON.stringify(holder), { mode: 0o600 })
  try {
    fs.linkSync(tmp, path)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

const tryBreak = (path: string, judged: { holder: Holder | undefined; mtimeMs: number }) => {
  const aside = `${path}.stale-${randomUUID()}`
  try {
    fs.renameSync(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return // someone else broke it
    throw e
  }
  const now = readHolder(aside)
  const same = now !== undefined && (now.holder?.token ?? null) === (judged.holder?.token ?? null)
  if (!same) {
    // We moved a lock taken after our check: put it back (link never overwrites).
    try {
      fs.linkSync(aside, path)
    } catch {
      // Another process took the lock meanwhile; the holder we displaced detects it on release.
    }
  }
  fs.rmSync(aside, { force: true })
}

/**
 * Runs `body` while holding the registry lock of `dir`. Waits (polling) while a live holder
 * has it, breaks stale locks, and always releases (also on failure and interruption).
 *
 * Fails with `LockTimeout` after `waitMs`, or `IoError` when the directory is not writable.
 */
export const withLock = <A, E, R>(
  dir: string,
  body: Effect.Effect<A, E, R>,
  options: LockOptions = {}
): Effect.Effect<A, E | LockTimeout | IoError, R> => {
  const path = nodePath.join(dir, options.name ?? LOCK_FILE)
  const staleMs = options.staleMs ?? 30_000
  const waitMs = options.waitMs ?? 120_000
  const pollMs = options.pollMs ?? 25
  const acquire = Effect.gen(function*() {
    const holder: Holder = { pid: process.pid, host: hostname(), token: randomUUID(), at: new Date().toISOString() }
    const started = Date.now()
    while (true) {
      const got = yield* Effect.try({ try: () => tryCreate(path, holder), catch: (e) => fromSystemError("create lock", path, e) })
      if (got) return holder
      const info = yield* Effect.try({ try: () => readHolder(path), catch: (e) => fromSystemError("read lock", path, e) })
      if (info && staleness(info, staleMs) !== undefined) {
        yield* Effect.try({ try: () => tryBreak(path, info), catch: (e) => fromSystemError("break stale lock", path, e) })
        continue
      }
      if (Date.now() - started > waitMs) {
        const who = info?.holder ? `pid ${info.holder.pid} on ${info.holder.host} since ${info.holder.at}` : "an unknown holder"
        return yield* Effect.fail(new LockTimeout({ path, waitedMs: Date.now() - started, holder: who }))
      }
      // Jitter so waiting processes do not poll in lockstep.
      yield* Effect.sleep(pollMs + Math.floor(Math.random() * pollMs))
    }
  })
  const release = (holder: Holder) =>
    Effect.sync(() => {
      try {
        const info = readHolder(path)
        if (info?.holder?.token === holder.token) fs.rmSync(path, { force: true })
      } catch {
        // Releasing is best effort: a leftover lock is stale once our pid is gone.
      }
    })
  return Effect.acquireUseRelease(acquire, (holder) => {
    // Touch the lock while held so a long holder is not judged stale by age.
    const timer = setInterval(() => {
      try {
        const now = new Date()
        fs.utimesSync(path, now, now)
      } catch {
        // The lock vanished (broken as stale): the next registry write re-checks ownership.
      }
    }, Math.max(10, Math.floor(staleMs / 3)))
    timer.unref()
    return body.pipe(Effect.ensuring(Effect.sync(() => clearInterval(timer))))
  }, release)
}
