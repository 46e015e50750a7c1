/**
 * The registry lock: serializes every read-modify-write of `.cage_backups.json` across
 * processes, and cannot be left stuck by a crashed holder.
 *
 * The lock is a file `<dir>/.cage_backups.lock` made with core's `Lock` primitives (created
 * complete or not at all, holding pid, host, process start time, token and time). A waiter treats it as stale, and breaks it, when its holder
 * is on this host and its pid no longer exists (`kill -9`), or when its mtime is older than
 * `staleMs` (a holder on another host that died: live holders touch the file every
 * `staleMs / 3`). Breaking renames the lock to a unique name first, so of two waiters that
 * both judged it stale exactly one removes it; a lock that turned out to be fresh (taken
 * between the check and the rename) is put back with `link`, which never overwrites.
 *
 * @module
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { fromSystemError, type IoError, Lock } from "@cage/core"
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

/** Whether a lock is stale: its owner on this host is gone, or it was not refreshed for `staleMs`. */
const staleness = (info: Lock.LockInfo, staleMs: number): string | undefined => {
  const h = info.holder
  if (h && Lock.holderAlive(h) === false) return `holder pid ${h.pid} is gone`
  // A lock file that never got its content is stale once old enough too.
  if (Date.now() - info.mtimeMs > staleMs) return `not refreshed for ${Math.round(Date.now() - info.mtimeMs)} ms`
  return undefined
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
    const holder = Lock.selfHolder()
    const started = Date.now()
    while (true) {
      const got = yield* Effect.try({ try: () => Lock.tryCreate(path, holder), catch: (e) => fromSystemError("create lock", path, e) })
      if (got) return holder
      const info = yield* Effect.try({ try: () => Lock.readLock(path), catch: (e) => fromSystemError("read lock", path, e) })
      if (info && staleness(info, staleMs) !== undefined) {
        yield* Effect.try({ try: () => Lock.breakStale(path, info), catch: (e) => fromSystemError("break stale lock", path, e) })
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
  const release = (holder: Lock.Holder) => Effect.sync(() => Lock.release(path, holder))
  return Effect.acquireUseRelease(acquire, (_holder) => {
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
