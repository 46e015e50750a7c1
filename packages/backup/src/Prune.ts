/**
 * Listing, pruning (retention) and recovery of the registry of generations.
 *
 * @module
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import type { RegistryCorrupt } from "./Error.js"
import { type CommonOptions, ensureDirs, io, update } from "./internal/common.js"
import { type IoError, syncDirectoryOf } from "./internal/fs.js"
import { withLock } from "./Lock.js"
import * as Registry from "./Registry.js"
import { DEFAULT_POLICY, kept, type RetentionPolicy } from "./Retention.js"
import { verifyReport } from "./Verify.js"

/** Generations in the registry, optionally of one source, ordered by source then number. */
export const list = (options: { readonly dir: string; readonly source?: string }): Effect.Effect<ReadonlyArray<Registry.Generation>, RegistryCorrupt | IoError> =>
  Registry.load(options.dir).pipe(Effect.map((r) => {
    const source = options.source === undefined ? undefined : nodePath.resolve(options.source)
    return r.generations
      .filter((g) => source === undefined || g.source === source)
      .sort((a, b) => a.source.localeCompare(b.source) || a.generation - b.generation)
  }))

/** Options of {@link prune}. */
export interface PruneOptions extends CommonOptions {
  /** Default `keep_last:3`. */
  readonly policy?: RetentionPolicy
  /** Report what would be deleted, delete nothing. */
  readonly dryRun?: boolean
  /** Only this source (default: every source in the registry). */
  readonly source?: string
  /** Clock, ms since the epoch (tests). */
  readonly now?: number
  /**
   * Generations of the same sources kept elsewhere (the chunk store), by resolved source
   * path: the policy counts them with the full copies (keep_last:3 keeps the three newest
   * of either kind), they are never deleted here, and when a source's newest generation is
   * among them its full copies need no protection (so old copies age out).
   */
  readonly elsewhere?: ReadonlyMap<string, ReadonlyArray<{ readonly id: string; readonly generation: number; readonly createdAt: string }>>
}

/** What {@link prune} did (or would do). */
export interface PruneReport {
  readonly dryRun: boolean
  readonly deleted: ReadonlyArray<Registry.Generation>
  readonly kept: ReadonlyArray<Registry.Generation>
  /** Per source, the newest generation that verifies (never deleted), when there is one. */
  readonly protectedGenerations: ReadonlyArray<Registry.Generation>
  /** Generations that failed verification during the search for the newest good one. */
  readonly damaged: ReadonlyArray<Registry.Generation>
}

/**
 * Applies a retention policy. Per source, the newest generation that verifies (ciphertext
 * digests against its manifest) is kept whatever the policy says, unless a newer one is
 * kept `elsewhere`. The registry update is
 * made durable before any file is deleted; a crash in between leaves only unlisted files.
 * Partial generations are left alone.
 */
export const prune = (options: PruneOptions) =>
  Effect.gen(function*() {
    const policy = options.policy ?? DEFAULT_POLICY
    const now = options.now ?? Date.now()
    const registry = yield* Registry.load(options.dir)
    const only = options.source === undefined ? undefined : nodePath.resolve(options.source)
    const sources = [...new Set(registry.generations.map((g) => g.source))].filter((s) => only === undefined || s === only)
    const deleted: Array<Registry.Generation> = []
    const keptList: Array<Registry.Generation> = []
    const protectedGenerations: Array<Registry.Generation> = []
    const damaged: Array<Registry.Generation> = []
    for (const source of sources) {
      const gens = registry.generations.filter((g) => g.source === source && g.status === "complete").sort((a, b) => b.generation - a.generation)
      const others = (options.elsewhere?.get(source) ?? []).map((o) => ({ ...o, status: "complete" as const }))
      const keep = kept(policy, [...gens, ...others], now)
      // The newest generation lives elsewhere: it protects the source, not a full copy.
      const newestElsewhere = others.some((o) => o.generation > (gens[0]?.generation ?? 0))
      for (const g of newestElsewhere ? [] : gens) {
        const r = yield* Effect.result(verifyReport({ dir: options.dir, source, generation: g.generation, hashWorkers: options.hashWorkers }))
        if (r._tag === "Success" && r.success.ok) {
          protectedGenerations.push(g)
          keep.add(g.id)
          break
        }
        damaged.push(g)
      }
      for (const g of gens) (keep.has(g.id) ? keptList : deleted).push(g)
    }
    if (!options.dryRun && deleted.length > 0) {
      const gone = new Set(deleted.map((g) => g.id))
      yield* update(options, (r) => ({ registry: { ...r, generations: r.generations.filter((g) => !gone.has(g.id)) }, value: undefined }))
      // The registry no longer lists them (durable): now the files may go.
      for (const g of deleted) {
        const paths = [nodePath.join(options.dir, g.file), ...(g.manifest ? [nodePath.join(options.dir, g.manifest)] : [])]
        for (const p of paths) yield* io("remove", p, () => fs.promises.rm(p, { force: true }))
      }
      yield* syncDirectoryOf(nodePath.join(options.dir, "x"))
    }
    return { dryRun: options.dryRun === true, deleted, kept: keptList, protectedGenerations, damaged } satisfies PruneReport
  })

/** Rebuilds a corrupt registry under the lock; see `Registry.recoverRegistry`. */
export const recover = (options: CommonOptions) =>
  Effect.gen(function*() {
    yield* ensureDirs(options.dir)
    return yield* withLock(options.dir, Registry.recoverRegistry(options.dir), options.lock)
  })
