import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { HashPool, hashFileRangesHere, sha256 } from "../src/internal/hashPool.js"
import { tempDir } from "./helpers.js"

const ref = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

describe("hash pool", () => {
  const pool = new HashPool(2)
  afterAll(() => pool.close())

  it("hashes buffers of every size in order, reusing shared memory across calls", async () => {
    const sizes = [0, 1, 63, 64, 65, 65536, 5 << 20, 0, 17]
    for (let round = 0; round < 3; round++) {
      const chunks = sizes.map((n) => randomBytes(n))
      const got = await pool.hashBuffers(chunks)
      expect(got.map((d) => d.toString("hex"))).toEqual(chunks.map(ref))
    }
    // Many small chunks split into several tasks across both workers.
    const many = Array.from({ length: 3000 }, (_, i) => randomBytes(i % 7 === 0 ? 0 : 4096))
    expect((await pool.hashBuffers(many)).map((d) => d.toString("hex"))).toEqual(many.map(ref))
  })

  it("hashes file ranges like the single-thread reference, including ranges past the end", async () => {
    const dir = tempDir()
    const file = nodePath.join(dir, "f")
    const bytes = randomBytes(3 * 65536 + 5)
    fs.writeFileSync(file, bytes)
    const ranges: Array<readonly [number, number]> = [[0, 0], [0, 10], [5, 65536], [65536, 65536], [3 * 65536, 5], [3 * 65536, 100], [bytes.length + 10, 16]]
    const want = ranges.map(([s, l]) => ref(bytes.subarray(s, Math.min(bytes.length, s + l))))
    expect((await pool.hashFileRanges(file, ranges)).map((d) => d.toString("hex"))).toEqual(want)
    expect(hashFileRangesHere(file, ranges).map((d) => d.toString("hex"))).toEqual(want)
    expect((await new HashPool(0).hashFileRanges(file, ranges)).map((d) => d.toString("hex"))).toEqual(want)
  })

  it("fails (never hangs) on a missing file and stays usable", async () => {
    await expect(pool.hashFileRanges("/nonexistent/cage", [[0, 1]])).rejects.toMatchObject({ code: "ENOENT" })
    expect((await pool.hashBuffers([Buffer.from("abc")]))[0].equals(sha256(Buffer.from("abc")))).toBe(true)
  })

  it("a worker that dies fails its tasks, is never picked again, and later tasks still finish", async () => {
    const p = new HashPool(2)
    try {
      const big = Array.from({ length: 64 }, () => randomBytes(1 << 20))
      const running = p.hashBuffers(big)
      // Kill one worker in the middle of the work (as a crash would).
      await new Promise((r) => setTimeout(r, 5))
      const workers = (p as unknown as { workers: Array<{ terminate: () => Promise<number> }> }).workers
      expect(workers.length).toBeGreaterThan(0)
      await workers[0].terminate()
      await expect(running).rejects.toThrow(/exited/)
      const chunks = Array.from({ length: 40 }, () => randomBytes(65536))
      const got = await Promise.race([p.hashBuffers(chunks), new Promise((_, reject) => setTimeout(() => reject(new Error("hung")), 10_000))])
      expect((got as Array<Buffer>).map((d) => d.toString("hex"))).toEqual(chunks.map(ref))
    } finally {
      await p.close()
    }
  })

  it("refuses use after close", async () => {
    const p = new HashPool(1)
    await p.close()
    await expect(p.hashBuffers([Buffer.from("x")])).rejects.toThrow(/after close/)
  })
})
