import { PassThrough, Writable } from "node:stream"
import { describe, expect, it } from "vitest"
import { feed } from "../src/internal/io.js"

/** A sink that accepts one buffer at a time and releases it when told to. */
const slowSink = () => {
  const pending: Array<() => void> = []
  const sink = new Writable({ highWaterMark: 1, write: (_b, _e, done) => pending.push(done) })
  return { sink, release: () => pending.shift()?.() }
}

describe("feed", () => {
  it("reads the next buffer while the sink drains the previous one, and keeps the order", async () => {
    const reads: Array<number> = []
    let released = 0
    async function* source() {
      for (let i = 0; i < 4; i++) {
        reads.push(i)
        yield Buffer.from([i])
      }
    }
    const { sink, release } = slowSink()
    const got: Array<number> = []
    sink.on("pipe", () => undefined)
    const origWrite = sink.write.bind(sink)
    sink.write = ((b: Buffer, ...rest: Array<never>) => {
      got.push(b[0])
      return origWrite(b, ...rest)
    }) as typeof sink.write
    const done = feed(source(), sink, () => undefined)
    await new Promise((r) => setTimeout(r, 20))
    // Buffer 0 is in the sink and not drained; buffer 1 was read ahead, not written yet.
    expect(got).toEqual([0])
    expect(reads).toEqual([0, 1])
    for (; released < 4; released++) {
      release()
      await new Promise((r) => setTimeout(r, 5))
    }
    release()
    expect(await done).toBe(4)
    expect(got).toEqual([0, 1, 2, 3])
  })

  it("a source that fails while the sink drains fails the feed (no unhandled rejection, no hang)", async () => {
    async function* source() {
      yield Buffer.from([1])
      await new Promise((r) => setTimeout(r, 5))
      throw new Error("input failed")
    }
    const { sink, release } = slowSink()
    const done = feed(source(), sink, () => undefined)
    await new Promise((r) => setTimeout(r, 30)) // the read ahead has failed by now, unawaited
    release()
    await expect(done).rejects.toThrow("input failed")
  })

  it("stops when the consumer goes away, without waiting for a read that never completes", async () => {
    let returned = false
    const never = new PassThrough()
    async function* source() {
      try {
        yield Buffer.from([1])
        // An idle pipe: this read never completes.
        for await (const b of never) yield b as Buffer
      } finally {
        returned = true
      }
    }
    const { sink } = slowSink()
    const done = feed(source(), sink, () => undefined)
    await new Promise((r) => setTimeout(r, 10))
    sink.destroy()
    expect(await done).toBe(1)
    never.end()
    await new Promise((r) => setTimeout(r, 10))
    expect(returned).toBe(true)
  })
})
