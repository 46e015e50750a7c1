/**
 * AGCM v2 as chunk processors for `@cage/core`'s engine: `agcmEncrypt` and `agcmDecrypt`.
 *
 * Framing: encrypt cuts the plaintext into `chunkSize`-byte chunks with a short final chunk
 * (`{ headerBytes: 0, chunkBytes: chunkSize, shortFinal: true }`); decrypt declares the
 * ciphertext layout (`{ headerBytes, chunkBytes: chunkSize + 16, shortFinal: true }`), so
 * every chunk's offset is arithmetic and resume and range reads need no index.
 *
 * Segments go to a pool of worker threads (`workers`, default: available cores); 1 runs
 * in-process. Inputs under 8 MiB never start a pool. `agcmEncryptFactory` and
 * `agcmDecryptFactory` offer both as `ProcessorFactory`s (for registries that list
 * processors by name).
 *
 * @module
 */
import type { ChunkProcessor, ChunkSpec, DirectSegment, InitContext, JsonValue, ProcessorFactory } from "@cage/core"
import { fromSystemError, InputChanged, type IoError, PROCESSOR_API_VERSION } from "@cage/core"
import * as fs from "node:fs"
import { Effect } from "effect"
import { AgcmUsageError, HeaderAuthFailed, TransformsNotUndone } from "./Error.js"
import {
  DEFAULT_CHUNK_SIZE,
  LEGACY_V1_WARNING,
  encryptFraming,
  headerBytesWanted,
  isLegacyV1,
  MAGIC,
  newParams,
  openHeader,
  parseHeader,
  sealHeader,
  type HeaderParams,
  isRawKey
} from "./Format.js"
import { commitmentMatches, type DerivedKeys, OPEN, SEAL, TAG_BYTES, wipeKeys } from "./internal/cobblestone.js"
import type { DirectOutcome } from "./internal/direct.js"
import { faultOf } from "./internal/faults.js"
import { firstMalformed, openFailure, openSegment, truncated } from "./internal/open.js"
import { SegmentCipher } from "./internal/segmentCipher.js"
import { legacyV1Processor } from "./LegacyV1.js"
import type { AgcmCommonOptions, AgcmDecryptOptions, AgcmEncryptOptions } from "./Options.js"

/** Version of this package's processors, recorded in checkpoints. */
export const PROCESSOR_VERSION = "2.0.0"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const unhex = (s: unknown): Buffer | undefined => (typeof s === "string" && /^([0-9a-f]{2})*$/.test(s) ? Buffer.from(s, "hex") : undefined)

/** The encrypt snapshot: everything a resumed run needs to rebuild the same header and nonces, nothing secret. */
interface EncryptSnapshot {
  readonly format: "agcm-v2"
  readonly chunkSize: number
  readonly keyMode: "raw" | "scrypt"
  readonly salt: string
  readonly scryptLogN?: number
  readonly scryptSalt?: string
  /** The header commitment, to refuse a resume under a different key. */
  readonly commitment: string
}

const readSnapshot = (resume: JsonValue): EncryptSnapshot | undefined => {
  const s = resume as Partial<EncryptSnapshot> | null
  if (s === null || typeof s !== "object" || s.format !== "agcm-v2") return undefined
  if (!unhex(s.salt) || !unhex(s.commitment) || typeof s.chunkSize !== "number") return undefined
  return s as EncryptSnapshot
}

/** JSON-able non-secret options recorded in checkpoints (no key, no passphrase). */
const publicOptions = (o: AgcmCommonOptions & { legacyV1?: boolean }, keyMode: "raw" | "scrypt"): { [k: string]: JsonValue } => ({
  keyMode,
  ...(o.legacyV1 !== undefined ? { legacyV1: o.legacyV1 } : {})
})

/** The segment's input bytes and its direct job, from the chunk specs alone (no data yet). */
const directJob = (op: number, specs: ReadonlyArray<ChunkSpec.ChunkSpec>, segment: DirectSegment) => {
  const lengths = specs.map((c) => c.length)
  let inputBytes = 0
  for (const n of lengths) inputBytes += n
  const tags = TAG_BYTES * specs.length
  return {
    op,
    first: specs[0].index,
    lengths,
    inFd: segment.inputFd,
    inPos: segment.inputOffset,
    outFd: segment.outputFd,
    outPos: segment.outputOffset,
    inputBytes,
    outputBytes: op === SEAL ? inputBytes + tags : inputBytes - tags
  }
}

/** A direct job's read or write failure, as the engine reports I/O failures (exit code 4). */
const directIoFailure = (outcome: DirectOutcome, segment: DirectSegment, inputBytes: number): IoError | InputChanged | undefined => {
  if (outcome.ioError) {
    const { operation, code, message } = outcome.ioError
    return fromSystemError(operation, operation === "read" ? segment.input : segment.output, Object.assign(new Error(message), { code }))
  }
  if (outcome.short !== undefined) {
    return new InputChanged({ path: segment.input, detail: `it shrank: expected ${inputBytes} bytes at ${segment.inputOffset}, got ${outcome.short}` })
  }
  return undefined
}

/**
 * The reversible transforms the bytes went through before this processor, by name, in
 * order (what the header records): the run's transforms before it that declare `reversible`.
 */
const transformsBefore = (context: InitContext): ReadonlyArray<string> =>
  (context.pipeline?.before ?? []).filter((e) => e.capabilities.kind === "transform" && e.capabilities.reversible === true).map((e) => e.name)

/**
 * Fails with `TransformsNotUndone` unless the transforms right after the decryptor undo the
 * header's `recorded` list, last first. A context without `pipeline` (made by hand) has
 * nothing after the decryptor.
 */
const checkUndone = (recorded: ReadonlyArray<string> | undefined, context: InitContext): Effect.Effect<void, TransformsNotUndone> => {
  if (recorded === undefined || recorded.length === 0) return Effect.void
  const undone = (context.pipeline?.after ?? []).filter((e) => e.capabilities.kind === "transform").map((e) => e.capabilities.undoes)
  const needed = [...recorded].reverse()
  return needed.every((t, j) => undone[j] === t)
    ? Effect.void
    : Effect.fail(new TransformsNotUndone({ recorded, undone: undone.filter((u): u is string => u !== undefined) }))
}

const checkWorkers = (workers: number | undefined) =>
  workers === undefined || (Number.isInteger(workers) && workers >= 1 && workers <= 256)
    ? Effect.void
    : Effect.fail(new AgcmUsageError({ reason: "Workers", detail: `workers must be an integer from 1 to 256, got ${workers}` }))

/**
 * The AGCM v2 encryptor as a chunk processor (`"agcm-encrypt"`, transform, unordered).
 *
 * - `init` derives the file key (scrypt for a passphrase), draws a fresh 24-byte salt (or
 *   takes it from the checkpoint snapshot when resuming) and returns the header.
 * - `process`/`processSegment` seal chunk i under nonce `baseNonce XOR i`; any chunk may be
 *   sealed at any time, in any order, so segments run in parallel and resume is exact.
 * - `snapshot()` holds the salt(s), KDF cost and commitment (all public, all in the header).
 *
 * Errors: AgcmUsageError (key size, chunk size, workers), HeaderAuthFailed (resuming with a
 * different key), KdfCostTooHigh, SegmentWorkerError.
 */
export const agcmEncrypt = (options: AgcmEncryptOptions): ChunkProcessor => {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
  let keys: DerivedKeys | undefined
  let cipher: SegmentCipher | undefined
  let snapshot: EncryptSnapshot | undefined
  let chunks = 0

  const seal = (specs: ReadonlyArray<ChunkSpec.ChunkSpec>, data: ReadonlyArray<Uint8Array>) =>
    Effect.gen(function*() {
      if (!cipher) return yield* Effect.die(new Error("internal error: agcm-encrypt used before init"))
      const defect = sealFramingDefect(specs, (k) => data[k].length, chunkSize)
      if (defect) return yield* Effect.die(defect)
      const out = yield* cipher.run(SEAL, specs[0].index, data)
      chunks += specs.length
      return out.outputs
    })

  return {
    name: "agcm-encrypt",
    version: PROCESSOR_VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "transform", ordered: false, resumable: true, framesInput: true },
    options: publicOptions(options, isRawKey(options) ? "raw" : "scrypt"),
    init: (context: InitContext) =>
      Effect.gen(function*() {
        const framing = yield* encryptFraming(chunkSize)
        yield* checkWorkers(options.workers)
        let params: HeaderParams
        const resumed = context.resume === undefined || context.resume === null ? undefined : readSnapshot(context.resume)
        if (context.resume !== undefined && context.resume !== null && !resumed) {
          return yield* new AgcmUsageError({ reason: "Checkpoint", detail: "the checkpoint's agcm-encrypt snapshot is not readable" })
        }
        if (resumed) {
          // The engine owns this refusal (ResumeRefused "ChunkSizeChanged", against the size
          // its checkpoint recorded) once the framing is declared; rebuilding the header
          // under another size would only fail the key check with the wrong reason.
          if (resumed.chunkSize !== chunkSize) return { framing }
          params = yield* newParams(options, chunkSize, {
            salt: unhex(resumed.salt)!,
            ...(resumed.scryptSalt ? { scryptSalt: unhex(resumed.scryptSalt)! } : {}),
            ...(resumed.scryptLogN !== undefined ? { scryptLogN: resumed.scryptLogN } : {})
          }, transformsBefore(context))
        } else {
          params = yield* newParams(options, chunkSize, undefined, transformsBefore(context))
        }
        const sealed = yield* sealHeader(params, options)
        if (resumed && !commitmentMatches(unhex(resumed.commitment)!, sealed.keys.commitment)) {
          wipeKeys(sealed.keys)
          // A different key would splice two keys' chunks into one undecryptable file.
          return yield* new HeaderAuthFailed()
        }
        keys = sealed.keys
        snapshot = {
          format: "agcm-v2",
          chunkSize,
          keyMode: params.keyMode,
          salt: hex(params.salt),
          ...(params.scrypt ? { scryptLogN: params.scrypt.logN, scryptSalt: hex(params.scrypt.salt) } : {}),
          commitment: hex(sealed.keys.commitment)
        }
        cipher = new SegmentCipher(keys, {
          workers: options.workers,
          inputBytes: context.inputSize,
          timeoutMs: options.workerTimeoutMs,
          fault: faultOf(options),
          transferInputs: options.transferInputs ?? false
        })
        return {
          framing,
          header: sealed.header,
          direct: { outputChunkBytes: chunkSize + TAG_BYTES }
        }
      }),
    process: (chunk, data) => seal([chunk], [data]).pipe(Effect.map((o) => o[0])),
    processSegment: (chunks, data) => seal(chunks, data),
    processDirect: (specs, segment) =>
      Effect.gen(function*() {
        if (!cipher) return yield* Effect.die(new Error("internal error: agcm-encrypt used before init"))
        const defect = sealFramingDefect(specs, (k) => specs[k].length, chunkSize)
        if (defect) return yield* Effect.die(defect)
        const job = directJob(SEAL, specs, segment)
        const outcome = yield* cipher.runDirect(job)
        const failure = directIoFailure(outcome, segment, job.inputBytes)
        if (failure) return yield* failure
        chunks += specs.length
      }),
    release: (outputs) => cipher?.release(outputs),
    finalize: () =>
      Effect.succeed({
        result: { format: "agcm", version: 2, chunkSize, keyMode: snapshot?.keyMode ?? null, chunksSealed: chunks, workers: cipher?.workers ?? 1, pool: cipher?.usesPool ?? false }
      }),
    snapshot: () => (snapshot ?? null) as unknown as JsonValue,
    close: () =>
      Effect.gen(function*() {
        if (cipher) yield* cipher.close()
        wipeKeys(keys)
        keys = undefined
      })
  }
}

/** Cobblestone: every chunk but the last holds exactly `chunkSize` bytes, the last strictly fewer. */
const sealFramingDefect = (specs: ReadonlyArray<ChunkSpec.ChunkSpec>, lengthOf: (k: number) => number, chunkSize: number): Error | undefined => {
  for (let k = 0; k < specs.length; k++) {
    const n = lengthOf(k)
    if (specs[k].final ? n >= chunkSize : n !== chunkSize) {
      return new Error(`internal error: chunk ${specs[k].index} has ${n} bytes, framing needs ${specs[k].final ? `< ${chunkSize}` : chunkSize}`)
    }
  }
  return undefined
}

/**
 * The AGCM v2 decryptor as a chunk processor (`"agcm-decrypt"`, transform, unordered).
 *
 * - `init` reads the header through `context.readHeader`, checks its structure, derives
 *   the keys and checks the commitment before any chunk is opened, and declares the
 *   ciphertext framing.
 * - Each chunk opens at its own index; a chunk that fails names its index.
 * - With `legacyV1`, a v1 (harpocrates) header switches to the legacy reader, after
 *   printing {@link LEGACY_V1_WARNING}.
 *
 * Errors: NotAgcm, UnsupportedVersion, InvalidHeader, Truncated, HeaderAuthFailed,
 * ChunkAuthFailed{chunk}, TrailingData, KdfCostTooHigh, AgcmUsageError, SegmentWorkerError,
 * LegacyFrameError (v1).
 */
export const agcmDecrypt = (options: AgcmDecryptOptions): ChunkProcessor => {
  let keys: DerivedKeys | undefined
  let cipher: SegmentCipher | undefined
  let chunkSize = 0
  let headerBytes = 0
  let regionBytes: number | undefined
  let chunks = 0
  let plaintextBytes = 0
  let legacy: ChunkProcessor | undefined

  const open = (specs: ReadonlyArray<ChunkSpec.ChunkSpec>, data: ReadonlyArray<Uint8Array>) =>
    Effect.gen(function*() {
      if (!cipher || !keys) return yield* Effect.die(new Error("internal error: agcm-decrypt used before init"))
      const outputs = yield* openSegment(cipher, keys, chunkSize, specs, data, regionBytes, headerBytes)
      chunks += outputs.length
      for (const o of outputs) plaintextBytes += o.length
      return outputs
    })

  return {
    name: "agcm-decrypt",
    version: PROCESSOR_VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: { kind: "transform", ordered: false, resumable: true, framesInput: true },
    options: publicOptions(options, isRawKey(options) ? "raw" : "scrypt"),
    init: (context: InitContext) =>
      Effect.gen(function*() {
        yield* checkWorkers(options.workers)
        // The header in steps (the magic, then as much as what is known so far asks for): bytes
        // that are not AGCM fail here at once, even on a pipe that stays open (one read of
        // MAX_HEADER_BYTES would wait for 1109 bytes or the end of input first).
        let asked = MAGIC.length
        let head = yield* context.readHeader(asked)
        for (let want = headerBytesWanted(head); head.length === asked && want > asked; want = headerBytesWanted(head)) {
          asked = want
          head = yield* context.readHeader(asked)
        }
        if (options.legacyV1 && isLegacyV1(head)) {
          if (!isRawKey(options)) return yield* new AgcmUsageError({ reason: "Key", detail: "AGCM v1 files use a raw 32-byte key, not a passphrase" })
          legacy = legacyV1Processor({ key: options.key, onWarning: options.onWarning })
          return yield* legacy.init(context)
        }
        const header = yield* parseHeader(head)
        keys = yield* openHeader(header, options)
        // Checked once the header is authentic: the list is then the encryptor's own.
        yield* checkUndone(header.transforms, context).pipe(Effect.tapError(() => Effect.sync(() => wipeKeys(keys))))
        chunkSize = header.chunkSize
        headerBytes = header.headerBytes
        regionBytes = context.inputSize === undefined ? undefined : context.inputSize - headerBytes
        cipher = new SegmentCipher(keys, {
          workers: options.workers,
          inputBytes: context.inputSize,
          timeoutMs: options.workerTimeoutMs,
          fault: faultOf(options),
          transferInputs: options.transferInputs ?? false
        })
        return { framing: { headerBytes, chunkBytes: chunkSize + TAG_BYTES, shortFinal: true }, direct: { outputChunkBytes: chunkSize } }
      }),
    process: (chunk, data) => (legacy ? legacy.process(chunk, data) : open([chunk], [data]).pipe(Effect.map((o) => o[0]))),
    processSegment: (specs, data) =>
      legacy
        ? Effect.forEach(specs, (s, k) => legacy!.process(s, data[k]))
        : open(specs, data),
    processDirect: (specs, segment) =>
      Effect.gen(function*() {
        if (legacy || !cipher || !keys) return yield* Effect.die(new Error("internal error: agcm-decrypt direct mode used before init or on a v1 file"))
        const bad = firstMalformed(specs, (k) => specs[k].length, chunkSize)
        const good = specs.slice(0, bad)
        if (good.length > 0) {
          const job = directJob(OPEN, good, segment)
          const outcome = yield* cipher.runDirect(job)
          const failure = directIoFailure(outcome, segment, job.inputBytes)
          if (failure) return yield* failure
          if (outcome.failedAt >= 0) {
            const spec = good[outcome.failedAt]
            // The probe needs the failed chunk's bytes: read them again (they were read into
            // the lane's own buffer, possibly on a worker thread).
            const sealed = Effect.try({
              try: () => {
                const b = Buffer.allocUnsafe(spec.length)
                return b.subarray(0, fs.readSync(segment.inputFd, b, 0, spec.length, segment.inputOffset + (spec.start - specs[0].start)))
              },
              catch: (e) => fromSystemError("read", segment.input, e)
            })
            return yield* openFailure(keys!, chunkSize, spec, regionBytes, sealed)
          }
          chunks += good.length
          for (const spec of good) plaintextBytes += spec.length - TAG_BYTES
        }
        if (bad < specs.length) return yield* truncated(headerBytes, specs[bad], specs[bad].length)
      }),
    release: (outputs) => cipher?.release(outputs),
    finalize: (context) =>
      legacy
        ? legacy.finalize(context)
        : Effect.succeed({ result: { format: "agcm", version: 2, chunkSize, chunksOpened: chunks, plaintextBytes, workers: cipher?.workers ?? 1, pool: cipher?.usesPool ?? false } }),
    snapshot: () => null,
    close: () =>
      Effect.gen(function*() {
        if (cipher) yield* cipher.close()
        if (legacy?.close) yield* legacy.close()
        wipeKeys(keys)
        keys = undefined
      })
  }
}

/** A processor maker as a factory: both AGCM processors are resumable (the default) transforms, in any order, that frame their input (a pipeline re-chunks before them). */
const asFactory = <O>(name: string, description: string, make: (options: O) => ChunkProcessor): ProcessorFactory<O> => ({
  name,
  apiVersion: PROCESSOR_API_VERSION,
  description,
  capabilities: { kind: "transform", ordered: false, framesInput: true },
  make
})

/** {@link agcmEncrypt} as a `ProcessorFactory` (`"agcm-encrypt"`). */
export const agcmEncryptFactory: ProcessorFactory<AgcmEncryptOptions> = asFactory("agcm-encrypt", "AGCM v2 encryption (AES-256-GCM, C2SP chunked encryption)", agcmEncrypt)

/** {@link agcmDecrypt} as a `ProcessorFactory` (`"agcm-decrypt"`). */
export const agcmDecryptFactory: ProcessorFactory<AgcmDecryptOptions> = asFactory("agcm-decrypt", "AGCM v2 decryption (and v1 with legacyV1)", agcmDecrypt)
