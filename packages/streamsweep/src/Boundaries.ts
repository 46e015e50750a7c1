/**
 * Safe chunk boundaries for JSON: a planner that cuts a top-level array, NDJSON or a
 * sequence of values only between top-level elements, and a checker that tells, for any
 * cut offset, what it would split.
 *
 * A JSON document cannot be cut at an arbitrary byte offset without knowing the structure
 * before it: the cut may land inside a string (where brackets mean nothing), an escape, a
 * number or a nested container. Both functions therefore run the full validating state
 * machine, in one pass and bounded memory.
 *
 * @module
 */
import type { ChunkInput, ChunkSpec, IoError } from "@cage/core"
import * as Effect from "effect/Effect"
import { fromScanFailure, type JsonSyntaxError, StreamSweepUsageError } from "./Error.js"
import { feed, withFile } from "./internal/feed.js"
import { PathTracker } from "./internal/path.js"
import {
  KIND_ARRAY,
  MODE_DOCUMENT,
  MODE_NDJSON,
  MODE_SEQUENCE,
  S_ESCAPE,
  S_LITERAL,
  S_NUM_EXP,
  S_NUM_FRAC,
  S_NUM_INT,
  S_NUM_MINUS,
  S_NUM_ZERO,
  S_STRING,
  S_SURR_BACKSLASH,
  S_SURR_U,
  S_UNICODE,
  S_UTF8,
  type ScanEvents,
  EventScanner
} from "./internal/scanner.js"
import { checkDepth } from "./Validate.js"

/**
 * Layout for planning and cut checks: `"array"` (one top-level array, elements are its
 * items), `"ndjson"`, `"sequence"` (elements are the top-level values), or `"auto"`
 * (default): `"array"` when the first value is an array (then nothing may follow it), else `"sequence"`.
 */
export type PlanFormat = "auto" | "array" | "ndjson" | "sequence"

/** A planned chunk: whole top-level elements `[start, end)` (bytes). */
export interface PlannedChunk extends ChunkSpec.ChunkSpec {
  /** Index of the chunk's first element among all top-level elements. */
  readonly firstElement: number
  /** Elements in the chunk. */
  readonly elements: number
}

/** Options of {@link plan}. */
export interface PlanOptions {
  /** Wanted chunk size in bytes (> 0). Chunks stay at or under it unless one element is larger. */
  readonly targetBytes: number
  readonly format?: PlanFormat
  /** Nesting limit (default 1024). */
  readonly maxDepth?: number
  /** Called with each chunk as soon as it is known; with it, `chunks` in the result stays empty (bounded memory). */
  readonly onChunk?: (chunk: PlannedChunk) => void
  /** Read size in bytes (default 1 MiB). */
  readonly readBytes?: number
}

/** A boundary plan. JSON-able. */
export interface BoundaryPlan {
  readonly input: string
  readonly format: "array" | "ndjson" | "sequence"
  readonly targetBytes: number
  /** Input size in bytes. */
  readonly bytes: number
  /** Top-level elements. */
  readonly elements: number
  /** Total chunks (also when they went to `onChunk`). */
  readonly totalChunks: number
  readonly chunks: ReadonlyArray<PlannedChunk>
  /** Safe cut offsets: every chunk's `end` but the last one's. */
  readonly cuts: ReadonlyArray<number>
}

const badFormat = (format: unknown) =>
  new StreamSweepUsageError({ reason: "Format", detail: `unknown format ${String(format)} (use auto, array, ndjson or sequence)` })

/** Scanner mode before the first value, and the element depth it implies. */
const startMode = (format: PlanFormat): number =>
  format === "ndjson" ? MODE_NDJSON : format === "array" ? MODE_DOCUMENT : MODE_SEQUENCE

class Planner implements ScanEvents {
  eventDepth: number
  readonly wantKeys = false
  elementDepth: number
  elements = 0
  totalChunks = 0
  /** A top-level value that is not the array required by format "array". */
  notArray: NotArray | undefined
  private elemStart = 0
  private chunkStart = -1
  private chunkFirst = 0
  private chunkEnd = 0
  private pending: PlannedChunk | undefined
  readonly cuts: Array<number> = []

  constructor(
    public scanner: ScannerPosition,
    readonly format: PlanFormat,
    readonly targetBytes: number,
    readonly emit: (chunk: PlannedChunk) => void
  ) {
    this.elementDepth = format === "array" ? 1 : 0
    this.eventDepth = format === "auto" || format === "array" ? 1 : 0
  }

  private sawTop = false

  valueStart(kind: number, depth: number, offset: number): void {
    if (depth === 0 && !this.sawTop) {
      this.sawTop = true
      if (this.format === "auto") {
        if (kind === KIND_ARRAY) {
          // An array document: its items are the elements, and nothing may follow it.
          this.elementDepth = 1
          this.scanner.mode = MODE_DOCUMENT
        }
      } else if (this.format === "array" && kind !== KIND_ARRAY) this.notArray = notArrayAt(this.scanner, offset)
    }
    if (depth === this.elementDepth) this.elemStart = offset
  }

  valueEnd(_kind: number, depth: number, end: number): void {
    if (depth !== this.elementDepth) return
    if (this.chunkStart < 0) {
      this.chunkStart = this.elemStart
      this.chunkFirst = this.elements
    } else if (end - this.chunkStart > this.targetBytes) {
      this.close()
      this.chunkStart = this.elemStart
      this.chunkFirst = this.elements
    }
    this.chunkEnd = end
    this.elements++
  }

  key(): void {}

  private close() {
    if (this.pending !== undefined) {
      this.cuts.push(this.pending.end)
      this.emit(this.pending)
    }
    const start = this.chunkStart
    const end = this.chunkEnd
    this.pending = {
      index: this.totalChunks++, start, end, length: end - start, final: false,
      firstElement: this.chunkFirst, elements: this.elements - this.chunkFirst
    }
  }

  finish() {
    if (this.chunkStart >= 0) this.close()
    if (this.pending !== undefined) this.emit({ ...this.pending, final: true })
  }

  get resolvedFormat(): "array" | "ndjson" | "sequence" {
    return this.elementDepth === 1 ? "array" : this.format === "ndjson" ? "ndjson" : "sequence"
  }
}

/** What the planner and the cut checker read from (and set on) their scanner. */
interface ScannerPosition {
  mode: number
  readonly line: number
  readonly lineStart: number
}

interface NotArray {
  readonly offset: number
  readonly line: number
  readonly column: number
}

const notArrayAt = (s: ScannerPosition, offset: number): NotArray => ({ offset, line: s.line, column: offset - s.lineStart + 1 })

const notArrayError = (input: string, at: NotArray): JsonSyntaxError =>
  fromScanFailure(input, { reason: "UnexpectedByte", ...at, expected: "'[' (format array: a top-level array)", found: "another value" })

/**
 * Plans chunks of about `targetBytes` whose edges fall only between top-level elements.
 * One pass over the input; memory is the read buffer, the nesting stack and the chunk list
 * (or nothing with `onChunk`).
 *
 * @throws JsonSyntaxError (3) when the input is not valid JSON in that format (the whole input is validated).
 * @throws StreamSweepUsageError (2) for a target size that is not a positive integer or an unknown format.
 * @throws IoError (4) when the input cannot be read.
 */
export const plan = (
  input: ChunkInput.ChunkInput,
  options: PlanOptions
): Effect.Effect<BoundaryPlan, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  Effect.gen(function*() {
    const { targetBytes } = options
    if (!Number.isSafeInteger(targetBytes) || targetBytes < 1) {
      return yield* Effect.fail(new StreamSweepUsageError({ reason: "Option", detail: `target size must be a positive number of bytes, got ${targetBytes}` }))
    }
    const format = options.format ?? "auto"
    if (!["auto", "array", "ndjson", "sequence"].includes(format)) return yield* Effect.fail(badFormat(format))
    const maxDepth = yield* checkDepth(options.maxDepth)
    const chunks: Array<PlannedChunk> = []
    const onChunk = options.onChunk ?? ((c: PlannedChunk) => void chunks.push(c))
    const planner = new Planner({ mode: startMode(format), line: 1, lineStart: 0 }, format, targetBytes, onChunk)
    const scanner = new EventScanner({ mode: planner.scanner.mode, maxDepth, events: planner })
    // The planner switches the scanner's mode once it sees the first value.
    planner.scanner = scanner
    const bytes = yield* feed(input, (buf, n) => scanner.write(buf, 0, n) && planner.notArray === undefined, options.readBytes)
    if (planner.notArray !== undefined) return yield* Effect.fail(notArrayError(input.description, planner.notArray))
    if (scanner.failure === undefined) scanner.end()
    if (scanner.failure !== undefined) return yield* Effect.fail(fromScanFailure(input.description, scanner.failure))
    planner.finish()
    return {
      input: input.description,
      format: planner.resolvedFormat,
      targetBytes,
      bytes,
      elements: planner.elements,
      totalChunks: planner.totalChunks,
      chunks,
      cuts: planner.cuts
    }
  })

/** {@link plan} over the file at `path`. What `cage json plan FILE --target-size SIZE` runs. */
export const planFile = (
  path: string,
  options: PlanOptions
): Effect.Effect<BoundaryPlan, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  withFile(path, (input) => plan(input, options))

/** What a cut splits. `"between"` and `"edge"` are safe. */
export type CutPlace = "edge" | "between" | "string" | "escape" | "number" | "literal" | "structure"

/** The verdict on one cut offset. */
export interface CutVerdict {
  /** The cut: bytes `[0, offset)` | `[offset, size)`. */
  readonly offset: number
  readonly safe: boolean
  readonly inside: CutPlace
  /** Containers open at the cut. */
  readonly depth: number
  /** Innermost place: the token's path for token cuts, the open container's for structural cuts. */
  readonly path: string
  /** 1-based line and byte column of the byte after the cut. */
  readonly line: number
  readonly column: number
}

/** The result of {@link checkCuts}. JSON-able. */
export interface CutReport {
  readonly input: string
  readonly format: "array" | "ndjson" | "sequence"
  readonly bytes: number
  /** True when every cut is safe. */
  readonly safe: boolean
  /** Count of unsafe cuts. */
  readonly unsafe: number
  /** Exit code for `cage json check-cuts`: 0 when safe, 3 when any cut is unsafe. */
  readonly exitCode: 0 | 3
  /** One verdict per distinct offset, ascending. */
  readonly cuts: ReadonlyArray<CutVerdict>
}

/** Options of {@link checkCuts}. */
export interface CheckCutsOptions {
  readonly format?: PlanFormat
  readonly maxDepth?: number
  /** Read size in bytes (default 1 MiB). */
  readonly readBytes?: number
}

// Bytes that continue a number in each state where the number could also be complete.
const continuesNumber = (state: number, c: number): boolean => {
  const digit = c >= 0x30 && c <= 0x39
  const exp = c === 0x65 || c === 0x45
  switch (state) {
    case S_NUM_ZERO:
      return digit || c === 0x2e || exp
    case S_NUM_INT:
      return digit || c === 0x2e || exp
    case S_NUM_FRAC:
      return digit || exp
    default:
      return digit
  }
}

const isOpenNumber = (s: number) => s === S_NUM_ZERO || s === S_NUM_INT || s === S_NUM_FRAC || s === S_NUM_EXP

/**
 * Checks cut offsets against the structure of the input. Runs the validating scanner once,
 * pausing at each cut. A cut is safe at 0, at the end, or when it falls between top-level
 * elements (see {@link PlanFormat}).
 *
 * @param offsets byte offsets, any order, duplicates ignored; each in `[0, size]`.
 * @throws JsonSyntaxError (3) when the input is not valid JSON in that format.
 * @throws StreamSweepUsageError (2) for an offset that is negative, fractional or beyond the end.
 * @throws IoError (4).
 */
export const checkCuts = (
  input: ChunkInput.ChunkInput,
  offsets: ReadonlyArray<number>,
  options: CheckCutsOptions = {}
): Effect.Effect<CutReport, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  Effect.gen(function*() {
    const format = options.format ?? "auto"
    if (!["auto", "array", "ndjson", "sequence"].includes(format)) return yield* Effect.fail(badFormat(format))
    const maxDepth = yield* checkDepth(options.maxDepth)
    for (const o of offsets) {
      if (!Number.isSafeInteger(o) || o < 0 || (input.size !== undefined && o > input.size)) {
        return yield* Effect.fail(new StreamSweepUsageError({ reason: "Offset", detail: `cut offset ${o} is outside the input (0..${input.size ?? "end"})` }))
      }
    }
    const sorted = [...new Set(offsets)].sort((a, b) => a - b)
    let elementDepth = format === "array" ? 1 : 0
    let notArray: NotArray | undefined
    const tracker = new PathTracker((kind, offset) => {
      if (format === "auto" && kind === KIND_ARRAY) {
        // An array document: its items are the elements, and nothing may follow it.
        elementDepth = 1
        scanner.mode = MODE_DOCUMENT
      } else if (format === "array" && kind !== KIND_ARRAY) notArray = notArrayAt(scanner, offset)
    })
    const scanner = new EventScanner({ mode: startMode(format), maxDepth, events: tracker })
    const verdicts: Array<CutVerdict> = []
    let next = 0
    // A cut after a digit waits for the next byte to know whether the number goes on.
    let pendingNumber: { offset: number; state: number; depth: number; line: number; column: number } | undefined

    const structural = (offset: number, depth: number, line: number, column: number): CutVerdict => {
      const safe = depth <= elementDepth
      return { offset, safe, inside: safe ? "between" : "structure", depth, path: tracker.path(Math.max(0, depth - 1)), line, column }
    }
    const settlePending = (nextByte: number | undefined) => {
      const p = pendingNumber!
      pendingNumber = undefined
      if (nextByte !== undefined && continuesNumber(p.state, nextByte)) {
        verdicts.push({ offset: p.offset, safe: false, inside: "number", depth: p.depth, path: tracker.path(p.depth), line: p.line, column: p.column })
      } else verdicts.push(structural(p.offset, p.depth, p.line, p.column))
    }
    const classify = (offset: number, buf: Uint8Array, i: number, n: number) => {
      const s = scanner.state
      const depth = scanner.depth
      const line = scanner.line
      const column = offset - scanner.lineStart + 1
      if (offset === 0 || (input.size !== undefined && offset === input.size)) {
        verdicts.push({ offset, safe: true, inside: "edge", depth, path: "$", line, column })
        return
      }
      if (isOpenNumber(s)) {
        pendingNumber = { offset, state: s, depth, line, column }
        if (i < n) settlePending(buf[i])
        return
      }
      const token = (inside: CutPlace) => verdicts.push({ offset, safe: false, inside, depth, path: tracker.path(depth), line, column })
      if (s === S_STRING || s === S_UTF8) token("string")
      else if (s === S_ESCAPE || s === S_UNICODE || s === S_SURR_BACKSLASH || s === S_SURR_U) token("escape")
      else if (s === S_LITERAL) token("literal")
      else if (s >= S_NUM_MINUS) token("number")
      else verdicts.push(structural(offset, depth, line, column))
    }

    const bytes = yield* feed(input, (buf, n, position) => {
      let from = 0
      if (pendingNumber !== undefined) settlePending(buf[0])
      while (next < sorted.length && sorted[next] < position + n) {
        const at = sorted[next++] - position
        if (!scanner.write(buf, from, at) || notArray !== undefined) return false
        from = at
        classify(position + at, buf, at, n)
      }
      return scanner.write(buf, from, n) && notArray === undefined
    }, options.readBytes)
    if (notArray !== undefined) return yield* Effect.fail(notArrayError(input.description, notArray))
    if (scanner.failure === undefined) scanner.end()
    if (scanner.failure !== undefined) return yield* Effect.fail(fromScanFailure(input.description, scanner.failure))
    if (pendingNumber !== undefined) settlePending(undefined)
    while (next < sorted.length) {
      const o = sorted[next++]
      if (o > bytes) return yield* Effect.fail(new StreamSweepUsageError({ reason: "Offset", detail: `cut offset ${o} is beyond the end of the input (${bytes} bytes)` }))
      verdicts.push({ offset: o, safe: true, inside: "edge", depth: 0, path: "$", line: scanner.line, column: o - scanner.lineStart + 1 })
    }
    const unsafe = verdicts.filter((v) => !v.safe).length
    return {
      input: input.description,
      format: elementDepth === 1 ? "array" : format === "ndjson" ? "ndjson" : "sequence",
      bytes,
      safe: unsafe === 0,
      unsafe,
      exitCode: unsafe === 0 ? 0 : 3,
      cuts: verdicts
    }
  })

/** {@link checkCuts} over the file at `path`. What `cage json check-cuts FILE --at OFFSETS` runs. */
export const checkCutsFile = (
  path: string,
  offsets: ReadonlyArray<number>,
  options: CheckCutsOptions = {}
): Effect.Effect<CutReport, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  withFile(path, (input) => checkCuts(input, offsets, options))
