import { type ChunkProcessor, type ChunkSpec, PROCESSOR_API_VERSION } from "@cage/core"
import { Effect, Exit } from "effect"
import * as crypto from "node:crypto"

export const VECTORS = new URL("../../../../shared/vectors/", import.meta.url)

/** Runs an effect and returns its typed failure (or throws when it succeeded / died). */
export const failureOf = async <A, E>(e: Effect.Effect<A, E>): Promise<E> => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got success")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (!failure) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return (failure as unknown as { error: E }).error
}

export const sha = (alg: string, b: Uint8Array) => crypto.createHash(alg).update(b).digest("hex")
export const key32 = (seed = 1) => crypto.createHash("sha256").update(`key-${seed}`).digest()
export const bytes = (n: number, seed = 0) => {
  const out = Buffer.alloc(n)
  let x = seed * 2654435761 + 12345
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

/** An observer named `name` for pipelines in tests: `onChunk` sees each chunk and its bytes (in chunk order when `ordered`). */
export const testObserver = (name: string, onChunk: (chunk: ChunkSpec.ChunkSpec, data: Uint8Array) => void = () => undefined, ordered = false): ChunkProcessor => ({
  name,
  version: "1.0.0",
  apiVersion: PROCESSOR_API_VERSION,
  capabilities: { kind: "observer", ordered },
  options: {},
  init: () => Effect.void,
  process: (chunk, data) =>
    Effect.sync(() => {
      onChunk(chunk, data)
      return undefined
    }),
  finalize: () => Effect.void
})
