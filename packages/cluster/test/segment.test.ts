// One segment of a distributed encryption (issue 16): segments run in any order, on fresh
// processors (as on different runners), one of them twice, give exactly the bytes of a
// single-machine encryption with the same key and salt; a changed source or another key
// is refused.
import { agcmEncrypt } from "@cage/agcm"
import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect, Exit } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Plan, Segment } from "../src/index.js"
import { stageDecrypt } from "./helpers.js"

const key = crypto.randomBytes(32)
const chunkSize = 16 * 1024
let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

/** A single-machine encryption through the engine: the output's bytes and agcm-encrypt's snapshot (salt, commitment). */
const singleMachine = async (source: string, output: string) => {
  const p = agcmEncrypt({ key, chunkSize, workers: 1 })
  await Effect.runPromise(Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(source)
    yield* runPipeline({ input, output: ChunkOutput.toFile(output), pipeline: [p] }).pipe(Effect.ensuring(input.close()))
  }))
  return { bytes: fs.readFileSync(output), snapshot: p.snapshot!() }
}

const shuffled = <A>(xs: ReadonlyArray<A>, seed: number) => {
  const a = [...xs]
  let x = seed
  for (let i = a.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0
    const j = x % (i + 1)
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

describe("encryptSegment", () => {
  it("workers: 1 seals on the calling thread alone (no worker thread started), 2 on the cipher's pool too; the same bytes", async () => {
    const started: Array<number> = []
    let threads = 0
    const onWorker = () => threads++
    process.on("worker", onWorker)
    try {
      for (const workers of [1, 2]) {
        // A source of its own each time: the runner keeps a cipher per source, whatever its workers.
        const size = 16 * 1024 * 1024 + 5
        const source = path.join(dir, `in-${workers}`)
        fs.writeFileSync(source, crypto.randomBytes(size))
        const ref = await singleMachine(source, path.join(dir, `ref-${workers}.agcm`))
        const output = path.join(dir, `out-${workers}.agcm.partial`)
        const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
        const seal = await Effect.runPromise(Segment.startOutput({ source, size, output, key: { key }, chunkSize, resume: ref.snapshot }))
        const before = threads
        for (const segment of Plan.planJob([{ path: source, size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 8 * 1024 * 1024).segments) {
          await Effect.runPromise(Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged, workers }))
        }
        started.push(threads - before)
        expect(fs.readFileSync(output).equals(ref.bytes)).toBe(true)
      }
    } finally {
      process.off("worker", onWorker)
    }
    expect(started[0]).toBe(0)
    expect(started[1]).toBeGreaterThan(0)
  })

  for (const size of [0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 4 * chunkSize, 4 * chunkSize + 1, 13 * chunkSize + 777]) {
    it(`${size} bytes: segments in any order, one run twice, equal a single-machine encryption with the same salt`, async () => {
      const source = path.join(dir, "in")
      fs.writeFileSync(source, crypto.randomBytes(size))
      const ref = await singleMachine(source, path.join(dir, "ref.agcm"))
      const output = path.join(dir, "out.agcm.partial")
      const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
      const seal = await Effect.runPromise(Segment.startOutput({ source, size, output, key: { key }, chunkSize, resume: ref.snapshot }))
      const plan = Plan.planJob([{ path: source, size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 4 * chunkSize)
      expect(plan.outputBytes).toBe(ref.bytes.length)
      const order = shuffled(plan.segments, size + 1)
      for (const segment of [...order, order[0]]) {
        await Effect.runPromise(Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged }))
      }
      expect(fs.readFileSync(output).equals(ref.bytes)).toBe(true)
      expect(fs.statSync(output).mode & 0o777).toBe(0o600)
    })
  }

  it("refuses a source that changed since the plan, another key, an existing output and an output with another header; ignores the device number", async () => {
    const source = path.join(dir, "in")
    fs.writeFileSync(source, crypto.randomBytes(5 * chunkSize))
    const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
    const output = path.join(dir, "out.partial")
    const seal = await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output, key: { key }, chunkSize }))
    const [segment] = Plan.planJob([{ path: source, size: identity.size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, chunkSize).segments
    const failure = async (e: Effect.Effect<unknown, unknown>) => {
      const exit = await Effect.runPromiseExit(e)
      if (Exit.isSuccess(exit)) throw new Error("expected a failure")
      return (exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; message: string } }).error
    }
    expect(await failure(Segment.encryptSegment({ source, identity, output, key: { key: crypto.randomBytes(32) }, seal, segment, staged: seal.staged }))).toMatchObject({ _tag: "HeaderAuthFailed" })
    expect(await failure(Segment.startOutput({ source, size: identity.size, output, key: { key }, chunkSize }))).toMatchObject({ _tag: "IoError" })
    // Another job's output under this name (same key, another salt): its header is not this job's.
    const other = path.join(dir, "other.partial")
    const otherSeal = await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output: other, key: { key }, chunkSize }))
    const notStaged = await failure(Segment.encryptSegment({ source, identity, output: other, key: { key }, seal, segment, staged: seal.staged }))
    expect(notStaged).toMatchObject({ _tag: "InputChanged" })
    expect(notStaged.message).toContain("it is not the file this job staged")
    const wrong = await failure(Segment.encryptSegment({ source, identity, output: other, key: { key }, seal, segment, staged: otherSeal.staged }))
    expect(wrong).toMatchObject({ _tag: "InputChanged" })
    expect(wrong.message).toContain("its header is not the one this job wrote")
    // A file removed and created again under the job's name (as a newer job would): refused.
    fs.rmSync(other)
    await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output: other, key: { key }, chunkSize, resume: seal.snapshot }))
    expect((await failure(Segment.encryptSegment({ source, identity, output: other, key: { key }, seal, segment, staged: otherSeal.staged }))).message).toContain("it is not the file this job staged")
    // Gone before the segment starts (a cancel removed it): said so, naming it; a missing
    // source is named itself.
    fs.rmSync(other)
    const gone = await failure(Segment.encryptSegment({ source, identity, output: other, key: { key }, seal, segment, staged: otherSeal.staged }))
    expect(gone).toMatchObject({ _tag: "InputChanged", path: other })
    expect(Segment.failureText(gone, other)).toBe(`${other}: it is gone (its job was cancelled or failed, or it was removed): this segment writes nothing`)
    // About the job's own output: the segment stopped (its job ended), not a failure of its own.
    expect(Segment.outputGone(gone, other)).toBe(true)
    expect(Segment.outputGone(gone, output)).toBe(false)
    const noSource = await failure(Segment.encryptSegment({ source: path.join(dir, "none"), identity, output, key: { key }, seal, segment, staged: seal.staged }))
    expect(noSource).toMatchObject({ _tag: "IoError", path: path.join(dir, "none") })
    expect(Segment.outputGone(noSource, output)).toBe(false)
    // The device number is not part of the check (each machine numbers a shared mount its own way).
    await Effect.runPromise(Segment.encryptSegment({ source, identity: { ...identity, dev: "12345" }, output, key: { key }, seal, segment, staged: seal.staged }))
    fs.appendFileSync(source, "more")
    expect(await failure(Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged }))).toMatchObject({ _tag: "InputChanged" })
  })
})

// A runner cuts each segment into pieces of about 1 MiB (64 chunks of 16 KiB here) run on all
// its cores, and its segments of one file share one cipher: segments larger than a piece, at
// the piece boundaries, run at once, give the single-machine bytes both ways.
describe("segments of several pieces, all at once", () => {
  const piece = 64 * chunkSize
  for (const size of [piece - 1, piece, piece + 1, 2 * piece, 3 * piece + chunkSize + 5]) {
    it(`${size} bytes, segments of 130 chunks: encrypt and decrypt equal a single-machine run`, async () => {
      const source = path.join(dir, "in")
      const plain = crypto.randomBytes(size)
      fs.writeFileSync(source, plain)
      const ref = await singleMachine(source, path.join(dir, "ref.agcm"))
      const output = path.join(dir, "out.agcm.partial")
      const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
      const seal = await Effect.runPromise(Segment.startOutput({ source, size, output, key: { key }, chunkSize, resume: ref.snapshot }))
      const plan = Plan.planJob([{ path: source, size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 130 * chunkSize)
      await Effect.runPromise(Effect.forEach(plan.segments, (segment) =>
        Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged }), { concurrency: "unbounded" }))
      expect(fs.readFileSync(output).equals(ref.bytes)).toBe(true)

      // Back: the ciphertext's chunk region in segments of 130 ciphertext chunks.
      const open = await stageDecrypt(dir, output, seal.headerBytes, chunkSize, 130)
      await Effect.runPromise(Effect.forEach(open.segments, (segment) =>
        Segment.decryptSegment({ source: open.source, identity: open.identity, output: open.back, key: { key }, headerBytes: seal.headerBytes, segment, staged: open.staged }), { concurrency: "unbounded" }))
      expect(fs.readFileSync(open.back).equals(plain)).toBe(true)
    })
  }
})

// `cancel` (or the job's failure) removes the job's OUT.partial; effect does not interrupt an
// activity already running, so a running segment stops itself once its staged file has no
// name left, instead of sealing (or writing plaintext) to its end into a file nobody reaches.
describe("a segment whose staged output is removed stops", () => {
  const failureOf = async (e: Effect.Effect<unknown, unknown>) => {
    const exit = await Effect.runPromiseExit(e)
    if (Exit.isSuccess(exit)) throw new Error("expected a failure")
    return (exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; message: string; path: string } }).error
  }
  /**
   * A segment's CPU slot that is free only after a while, and meanwhile `output` is removed
   * (as `cancel` does while segments are running or waiting). Node fires timers in the order
   * they expire, so the segment's next check (every STAGED_CHECK_MS) comes before the slot
   * is free, whatever the machine's load.
   */
  let started = 0
  const removing = (output: string): Segment.SegmentCpu => (work) =>
    Effect.sleep(Segment.STAGED_CHECK_MS / 2).pipe(
      Effect.andThen(Effect.sync(() => fs.unlinkSync(output))),
      Effect.andThen(Effect.sleep(10 * Segment.STAGED_CHECK_MS)),
      Effect.andThen(Effect.sync(() => started++)),
      Effect.andThen(work)
    )

  it("encrypt and decrypt: OUT.partial removed while the segment waits for its slot, it fails with InputChanged naming it and never seals", async () => {
    const size = 9 * chunkSize + 5
    const source = path.join(dir, "in")
    fs.writeFileSync(source, crypto.randomBytes(size))
    const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
    const segmentOf = (headerBytes: number) =>
      Plan.planJob([{ path: source, size }], { headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 16 * chunkSize).segments[0]

    const output = path.join(dir, "out.agcm.partial")
    const seal = await Effect.runPromise(Segment.startOutput({ source, size, output, key: { key }, chunkSize }))
    const sealed = await failureOf(Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment: segmentOf(seal.headerBytes), staged: seal.staged, cpu: removing(output) }))
    expect(sealed).toMatchObject({ _tag: "InputChanged", path: output })
    // Its text names the output, not a source "changed while it was being read".
    expect(Segment.failureText(sealed, output)).toBe(`${output}: it was removed while this segment ran (its job was cancelled or failed): this segment stopped`)
    expect(Segment.failureText(sealed, path.join(dir, "other.agcm.partial"))).toBe(sealed.message)

    // Decrypt: a whole ciphertext first, then its segment with the plaintext's OUT.partial removed.
    const again = path.join(dir, "again.agcm.partial")
    const seal2 = await Effect.runPromise(Segment.startOutput({ source, size, output: again, key: { key }, chunkSize }))
    await Effect.runPromise(Segment.encryptSegment({ source, identity, output: again, key: { key }, seal: seal2, segment: segmentOf(seal2.headerBytes), staged: seal2.staged }))
    const open = await stageDecrypt(dir, again, seal2.headerBytes, chunkSize, 16)
    const opened = await failureOf(Segment.decryptSegment({ source: open.source, identity: open.identity, output: open.back, key: { key }, headerBytes: seal2.headerBytes, segment: open.segments[0], staged: open.staged, cpu: removing(open.back) }))
    expect(opened).toMatchObject({ _tag: "InputChanged", path: open.back })
    expect(started).toBe(0)
  })

  it("the check goes on while the work runs: quiet while the file has a name, fails once it has none", async () => {
    const file = path.join(dir, "staged.partial")
    const fd = fs.openSync(file, "wx", 0o600)
    try {
      let ended = false
      const watched = Effect.runPromiseExit(Segment.whileStaged(fd, file)).finally(() => (ended = true))
      // Several periods with the file in place: still running.
      await new Promise((r) => setTimeout(r, 3 * Segment.STAGED_CHECK_MS))
      expect(ended).toBe(false)
      fs.unlinkSync(file)
      const exit = await watched
      if (Exit.isSuccess(exit)) throw new Error("expected a failure")
      expect((exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string } }).error).toMatchObject({ _tag: "InputChanged", path: file })
    } finally {
      fs.closeSync(fd)
    }
  })
})
