/**
 * age as chunk processors for Cage's engine: `ageEncrypt(options)` and `ageDecrypt(options)`.
 *
 * Each processor runs one age operation (either backend, any key type, passphrases through
 * the terminal) for the whole stream: `process` hands the chunk to age and returns the bytes
 * age has produced so far (often fewer than it was given, since age works in 64 KiB
 * chunks and pipes buffer); `finalize` ends age's input and returns the rest as the
 * trailer. Memory is bounded: `process` waits while more than {@link QUEUE_LIMIT_BYTES}
 * of input is queued for age.
 *
 * Capabilities: a transform, ordered, and not resumable (age's stream state, a random file
 * key and a chunk counter, cannot be saved); the engine must not resume a run through it.
 * For whole files the direct {@link encrypt}/{@link decrypt} functions are faster.
 *
 * @module
 */
import type { ChunkInput as InputModule, ChunkOutput as OutputModule, ChunkProcessor, JsonValue } from "@cage/core"
import { PROCESSOR_API_VERSION } from "@cage/core"
import { Effect } from "effect"
import { type Backend, decrypt, encrypt } from "./Age.js"
import type { AgeError } from "./Error.js"
type ChunkInput = InputModule.ChunkInput
type ChunkOutput = OutputModule.ChunkOutput

/** Input bytes queued for age before `process` waits, in bytes. */
export const QUEUE_LIMIT_BYTES = 4 * 1024 * 1024
const READ_BYTES = 64 * 1024

/** Options of {@link ageEncrypt} / {@link ageDecrypt}. Keys as for `encrypt` / `decrypt`. */
export interface AgeProcessorOptions {
  /** Default `"auto"` (the CLI when found, else the library). */
  readonly backend?: Backend | undefined
  readonly ageBin?: string | undefined
  /** Encrypt: `age1...` or SSH public keys. */
  readonly recipients?: ReadonlyArray<string> | undefined
  /** Encrypt: recipient files. */
  readonly recipientFiles?: ReadonlyArray<string> | undefined
  /** Decrypt: identity files. */
  readonly identityFiles?: ReadonlyArray<string> | undefined
  /** Secret: never recorded. */
  readonly passphrase?: Uint8Array | undefined
  readonly passphraseFile?: string | undefined
  /** Encrypt: ASCII armor. Default false. */
  readonly armor?: boolean | undefined
}

/** A sequential ChunkInput fed by `push`/`end`. */
const queueInput = () => {
  const queue: Array<Uint8Array> = []
  let queued = 0
  let ended = false
  let position = 0
  const readers: Array<() => void> = []
  const writers: Array<() => void> = []
  const wake = (list: Array<() => void>) => list.splice(0).forEach((f) => {
    f()
  })
  const input: ChunkInput = {
    description: "engine",
    size: undefined,
    identity: undefined,
    randomAccess: false,
    read: (_position, buffer, offset, length) =>
      Effect.promise(async () => {
        // Fill completely unless the input ended: ChunkInput's contract.
        while (queued < length && !ended) await new Promise<void>((r) => readers.push(r))
        let got = 0
        while (got < length && queue.length > 0) {
          const head = queue[0]!
          const take = Math.min(head.length, length - got)
          buffer.set(head.subarray(0, take), offset + got)
          got += take
          if (take === head.length) queue.shift()
          else queue[0] = head.subarray(take)
        }
        queued -= got
        position += got
        wake(writers)
        return got
      }),
    close: () => Effect.void
  }
  return {
    input,
    push: async (data: Uint8Array) => {
      queue.push(Uint8Array.from(data))
      queued += data.length
      wake(readers)
      while (queued > QUEUE_LIMIT_BYTES) await new Promise<void>((r) => writers.push(r))
    },
    end: () => {
      ended = true
      wake(readers)
    },
    position: () => position
  }
}

/** A ChunkOutput that hands over what was written since the last `take`. */
const queueOutput = () => {
  let parts: Array<Uint8Array> = []
  let position = 0
  const output: ChunkOutput = {
    description: "engine",
    resumable: false,
    position: () => position,
    open: () => Effect.void,
    write: (buffers) =>
      Effect.sync(() => {
        for (const b of buffers) {
          parts.push(Uint8Array.from(b))
          position += b.length
        }
      }),
    sync: () => Effect.void,
    commit: () => Effect.void,
    abort: () => Effect.void
  }
  return {
    output,
    take: (): Uint8Array => {
      const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
      parts = []
      return out
    }
  }
}

const make = (operation: "encrypt" | "decrypt", options: AgeProcessorOptions): ChunkProcessor => {
  const input = queueInput()
  const output = queueOutput()
  let running: Promise<unknown> | undefined
  let failure: AgeError | { readonly _tag: string } | undefined
  const start = () => {
    if (running) return
    const common = {
      input: input.input,
      output: output.output,
      backend: options.backend,
      ageBin: options.ageBin,
      passphrase: options.passphrase,
      passphraseFile: options.passphraseFile,
      bufferBytes: READ_BYTES
    }
    const effect = operation === "encrypt"
      ? encrypt({ ...common, recipients: options.recipients, recipientFiles: options.recipientFiles, armor: options.armor })
      : decrypt({ ...common, identityFiles: options.identityFiles })
    running = Effect.runPromise(Effect.flip(effect)).then(
      (e) => { failure = e },
      () => undefined
    )
  }
  const failed = () => failure === undefined ? Effect.void : Effect.fail(failure)
  const recorded: { readonly [k: string]: JsonValue } = {
    backend: options.backend ?? "auto",
    recipients: [...(options.recipients ?? [])],
    recipientFiles: [...(options.recipientFiles ?? [])],
    identityFiles: [...(options.identityFiles ?? [])],
    passphrase: options.passphrase !== undefined || options.passphraseFile !== undefined,
    armor: options.armor === true
  }
  return {
    name: operation === "encrypt" ? "age-encrypt" : "age-decrypt",
    version: "0.1.0",
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "transform", ordered: true, resumable: false },
    options: recorded,
    init: () => Effect.sync(() => {
      start()
      return {}
    }),
    process: (_chunk, data) =>
      Effect.gen(function*() {
        yield* failed()
        yield* Effect.promise(() => Promise.race([input.push(data), running!]))
        // Let age's pipes move before collecting what it produced.
        yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
        yield* failed()
        return output.take()
      }),
    finalize: () =>
      Effect.gen(function*() {
        input.end()
        yield* Effect.promise(() => running!)
        yield* failed()
        return { trailer: output.take(), result: { operation, inputBytes: input.position() } }
      }),
    close: () => Effect.sync(() => input.end())
  }
}

/** A processor that encrypts the stream with age. Fails like {@link encrypt}. */
export const ageEncrypt = (options: AgeProcessorOptions): ChunkProcessor => make("encrypt", options)

/** A processor that decrypts an age stream (binary or armored). Fails like {@link decrypt}. */
export const ageDecrypt = (options: AgeProcessorOptions): ChunkProcessor => make("decrypt", options)
