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
import { agcmDecrypt, agcmEncrypt, type KeyMaterial, MAX_HEADER_BYTES } from "@cage/agcm"
import { ChunkInput, ChunkSpec, fromSystemError, InputChanged, type IoError, type JsonValue, type SourceIdentity } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import type { Segment } from "./Plan.js"

/** What every segment of a file needs besides the key: the header's non-secret snapshot (salt, commitment), the chunk size, the header length. */
export interface FileSeal {
  readonly snapshot: JsonValue
  readonly chunkSize: number
  readonly headerBytes: number
}

const initOf = (key: KeyMaterial, chunkSize: number, source: string, size: number, resume: JsonValue | undefined) =>
  Effect.gen(function*() {
    // One worker: a runner runs several segments at once, each on its own core.
    const p = agcmEncrypt({ ...key, chunkSize, workers: 1 } as Parameters<typeof agcmEncrypt>[0])
    const init = (yield* p.init({ input: source, inputSize: size, chunkBytes: chunkSize, readHeader: () => Effect.succeed(new Uint8Array(0)), resume })) ?? {}
    return { p, init }
  })

/**
 * Creates `output` (the job's `OUT.partial`, mode 0600, never over an existing file) with
 * the AGCM v2 header for `key` and a fresh salt, or the salt of `resume` (another file's
 * snapshot: tests compare with a single-machine run). Returns what the segments need: the
 * seal and the staged file's identity.
 */
export const startOutput = (options: { readonly source: string; readonly size: number; readonly output: string; readonly key: KeyMaterial; readonly chunkSize: number; readonly resume?: JsonValue }) =>
  Effect.gen(function*() {
    const { p, init } = yield* initOf(options.key, options.chunkSize, options.source, options.size, options.resume)
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
 * descriptor itself: `InputChanged` otherwise.
 */
const openPair = (source: string, output: string, staged: StagedFile) =>
  Effect.gen(function*() {
    const fds = yield* Effect.try({
      try: () => {
        const input = fs.openSync(source, "r")
        try {
          return { input, out: fs.openSync(output, "r+") }
        } catch (e) {
          fs.closeSync(input)
          throw e
        }
      },
      catch: (e) => fromSystemError("open", output, e) as IoError
    })
    const now = stagedOf(fds.out)
    if (now.ino !== staged.ino || now.birthtimeNs !== staged.birthtimeNs) {
      fs.closeSync(fds.input)
      fs.closeSync(fds.out)
      return yield* new InputChanged({ path: output, detail: "it is not the file this job staged (a newer job's output, or replaced): this segment writes nothing" })
    }
    return fds
  })

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
}) =>
  Effect.gen(function*() {
    const { source, identity, output, seal, segment } = options
    const check = sourceUnchanged(source, identity)
    yield* check
    const { p, init } = yield* initOf(options.key, seal.chunkSize, source, identity.size, seal.snapshot)
    const plan = ChunkSpec.planRegion(identity.size, { headerBytes: 0, chunkBytes: seal.chunkSize, shortFinal: true })
    const specs = [...plan.chunks(segment.firstChunk, segment.firstChunk + segment.chunks)]
    const direct = p.processDirect
    if (direct === undefined || init.direct === undefined) return yield* Effect.die(new Error("internal error: agcm-encrypt has no direct mode"))
    const fds = yield* openPair(source, output, options.staged).pipe(Effect.tapError(() => p.close?.() ?? Effect.void))
    // The header on disk (read through the descriptor written below) must be the one this
    // job's snapshot makes (same salt, key commitment, chunk size): sealing under a header
    // the file does not carry would give chunks no reader can open.
    const header = init.header ?? new Uint8Array(0)
    const onDisk = Buffer.alloc(header.length)
    const got = fs.readSync(fds.out, onDisk, 0, onDisk.length, 0)
    if (got !== header.length || !onDisk.equals(header)) {
      fs.closeSync(fds.input)
      fs.closeSync(fds.out)
      yield* p.close?.() ?? Effect.void
      return yield* new InputChanged({ path: output, detail: "its header is not the one this job wrote (another job's output, or a damaged file)" })
    }
    yield* direct(specs, {
      inputFd: fds.input,
      inputOffset: segment.plainStart,
      outputFd: fds.out,
      outputOffset: seal.headerBytes + segment.firstChunk * init.direct.outputChunkBytes,
      input: source,
      output
    }).pipe(
      Effect.andThen(datasync(fds.out, output)),
      Effect.ensuring(Effect.sync(() => {
        fs.closeSync(fds.input)
        fs.closeSync(fds.out)
      })),
      Effect.ensuring(p.close?.() ?? Effect.void)
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
}) =>
  Effect.gen(function*() {
    const { source, identity, output, segment } = options
    yield* sourceUnchanged(source, identity)
    const fds = yield* openPair(source, output, options.staged)
    const p = agcmDecrypt({ ...options.key, workers: 1 } as Parameters<typeof agcmDecrypt>[0])
    const run = Effect.gen(function*() {
      const readHeader = (n: number) =>
        Effect.try({
          try: () => {
            const b = Buffer.alloc(Math.min(n, MAX_HEADER_BYTES, identity.size))
            return new Uint8Array(b.buffer, b.byteOffset, fs.readSync(fds.input, b, 0, b.length, 0))
          },
          catch: (e) => fromSystemError("read", source, e)
        })
      const init = (yield* p.init({ input: source, inputSize: identity.size, chunkBytes: 0, readHeader, resume: undefined })) ?? {}
      const direct = p.processDirect
      if (direct === undefined || init.direct === undefined || init.framing === undefined) return yield* Effect.die(new Error("internal error: agcm-decrypt has no direct mode"))
      const plan = ChunkSpec.planRegion(identity.size - init.framing.headerBytes, { headerBytes: 0, chunkBytes: init.framing.chunkBytes, shortFinal: true })
      const specs = [...plan.chunks(segment.firstChunk, segment.firstChunk + segment.chunks)]
      yield* direct(specs, {
        inputFd: fds.input,
        inputOffset: init.framing.headerBytes + specs[0].start,
        outputFd: fds.out,
        outputOffset: segment.firstChunk * init.direct.outputChunkBytes,
        input: source,
        output
      })
      yield* datasync(fds.out, output)
    })
    yield* run.pipe(
      Effect.ensuring(Effect.sync(() => {
        fs.closeSync(fds.input)
        fs.closeSync(fds.out)
      })),
      Effect.ensuring(p.close?.() ?? Effect.void)
    )
    yield* sourceUnchanged(source, identity)
  })
