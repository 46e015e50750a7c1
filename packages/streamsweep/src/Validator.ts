/**
 * The synchronous streaming validator, with no dependency on the Effect runtime or the
 * chunk engine: `import { Validator } from "@cage/streamsweep/validator"` loads only this
 * module and the state machine, for the smallest footprint (hot loops, workers, tools).
 *
 * RFC 8259 grammar; UTF-8 checked strictly (Unicode Table 3-7: no overlongs, no encoded
 * surrogates, nothing above U+10FFFF); `\u` escapes must pair surrogates; nesting is
 * limited by `maxDepth`. Memory: a few integers plus one byte per open container.
 *
 * @module
 */
import { fromScanFailure, type JsonSyntaxError } from "./Error.js"
import { MODE_DOCUMENT, MODE_NDJSON, MODE_SEQUENCE, Scanner } from "./internal/scanner.js"

/**
 * Top-level layout of an input.
 * - `"document"`: exactly one JSON value (an RFC 8259 JSON-text), surrounded by optional whitespace.
 * - `"sequence"`: zero or more concatenated values. Numbers and literals must be separated
 *   from a neighbouring value by whitespace (`1 2`, not `12`); objects, arrays and strings
 *   need no separator (`{}{}`).
 * - `"ndjson"`: zero or more values, each starting on a later line than the previous one
 *   ended (NDJSON / JSON Lines). Blank lines are accepted.
 */
export type JsonFormat = "document" | "sequence" | "ndjson"

/** Default nesting limit: containers open at once. */
export const DEFAULT_MAX_DEPTH = 1024

/** Options of {@link validate}. */
export interface ValidateOptions {
  /** Top-level layout (default `"document"`). */
  readonly format?: JsonFormat
  /** Most containers open at once (default {@link DEFAULT_MAX_DEPTH}); deeper fails with `DepthLimit`. */
  readonly maxDepth?: number
  /** Read size in bytes for whole-input validation (default 1 MiB). */
  readonly readBytes?: number
}

/** What a successful validation found. JSON-able. */
export interface ValidationReport {
  readonly valid: true
  readonly input: string
  readonly format: JsonFormat
  /** Input size in bytes. */
  readonly bytes: number
  /** Top-level values (1 for a document). */
  readonly values: number
  /** Deepest nesting (containers open at once); 0 for a scalar. */
  readonly maxDepth: number
  /** Lines (count of LF bytes plus one). */
  readonly lines: number
}

/** @internal */
export const modeOf = (format: JsonFormat): number =>
  format === "document" ? MODE_DOCUMENT : format === "ndjson" ? MODE_NDJSON : MODE_SEQUENCE

/**
 * An incremental validator: `push` chunks cut anywhere, then `end`. After the first
 * error every call returns false and `error` holds the {@link JsonSyntaxError}.
 *
 * @example
 * const v = new Validator({ format: "ndjson" })
 * v.push(bytesA) && v.push(bytesB) && v.end() // true when valid
 */
export class Validator {
  /** @internal */
  readonly scanner: Scanner
  readonly format: JsonFormat
  readonly input: string

  constructor(options: { readonly format?: JsonFormat; readonly maxDepth?: number; readonly input?: string } = {}) {
    this.format = options.format ?? "document"
    this.input = options.input ?? "input"
    this.scanner = new Scanner({ mode: modeOf(this.format), maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH })
  }

  /** Consumes `bytes` (not retained). False once the input is known to be invalid. */
  push(bytes: Uint8Array, from = 0, to = bytes.length): boolean {
    return this.scanner.write(bytes, from, to)
  }

  /** Signals end of input: false when the input stopped mid-value (or held no value, for a document). */
  end(): boolean {
    return this.scanner.end()
  }

  /** The first error, once `push` or `end` returned false. */
  get error(): JsonSyntaxError | undefined {
    const f = this.scanner.failure
    return f === undefined ? undefined : fromScanFailure(this.input, f)
  }

  /** Bytes consumed so far. */
  get bytes(): number {
    return this.scanner.pos
  }

  /** The report after a successful `end()`. */
  report(): ValidationReport {
    const s = this.scanner
    return { valid: true, input: this.input, format: this.format, bytes: s.pos, values: s.values, maxDepth: s.maxDepthSeen, lines: s.line }
  }
}

/**
 * Synchronous check of bytes in memory: `undefined` when valid, else the error.
 */
export const validateBytes = (
  bytes: Uint8Array,
  options: { readonly format?: JsonFormat; readonly maxDepth?: number } = {}
): JsonSyntaxError | undefined => {
  const v = new Validator(options)
  if (v.push(bytes)) v.end()
  return v.error
}
