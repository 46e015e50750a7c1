/**
 * Job planning for scale-out (issue 16): a job's files cut into segments, each a run of
 * whole chunks that one runner encrypts on its own. AGCM v2 is positional (plaintext chunk
 * i of a file is sealed to `header + i × (chunk + 16)` bytes of its output), so a segment
 * knows exactly which plaintext bytes it reads and which output bytes it writes, and two
 * segments never touch the same bytes: each runner can `pwrite` its own range of the shared
 * `OUT.partial`, and running a segment again writes the same bytes to the same place.
 *
 * Chunk counts follow core's `ChunkSpec.planRegion` for the cipher's framing (AGCM: the
 * final chunk is always short, so a file of whole chunks ends with an empty final chunk).
 *
 * Pure: no I/O, no cluster. The cluster layer (not built yet) turns each segment into one
 * activity; the database then holds one row per segment, never one per chunk.
 *
 * @module
 */

/** A file of the job: its path (as every runner sees it) and size in bytes. */
export interface JobFile {
  readonly path: string
  readonly size: number
}

import { ChunkSpec } from "@cage/core"

/**
 * How the output is laid out: header bytes, plaintext chunk bytes, the bytes each sealed
 * chunk adds (AES-GCM tag: 16), and whether the final chunk is always short (AGCM: true).
 */
export interface Layout {
  readonly headerBytes: number
  readonly chunkBytes: number
  readonly overheadBytes: number
  readonly shortFinal: boolean
}

/** One unit of work: chunks `[firstChunk, firstChunk + chunks)` of file `file`. Offsets in bytes, ranges half-open. */
export interface Segment {
  /** Index of the file in the job. */
  readonly file: number
  /** Index of the segment within its file. */
  readonly index: number
  readonly firstChunk: number
  readonly chunks: number
  /** Plaintext bytes read: `[plainStart, plainEnd)` of the source. */
  readonly plainStart: number
  readonly plainEnd: number
  /** Output bytes written: `[outStart, outEnd)` of the output (the header is written once, by the job). */
  readonly outStart: number
  readonly outEnd: number
  /** True for the file's last segment (its last chunk is the final one; AGCM marks it). */
  readonly final: boolean
}

/** A planned job: its segments in order (file by file), and totals. */
export interface JobPlan {
  readonly layout: Layout
  readonly segmentChunks: number
  readonly segments: ReadonlyArray<Segment>
  /** Per file: its chunk count and output size in bytes. */
  readonly files: ReadonlyArray<{ readonly path: string; readonly size: number; readonly chunks: number; readonly outputBytes: number }>
  readonly plainBytes: number
  readonly outputBytes: number
}

/** The chunk count of a `size`-byte file under `layout` (core's rule: `ChunkSpec.planRegion`). */
export const chunkCount = (size: number, layout: Layout): number =>
  ChunkSpec.planRegion(size, { headerBytes: 0, chunkBytes: layout.chunkBytes, shortFinal: layout.shortFinal }).totalChunks

/**
 * Cuts every file into segments of `segmentBytes` of plaintext (rounded down to whole
 * chunks, at least one chunk). Segments tile each file's chunks exactly, in order; their
 * output ranges tile `[header, outputBytes)` exactly.
 *
 * @throws RangeError on a negative or fractional size, or a layout or segment size that is not a positive whole number of bytes
 */
export const planJob = (files: ReadonlyArray<JobFile>, layout: Layout, segmentBytes: number): JobPlan => {
  for (const [name, n, min] of [["header bytes", layout.headerBytes, 0], ["chunk bytes", layout.chunkBytes, 1], ["overhead bytes", layout.overheadBytes, 0], ["segment bytes", segmentBytes, 1]] as const) {
    if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`${name} must be a whole number ≥ ${min}, got ${n}`)
  }
  const segmentChunks = Math.max(1, Math.floor(segmentBytes / layout.chunkBytes))
  const sealed = layout.chunkBytes + layout.overheadBytes
  const segments: Array<Segment> = []
  const planned: Array<JobPlan["files"][number]> = []
  let plainBytes = 0
  let outputBytes = 0
  files.forEach((f, file) => {
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new RangeError(`${f.path}: size must be a whole number of bytes, got ${f.size}`)
    const chunks = chunkCount(f.size, layout)
    const out = layout.headerBytes + f.size + chunks * layout.overheadBytes
    for (let first = 0, index = 0; first < chunks; first += segmentChunks, index++) {
      const n = Math.min(segmentChunks, chunks - first)
      const plainStart = first * layout.chunkBytes
      const plainEnd = Math.min(f.size, (first + n) * layout.chunkBytes)
      const outStart = layout.headerBytes + first * sealed
      segments.push({ file, index, firstChunk: first, chunks: n, plainStart, plainEnd, outStart, outEnd: outStart + (plainEnd - plainStart) + n * layout.overheadBytes, final: first + n === chunks })
    }
    planned.push({ path: f.path, size: f.size, chunks, outputBytes: out })
    plainBytes += f.size
    outputBytes += out
  })
  return { layout, segmentChunks, segments, files: planned, plainBytes, outputBytes }
}

/**
 * What a job costs the database, on paper (the model the package README explains): one
 * child workflow per segment (TOOLCHAIN.md: a workflow's activities all run on the runner
 * that owns its shard, so segments spread over runners only as workflows of their own),
 * each carrying one activity. Per segment: `messagesPerSegment` request rows in
 * `cluster_messages` and as many replies in `cluster_replies`; per job, the parent
 * workflow's own rows. Payloads are small JSON (paths, ranges, a key fingerprint).
 */
export const estimate = (plan: Pick<JobPlan, "segments" | "files">, options: { readonly messagesPerSegment?: number; readonly payloadBytes?: number } = {}) => {
  const perSegment = options.messagesPerSegment ?? 2
  const payload = options.payloadBytes ?? 400
  const segments = plan.segments.length
  const messages = segments * perSegment + 2
  return { segments, files: plan.files.length, messages, replies: messages, approxBytes: 2 * messages * payload }
}

/** Bytes `[start, end)` of file `file` (its index in the job): part of a backup segment. */
export interface Piece {
  readonly file: number
  readonly start: number
  readonly end: number
}

/** Most files one backup segment stores: its payload and result stay small whatever the files' sizes. */
export const MAX_PIECES = 512

/**
 * Cuts a backup job's files into segments of pieces of about `segmentBytes` each, for the
 * chunk store (content-defined chunks): files up to `segmentBytes` are never split, and are
 * gathered in order into segments of at most `segmentBytes` and {@link MAX_PIECES} files; a
 * larger file is cut into pieces of `segmentBytes`, one segment each (each piece's end
 * forces a chunk cut, so the few chunks around it differ from a single-machine backup's;
 * the next generation cuts at the same offsets). Empty files are pieces of no bytes. Pure.
 */
export const planPieces = (sizes: ReadonlyArray<number>, segmentBytes: number): ReadonlyArray<ReadonlyArray<Piece>> => {
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1) throw new RangeError(`segment size ${segmentBytes}: expected a positive whole number of bytes`)
  const segments: Array<Array<Piece>> = []
  let current: Array<Piece> = []
  let bytes = 0
  const close = () => {
    if (current.length > 0) segments.push(current)
    current = []
    bytes = 0
  }
  sizes.forEach((size, file) => {
    if (size > segmentBytes) {
      close()
      for (let start = 0; start < size; start += segmentBytes) segments.push([{ file, start, end: Math.min(size, start + segmentBytes) }])
      return
    }
    if (bytes + size > segmentBytes || current.length >= MAX_PIECES) close()
    current.push({ file, start: 0, end: size })
    bytes += size
  })
  close()
  return segments
}
