/**
 * What the backup operations share: the cipher and option types, registry read-modify-write
 * under the lock, the lookup of a generation and small file helpers.
 *
 * @internal
 */
import type { ChunkProcessor } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { GenerationNotFound } from "../Error.js"
import { type LockOptions, withLock } from "../Lock.js"
import * as Registry from "../Registry.js"
import { fromSystemError } from "./fs.js"

/**
 * How a backup is encrypted and decrypted: processor factories (a fresh processor per run).
 * `encrypt()` must be a transform that sets the framing (first processor), `decrypt()` its
 * inverse; both carry their key inside, never in `options`. `@cage/backup`'s `agcmCipher`
 * is the default; any pipeline fits when wrapped as one processor.
 */
export interface BackupCipher {
  /** Short name for messages, e.g. `"agcm"`. */
  readonly name: string
  readonly encrypt: () => ChunkProcessor
  readonly decrypt: () => ChunkProcessor
}

/** Options shared by the operations. */
export interface CommonOptions {
  /** The backup directory (created when missing). */
  readonly dir: string
  /** Hash worker threads; default available cores; 0 hashes on the calling thread. */
  readonly hashWorkers?: number
  /** Registry lock timing. */
  readonly lock?: LockOptions
}

export const io = <A>(operation: string, path: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => fromSystemError(operation, path, e) })

export const ensureDirs = (dir: string) =>
  io("create directory", dir, () => fs.promises.mkdir(nodePath.join(dir, Registry.MANIFEST_DIR), { recursive: true, mode: 0o700 }))

/** Reads, changes and saves the registry under the lock. */
export const update = <A>(options: CommonOptions, f: (r: Registry.Registry) => { readonly registry: Registry.Registry; readonly value: A }) =>
  withLock(options.dir, Effect.gen(function*() {
    const current = yield* Registry.load(options.dir)
    const { registry, value } = f(current)
    yield* Registry.save(options.dir, registry)
    return value
  }), options.lock)

export const exists = (path: string) => io("stat", path, () => fs.promises.lstat(path).then(() => true, (e) => (e?.code === "ENOENT" ? false : Promise.reject(e))))
export const remove = (path: string) => io("remove", path, () => fs.promises.rm(path, { force: true }))

/** Picks generation `n` of `source`, or its newest complete generation. */
export const findGeneration = (registry: Registry.Registry, sourcePath: string, n?: number) => {
  const source = nodePath.resolve(sourcePath)
  const all = registry.generations.filter((g) => g.source === source)
  const g = n === undefined
    ? all.filter((x) => x.status === "complete").sort((a, b) => b.generation - a.generation)[0]
    : all.find((x) => x.generation === n)
  if (!g) return Effect.fail(new GenerationNotFound({ source, generation: n }))
  if (g.status !== "complete") return Effect.fail(new GenerationNotFound({ source, generation: n, detail: "it is incomplete" }))
  return Effect.succeed(g)
}
