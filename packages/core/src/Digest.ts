/**
 * A built-in observer: the SHA-256 (or any node:crypto hash) of every byte it sees.
 *
 * Ordered (a hash is sequential) and not resumable (node:crypto cannot export a running
 * hash state), so on resume the engine replays completed chunks through it.
 *
 * @module
 */
import { Effect } from "effect"
import { createHash, type Hash } from "node:crypto"
import { type ChunkProcessor, PROCESSOR_API_VERSION, type ProcessorFactory } from "./ChunkProcessor.js"

/** Options of {@link digest}. */
export interface DigestOptions {
  /** A node:crypto hash name. Default `"sha256"`. */
  readonly algorithm?: string
}

/** The digest processor (`"digest"`); `finalize` returns `{ algorithm, hex, bytes }`. */
export const digest = (options: DigestOptions = {}): ChunkProcessor => {
  const algorithm = options.algorithm ?? "sha256"
  let hash: Hash | undefined
  let bytes = 0
  return {
    name: "digest",
    version: "1.0.0",
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "observer", ordered: true, resumable: false },
    options: { algorithm },
    init: () =>
      Effect.try({
        try: () => {
          hash = createHash(algorithm)
          bytes = 0
        },
        catch: () => new Error(`unknown hash algorithm "${algorithm}"`)
      }),
    process: (_chunk, data) =>
      Effect.sync(() => {
        hash!.update(data)
        bytes += data.length
        return undefined
      }),
    finalize: () => Effect.sync(() => ({ result: { algorithm, hex: hash!.digest("hex"), bytes } }))
  }
}

/** Factory form of {@link digest}, for registries and configuration. */
export const digestFactory: ProcessorFactory<DigestOptions> = {
  name: "digest",
  apiVersion: PROCESSOR_API_VERSION,
  description: "Hash of the bytes flowing through this point of the pipeline (default SHA-256)",
  capabilities: { kind: "observer", ordered: true, resumable: false },
  make: digest
}
