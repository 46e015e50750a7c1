/**
 * gzip and gunzip as Cage chunk processors, written only against @cage/core's public API.
 *
 * `gzip()` compresses every chunk into its own gzip member (see `Member.ts`): members are
 * independent, so chunks compress in parallel (`ordered: false`, on libuv's thread pool)
 * and there is no state to save for a resume. The output is one valid gzip file: `gunzip`
 * and `zcat` read it.
 *
 * `gunzip()` is the inverse. A compressed member does not line up with the engine's input
 * chunks, so it collects bytes until a whole member is in (its length is in its header)
 * and inflates it: `ordered: true`. Its state between chunks is the partial member it
 * holds, which is compressed payload: it is never written to a checkpoint. It declares
 * `resumable: false, deterministic: true` (its output depends only on the bytes fed to it),
 * so on resume the engine replays the completed chunks through it, writing nothing.
 *
 * @module
 */
import { type ChunkProcessor, PROCESSOR_API_VERSION, type ProcessorCapabilities, type ProcessorFactory } from "@cage/core"
import { Effect } from "effect"
import * as zlib from "node:zlib"
import { fromZlibError, GzipError } from "./Error.js"
import { encodeMember, END_MEMBER, HEADER_BYTES, MIN_MEMBER_BYTES, readHeader } from "./Member.js"

/** This package's version, recorded in checkpoints (a test keeps it equal to package.json). */
export const VERSION = "0.1.0"
/** Registry name of the compressor: the npm package name. */
export const GZIP_NAME = "@acme/cage-processor-gzip"
/** Registry name of the decompressor. */
export const GUNZIP_NAME = "@acme/cage-processor-gzip/gunzip"
/** Default deflate level (zlib's and gzip(1)'s default). */
export const DEFAULT_LEVEL = 6
/** Members inflated at once within one chunk (libuv's thread pool has 4 threads by default). */
const MAX_PARALLEL_INFLATES = 4
/** Default bound on a member and on its decompressed size, in bytes (256 MiB). */
export const DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024

/** Options of {@link gzip}. */
export interface GzipOptions {
  /** Deflate level, 0 (store) to 9 (smallest). Default 6. */
  readonly level?: number
}

/** Options of {@link gunzip}. */
export interface GunzipOptions {
  /**
   * Largest member, and largest decompressed member, accepted, in bytes. Default 256 MiB.
   * Bounds memory against a corrupt or hostile size field or a decompression bomb; it
   * must be at least the chunk size the file was compressed with.
   */
  readonly maxMemberBytes?: number
}

/**
 * Capabilities of {@link gzip}: members are independent, so chunks may arrive in any order;
 * a chunk's member depends only on its bytes and the level (`deterministic`), so a staged
 * `gzip → agcm-encrypt` run can resume by compressing again from the start. Its output
 * is an encoding (`reversible`): a cipher after it records it, so decrypting asks for gunzip.
 */
export const gzipCapabilities: ProcessorCapabilities = { kind: "transform", ordered: false, resumable: true, deterministic: true, reversible: true }
/**
 * Capabilities of {@link gunzip}: members span chunks, so chunks come in order; no
 * snapshot. It `undoes` gzip, which lets `agcm-decrypt` check a file's recorded gzip is undone.
 */
export const gunzipCapabilities: ProcessorCapabilities = { kind: "transform", ordered: true, resumable: false, deterministic: true, undoes: GZIP_NAME }

const badOption = (detail: string) => new GzipError({ reason: "BadOption", detail })

const integerIn = (name: string, value: unknown, min: number, max: number, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw badOption(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Deflates on libuv's thread pool, so overlapping chunks use several cores. */
const deflateRaw = (data: Uint8Array, level: number) =>
  Effect.callback<Buffer>((resume) => {
    zlib.deflateRaw(data, { level }, (err, out) => {
      // deflate cannot fail on valid options and in-memory input: a failure is a bug.
      if (err) resume(Effect.die(new Error(`internal error: deflate failed: ${err.message}`)))
      else resume(Effect.succeed(out))
    })
  })

/**
 * A gzip compressor: each chunk becomes one gzip member (output size differs from input),
 * and the trailer is the empty end member that makes truncation detectable (`Member.ts`).
 *
 * @throws GzipError `BadOption` (exit code 2) when `level` is not an integer from 0 to 9.
 */
export const gzip = (options: GzipOptions = {}): ChunkProcessor => {
  const level = integerIn("level", options.level, 0, 9, DEFAULT_LEVEL)
  return {
    name: GZIP_NAME,
    version: VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: gzipCapabilities,
    options: { level },
    init: () => Effect.succeed({}),
    // `data` stays valid until this effect completes: the CRC and the deflate both finish before.
    process: (_chunk, data) => deflateRaw(data, level).pipe(Effect.map((deflated) => encodeMember(data, deflated))),
    finalize: () => Effect.succeed({ trailer: END_MEMBER })
  }
}

/**
 * The inverse of {@link gzip}: decompresses a file made of members written by `gzip()`,
 * whatever chunk size it is read with. Memory: one member plus one input chunk.
 *
 * Fails with `GzipError` (exit code 3, with the input chunk index): `NotGzip`,
 * `NoSizeField` (a plain gzip file), `Corrupt` (CRC, length or deflate error, or data after
 * the end member), `TooLarge` (beyond `maxMemberBytes`), `Truncated` (the input ends
 * before the end member).
 *
 * @throws GzipError `BadOption` (exit code 2) when `maxMemberBytes` is not a positive integer.
 */
export const gunzip = (options: GunzipOptions = {}): ChunkProcessor => {
  const maxMemberBytes = integerIn("maxMemberBytes", options.maxMemberBytes, MIN_MEMBER_BYTES, 2 ** 32 - 1, DEFAULT_MAX_MEMBER_BYTES)
  // Input bytes not yet inflated: copies, since the engine reuses chunk buffers.
  let parts: Array<Buffer> = []
  let buffered = 0
  // Length of the member being collected, once its header is in.
  let memberBytes: number | undefined
  // Whether the member being collected is the end member, and whether it has been read.
  let collectingEnd = false
  let ended = false

  const join = (): Buffer => {
    if (parts.length !== 1) parts = [Buffer.concat(parts, buffered)]
    return parts[0]
  }
  const take = (n: number): Buffer => {
    const all = join()
    const rest = all.subarray(n)
    parts = rest.length > 0 ? [rest] : []
    buffered = rest.length
    return all.subarray(0, n)
  }
  const inflate = (member: Buffer, chunk: number) =>
    Effect.callback<Buffer, GzipError>((resume) => {
      zlib.gunzip(member, { maxOutputLength: maxMemberBytes }, (err, out) => {
        if (err) return resume(Effect.fail(fromZlibError(err, chunk, maxMemberBytes)))
        // zlib checks the CRC-32 and ISIZE it reads after the deflate data; this checks that
        // they are the member's last 8 bytes, i.e. nothing hides between them and the size field.
        if (member.readUInt32LE(member.length - 4) !== out.length % 0x1_0000_0000) {
          return resume(Effect.fail(new GzipError({ reason: "Corrupt", chunk, detail: "corrupt gzip member: its length field does not match its data" })))
        }
        resume(Effect.succeed(out))
      })
    })

  return {
    name: GUNZIP_NAME,
    version: VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: gunzipCapabilities,
    options: { maxMemberBytes },
    init: () =>
      Effect.sync(() => {
        parts = []
        buffered = 0
        memberBytes = undefined
        collectingEnd = false
        ended = false
      }),
    process: (chunk, data) =>
      Effect.gen(function*() {
        if (data.length > 0) {
          parts.push(Buffer.from(data))
          buffered += data.length
        }
        // Cut the complete members first, then inflate them concurrently on libuv's thread
        // pool: members are independent even though the chunks must come in order.
        const members: Array<{ readonly bytes: Buffer; readonly end: boolean }> = []
        while (true) {
          if (ended && buffered > 0) {
            return yield* Effect.fail(new GzipError({ reason: "Corrupt", chunk: chunk.index, detail: `corrupt gzip file: ${buffered} bytes of data after the end member` }))
          }
          if (memberBytes === undefined) {
            if (buffered < HEADER_BYTES) break
            const header = readHeader(join())
            if (header._tag !== "Member") {
              return yield* Effect.fail(new GzipError({ reason: header._tag, chunk: chunk.index, detail: header.detail }))
            }
            if (header.memberBytes < MIN_MEMBER_BYTES) {
              return yield* Effect.fail(new GzipError({ reason: "Corrupt", chunk: chunk.index, detail: `corrupt gzip member: its size field says ${header.memberBytes} bytes, the minimum is ${MIN_MEMBER_BYTES}` }))
            }
            if (header.memberBytes > maxMemberBytes) {
              return yield* Effect.fail(new GzipError({ reason: "TooLarge", chunk: chunk.index, detail: `a gzip member of ${header.memberBytes} bytes exceeds maxMemberBytes (${maxMemberBytes})` }))
            }
            memberBytes = header.memberBytes
            collectingEnd = header.end
          }
          if (buffered < memberBytes) break
          members.push({ bytes: take(memberBytes), end: collectingEnd })
          memberBytes = undefined
          ended = collectingEnd
        }
        const out = yield* Effect.forEach(members, (m) =>
          inflate(m.bytes, chunk.index).pipe(
            Effect.filterOrFail(
              (plain) => !m.end || plain.length === 0,
              () => new GzipError({ reason: "Corrupt", chunk: chunk.index, detail: "corrupt gzip file: the end member is not empty" })
            )
          ), { concurrency: MAX_PARALLEL_INFLATES })
        return out.length === 1 ? out[0] : Buffer.concat(out)
      }),
    finalize: () =>
      Effect.suspend(() => {
        if (buffered > 0) {
          return Effect.fail(new GzipError({ reason: "Truncated", detail: `truncated gzip file: it ends ${buffered} bytes into a member${memberBytes === undefined ? " header" : ` of ${memberBytes} bytes`}` }))
        }
        if (!ended) {
          return Effect.fail(new GzipError({ reason: "Truncated", detail: "truncated gzip file: it ends before its end member" }))
        }
        return Effect.succeed({})
      })
  }
}

/** The factory of {@link gzip}, as the `cage` CLI loads it (`cage.toml`: `"@acme/cage-processor-gzip"`). */
export const gzipFactory: ProcessorFactory<GzipOptions> = {
  name: GZIP_NAME,
  apiVersion: PROCESSOR_API_VERSION,
  description: "gzip compression: one independent gzip member per chunk (gunzip reads the output)",
  capabilities: gzipCapabilities,
  make: gzip
}

/** The factory of {@link gunzip}. */
export const gunzipFactory: ProcessorFactory<GunzipOptions> = {
  name: GUNZIP_NAME,
  apiVersion: PROCESSOR_API_VERSION,
  description: "gzip decompression of files written by @acme/cage-processor-gzip",
  capabilities: gunzipCapabilities,
  make: gunzip
}
