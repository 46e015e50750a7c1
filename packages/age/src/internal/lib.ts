/**
 * The library backend: age-encryption (typage), streaming through WHATWG streams.
 */
import type { ChunkInput as InputModule, ChunkOutput as OutputModule } from "@cage/core"
type ChunkInput = InputModule.ChunkInput
type ChunkOutput = OutputModule.ChunkOutput
import { IoError } from "@cage/core"
import { Decrypter, Encrypter } from "age-encryption"
import { AgeError, fromLibraryError } from "../Error.js"
import { ArmorDecodeError, ArmorDecoder, ArmorEncoder, looksArmored } from "./armor.js"
import { drain, prepend, readInput, transform } from "./io.js"
import { decryptPayload, PAYLOAD_NONCE_BYTES, splitHeader } from "./payload.js"

export interface LibRequest {
  readonly operation: "encrypt" | "decrypt"
  readonly input: ChunkInput
  readonly output: ChunkOutput
  /** `age1...` recipients (encrypt). */
  readonly recipients: ReadonlyArray<string>
  /** `AGE-SECRET-KEY-...` identities (decrypt). */
  readonly identities: ReadonlyArray<string>
  readonly passphrase: string | undefined
  readonly armor: boolean
  readonly bufferBytes: number
  readonly onProgress: (bytes: number) => void
}

export interface LibResult {
  readonly bytesIn: number
  readonly bytesOut: number
}

/** A pull-based WHATWG stream over an async iterator; `failure()` tells our own errors apart from typage's. */
const toWebStream = (source: AsyncIterator<Buffer>) => {
  let failure: unknown
  const stream = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        const r = await source.next()
        if (r.done) controller.close()
        else controller.enqueue(new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.length))
      } catch (e) {
        failure = e
        controller.error(e)
      }
    },
    cancel: async () => {
      await source.return?.(undefined)
    }
  }, { highWaterMark: 0 })
  return { stream, failure: () => failure }
}

const own = (e: unknown): AgeError | IoError | undefined =>
  e instanceof ArmorDecodeError
    ? new AgeError({ reason: "ArmorFailure", backend: "age-lib", detail: e.message })
    : e instanceof IoError || e instanceof AgeError
    ? e
    : undefined

const MAC_LINE = /^--- [A-Za-z0-9+/]{43}$/

/**
 * Checks the syntax of the header's MAC line (age spec: "--- " and the base64 of 32 bytes,
 * canonical, unpadded) within the first buffer. `undefined` when it cannot tell (armored or
 * a header longer than the buffer).
 */
const macLineValid = (head: Buffer, armored: boolean): boolean | undefined => {
  if (armored) return undefined
  let at = head.indexOf("\n---")
  if (at < 0) return undefined
  at += 1
  const end = head.indexOf(0x0a, at)
  if (end < 0) return undefined
  const line = head.subarray(at, end).toString("latin1")
  if (!MAC_LINE.test(line)) return false
  const mac = line.slice(4)
  return Buffer.from(mac, "base64").toString("base64").replace(/=+$/, "") === mac
}

export const runLib = async (request: LibRequest): Promise<LibResult> => {
  const context = { operation: request.operation, passphrase: request.passphrase !== undefined }
  let bytesIn = 0
  const counted = async function*(source: AsyncIterable<Buffer>) {
    for await (const b of source) {
      bytesIn += b.length
      request.onProgress(bytesIn)
      yield b
    }
  }
  if (request.operation === "encrypt") {
    const e = new Encrypter()
    try {
      if (request.passphrase !== undefined) e.setPassphrase(request.passphrase)
      for (const r of request.recipients) e.addRecipient(r)
    } catch (err) {
      throw fromLibraryError(err, "keys", context)
    }
    const src = toWebStream(counted(readInput(request.input, request.bufferBytes)))
    let encrypted: ReadableStream<Uint8Array>
    try {
      encrypted = await e.encrypt(src.stream)
    } catch (err) {
      throw own(src.failure()) ?? fromLibraryError(err, "keys", context)
    }
    const armor = request.armor ? new ArmorEncoder() : undefined
    const body = armor
      ? transform(encrypted as unknown as AsyncIterable<Buffer>, (b) => armor.push(b), () => armor.end())
      : (encrypted as unknown as AsyncIterable<Uint8Array>)
    try {
      const bytesOut = await drain(body, request.output, request.bufferBytes)
      return { bytesIn, bytesOut }
    } catch (err) {
      throw own(src.failure()) ?? own(err) ?? fromLibraryError(err, "payload", context)
    }
  }
  const d = new Decrypter()
  try {
    if (request.passphrase !== undefined) d.addPassphrase(request.passphrase)
    for (const i of request.identities) d.addIdentity(i)
  } catch (err) {
    throw fromLibraryError(err, "keys", context)
  }
  const peekSize = Math.max(1024, request.bufferBytes)
  const it = counted(readInput(request.input, peekSize))
  const first = await it.next().catch((err) => { throw own(err) ?? err })
  const head = first.done ? Buffer.alloc(0) : first.value
  const armored = looksArmored(head, head.length < peekSize) === true
  const raw = prepend(head, it)
  const decoder = new ArmorDecoder()
  const source = armored ? transform(raw, (b) => decoder.push(b), () => decoder.end()) : raw
  // typage parses and authenticates the header; node:crypto decrypts the payload.
  let split: Awaited<ReturnType<typeof splitHeader>>
  try {
    split = await splitHeader(source)
  } catch (err) {
    throw own(err) ?? new AgeError({ reason: "HeaderFailure", backend: "age-lib", detail: err instanceof Error ? err.message : String(err) })
  }
  let fileKey: Uint8Array
  try {
    fileKey = await d.decryptHeader(split.header)
  } catch (err) {
    throw fromLibraryError(err, "header", { ...context, macLineValid: macLineValid(split.header, false) })
  }
  if (split.nonce.length < PAYLOAD_NONCE_BYTES) throw new AgeError({ reason: "HeaderFailure", backend: "age-lib", detail: "failed to read nonce" })
  try {
    const bytesOut = await drain(decryptPayload(fileKey, split.nonce, split.reader), request.output, request.bufferBytes)
    return { bytesIn, bytesOut }
  } catch (err) {
    throw own(err) ?? fromLibraryError(err, "payload", context)
  }
}
