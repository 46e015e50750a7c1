/**
 * bufferReleaser: cipher outputs are freed at once by detaching their ArrayBuffer, and
 * nothing else is ever detached (slices, pooled buffers, shared memory). Scavenger: a
 * thread's forced scavenges are followed by a full GC once its heap has grown.
 */
import * as crypto from "node:crypto"
import { Worker } from "node:worker_threads"
import { describe, expect, it } from "vitest"
import * as v8 from "node:v8"
import { bufferReleaser, fullGcDue, minorGc, Scavenger } from "../src/internal/memory.js"

describe("bufferReleaser", () => {
  const release = bufferReleaser()!

  it("is available on this Node (V8 11.3 behind a flag, built in from 11.4)", () => {
    expect(release).toBeTypeOf("function")
  })

  it("detaches a cipher output that owns its whole ArrayBuffer", () => {
    const c = crypto.createCipheriv("aes-256-gcm", crypto.randomBytes(32), crypto.randomBytes(12))
    const body = c.update(crypto.randomBytes(65536))
    c.final()
    expect(body.buffer.byteLength).toBe(65536)
    release(body)
    expect(body.buffer.byteLength).toBe(0)
    expect(body.length).toBe(0)
  })

  it("leaves slices, pooled buffers and shared memory alone", () => {
    const whole = Buffer.allocUnsafeSlow(4096).fill(7)
    const slice = whole.subarray(0, 100)
    release(slice)
    expect(whole.buffer.byteLength).toBe(4096)
    const pooled = Buffer.from("pooled bytes")
    release(pooled)
    expect(pooled.toString()).toBe("pooled bytes")
    const shared = new Uint8Array(new SharedArrayBuffer(64))
    release(shared)
    expect(shared.buffer.byteLength).toBe(64)
    // Small ones are skipped quietly: the releaser still counts as working.
    expect(release.healthy).toBe(true)
  })

  it("a large output it cannot detach marks it unhealthy (callers then scavenge often again)", () => {
    const r = bufferReleaser()!
    const big = Buffer.allocUnsafeSlow(1 << 20)
    r(big.subarray(0, 65536))
    expect(big.buffer.byteLength).toBe(1 << 20)
    expect(r.healthy).toBe(false)
    // And it detaches nothing any more.
    const whole = Buffer.allocUnsafeSlow(65536)
    r(whole)
    expect(whole.buffer.byteLength).toBe(65536)
  })

  it("worker threads started after it find ArrayBuffer transfer built in", async () => {
    const found = await new Promise((resolve, reject) => {
      const w = new Worker("require('node:worker_threads').parentPort.postMessage(typeof new ArrayBuffer(1).transfer)", { eval: true })
      w.once("message", resolve)
      w.once("error", reject)
    })
    expect(found).toBe("function")
  })
})

describe("Scavenger", () => {
  const MiB = 1024 * 1024
  const used = () => v8.getHeapStatistics().used_heap_size

  it("a full GC is due after 4 MiB of growth, or a quarter of a larger heap", () => {
    expect(fullGcDue(10 * MiB + 4 * MiB, 10 * MiB)).toBe(false)
    expect(fullGcDue(10 * MiB + 4 * MiB + 1, 10 * MiB)).toBe(true)
    expect(fullGcDue(400 * MiB + 100 * MiB, 400 * MiB)).toBe(false)
    expect(fullGcDue(400 * MiB + 100 * MiB + 1, 400 * MiB)).toBe(true)
  })

  it("follows a scavenge with a full GC once garbage promoted since has grown the heap", () => {
    const minor = minorGc()!
    const s = new Scavenger(MiB)
    // The first scavenge measures the heap it starts from.
    s.count(16 * MiB)
    // About 30 MiB of objects that outlive two scavenges (promoted, as in-flight segments
    // and their fibers are), then dropped: only a full GC frees them.
    let junk: Array<{ i: number }> | null = Array.from({ length: 1_000_000 }, (_, i) => ({ i }))
    minor()
    minor()
    const grown = used()
    junk = null
    minor()
    expect(used()).toBeGreaterThan(grown - 8 * MiB)
    s.count(16 * MiB)
    expect(used()).toBeLessThan(grown - 16 * MiB)
    expect(junk).toBeNull()
  })
})
