/**
 * Keeping a cipher thread's memory flat: every chunk's `cipher.update()` allocates its output
 * outside V8's heap. Each thread (the calling thread, every segment worker) frees those
 * outputs as soon as they are copied into place where it can; otherwise it scavenges often
 * and raises glibc's malloc thresholds once. It follows its scavenges with a full GC when
 * its heap has grown. Measurements and rationale: README.md, "Memory".
 */
import * as v8 from "node:v8"
import * as vm from "node:vm"

const MiB = 1024 * 1024

/**
 * Raises glibc malloc's (process-wide) dynamic mmap and trim thresholds by allocating and
 * freeing one 30 MiB block, so pages freed by a scavenge are reused rather than returned to
 * the kernel and faulted in again (README.md, "Memory"). Repeats are harmless.
 */
export const raiseMallocThresholds = (minorGc: () => void): void => {
  let block: Buffer | null = Buffer.allocUnsafeSlow(30 * MiB)
  block[0] = 1
  block = null
  minorGc()
}

/** What {@link bufferReleaser} returns: call it on a consumed cipher output. */
export interface BufferReleaser {
  (consumed: Uint8Array): void
  /**
   * False once a detach failed, or a cipher output of 4 KiB or more could not be detached
   * (it shares its ArrayBuffer): callers then scavenge as often as without a releaser.
   */
  healthy: boolean
}

/**
 * A function that frees a cipher output's memory at once by detaching its ArrayBuffer
 * (`ArrayBuffer.prototype.transfer(0)`); `undefined` where that is not available. On Node 20
 * (V8 11.3) it sets `--harmony-rab-gsab-transfer`, which applies to contexts created later:
 * set it up before starting worker threads (README.md, "Memory").
 *
 * Callers pass only buffers they own and no longer read: `cipher.update()` outputs after
 * their copy. The checks here only skip what cannot be detached whole (a view that does not
 * span its ArrayBuffer, shared memory); they do not make other buffers safe to pass.
 */
export const bufferReleaser = (): BufferReleaser | undefined => {
  type Transfer = (this: ArrayBuffer, length: number) => ArrayBuffer
  let transfer = (ArrayBuffer.prototype as unknown as { transfer?: Transfer }).transfer
  if (typeof transfer !== "function") {
    if (!/^11\.3\./.test(process.versions.v8)) return undefined
    try {
      v8.setFlagsFromString("--harmony-rab-gsab-transfer")
      // This context predates the flag: borrow the builtin from a fresh one (it works on any context's ArrayBuffers).
      transfer = vm.runInNewContext("ArrayBuffer.prototype.transfer") as Transfer | undefined
    } catch {
      return undefined
    }
    if (typeof transfer !== "function") return undefined
  }
  const detach = transfer
  const release = ((b: Uint8Array) => {
    if (!release.healthy) return
    const ab = b.buffer
    if (b.byteOffset !== 0 || ab.byteLength !== b.byteLength || Object.prototype.toString.call(ab) !== "[object ArrayBuffer]") {
      // Small outputs may legitimately come from a shared pool; large ones must not pile up.
      if (b.byteLength >= 4096) release.healthy = false
      return
    }
    try {
      detach.call(ab as ArrayBuffer, 0)
    } catch {
      // A non-detachable buffer: leave this and every later one to the GC.
      release.healthy = false
    }
  }) as BufferReleaser
  release.healthy = true
  return release
}

let threadReleaser: BufferReleaser | null | undefined
/** This thread's {@link bufferReleaser}, made on first use; `undefined` where not available. */
export const releaser = (): BufferReleaser | undefined => {
  if (threadReleaser === undefined) threadReleaser = bufferReleaser() ?? null
  return threadReleaser ?? undefined
}

let threadGc: ((o?: { type: string }) => void) | null | undefined
let threadMinorGc: (() => void) | null | undefined
/** V8's `gc` for this thread, enabled on first use (`--expose-gc` at run time); `undefined` where not available. */
const exposedGc = (): ((o?: { type: string }) => void) | undefined => {
  if (threadGc !== undefined) return threadGc ?? undefined
  try {
    const g = globalThis as { gc?: (o?: { type: string }) => void }
    if (typeof g.gc !== "function") v8.setFlagsFromString("--expose-gc")
    threadGc = typeof g.gc === "function" ? g.gc : vm.runInNewContext("gc") as (o?: { type: string }) => void
  } catch {
    threadGc = null
  }
  return threadGc ?? undefined
}

/**
 * V8's young-generation GC for this thread, enabled on first use (`--expose-gc` at run
 * time); `undefined` where not available. Where this thread has no {@link releaser} (its
 * outputs die only in scavenges), it also raises glibc's malloc thresholds once.
 */
export const minorGc = (): (() => void) | undefined => {
  if (threadMinorGc !== undefined) return threadMinorGc ?? undefined
  const gc = exposedGc()
  threadMinorGc = gc ? () => gc({ type: "minor" }) : null
  // With outputs detached one at a time, raised thresholds bought no speed and let glibc's
  // per-thread arenas keep what fragmentation left: 4 GiB peaked 8 MiB higher, 10 GiB 11.
  if (threadMinorGc && releaser() === undefined) raiseMallocThresholds(threadMinorGc)
  return threadMinorGc ?? undefined
}

/**
 * How much the heap may grow past what the last full GC left before the next scavenge is
 * followed by a full GC: a quarter of that size, at least 4 MiB (README.md, "Memory").
 */
export const fullGcDue = (used: number, floor: number): boolean => used > floor + Math.max(4 * MiB, floor / 4)

/**
 * Counts the bytes a thread runs through its ciphers and scavenges when due: every 16 MiB
 * while this thread's releaser detaches outputs (to collect the cipher objects), every
 * `fallbackBytes` when it cannot (README.md, "Memory").
 */
export class Scavenger {
  private since = 0
  /** Heap bytes in use after this thread's last full GC (or when it was first measured). */
  private floor: number | undefined
  constructor(private readonly fallbackBytes: number) {}

  count(bytes: number): void {
    this.since += bytes
    if (this.since < (releaser()?.healthy ? 16 * MiB : this.fallbackBytes)) return
    this.since = 0
    const minor = minorGc()
    if (!minor) return
    minor()
    // Forced scavenges promote whatever lives across two of them (a calling thread's
    // in-flight segments and the fibers that wait on them), and V8 leaves a small old
    // generation to grow for tens of MiB before it collects it: 10 GiB grew the calling
    // thread's heap from 10 to 30 MiB. A full GC of a heap this small takes a few ms.
    const used = v8.getHeapStatistics().used_heap_size
    this.floor ??= used
    if (!fullGcDue(used, this.floor)) return
    exposedGc()?.()
    this.floor = v8.getHeapStatistics().used_heap_size
  }
}
