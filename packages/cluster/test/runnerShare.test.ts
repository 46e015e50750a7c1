// What a runner's segments share (Segment.ts):
// - one cipher per file (`withCipher`): each cipher starts a worker pool and derives its keys,
//   and a 1 GiB job has 17 segments. Counted by the calls that make an agcm processor.
// - one CPU slot (`SegmentCpu`): a segment's reading and sealing run inside it, its fdatasync
//   outside, so the next segment seals while this one's bytes go to disk. Checked by where
//   each fdatasync starts.
import { Effect, Semaphore } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ChunkInput } from "@cage/core"
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import { Plan, Segment } from "../src/index.js"
import { stageDecrypt } from "./helpers.js"

const made = vi.hoisted(() => ({ encrypt: 0, decrypt: 0, cpuHeld: 0, syncsInsideCpu: 0, syncs: 0 }))
vi.mock("node:fs", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:fs")>()
  const fdatasync = (...args: Parameters<typeof original.fdatasync>) => {
    made.syncs++
    if (made.cpuHeld > 0) made.syncsInsideCpu++
    return original.fdatasync(...args)
  }
  return { ...original, fdatasync, default: { ...original, fdatasync } }
})
vi.mock("@cage/agcm", async (importOriginal) => {
  const original = await importOriginal<typeof import("@cage/agcm")>()
  return {
    ...original,
    agcmEncrypt: (...args: Parameters<typeof original.agcmEncrypt>) => {
      made.encrypt++
      return original.agcmEncrypt(...args)
    },
    agcmDecrypt: (...args: Parameters<typeof original.agcmDecrypt>) => {
      made.decrypt++
      return original.agcmDecrypt(...args)
    }
  }
})

const chunkSize = 16 * 1024
let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-cache-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("what a runner's segments share", () => {
  it("six segments of a file, one after another, make one encryptor and one decryptor; another key makes its own", async () => {
    const key = crypto.randomBytes(32)
    const source = path.join(dir, "in")
    const plain = crypto.randomBytes(6 * 4 * chunkSize + 99)
    fs.writeFileSync(source, plain)
    const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
    const output = path.join(dir, "out.agcm.partial")
    const seal = await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output, key: { key }, chunkSize }))
    const plan = Plan.planJob([{ path: source, size: identity.size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 4 * chunkSize)
    expect(plan.segments.length).toBe(7)
    const before = made.encrypt
    for (const segment of plan.segments) {
      await Effect.runPromise(Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged }))
    }
    expect(made.encrypt - before).toBe(1)

    // Another key: its own cipher (and the header refuses it).
    const other = await Effect.runPromiseExit(Segment.encryptSegment({ source, identity, output, key: { key: crypto.randomBytes(32) }, seal, segment: plan.segments[0], staged: seal.staged }))
    expect(other._tag).toBe("Failure")
    expect(made.encrypt - before).toBe(2)

    // Back, in segments of ciphertext chunks: one decryptor for all of them.
    const open = await stageDecrypt(dir, output, seal.headerBytes, chunkSize, 4)
    const beforeOpen = made.decrypt
    for (const segment of open.segments) {
      await Effect.runPromise(Segment.decryptSegment({ source: open.source, identity: open.identity, output: open.back, key: { key }, headerBytes: seal.headerBytes, segment, staged: open.staged }))
    }
    expect(made.decrypt - beforeOpen).toBe(1)
    expect(fs.readFileSync(open.back).equals(plain)).toBe(true)
  })

  it("three segments at once through a one-permit CPU slot: every fdatasync starts outside it", async () => {
    const key = crypto.randomBytes(32)
    const source = path.join(dir, "in")
    fs.writeFileSync(source, crypto.randomBytes(3 * 4 * chunkSize))
    const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
    const output = path.join(dir, "out.agcm.partial")
    const seal = await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output, key: { key }, chunkSize }))
    const plan = Plan.planJob([{ path: source, size: identity.size }], { headerBytes: seal.headerBytes, chunkBytes: chunkSize, overheadBytes: 16, shortFinal: true }, 4 * chunkSize)
    const slot = await Effect.runPromise(Semaphore.make(1))
    let most = 0
    const cpu: Segment.SegmentCpu = (effect) =>
      slot.withPermits(1)(Effect.acquireUseRelease(
        Effect.sync(() => {
          made.cpuHeld++
          most = Math.max(most, made.cpuHeld)
        }),
        () => effect,
        () => Effect.sync(() => void made.cpuHeld--)
      ))
    const syncsBefore = made.syncs
    const insideBefore = made.syncsInsideCpu
    await Effect.runPromise(Effect.forEach(plan.segments, (segment) =>
      Segment.encryptSegment({ source, identity, output, key: { key }, seal, segment, staged: seal.staged, cpu }), { concurrency: "unbounded" }))
    expect(made.syncs - syncsBefore).toBe(plan.segments.length)
    expect(made.syncsInsideCpu - insideBefore).toBe(0)
    expect(most).toBe(1)
  })
})
