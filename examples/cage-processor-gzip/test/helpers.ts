import { ChunkInput, ChunkOutput, type ChunkProcessor, runPipeline } from "@cage/core"
import { pseudoRandomBytes } from "@cage/testkit"
import { Effect, Exit } from "effect"
import { gzip } from "../src/index.js"

/** Runs `processor` alone over `bytes` in memory; returns the output. */
export const runOne = (processor: ChunkProcessor, bytes: Uint8Array, chunkBytes: number) =>
  Effect.runPromise(Effect.gen(function*() {
    const sink = ChunkOutput.toMemory()
    yield* runPipeline({ input: ChunkInput.fromBytes(bytes), output: sink, pipeline: [processor], chunkBytes, segmentBytes: chunkBytes * 3 })
    return Buffer.from(sink.bytes())
  }))

/** Like {@link runOne}, returning the exit. */
export const runOneExit = (processor: ChunkProcessor, bytes: Uint8Array, chunkBytes: number) =>
  Effect.runPromiseExit(runPipeline({ input: ChunkInput.fromBytes(bytes), output: ChunkOutput.toMemory(), pipeline: [processor], chunkBytes }))

/** The typed failure of an exit. */
export const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  if (!Exit.isFailure(exit)) throw new Error("expected a failure")
  const e = Exit.findErrorOption(exit)
  if (e._tag !== "Some") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return e.value
}

/** A gzip file as `gzip()` writes it, for `size` pseudo-random bytes at `chunkBytes`. */
export const gzipFile = (size: number, seed: number, chunkBytes = 100) => runOne(gzip({ level: 1 }), pseudoRandomBytes(size, seed), chunkBytes)

/** Text-like bytes (compressible), `size` long. */
export const textBytes = (size: number, seed = 1): Uint8Array => {
  const words = ["chunk ", "segment ", "nonce ", "cage ", "gzip ", "member ", "\n", "checkpoint "]
  const r = pseudoRandomBytes(size, seed)
  const out = Buffer.alloc(size)
  let at = 0
  for (let i = 0; at < size; i++) at += out.write(words[r[i % size] & 7], at)
  return out
}
