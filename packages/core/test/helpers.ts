import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type { ChunkProcessor } from "../src/index.js"
import { IoError, PROCESSOR_API_VERSION } from "../src/index.js"

/** A transform that XORs every byte with `mask` and appends the chunk index as one byte. */
export const xorTransform = (mask = 0x5a, opts: { failAt?: number; ordered?: boolean } = {}): ChunkProcessor => ({
  name: "test-xor",
  version: "1.0.0",
  apiVersion: PROCESSOR_API_VERSION,
  capabilities: { kind: "transform", ordered: opts.ordered ?? false },
  options: { mask },
  init: () => Effect.succeed({ header: Uint8Array.of(0xca, 0x9e) }),
  process: (chunk, data) =>
    chunk.index === opts.failAt
      ? Effect.fail(new Error(`boom at ${chunk.index}`))
      : Effect.sync(() => {
        const out = new Uint8Array(data.length + 1)
        for (let i = 0; i < data.length; i++) out[i] = data[i] ^ mask
        out[data.length] = chunk.index & 0xff
        return out
      }),
  finalize: () => Effect.succeed({ trailer: Uint8Array.of(0xee) })
})

/** Reference output of xorTransform for `input` cut into `cs`-byte chunks. */
export const xorReference = (input: Uint8Array, cs: number, mask = 0x5a): Buffer => {
  const parts: Array<Uint8Array> = [Uint8Array.of(0xca, 0x9e)]
  const n = Math.ceil(input.length / cs)
  for (let i = 0; i < n; i++) {
    const c = input.subarray(i * cs, Math.min(input.length, (i + 1) * cs))
    const out = new Uint8Array(c.length + 1)
    for (let j = 0; j < c.length; j++) out[j] = c[j] ^ mask
    out[c.length] = i & 0xff
    parts.push(out)
  }
  parts.push(Uint8Array.of(0xee))
  return Buffer.concat(parts)
}

/** An ordered observer computing SHA-256 of everything it sees; cannot snapshot its state. */
export const sha256Observer = (): ChunkProcessor & { seen: Array<number> } => {
  let h = createHash("sha256")
  const seen: Array<number> = []
  return {
    name: "test-sha256",
    version: "1.0.0",
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "observer", ordered: true, resumable: false },
    options: {},
    seen,
    init: () => Effect.sync(() => { h = createHash("sha256") }),
    process: (chunk, data) => Effect.sync(() => {
      seen.push(chunk.index)
      h.update(data)
      return undefined
    }),
    finalize: () => Effect.sync(() => ({ result: h.digest("hex") }))
  }
}

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

export const pseudoRandom = (n: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/**
 * {@link xorTransform} with direct mode: it preads each segment from the input descriptor
 * and pwrites its output at the offset the engine gives, and counts how it was called.
 * `ioFailAt` fails that chunk's segment with an IoError, as a failed pwrite would.
 */
export const xorDirect = (mask = 0x5a, opts: { failAt?: number; ioFailAt?: number } = {}) => {
  const base = xorTransform(mask, { failAt: opts.failAt })
  const calls = { direct: 0, process: 0 }
  let cs = 0
  const processor: ChunkProcessor = {
    ...base,
    name: "test-xor-direct",
    init: (context) =>
      Effect.sync(() => {
        cs = context.chunkBytes
        return { header: Uint8Array.of(0xca, 0x9e), direct: { outputChunkBytes: cs + 1 } }
      }),
    process: (chunk, data) => {
      calls.process++
      return base.process(chunk, data)
    },
    processDirect: (chunks, segment) =>
      Effect.gen(function*() {
        calls.direct++
        for (const c of chunks) {
          if (c.index === opts.failAt) return yield* Effect.fail(new Error(`boom at ${c.index}`))
          if (c.index === opts.ioFailAt) {
            return yield* Effect.fail(new IoError({ reason: "NoSpace", operation: "write", path: segment.output, detail: "" }))
          }
        }
        const first = chunks[0]
        for (const c of chunks) {
          const data = new Uint8Array(c.length)
          fs.readSync(segment.inputFd, data, 0, c.length, segment.inputOffset + (c.start - first.start))
          const out = new Uint8Array(c.length + 1)
          for (let i = 0; i < c.length; i++) out[i] = data[i] ^ mask
          out[c.length] = c.index & 0xff
          fs.writeSync(segment.outputFd, out, 0, out.length, segment.outputOffset + (c.index - first.index) * (cs + 1))
        }
      })
  }
  return { processor, calls }
}
