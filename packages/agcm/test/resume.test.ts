import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { agcmDecrypt, agcmEncrypt, type AgcmEncryptOptions } from "../src/index.js"
import { bytes, key32 } from "./helpers.js"
import { withFault } from "../src/internal/faults.js"

const key = key32(41)
const CS = 16 * 1024
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "agcm-resume-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const run = (src: string, out: string, ckpt: string, mode: "resume" | "fresh", opts: Partial<AgcmEncryptOptions> = {}) =>
  Effect.runPromiseExit(Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(src)
    return yield* runPipeline({
      input,
      output: ChunkOutput.toFile(out),
      pipeline: [agcmEncrypt({ key, chunkSize: CS, workers: 2, ...opts } as AgcmEncryptOptions)],
      chunkBytes: CS,
      segmentBytes: 64 * CS,
      inFlight: 2,
      checkpoint: { path: ckpt, mode, intervalMs: 0 }
    })
  }))

/** The same file encrypted in one go under the salt recorded in `sealed`'s header. */
const uninterrupted = async (plain: Uint8Array, sealed: Buffer) => {
  const snapshot = { format: "agcm-v2", chunkSize: CS, keyMode: "raw", salt: sealed.subarray(10, 34).toString("hex"), commitment: sealed.subarray(34, 66).toString("hex") }
  const p = agcmEncrypt({ key, chunkSize: CS, workers: 1 })
  return Effect.runPromise(Effect.gen(function*() {
    const init = yield* p.init({ input: "x", inputSize: plain.length, chunkBytes: CS, readHeader: () => Effect.die("unused"), resume: snapshot })
    const parts: Array<Uint8Array> = [init!.header!]
    const n = Math.floor(plain.length / CS) + 1
    for (let i = 0; i < n; i++) {
      const start = i * CS
      const end = Math.min(start + CS, plain.length)
      parts.push((yield* p.process({ index: i, start, end, length: end - start, final: i === n - 1 }, plain.subarray(start, end)))!)
    }
    return Buffer.concat(parts)
  }))
}

const setup = (name: string) => {
  const plain = bytes(10 * 1024 * 1024 + 999, name.length)
  const src = path.join(tmp, `${name}.bin`)
  fs.writeFileSync(src, plain)
  return { plain, src, out: path.join(tmp, `${name}.agcm`), ckpt: path.join(tmp, `${name}.ckpt.json`) }
}

/** Runs with a worker crash at `atChunk`, leaving a checkpoint and a .partial. */
const interrupted = async (f: ReturnType<typeof setup>, atChunk: number) => {
  const exit = await run(f.src, f.out, f.ckpt, "fresh", withFault({}, { kind: "exit", atChunk }))
  expect(Exit.isFailure(exit)).toBe(true)
  expect(fs.existsSync(f.out)).toBe(false)
  expect(fs.existsSync(`${f.out}.partial`)).toBe(true)
  expect(fs.existsSync(f.ckpt)).toBe(true)
  const checkpoint = fs.readFileSync(f.ckpt, "utf8")
  // The checkpoint holds the public salt and commitment, never the key.
  expect(checkpoint).not.toContain(Buffer.from(key).toString("hex"))
  return checkpoint
}

const refusal = (exit: Exit.Exit<unknown, unknown>) => {
  expect(Exit.isFailure(exit)).toBe(true)
  const reason = (exit as Exit.Failure<unknown, unknown>).cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; reason?: string; cause?: { _tag: string } } }
  return reason.error
}

describe("resume after a worker crash", () => {
  it.for([256, 384, 512])("crash at chunk %i, then resume twice over: byte-identical to an uninterrupted run", async (atChunk) => {
    const f = setup(`ok${atChunk}`)
    await interrupted(f, atChunk)
    // A second interruption of the resumed run, further on.
    const again = await run(f.src, f.out, f.ckpt, "resume", withFault({}, { kind: "throw", atChunk: atChunk + 64 }))
    expect(Exit.isFailure(again)).toBe(true)
    const done = await run(f.src, f.out, f.ckpt, "resume")
    expect(Exit.isSuccess(done)).toBe(true)
    if (Exit.isSuccess(done)) expect(done.value.resumedFrom).toBeGreaterThan(0)
    const sealed = fs.readFileSync(f.out)
    expect(sealed.equals(await uninterrupted(f.plain, sealed))).toBe(true)
    const back = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(sealed), output: back, pipeline: [agcmDecrypt({ key, workers: 2 })], chunkBytes: CS }))
    expect(Buffer.from(back.bytes()).equals(f.plain)).toBe(true)
    expect(fs.existsSync(f.ckpt)).toBe(false)
  })
})

describe("resume refuses whatever could make it reuse a nonce with other plaintext", () => {
  it("source rewritten in place with the same size (mtime/ctime change)", async () => {
    const f = setup("inplace")
    await interrupted(f, 128)
    const fd = fs.openSync(f.src, "r+")
    fs.writeSync(fd, Buffer.from("changed"), 0, 7, 5 * 1024 * 1024)
    fs.closeSync(fd)
    expect(refusal(await run(f.src, f.out, f.ckpt, "resume"))).toMatchObject({ _tag: "ResumeRefused", reason: "SourceChanged" })
  })

  it("source rewritten and its mtime put back (ctime still changes)", async () => {
    const f = setup("touchback")
    await interrupted(f, 128)
    const st = fs.statSync(f.src)
    const fd = fs.openSync(f.src, "r+")
    fs.writeSync(fd, Buffer.from("changed"), 0, 7, 5 * 1024 * 1024)
    fs.closeSync(fd)
    fs.utimesSync(f.src, st.atime, st.mtime)
    expect(refusal(await run(f.src, f.out, f.ckpt, "resume"))).toMatchObject({ _tag: "ResumeRefused", reason: "SourceChanged" })
  })

  it("source replaced by another file (inode)", async () => {
    const f = setup("replaced")
    await interrupted(f, 128)
    const other = `${f.src}.new`
    fs.copyFileSync(f.src, other)
    fs.renameSync(other, f.src)
    expect(refusal(await run(f.src, f.out, f.ckpt, "resume"))).toMatchObject({ _tag: "ResumeRefused", reason: "SourceChanged" })
  })

  it("source grown (size)", async () => {
    const f = setup("grown")
    await interrupted(f, 128)
    fs.appendFileSync(f.src, "x")
    expect(refusal(await run(f.src, f.out, f.ckpt, "resume"))).toMatchObject({ _tag: "ResumeRefused", reason: "SourceChanged" })
  })

  it("a different key", async () => {
    const f = setup("otherkey")
    await interrupted(f, 128)
    const e = refusal(await run(f.src, f.out, f.ckpt, "resume", { key: key32(42) }))
    expect(e._tag).toBe("ProcessorError")
    expect(e.cause?._tag).toBe("HeaderAuthFailed")
  })

  it("a different chunk size", async () => {
    const f = setup("othersize")
    await interrupted(f, 128)
    const e = refusal(await run(f.src, f.out, f.ckpt, "resume", { chunkSize: 2 * CS }))
    expect(["ResumeRefused", "ProcessorError"]).toContain(e._tag)
  })
})
