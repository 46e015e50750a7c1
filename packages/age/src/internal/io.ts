/**
 * Byte plumbing shared by both backends: reading a ChunkInput in large buffers, feeding a
 * Node writable with backpressure, draining a readable into a ChunkOutput in batches.
 */
import type { ChunkInput as InputModule, ChunkOutput as OutputModule } from "@cage/core"
import { IoError } from "@cage/core"
type ChunkInput = InputModule.ChunkInput
type ChunkOutput = OutputModule.ChunkOutput
import { Cause, Effect, Exit } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import type * as net from "node:net"
import * as nodePath from "node:path"
import type { Writable } from "node:stream"

/** Runs an effect with no requirements as a promise that rejects with the typed failure itself. */
export const run = async <A, E>(effect: Effect.Effect<A, E>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

/** Reads `input` sequentially from byte 0 in buffers of `bufferBytes` (fresh buffers: consumers keep them). */
export async function* readInput(input: ChunkInput, bufferBytes: number, from = 0): AsyncGenerator<Buffer> {
  let position = from
  for (;;) {
    const buffer = Buffer.allocUnsafe(bufferBytes)
    const n: number = await run(input.read(position, buffer, 0, bufferBytes))
    if (n === 0) return
    position += n
    yield n === bufferBytes ? buffer : buffer.subarray(0, n)
    if (n < bufferBytes && input.randomAccess) return
  }
}

/** Prepends `first` to the rest of a generator. */
export async function* prepend(first: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (first.length > 0) yield first
  for (;;) {
    const r = await rest.next()
    if (r.done) return
    yield r.value
  }
}

/** Maps every buffer through `f` and appends `end()`; empty results are skipped. */
export async function* transform(source: AsyncIterable<Buffer>, f: (b: Buffer) => Buffer, end: () => Buffer): AsyncGenerator<Buffer> {
  for await (const b of source) {
    const out = f(b)
    if (out.length > 0) yield out
  }
  const last = end()
  if (last.length > 0) yield last
}

/** Thrown inside a feed when the consumer (age) closed its end: not an error by itself. */
export class ConsumerGone extends Error {}

/**
 * Writes every buffer of `source` to `sink` with backpressure, then ends it. Resolves with
 * the bytes written; when the consumer goes away (EPIPE), stops and resolves early: age's
 * exit status says why. Errors of `source` (input I/O, armor) are rethrown.
 */
export const feed = async (source: AsyncIterable<Buffer>, sink: Writable, onBytes: (n: number) => void): Promise<number> => {
  let gone = false
  let total = 0
  const waiters = new Set<() => void>()
  const wakeAll = () => {
    for (const w of waiters) w()
    waiters.clear()
  }
  sink.on("error", () => {
    gone = true
    wakeAll()
  })
  sink.on("close", () => {
    gone = true
    wakeAll()
  })
  sink.on("drain", wakeAll)
  const it = source[Symbol.asyncIterator]()
  let next = it.next()
  next.catch(() => undefined)
  try {
    for (;;) {
      // Checked before waiting on the read ahead, which may never complete (an idle pipe).
      if (gone) break
      const r = await next
      if (r.done || gone) break
      total += r.value.length
      const ok = sink.write(r.value)
      onBytes(total)
      // Read the next buffer while the sink drains this one (the input and age's stdin then
      // move at the same time instead of in turns).
      next = it.next()
      // Its failure is rethrown by the await above on the next turn; until then it must not
      // count as an unhandled rejection (Node would end the process).
      next.catch(() => undefined)
      if (!ok && !gone) await new Promise<void>((r) => waiters.add(r))
    }
  } finally {
    if (gone) {
      // Stopped early (age went away): nobody awaits the read ahead, which may still fail,
      // and the source is closed once it settles (not awaited: on an idle pipe it may never).
      void it.return?.(undefined)?.catch(() => undefined)
    }
  }
  if (!gone) {
    await new Promise<void>((resolve) => {
      sink.end(() => resolve())
      sink.once("error", () => resolve())
      sink.once("close", () => resolve())
    })
  }
  return total
}

/**
 * Copies `source` into `output` in batches of at least `batchBytes` (one vectored write
 * each). Resolves with the bytes written; output failures (IoError) are rethrown.
 */
export const drain = async (
  source: AsyncIterable<Uint8Array>,
  output: ChunkOutput,
  batchBytes: number,
  onBytes: (n: number) => void = () => undefined
): Promise<number> => {
  let pending: Array<Uint8Array> = []
  let pendingBytes = 0
  let total = 0
  const flush = async () => {
    if (pendingBytes === 0) return
    const batch = pending
    pending = []
    total += pendingBytes
    pendingBytes = 0
    await run(output.write(batch))
    onBytes(total)
  }
  try {
    for await (const b of source) {
      pending.push(b)
      pendingBytes += b.length
      if (pendingBytes >= batchBytes) await flush()
    }
  } catch (e) {
    // What the source released before failing (authenticated plaintext, for age) still goes
    // out, as with age's own stdout; a file sink is removed by the caller's abort anyway.
    await flush()
    throw e
  }
  await flush()
  return total
}

/** Reads a whole small file (keys, passphrases). */
export const readSmallFile = (path: string, limitBytes: number): Promise<Buffer> =>
  fs.promises.open(path, "r").then(async (h) => {
    try {
      const st = await h.stat()
      if (st.size > limitBytes) throw Object.assign(new Error(`larger than ${limitBytes} bytes`), { code: "EFBIG" })
      return await h.readFile()
    } finally {
      await h.close()
    }
  })

/**
 * Polls how far a process has read into the file at `realPath` (Linux `/proc/<pid>/fdinfo`).
 * Returns a stop function. Silent where /proc is unavailable.
 */
export const watchReadPosition = (pid: number, realPath: string, onPosition: (n: number) => void, intervalMs = 200): () => void => {
  let fdName: string | undefined
  const poll = () => {
    try {
      if (fdName === undefined) {
        for (const name of fs.readdirSync(`/proc/${pid}/fd`)) {
          try {
            if (fs.readlinkSync(`/proc/${pid}/fd/${name}`) === realPath) {
              fdName = name
              break
            }
          } catch {
            // fds come and go while we look.
          }
        }
      }
      if (fdName === undefined) return
      const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fdName}`, "latin1")
      const pos = /^pos:\s*(\d+)/m.exec(info)?.[1]
      if (pos !== undefined) onPosition(Number(pos))
    } catch {
      // The process exited between two polls.
    }
  }
  const timer = setInterval(poll, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * Polls the bytes a process has read in total (`rchar` of Linux `/proc/<pid>/io`): the
 * progress of a child that reads a pipe we handed it (its key files add a few hundred bytes).
 */
export const watchReadBytes = (pid: number | (() => number | undefined), onBytes: (n: number) => void, intervalMs = 200): () => void => {
  const timer = setInterval(() => {
    const p = typeof pid === "number" ? pid : pid()
    if (p === undefined) return
    try {
      const rchar = /^rchar:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${p}/io`, "latin1"))?.[1]
      if (rchar !== undefined) onBytes(Number(rchar))
    } catch {
      // Exited, or /proc unavailable.
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * Reads a descriptor sequentially (a pipe, a terminal, a file at its current offset) in
 * fresh buffers of `bufferBytes`, until end of file. A descriptor some other code set to
 * non-blocking answers EAGAIN while idle: we then wait a little and read again.
 */
export async function* readDescriptor(fd: number, bufferBytes: number, description: string, onBytes: (total: number) => void = () => undefined): AsyncGenerator<Buffer> {
  let total = 0
  for (;;) {
    const buffer = Buffer.allocUnsafe(bufferBytes)
    let n: number
    try {
      n = await readOnce(fd, buffer)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") {
        await new Promise((r) => setTimeout(r, 2))
        continue
      }
      throw new IoError({ reason: "Unknown", operation: "read", path: description, detail: (e as NodeJS.ErrnoException).code ?? String(e) })
    }
    if (n === 0) return
    total += n
    onBytes(total)
    yield n === bufferBytes ? buffer : buffer.subarray(0, n)
  }
}

const readOnce = (fd: number, buffer: Buffer) =>
  new Promise<number>((resolve, reject) => fs.read(fd, buffer, 0, buffer.length, null, (e, n) => (e ? reject(e) : resolve(n))))

/**
 * Reads from `fd` until `decide(head, atEof)` returns a verdict (not `undefined`), the input
 * ends, or `limitBytes` were read (then decided as at end of input, so memory stays
 * bounded). Returns the bytes consumed (they are gone from a pipe: the caller must hand
 * them on) and the verdict (`undefined` only if `decide` gives none at end of input).
 */
export const peekDescriptor = async <A>(
  fd: number,
  bytes: number,
  limitBytes: number,
  description: string,
  decide: (head: Buffer, atEof: boolean) => A | undefined
): Promise<{ readonly head: Buffer; readonly verdict: A | undefined }> => {
  const parts: Array<Buffer> = []
  let length = 0
  const it = readDescriptor(fd, bytes, description)
  for (;;) {
    const r = await it.next()
    if (r.done) {
      const head = Buffer.concat(parts)
      return { head, verdict: decide(head, true) }
    }
    parts.push(r.value)
    length += r.value.length
    const head = Buffer.concat(parts, length)
    const verdict = decide(head, length >= limitBytes)
    if (verdict !== undefined || length >= limitBytes) {
      await it.return(undefined)
      return { head, verdict }
    }
  }
}

let catPath: string | null | undefined
/** coreutils `cat` on PATH, or `null` (looked up once). */
export const findCat = (): string | null => {
  if (catPath !== undefined) return catPath
  catPath = null
  for (const d of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    // Only absolute entries: spawn must run exactly the file checked here.
    if (!nodePath.isAbsolute(d)) continue
    const p = nodePath.join(d, "cat")
    try {
      fs.accessSync(p, fs.constants.X_OK)
      if (!fs.statSync(p).isFile()) continue
      catPath = p
      break
    } catch {
      // Not here.
    }
  }
  return catPath
}

/** A relay started by {@link relay}: the copying process, if any, and its completion. */
export interface Relay {
  /** The pid of the `cat` copying the rest (for progress and for stopping it), once started. */
  readonly pid: () => number | undefined
  /**
   * Resolves when every byte went on, when the consumer went away (its exit status says
   * why), or after {@link stop}; rejects with `IoError` when reading the input failed.
   */
  readonly done: Promise<void>
  /**
   * Stops the copying: the consumer exited or the run was interrupted. Call it then: with an
   * idle input `cat` would otherwise wait in read() and only notice at its next write.
   * A read failure `cat` already exited with is still reported.
   */
  readonly stop: () => void
}

/**
 * Hands the consumer behind `sink` (age's stdin, or the FIFO age reads) `head` and then the
 * rest of descriptor `fd`, without the rest passing through this process: after writing
 * `head`, `cat` (coreutils) inherits `fd` as its stdin and the sink as its stdout, and our
 * copy of the sink is closed, so the consumer sees end of file when `cat` exits.
 *
 * Why: a Node pump between two pipes ran at 0.66 of `age` reading the same pipe (1 GiB
 * decrypt, bench/age.mjs), `cat`'s read/write loop at about 0.9. Without `cat` on PATH the
 * bytes are pumped here instead. Read errors of `fd` reject `done` with an `IoError`.
 */
export const relay = (head: Buffer, fd: number, sink: net.Socket, description: string, onProgress: (bytes: number) => void = () => undefined): Relay => {
  // Write failures (EPIPE once the consumer is gone) are seen through the write callback
  // or by feed; without a listener the socket's 'error' event would end the process.
  sink.on("error", () => undefined)
  const cat = findCat()
  if (cat === null) {
    const source = (async function*() {
      if (head.length > 0) yield head
      yield* readDescriptor(fd, 1 << 20, description, (n) => onProgress(head.length + n))
    })()
    return { pid: () => undefined, done: feed(source, sink, () => undefined).then(() => undefined), stop: () => sink.destroy() }
  }
  let child: ReturnType<typeof spawn> | undefined
  let stopped = false
  let killed = false
  const done = (async () => {
    const gone = await new Promise<boolean>((resolve) => {
      if (head.length === 0) return resolve(false)
      sink.write(head, (e) => resolve(e != null))
    })
    if (gone || stopped) {
      sink.destroy()
      return
    }
    // libuv gives the child blocking stdio (it clears O_NONBLOCK), which cat needs. The C
    // locale keeps its messages (matched below) in English.
    child = spawn(cat, [], { stdio: [fd, sink, "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" } })
    sink.destroy()
    let stderr = ""
    child.stderr!.setEncoding("utf8")
    child.stderr!.on("data", (d: string) => {
      if (stderr.length < 4096) stderr += d
    })
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child!.on("error", reject)
      child!.on("close", (code, signal) => resolve({ code, signal }))
    })
    // SIGPIPE / EPIPE: the consumer stopped reading (it failed, or was stopped): not ours to
    // report; nor is the kill of stop().
    if (code === 0 || killed || signal === "SIGPIPE" || /broken pipe/i.test(stderr)) return
    throw new IoError({ reason: "Unknown", operation: "read", path: description, detail: stderr.trim().replace(/^cat: /, "") || `cat exited with ${signal ?? code}` })
  })()
  return {
    pid: () => child?.pid,
    done,
    stop: () => {
      stopped = true
      if (child && child.exitCode === null && child.signalCode === null) {
        killed = true
        child.kill("SIGKILL")
      }
    }
  }
}
