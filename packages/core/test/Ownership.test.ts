import { Effect, Exit } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { ChunkInput, ChunkOutput, type ChunkProcessor, Lock, RateLimit, runPipeline } from "../src/index.js"
import { pseudoRandom, xorReference, xorTransform } from "./helpers.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-own-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))
const f = (name: string) => path.join(dir, name)

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  if (!Exit.isFailure(exit)) throw new Error("expected failure")
  const e = Exit.findErrorOption(exit)
  if (e._tag !== "Some") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return e.value as { _tag: string; message: string; exitCode: number }
}

/** A pid that surely no longer runs: a child that has exited and been reaped. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!

describe("Lock: one owner, a dead owner never blocks", () => {
  it("a second claim fails at once with LockBusy naming the resource and the owner's pid; release frees it", async () => {
    const lock = f("out.cage-lock")
    const first = await Effect.runPromise(Lock.acquireOrRefuse(lock, "out"))
    const e = failureOf(await Effect.runPromiseExit(Lock.acquireOrRefuse(lock, "out")))
    expect(e._tag).toBe("LockBusy")
    expect(e.exitCode).toBe(6)
    expect(e.message).toBe(`out is being written by another cage process, pid ${process.pid} (since ${first.at})`)
    Lock.release(lock, first)
    expect(fs.existsSync(lock)).toBe(false)
    const again = await Effect.runPromise(Lock.acquireOrRefuse(lock, "out"))
    expect(again.token).not.toBe(first.token)
    Lock.release(lock, again)
  })

  it("a lock whose owner is gone is broken and taken at once", async () => {
    const lock = f("out.cage-lock")
    const pid = deadPid()
    fs.writeFileSync(lock, JSON.stringify({ pid, host: os.hostname(), startTicks: null, token: "t", at: "then" }))
    const h = await Effect.runPromise(Lock.acquireOrRefuse(lock, "out"))
    expect(Lock.readLock(lock)?.holder?.token).toBe(h.token)
  })

  it("a live pid with another start time is a reused pid: the lock is stale", async () => {
    const lock = f("out.cage-lock")
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), startTicks: "1", token: "t", at: "then" }))
    expect(Lock.processStartTicks(process.pid)).not.toBe("1")
    await Effect.runPromise(Lock.acquireOrRefuse(lock, "out"))
  })

  it("a lock held by another host is never broken; the message says how to clear it", async () => {
    const lock = f("out.cage-lock")
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, host: "elsewhere.example", startTicks: null, token: "t", at: "then" }))
    const e = failureOf(await Effect.runPromiseExit(Lock.acquireOrRefuse(lock, "out")))
    expect(e.message).toBe(`out is being written by another cage process, pid 1 on host elsewhere.example; if that process is gone, remove ${lock} (since then)`)
  })

  it("an unreadable lock file counts as busy until it is old", async () => {
    const lock = f("out.cage-lock")
    fs.writeFileSync(lock, "")
    expect(failureOf(await Effect.runPromiseExit(Lock.acquireOrRefuse(lock, "out")))._tag).toBe("LockBusy")
    const old = new Date(Date.now() - 60_000)
    fs.utimesSync(lock, old, old)
    await Effect.runPromise(Lock.acquireOrRefuse(lock, "out"))
  })

  it("another process's lock on the same output refuses a run before it reads its input", async () => {
    const out = f("out")
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"])
    try {
      await new Promise((r) => child.once("spawn", r))
      fs.writeFileSync(ChunkOutput.lockPath(out), JSON.stringify({ pid: child.pid, host: os.hostname(), startTicks: Lock.processStartTicks(child.pid!), token: "t", at: "now" }))
      let reads = 0
      const input = { ...ChunkInput.fromBytes(pseudoRandom(1000, 1)), read: () => Effect.sync(() => { reads++; return 0 }) }
      const e = failureOf(await Effect.runPromiseExit(runPipeline({ input, output: ChunkOutput.toFile(out), pipeline: [xorTransform()], chunkBytes: 100, checkpoint: { path: f("ckpt"), mode: "resume" } })))
      expect(e._tag).toBe("LockBusy")
      expect(e.message).toContain(`pid ${child.pid}`)
      expect(reads).toBe(0)
      expect(fs.readdirSync(dir).sort()).toEqual(["out.cage-lock"])
    } finally {
      child.kill("SIGKILL")
    }
  })

  it("the engine holds the lock for the whole run and removes it on success and on failure", async () => {
    const src = f("in")
    const data = pseudoRandom(10_000, 2)
    fs.writeFileSync(src, data)
    const seen: Array<boolean> = []
    const spy: ChunkProcessor = {
      ...xorTransform(),
      process: (c, d) => Effect.flatMap(Effect.sync(() => seen.push(fs.existsSync(ChunkOutput.lockPath(f("out"))))), () => xorTransform().process(c, d))
    }
    await Effect.runPromise(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(f("out")), pipeline: [spy], chunkBytes: 1000 }).pipe(Effect.ensuring(input.close()))
    }))
    expect(seen.length).toBe(10)
    expect(seen.every(Boolean)).toBe(true)
    expect(fs.readFileSync(f("out"))).toEqual(xorReference(data, 1000))
    expect(fs.readdirSync(dir).sort()).toEqual(["in", "out"])
    const exit = await Effect.runPromiseExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({ input, output: ChunkOutput.toFile(f("out2")), pipeline: [xorTransform(0x5a, { failAt: 3 })], chunkBytes: 1000 }).pipe(Effect.ensuring(input.close()))
    }))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(fs.readdirSync(dir).sort()).toEqual(["in", "out"])
  })
})

describe("an input that changes under a run is never published", () => {
  /** A transform that runs `hook` when it reaches chunk `at`. */
  const changeAt = (at: number, hook: () => void): ChunkProcessor => ({
    ...xorTransform(),
    capabilities: { kind: "transform", ordered: true },
    process: (c, d) => Effect.flatMap(Effect.sync(() => c.index === at && hook()), () => xorTransform().process(c, d))
  })
  const runOn = (src: string, p: ChunkProcessor, checkpoint = true) =>
    Effect.runPromiseExit(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(src)
      return yield* runPipeline({
        input, output: ChunkOutput.toFile(f("out")), pipeline: [p], chunkBytes: 1000, segmentBytes: 1000, inFlight: 1,
        checkpoint: checkpoint ? { path: f("ckpt"), mode: "resume", intervalMs: 0 } : undefined
      }).pipe(Effect.ensuring(input.close()))
    }))

  it.for([
    { name: "rewritten in place (same size)", change: (src: string) => fs.writeFileSync(src, pseudoRandom(20_000, 9)) },
    { name: "one byte changed at the start", change: (src: string) => { const fd = fs.openSync(src, "r+"); fs.writeSync(fd, Uint8Array.of(1), 0, 1, 0); fs.closeSync(fd) } },
    { name: "truncated to a chunk boundary", change: (src: string) => fs.truncateSync(src, 15_000) },
    { name: "grown", change: (src: string) => fs.appendFileSync(src, "more") }
  ])("$name: InputChanged (exit 4), no output, no partial, no checkpoint; a rerun succeeds", async ({ change }) => {
    const src = f("in")
    fs.writeFileSync(src, pseudoRandom(20_000, 3))
    // Let the mtime tick apart from the file's creation on coarse-clock filesystems.
    const past = new Date(Date.now() - 10_000)
    fs.utimesSync(src, past, past)
    const e = failureOf(await runOn(src, changeAt(12, () => change(src))))
    expect(e._tag).toBe("InputChanged")
    expect(e.exitCode).toBe(4)
    expect(e.message).toMatch(new RegExp(`^${src} changed while it was being read \\(`))
    expect(fs.readdirSync(dir).sort()).toEqual(["in"])
    const now = fs.readFileSync(src)
    const ok = await runOn(src, xorTransform())
    expect(Exit.isSuccess(ok)).toBe(true)
    expect(fs.readFileSync(f("out"))).toEqual(xorReference(now, 1000))
  })

  it("without a checkpoint too (the check before publishing)", async () => {
    const src = f("in")
    fs.writeFileSync(src, pseudoRandom(5_000, 4))
    const past = new Date(Date.now() - 10_000)
    fs.utimesSync(src, past, past)
    const e = failureOf(await runOn(src, changeAt(4, () => fs.writeFileSync(src, pseudoRandom(5_000, 5))), false))
    expect(e._tag).toBe("InputChanged")
    expect(fs.readdirSync(dir).sort()).toEqual(["in"])
  })
})

describe("RateLimit", () => {
  /** Runs takes of `sizes` bytes arriving at `gaps` ms after the previous admission, on a fake clock. */
  const simulate = (rate: number, sizes: ReadonlyArray<number>, gaps: ReadonlyArray<number> = []) => {
    let clock = 0
    const admitted: Array<number> = []
    const limiter = RateLimit.make(rate, { burstMs: 50, now: () => clock, sleep: (ms) => Effect.sync(() => { clock += ms }) })
    sizes.forEach((n, k) => {
      clock += gaps[k] ?? 0
      Effect.runSync(limiter.take(n))
      admitted.push(clock)
    })
    return admitted
  }

  it("back-to-back requests are admitted n / rate apart, the second one burstMs early", () => {
    // 100 bytes at 1000 B/s = 100 ms each.
    expect(simulate(1000, [100, 100, 100, 100])).toEqual([0, 50, 150, 250])
  })

  it("a caller slower than the rate never waits, and banks no credit for a later burst", () => {
    expect(simulate(1000, [100, 100, 100], [0, 500, 500])).toEqual([0, 500, 1000])
    // After a long pause, two quick requests: the second waits as at the start.
    expect(simulate(1000, [100, 100, 100], [0, 1000, 0])).toEqual([0, 1000, 1050])
  })

  it("over any window the bytes admitted stay within rate × (window + burst) plus one request", () => {
    const sizes = Array.from({ length: 200 }, (_, k) => 1 + ((k * 7919) % 300))
    const at = simulate(10_000, sizes)
    for (let i = 0; i < at.length; i++) {
      let bytes = 0
      for (let j = i; j < at.length && at[j] < at[i] + 1000; j++) bytes += sizes[j]
      expect(bytes).toBeLessThanOrEqual(10_000 * (1000 + 50) / 1000 + 300)
    }
  })

  it("refuses a rate that is not a positive number", () => {
    expect(() => RateLimit.make(0)).toThrow(RangeError)
    expect(() => RateLimit.make(Number.NaN)).toThrow(RangeError)
  })
})
