/**
 * One segment of a distributed AGCM encryption (issue 16): what a runner's activity does.
 * The job writes the header once ({@link startOutput}); each segment then seals its chunks
 * straight into the shared `OUT.partial` at their positions ({@link encryptSegment}), with
 * the same salt (the header's, carried in the job as `agcm-encrypt`'s non-secret snapshot:
 * salt and key commitment, never the key). A segment run twice, or on another runner,
 * writes the same bytes to the same place; every segment done gives the bytes a
 * single-machine `cage encrypt` with that key and salt gives.
 *
 * @module
 */
import { agcmDecrypt, agcmEncrypt, defaultWorkers, type KeyMaterial, MAX_HEADER_BYTES } from "@cage/agcm"
import { ChunkInput, ChunkSpec, DEFAULT_SEGMENT_BYTES, type DirectChunksOptions, fromSystemError, type InitResult, InputChanged, type IoError, type JsonValue, runDirectChunks, type SourceIdentity } from "@cage/core"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type { Segment } from "./Plan.js"
import { messageOf } from "./Shared.js"

/** What every segment of a file needs besides the key: the header's non-secret snapshot (salt, commitment), the chunk size, the header length. */
export interface FileSeal {
  readonly snapshot: JsonValue
  readonly chunkSize: number
  readonly headerBytes: number
}

/**
 * Threads one segment's cipher runs on: `workers` when the runner was given it, else agcm's
 * default, the runner's cores (the calling thread is one of them, agcm's pool has one
 * fewer). A segment is sealed in {@link PIECE_BYTES} pieces, `2 × lanes` at once (as the
 * engine keeps `inFlight` segments alive), so one runner uses every core it is given even
 * with one segment running (one 64 MiB direct job would run on one thread: a runner
 * measured 370 MB/s).
 */
const lanes = (workers: number | undefined) => workers ?? defaultWorkers()

/** A segment's direct jobs: about 1 MiB each, the single-machine engine's segment size. */
const PIECE_BYTES = DEFAULT_SEGMENT_BYTES

/**
 * Runs a segment's chunks `[from, to)` of `plan` through the cipher's direct mode (core's
 * `runDirectChunks`), with the cipher's own errors as they are (`ChunkAuthFailed` naming the
 * chunk, not wrapped in the engine's `ProcessorError` naming `agcm-decrypt`).
 */
const directChunks = (options: Omit<DirectChunksOptions, "segmentBytes" | "inFlight">, workers: number | undefined) =>
  runDirectChunks({ ...options, segmentBytes: PIECE_BYTES, inFlight: 2 * lanes(workers) }).pipe(
    Effect.mapError((e): unknown => e._tag === "ProcessorError" ? e.cause : e)
  )

/** What a cached cipher holds: the processor and what its `init` returned. */
interface Cipher<P> {
  readonly p: P
  readonly init: InitResult
}
interface Cached<P> extends Cipher<P> {
  users: number
  failed: boolean
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * Ciphers a runner keeps between its segments of one file. Each cipher starts a pool of
 * worker threads (about 20 ms of CPU per thread; a passphrase also costs an scrypt run),
 * and a 1 GiB job has 17 segments. Keyed by a SHA-256 of all a cipher depends on (the key or
 * passphrase bytes, the header's snapshot, the source's path and identity, the operation),
 * in this process's memory only. A cipher is closed (its keys wiped, its threads stopped)
 * {@link CIPHER_IDLE_MS} after its last segment, or as soon as a segment that used it failed:
 * a failed worker pool stays failed, and nothing is learnt by keeping it.
 */
const ciphers = new Map<string, Cached<unknown>>()
const CIPHER_IDLE_MS = 2000

const cipherId = (op: string, key: KeyMaterial, facts: JsonValue) => {
  const h = createHash("sha256").update(op).update(JSON.stringify(facts))
  const k = key as { key?: Uint8Array; passphrase?: Uint8Array; scryptLogN?: number; maxScryptLogN?: number }
  h.update(k.key ? "key" : "passphrase").update(k.key ?? k.passphrase ?? new Uint8Array(0))
  h.update(JSON.stringify([k.scryptLogN ?? null, k.maxScryptLogN ?? null]))
  return h.digest("hex")
}

const closeCipher = (c: Cached<unknown>) => (c.p as { close?: () => Effect.Effect<void> }).close?.() ?? Effect.void

/**
 * Runs `use` with the cipher cached under `id`, made by `make` on a miss. See {@link ciphers}.
 */
const withCipher = <P, A, E, E2>(id: string, make: Effect.Effect<Cipher<P>, E2>, use: (c: Cipher<P>) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.suspend(() => {
      const hit = ciphers.get(id) as Cached<P> | undefined
      if (hit !== undefined && !hit.failed) {
        hit.users++
        clearTimeout(hit.timer)
        hit.timer = undefined
        return Effect.succeed(hit)
      }
      return make.pipe(Effect.map((made): Cached<P> => {
        const c: Cached<P> = { ...made, users: 1, failed: false, timer: undefined }
        ciphers.set(id, c as Cached<unknown>)
        return c
      }))
    }),
    use,
    (c, exit) =>
      Effect.suspend(() => {
        c.users--
        if (exit._tag === "Failure") c.failed = true
        if (c.users > 0) return Effect.void
        const current = ciphers.get(id) === (c as Cached<unknown>)
        if (c.failed || !current) {
          // Failed, or replaced by a cipher made meanwhile by a concurrent miss: not reused.
          if (current) ciphers.delete(id)
          return closeCipher(c as Cached<unknown>)
        }
        c.timer = setTimeout(() => {
          if (c.users !== 0 || ciphers.get(id) !== (c as Cached<unknown>)) return
          ciphers.delete(id)
          Effect.runFork(closeCipher(c as Cached<unknown>))
        }, CIPHER_IDLE_MS)
        c.timer.unref()
        return Effect.void
      })
  )

const initOf = (key: KeyMaterial, chunkSize: number, source: string, size: number, resume: JsonValue | undefined, workers: number | undefined) =>
  Effect.gen(function*() {
    const p = agcmEncrypt({ ...key, chunkSize, workers: lanes(workers) } as Parameters<typeof agcmEncrypt>[0])
    const init = yield* p.init({ input: source, inputSize: size, chunkBytes: chunkSize, readHeader: () => Effect.succeed(new Uint8Array(0)), resume }).pipe(
      Effect.tapError(() => p.close?.() ?? Effect.void)
    )
    return { p, init: init ?? {} }
  })

/**
 * Creates `output` (the job's `OUT.partial`, mode 0600, never over an existing file) with
 * the AGCM v2 header for `key` and a fresh salt, or the salt of `resume` (another file's
 * snapshot: tests compare with a single-machine run). Returns what the segments need: the
 * seal and the staged file's identity.
 */
export const startOutput = (options: { readonly source: string; readonly size: number; readonly output: string; readonly key: KeyMaterial; readonly chunkSize: number; readonly resume?: JsonValue }) =>
  Effect.gen(function*() {
    const { p, init } = yield* initOf(options.key, options.chunkSize, options.source, options.size, options.resume, undefined)
    const header = init.header ?? new Uint8Array(0)
    const snapshot = p.snapshot?.() ?? null
    yield* p.close?.() ?? Effect.void
    const staged = yield* Effect.try({
      try: () => {
        const fd = fs.openSync(options.output, "wx", 0o600)
        try {
          fs.writeSync(fd, header, 0, header.length, 0)
          return stagedOf(fd)
        } catch (e) {
          // Created here, so ours to remove: a half-made staged file would block the next run.
          fs.rmSync(options.output, { force: true })
          throw e
        } finally {
          fs.closeSync(fd)
        }
      },
      catch: (e) => fromSystemError("create", options.output, e)
    })
    return { snapshot, chunkSize: options.chunkSize, headerBytes: header.length, staged }
  })

/**
 * Which file a job staged its output in: inode and birth time (an inode number alone is
 * reused as soon as a file is deleted). Recorded when the job creates `OUT.partial`, checked
 * on the descriptor every segment writes through, and before publishing or removing it: a
 * segment left over from a cancelled or failed job never writes into a newer job's file of
 * the same name, and a runner never removes or publishes a file that is not its job's.
 */
export interface StagedFile {
  readonly ino: string
  readonly birthtimeNs: string
}

/** The staged-file identity of an open descriptor. */
export const stagedOf = (fd: number): StagedFile => {
  const st = fs.fstatSync(fd, { bigint: true })
  return { ino: st.ino.toString(), birthtimeNs: st.birthtimeNs.toString() }
}

/** Whether `path` is (still) the file `staged` recorded; false when it is missing or another file. */
export const isStaged = (path: string, staged: StagedFile) => {
  try {
    const st = fs.statSync(path, { bigint: true })
    return st.ino.toString() === staged.ino && st.birthtimeNs.toString() === staged.birthtimeNs
  } catch {
    return false
  }
}

/**
 * Removes a job's staged output (`*.partial`) if it is still the file the job created:
 * never another job's, nor any file a payload might name.
 */
export const removeStaged = (p: { readonly output: string; readonly staged: StagedFile }) => {
  if (p.output.endsWith(".partial") && isStaged(p.output, p.staged)) fs.rmSync(p.output, { force: true })
}

/**
 * The source for reading and the job's staged output for positional writes (both or
 * neither). The output must be the file the job staged (`staged`), checked on the
 * descriptor itself: `InputChanged` otherwise, or when it is gone. `IoError` names the file
 * that could not be opened.
 */
const openPair = (source: string, output: string, staged: StagedFile) =>
  Effect.gen(function*() {
    const input = yield* Effect.try({ try: () => fs.openSync(source, "r"), catch: (e) => fromSystemError("open", source, e) as IoError })
    const out = yield* Effect.try({
      try: () => fs.openSync(output, "r+"),
      catch: (e) => {
        fs.closeSync(input)
        // Gone: a cancel, or the job's failure, removed it before this segment started.
        return (e as { code?: unknown }).code === "ENOENT"
          ? new InputChanged({ path: output, detail: "it is gone (its job was cancelled or failed, or it was removed): this segment writes nothing" })
          : fromSystemError("open", output, e) as IoError
      }
    })
    const fds = { input, out }
    const now = stagedOf(fds.out)
    if (now.ino !== staged.ino || now.birthtimeNs !== staged.birthtimeNs) {
      fs.closeSync(fds.input)
      fs.closeSync(fds.out)
      return yield* new InputChanged({ path: output, detail: "it is not the file this job staged (a newer job's output, or replaced): this segment writes nothing" })
    }
    return fds
  })

/** How often a running segment checks that its job's staged file still has a name (ms). */
export const STAGED_CHECK_MS = 200

/**
 * What a segment's failure says. `InputChanged` naming the job's own `OUT.partial` (removed
 * by a cancel, or another file under its name) is about the output, not a source that
 * changed while it was read: its detail alone, after the file's name.
 */
export const failureText = (e: unknown, output: string): string =>
  outputGone(e, output) ? `${output}: ${(e as { readonly detail?: string }).detail}` : messageOf(e)

/**
 * Whether a segment's failure is about the job's own staged `output` (`InputChanged` naming
 * it: gone, removed while the segment ran, or not the file the job staged): the segment
 * stopped because its job ended or was cancelled, not for a fault of its own.
 */
export const outputGone = (e: unknown, output: string): boolean => {
  const x = e as { readonly _tag?: string; readonly path?: string }
  return x._tag === "InputChanged" && x.path === output
}

/** Fails with `InputChanged` when the job's staged file, open as `fd`, has no name left (`st_nlink` 0). */
const stillNamed = (fd: number, output: string): Effect.Effect<void, InputChanged | IoError> =>
  Effect.try({ try: () => fs.fstatSync(fd).nlink, catch: (e) => fromSystemError("stat", output, e) }).pipe(
    Effect.flatMap((links) =>
      links === 0
        ? Effect.fail(new InputChanged({ path: output, detail: "it was removed while this segment ran (its job was cancelled or failed): this segment stopped" }))
        : Effect.void
    )
  )

/**
 * Checks every {@link STAGED_CHECK_MS} that the job's staged file, open as `fd`, still has
 * a name, and fails with `InputChanged` once it has none: `cancel`, or the job's failure,
 * removed `OUT.partial` (or someone did). Never succeeds. Raced against a segment's work
 * ({@link untilUnstaged}): effect 4.0.6 applies a workflow's interrupt only when the
 * workflow next suspends, so a segment already in its activity does not see `cancel`'s
 * interrupt, and would otherwise wait for its CPU slot and then seal (or, for a decrypt,
 * write plaintext) to its end into a file nobody can reach. One `fstat` per check.
 * Publishing links the final name before it unlinks `OUT.partial`, and runs only once
 * every segment is done. On NFS (not tested here) a file another machine removed answers
 * `fstat` with ESTALE once this machine's cached attributes expire, and the segment stops
 * with an I/O error instead; one removed by this machine while open is renamed by the NFS
 * client (`.nfsXXXX`) and keeps its link, so that segment runs to its end, as before.
 */
export const whileStaged = (fd: number, output: string): Effect.Effect<never, InputChanged | IoError> =>
  Effect.forever(Effect.sleep(STAGED_CHECK_MS).pipe(Effect.andThen(stillNamed(fd, output))))

/**
 * Runs a segment's CPU part (its wait for a slot included) on `fds` once its staged output
 * is found to have a name, until it ends or the output loses its name ({@link whileStaged}),
 * whichever comes first; the other is interrupted.
 */
const untilUnstaged = <A, E, R>(work: Effect.Effect<A, E, R>, fds: { readonly out: number }, output: string) =>
  stillNamed(fds.out, output).pipe(Effect.andThen(Effect.raceFirst(work, whileStaged(fds.out, output))))

/**
 * fdatasync of a segment's output descriptor on libuv's thread pool, not the event loop: a
 * runner works on several segments at once, and while one segment's bytes go to disk the
 * next one is sealed (a blocking fdatasync left that core idle; the cluster's throughput
 * bench measures it). A segment is `done` only once its bytes are durable: a machine that
 * crashes after reporting it must not leave a hole that the job's publish would link.
 */
const datasync = (fd: number, output: string) =>
  // Uninterruptible: the caller closes `fd` right after, never under an fdatasync in flight
  // (the descriptor number could be reused meanwhile).
  Effect.uninterruptible(Effect.callback<void, IoError>((resume) => {
    fs.fdatasync(fd, (e) => resume(e ? Effect.fail(fromSystemError("sync", output, e)) : Effect.void))
  }))

/** Makes `path`'s written bytes durable (fdatasync off the event loop, see {@link datasync}). */
export const syncFile = (path: string) =>
  Effect.acquireUseRelease(
    Effect.try({ try: () => fs.openSync(path, "r"), catch: (e) => fromSystemError("open", path, e) }),
    (fd) => datasync(fd, path),
    (fd) => Effect.sync(() => fs.closeSync(fd))
  )

/**
 * Fails with `InputChanged` unless `source` is still the file `identity` describes: same
 * size, modification and status-change times, inode. The device number is not compared: on
 * a shared filesystem (NFS, CephFS) each machine numbers the mount differently.
 */
export const sourceUnchanged = (source: string, identity: SourceIdentity) =>
  Effect.gen(function*() {
    const now = yield* ChunkInput.statIdentity(source)
    const change = ChunkInput.changeOf(identity, { ...now, dev: identity.dev })
    if (change !== undefined) return yield* new InputChanged({ path: source, detail: change })
  })

/**
 * What runs a segment's CPU part (reading, sealing or opening, writing), and not its
 * fdatasync: a runner passes one slot of its own (`Cluster.ts`), so that one segment's bytes
 * go to disk while the next one is sealed on every core. Segments that ran side by side
 * also reached their fdatasync together, and the cores then waited for the disk.
 */
export type SegmentCpu = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
const asIs: SegmentCpu = (effect) => effect

const closePair = (fds: { readonly input: number; readonly out: number }) => {
  fs.closeSync(fds.input)
  fs.closeSync(fds.out)
}

/**
 * Seals `segment`'s chunks of `source` into `output` at their positions. The source must
 * still be the file the job planned (`identity`: size, mtime, ctime, inode, device), before
 * and after: otherwise `InputChanged`, and what this segment wrote must not be published
 * (the job fails: sealing a changed source under the same nonces would reuse them).
 *
 * Fails with `InputChanged`, `IoError`, or the cipher's errors (`HeaderAuthFailed` when
 * `key` is not the key the header was made with).
 */
export const encryptSegment = (options: {
  readonly source: string
  readonly identity: SourceIdentity
  readonly output: string
  readonly key: KeyMaterial
  readonly seal: FileSeal
  readonly segment: Segment
  readonly staged: StagedFile
  /** Runs the reading and sealing, not the fdatasync after it (see {@link SegmentCpu}). */
  readonly cpu?: SegmentCpu
  /** Threads the cipher runs on (default: the cores; see `RunnerOptions.workers`). */
  readonly workers?: number
}) =>
  Effect.gen(function*() {
    const { source, identity, output, seal, segment } = options
    const check = sourceUnchanged(source, identity)
    yield* check
    const id = cipherId("seal", options.key, { snapshot: seal.snapshot, chunkSize: seal.chunkSize, source, identity: [identity.size, identity.mtimeNs, identity.ctimeNs, identity.ino], workers: options.workers ?? null })
    const fds = yield* openPair(source, output, options.staged)
    const sealing = withCipher(id, initOf(options.key, seal.chunkSize, source, identity.size, seal.snapshot, options.workers), ({ init, p }) =>
      Effect.gen(function*() {
        // The header on disk (read through the descriptor written below) must be the one this
        // job's snapshot makes (same salt, key commitment, chunk size): sealing under a header
        // the file does not carry would give chunks no reader can open.
        const header = init.header ?? new Uint8Array(0)
        const onDisk = Buffer.alloc(header.length)
        const got = fs.readSync(fds.out, onDisk, 0, onDisk.length, 0)
        if (got !== header.length || !onDisk.equals(header)) {
          return yield* new InputChanged({ path: output, detail: "its header is not the one this job wrote (another job's output, or a damaged file)" })
        }
        yield* directChunks({
          processor: p,
          init,
          plan: ChunkSpec.planRegion(identity.size, { headerBytes: 0, chunkBytes: seal.chunkSize, shortFinal: true }),
          from: segment.firstChunk,
          to: segment.firstChunk + segment.chunks,
          input: { fd: fds.input, description: source },
          output: { fd: fds.out, path: output, base: seal.headerBytes }
        }, options.workers)
      }))
    yield* untilUnstaged((options.cpu ?? asIs)(sealing), fds, output).pipe(
      Effect.andThen(datasync(fds.out, output)),
      Effect.ensuring(Effect.sync(() => closePair(fds)))
    )
    yield* check
  })

/**
 * Opens `segment`'s chunks of the AGCM file `source` (its header of `headerBytes` read and
 * authenticated with `key` here) and writes their plaintext into `output` (the job's
 * `OUT.partial`, created 0600 by the job) at `chunk index × chunkSize`. The source must
 * still be the file the job planned, before and after. The segment's chunks are in
 * ciphertext terms: `Plan.planJob` over the file's chunk region with chunks of
 * `chunkSize + 16` bytes and no overhead (see `Cluster.planOf`).
 *
 * Fails with the cipher's errors (`ChunkAuthFailed` naming the chunk, `Truncated`,
 * `HeaderAuthFailed` for another key), `InputChanged` or `IoError`.
 */
export const decryptSegment = (options: {
  readonly source: string
  readonly identity: SourceIdentity
  readonly output: string
  readonly key: KeyMaterial
  readonly headerBytes: number
  readonly segment: Segment
  readonly staged: StagedFile
  /** Runs the reading and opening, not the fdatasync after it (see {@link SegmentCpu}). */
  readonly cpu?: SegmentCpu
  /** Threads the cipher runs on (default: the cores; see `RunnerOptions.workers`). */
  readonly workers?: number
}) =>
  Effect.gen(function*() {
    const { source, identity, output, segment } = options
    yield* sourceUnchanged(source, identity)
    const fds = yield* openPair(source, output, options.staged)
    // The header is read and authenticated once per runner and file (the cipher is cached):
    // the source's identity, checked before and after each segment, is part of the cache key.
    const make = Effect.gen(function*() {
      const p = agcmDecrypt({ ...options.key, workers: lanes(options.workers) } as Parameters<typeof agcmDecrypt>[0])
      const readHeader = (n: number) =>
        Effect.try({
          try: () => {
            const b = Buffer.alloc(Math.min(n, MAX_HEADER_BYTES, identity.size))
            return new Uint8Array(b.buffer, b.byteOffset, fs.readSync(fds.input, b, 0, b.length, 0))
          },
          catch: (e) => fromSystemError("read", source, e)
        })
      const init = yield* p.init({ input: source, inputSize: identity.size, chunkBytes: 0, readHeader, resume: undefined }).pipe(
        Effect.tapError(() => p.close?.() ?? Effect.void)
      )
      return { p, init: init ?? {} }
    })
    const id = cipherId("open", options.key, { headerBytes: options.headerBytes, source, identity: [identity.size, identity.mtimeNs, identity.ctimeNs, identity.ino], workers: options.workers ?? null })
    const run = withCipher(id, make, ({ init, p }) =>
      Effect.gen(function*() {
        if (init.framing === undefined) return yield* Effect.die(new Error("internal error: agcm-decrypt declared no framing"))
        const { headerBytes, chunkBytes } = init.framing
        yield* directChunks({
          processor: p,
          init,
          plan: ChunkSpec.planRegion(identity.size - headerBytes, { headerBytes, chunkBytes, shortFinal: true }),
          from: segment.firstChunk,
          to: segment.firstChunk + segment.chunks,
          input: { fd: fds.input, description: source },
          output: { fd: fds.out, path: output, base: 0 }
        }, options.workers)
      }))
    yield* untilUnstaged((options.cpu ?? asIs)(run), fds, output).pipe(
      Effect.andThen(datasync(fds.out, output)),
      Effect.ensuring(Effect.sync(() => closePair(fds)))
    )
    yield* sourceUnchanged(source, identity)
  })
