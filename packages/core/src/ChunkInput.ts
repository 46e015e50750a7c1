/**
 * Sources for the chunk engine: a regular file read with random access (`fromFile`), or a
 * sequential stream such as stdin (`fromStream`).
 *
 * Reads go into caller-owned buffers, so the engine can reuse a fixed pool and memory stays
 * bounded by chunk size times chunks in flight, never by file size.
 *
 * @module
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import type { Readable } from "node:stream"
import type { SourceIdentity } from "./ChunkProcessor.js"
import { fromSystemError, InputChanged, IoError } from "./Error.js"

/** A byte source. */
export interface ChunkInput {
  /** The path, or `"stdin"` / a stream label, for messages. */
  readonly description: string
  /** Size in bytes when known up front (regular files), else `undefined`. */
  readonly size: number | undefined
  /** Identity for checkpoints (regular files only). */
  readonly identity: SourceIdentity | undefined
  /** True when `read` accepts any position; false for streams (positions must be sequential). */
  readonly randomAccess: boolean
  /**
   * Reads up to `length` bytes at byte `position` into `buffer[offset..]`; resolves with the
   * count read, which is less than `length` only at end of input. Sequential sources fail
   * with `IoError` when `position` is not where the previous read ended.
   */
  readonly read: (position: number, buffer: Uint8Array, offset: number, length: number) => Effect.Effect<number, IoError>
  /**
   * The open descriptor of a regular file (for direct-mode processors that read it
   * positionally on worker threads), else `undefined`. Valid until `close`. A wrapper that
   * changes what `read` returns must drop it (`fd: undefined`): in direct mode the engine
   * never calls `read`.
   */
  readonly fd?: number | undefined
  /**
   * Checks that the source is still the version that was opened (regular files: `fstat` of
   * the open descriptor against `identity`: size, mtime and ctime in ns). The engine calls
   * it before each checkpoint and before publishing, so an output never mixes two versions
   * of its input. Fails with `InputChanged` naming what changed.
   */
  readonly verifyUnchanged?: (() => Effect.Effect<void, InputChanged | IoError>) | undefined
  readonly close: () => Effect.Effect<void>
}

/** Stats a path and returns its identity (size, mtime/ctime in ns, inode, device). */
export const statIdentity = (path: string): Effect.Effect<SourceIdentity, IoError> =>
  Effect.tryPromise({
    try: () => fs.promises.stat(path, { bigint: true }),
    catch: (e) => fromSystemError("stat", path, e)
  }).pipe(Effect.map((st) => identityOf(path, st)))

/**
 * What differs between two identities of one source (`size in bytes: was 8, now 3,
 * modification time`), or `undefined` when it is the same version: size, mtime, ctime,
 * inode and device.
 */
export const changeOf = (was: SourceIdentity, now: SourceIdentity): string | undefined => {
  const changes: Array<string> = []
  if (now.size !== was.size) changes.push(`size in bytes: was ${was.size}, now ${now.size}`)
  if (now.mtimeNs !== was.mtimeNs) changes.push("modification time")
  if (now.ctimeNs !== was.ctimeNs) changes.push("status change time")
  if (now.ino !== was.ino || now.dev !== was.dev) changes.push("it is another file (inode or device)")
  return changes.length === 0 ? undefined : changes.join(", ")
}

/** The identity recorded for `path` from its (bigint) stat. */
const identityOf = (path: string, st: fs.BigIntStats): SourceIdentity => ({
  path,
  size: Number(st.size),
  mtimeNs: st.mtimeNs.toString(),
  ctimeNs: st.ctimeNs.toString(),
  ino: st.ino.toString(),
  dev: st.dev.toString()
})

/**
 * Opens a regular file for random-access reads.
 *
 * @throws IoError NotFound / PermissionDenied / IsDirectory, naming the path.
 */
export const fromFile = (path: string): Effect.Effect<ChunkInput, IoError> =>
  Effect.gen(function*() {
    // A raw fd, not a FileHandle: a FileHandle left to GC closes itself with a warning.
    const fd = yield* Effect.callback<number, IoError>((resume) => {
      fs.open(path, "r", (e, f) => resume(e ? Effect.fail(fromSystemError("open", path, e)) : Effect.succeed(f)))
    })
    const closeFd = Effect.callback<void>((resume) => fs.close(fd, () => resume(Effect.void)))
    return yield* overFile(fd, path, closeFd).pipe(Effect.tapError(() => closeFd))
  })

/**
 * The whole regular file behind an open descriptor, for random-access reads from its start
 * (positional reads: the descriptor's offset is neither used nor moved), exactly as
 * {@link fromFile} reads it, direct mode included: stdin redirected from a file
 * (`cage encrypt - < dump.sql`). `close` leaves the descriptor open (the caller owns it).
 *
 * @throws IoError "Unknown" when the descriptor is not a regular file, naming `description`.
 */
export const fromOpenFile = (fd: number, description = "stdin"): Effect.Effect<ChunkInput, IoError> => overFile(fd, description, Effect.void)

/** A random-access source over `fd`, a regular file; `closeFd` runs once, on `close`. */
const overFile = (fd: number, path: string, closeFd: Effect.Effect<void>): Effect.Effect<ChunkInput, IoError> =>
  Effect.gen(function*() {
    // fstat the open fd: the identity must describe the bytes we read, even if the path is swapped.
    const st = yield* Effect.callback<fs.BigIntStats, IoError>((resume) => {
      fs.fstat(fd, { bigint: true }, (e, s) => resume(e ? Effect.fail(fromSystemError("stat", path, e)) : Effect.succeed(s)))
    })
    if (!st.isFile()) {
      return yield* Effect.fail(
        new IoError({ reason: st.isDirectory() ? "IsDirectory" : "Unknown", operation: "open", path, detail: "not a regular file" })
      )
    }
    const identity = identityOf(path, st)
    let closed = false
    const input: ChunkInput = {
      description: path,
      size: identity.size,
      identity,
      randomAccess: true,
      fd,
      // fs.read with a raw fd avoids FileHandle's per-call promise bookkeeping on the hot path.
      read: (position, buffer, offset, length) =>
        Effect.callback<number, IoError>((resume) => {
          fs.read(fd, buffer, offset, length, position, (err, n) => {
            if (err) resume(Effect.fail(fromSystemError("read", path, err)))
            else resume(Effect.succeed(n))
          })
        }).pipe(Effect.flatMap((n) => n < length && n > 0 && position + n < identity.size
          ? Effect.suspend(() => input.read(position + n, buffer, offset + n, length - n)).pipe(Effect.map((m) => n + m))
          : Effect.succeed(n))),
      verifyUnchanged: () =>
        Effect.callback<fs.BigIntStats, IoError>((resume) => {
          fs.fstat(fd, { bigint: true }, (e, s) => resume(e ? Effect.fail(fromSystemError("stat", path, e)) : Effect.succeed(s)))
        }).pipe(Effect.flatMap((now) => {
          const change = changeOf(identity, identityOf(path, now))
          return change === undefined ? Effect.void : Effect.fail(new InputChanged({ path, detail: change }))
        })),
      close: () => Effect.suspend(() => {
        if (closed) return Effect.void
        closed = true
        return closeFd
      })
    }
    return input
  })

/**
 * A sequential source of unknown size: `readInto` fills the buffer until `length` bytes or
 * the end (fewer only there); a read anywhere but where the previous one ended fails.
 */
const sequential = (
  description: string,
  readInto: (buffer: Uint8Array, offset: number, length: number) => Promise<number>,
  close: Effect.Effect<void>
): ChunkInput => {
  let position = 0
  return {
    description,
    size: undefined,
    identity: undefined,
    randomAccess: false,
    read: (pos, buffer, offset, length) =>
      pos !== position
        ? Effect.fail(new IoError({ reason: "Unknown", operation: "read", path: description, detail: `cannot seek a stream (to ${pos}, at ${position})` }))
        : Effect.tryPromise({
          try: () => readInto(buffer, offset, length),
          catch: (e) => fromSystemError("read", description, e)
        }).pipe(Effect.tap((n) => Effect.sync(() => { position += n }))),
    close: () => close
  }
}

/**
 * The one read in progress over a source that pushes its bytes (a stream's `data` events, a
 * socket's `onread`): the engine's buffer, where the read stands, and how it ends. The
 * source's `end` settles it with what it got, its `error` rejects it (and every later read
 * that gets nothing).
 */
class PushedRead {
  private target: { buffer: Uint8Array; at: number; end: number; got: number; resolve: (n: number) => void; reject: (e: Error) => void } | undefined
  private ended = false
  private failure: Error | undefined

  /** `onSettle`: the read ended full or at the end of input (a stream pauses there). */
  constructor(source: NodeJS.EventEmitter, private readonly onSettle: () => void) {
    source.on("end", () => {
      this.ended = true
      if (this.target) this.settle()
    })
    source.on("error", (e: Error) => {
      this.failure = e
      const t = this.target
      this.target = undefined
      t?.reject(e)
    })
  }

  /** Whether a read is in progress. */
  get waiting(): boolean {
    return this.target !== undefined
  }

  /** Bytes the read in progress still takes. */
  get room(): number {
    return this.target ? this.target.end - this.target.at : 0
  }

  /** Copies what fits of `bytes[from, to)` into the read in progress; returns how many bytes it took. */
  fill(bytes: Uint8Array, from: number, to: number): number {
    const t = this.target!
    const n = Math.min(to - from, t.end - t.at)
    t.buffer.set(from === 0 && n === bytes.length ? bytes : bytes.subarray(from, from + n), t.at)
    t.at += n
    t.got += n
    return n
  }

  settle(): void {
    const t = this.target!
    this.target = undefined
    this.onSettle()
    t.resolve(t.got)
  }

  /**
   * Reads up to `length` bytes into `buffer` at `offset`: `takeHeld` first fills it from bytes
   * the caller holds and says whether some are still held; unless that already ends the read
   * (full, bytes still held, or the input ended or failed: `ended` adds the source's own
   * view), `readMore` has the source push again.
   */
  read(buffer: Uint8Array, offset: number, length: number, takeHeld: () => boolean, readMore: () => void, ended = () => false): Promise<number> {
    return new Promise((resolve, reject) => {
      this.target = { buffer, at: offset, end: offset + length, got: 0, resolve, reject }
      const held = takeHeld()
      if (this.target.at === this.target.end || held || this.ended || this.failure || ended()) {
        const t = this.target
        this.target = undefined
        return this.failure && t.got === 0 ? reject(this.failure) : resolve(t.got)
      }
      readMore()
    })
  }
}

/**
 * Wraps a Node readable stream (a terminal's stdin, the pipe between two stages) as a sequential source.
 * Memory: at most one pending stream chunk beyond what the engine asked for. Each chunk is
 * copied into the engine's buffer in its `data` event and the stream paused while nobody
 * asks, so chunks do not queue in the stream to be concatenated later (as `stream.read()`
 * from a `readable` handler did). A stream allocates a buffer for every chunk: for a pipe,
 * {@link fromPipe} does not (README.md, "Memory").
 */
export const fromStream = (stream: Readable, description = "stdin"): ChunkInput => {
  let pending: Uint8Array | undefined
  const reads = new PushedRead(stream, () => stream.pause())
  /** Fills the read in progress from `chunk`; keeps what did not fit as `pending`. */
  const take = (chunk: Uint8Array) => {
    const n = reads.fill(chunk, 0, chunk.length)
    pending = n < chunk.length ? chunk.subarray(n) : undefined
  }
  stream.pause()
  stream.on("data", (chunk: Uint8Array) => {
    if (!reads.waiting) {
      // Not asked for (a read finished within the same tick): keep it for the next one.
      pending = pending ? Buffer.concat([pending, chunk]) : chunk
      stream.pause()
      return
    }
    take(chunk)
    if (pending || reads.room === 0) reads.settle()
  })
  const readInto = (buffer: Uint8Array, offset: number, length: number): Promise<number> =>
    reads.read(buffer, offset, length, () => {
      if (pending) take(pending)
      return pending !== undefined
    }, () => stream.resume(), () => stream.readableEnded)
  return sequential(description, readInto, Effect.sync(() => stream.destroy()))
}

/** Bytes libuv reads from a pipe at once (its read size for streams): {@link fromPipe}'s buffers. */
const PIPE_READ_BYTES = 64 * 1024

/**
 * A sequential source over a pipe or socket descriptor (stdin in `pg_dump | cage encrypt -`).
 * A Node socket reads it without blocking, as `process.stdin` would, but into one reused
 * 64 KiB buffer (the socket's `onread`), and each read is copied straight into the engine's
 * buffer: no allocation per read. A stream allocates a fresh 64 KiB buffer for every read
 * (16,384 per GiB), and those set off V8's external-memory GCs: about 50 full GCs per GiB
 * on a pipe read with {@link fromStream}. What a read brings beyond what the engine asked
 * for waits in a second 64 KiB buffer, and the socket stops reading until it is taken.
 * The socket owns the descriptor: `close` destroys it, which closes the descriptor. Throws
 * at once for a descriptor that is not a pipe or socket; fails reads with `IoError` naming
 * `description`.
 */
export const fromPipe = (fd: number, description = "stdin"): ChunkInput => {
  const scratch = Buffer.allocUnsafeSlow(PIPE_READ_BYTES)
  // Bytes read before anyone asked, or beyond the read in progress; empty whenever the socket reads.
  const carry = Buffer.allocUnsafeSlow(PIPE_READ_BYTES)
  let carryFrom = 0
  let carryTo = 0
  let paused = false
  // `onread` is a documented option of `new net.Socket()` that @types/node 20 lists only for `connect`.
  const socket = new net.Socket({
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: scratch,
      callback: (n: number, bytes: Uint8Array) => {
        const took = reads.waiting ? reads.fill(bytes, 0, n) : 0
        if (took < n) {
          carry.set(bytes.subarray(took, n), 0)
          carryFrom = 0
          carryTo = n - took
        }
        if (reads.waiting && reads.room > 0 && carryTo === carryFrom) return true
        if (reads.waiting) reads.settle()
        // Returning false stops the socket reading until `resume`.
        paused = true
        return false
      }
    }
  } as net.SocketConstructorOpts)
  const reads = new PushedRead(socket, () => undefined)
  const readInto = (buffer: Uint8Array, offset: number, length: number): Promise<number> =>
    reads.read(buffer, offset, length, () => {
      if (carryTo > carryFrom) carryFrom += reads.fill(carry, carryFrom, carryTo)
      if (carryTo > carryFrom) return true
      carryFrom = carryTo = 0
      return false
    }, () => {
      if (!paused) return
      paused = false
      socket.resume()
    })
  return sequential(description, readInto, Effect.sync(() => socket.destroy()))
}

/**
 * A sequential source over an open descriptor of a regular file, read at the descriptor's
 * own offset (stdin redirected from a file: `cage encrypt - < dump.sql`). Each `read` goes
 * straight into the engine's buffer, 1 MiB per call, where a stream would cut it into 64 KiB
 * pieces with a thread-pool round trip and an allocation each. Not for pipes or terminals:
 * a read blocked on one would hold up the process's exit, so those go through `fromStream`.
 * `close` leaves the descriptor open (the caller owns it).
 */
export const fromDescriptor = (fd: number, description = "stdin"): ChunkInput => {
  const readOnce = (buffer: Uint8Array, offset: number, length: number) =>
    new Promise<number>((resolve, reject) => {
      fs.read(fd, buffer, offset, length, null, (err, n) => (err ? reject(err) : resolve(n)))
    })
  const readInto = async (buffer: Uint8Array, offset: number, length: number): Promise<number> => {
    let got = 0
    while (got < length) {
      const n = await readOnce(buffer, offset + got, length - got)
      if (n === 0) break
      got += n
    }
    return got
  }
  return sequential(description, readInto, Effect.void)
}

/** A source over bytes in memory (tests, small inputs). */
export const fromBytes = (bytes: Uint8Array, description = "memory"): ChunkInput => ({
  description,
  size: bytes.length,
  identity: undefined,
  randomAccess: true,
  read: (position, buffer, offset, length) =>
    Effect.sync(() => {
      const n = Math.max(0, Math.min(length, bytes.length - position))
      buffer.set(bytes.subarray(position, position + n), offset)
      return n
    }),
  close: () => Effect.void
})
