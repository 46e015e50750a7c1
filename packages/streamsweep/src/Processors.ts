/**
 * StreamSweep as chunk processors for `@cage/core`'s engine: `json-validate` (validate
 * before encrypt) and `json-index` (forensic metadata and the sidecar index). Both are
 * ordered observers: they read each chunk in order and never change it.
 *
 * @module
 */
import {
  type ChunkProcessor,
  type JsonValue,
  PROCESSOR_API_VERSION,
  type ProcessorCapabilities,
  type ProcessorFactory
} from "@cage/core"
import * as Effect from "effect/Effect"
import { fromScanFailure, StreamSweepUsageError } from "./Error.js"
import { type IndexWriter, Inspector } from "./internal/inspector.js"
import { Scanner } from "./internal/scanner.js"
import { commitIndex, type InspectOptions, metadataOf, openIndex, resolveLimits } from "./Inspect.js"
import { checkDepth, DEFAULT_MAX_DEPTH, type JsonFormat, modeOf, type ValidationReport } from "./Validate.js"

const VERSION = "0.1.0"

/** Options of {@link jsonValidate}. */
export interface JsonValidateOptions {
  /** Top-level layout (default `"document"`). */
  readonly format?: JsonFormat
  /** Nesting limit (default 1024). */
  readonly maxDepth?: number
}

// Not resumable: the engine may call `snapshot()` while segments beyond the checkpointed
// boundary are already processed, so scanner state cannot be tied to a checkpoint; the
// engine replays completed chunks instead (validation runs at read speed).
const validateCapabilities: ProcessorCapabilities = { kind: "observer", ordered: true, resumable: false }
const indexCapabilities: ProcessorCapabilities = { kind: "observer", ordered: true, resumable: false }

// The engine hands chunks in order; a gap means a broken contract, not bad data.
const outOfOrder = (name: string, expected: number, got: number) =>
  Effect.die(new Error(`internal error: ${name} expected the chunk at byte ${expected}, got ${got}`))

/**
 * `json-validate`: fails the run at the first byte that makes the input invalid JSON.
 *
 * - `process` fails with `JsonSyntaxError` (exit code 3; offsets count from the first
 *   chunk's first byte, i.e. after any header the first processor declared).
 * - `finalize` fails when the input ends mid-value, else returns the {@link ValidationReport}
 *   without `input` as `result`.
 * - Not resumable: on resume the engine replays the completed chunks through it.
 */
export const jsonValidate = (options: JsonValidateOptions = {}): ChunkProcessor => {
  const format = options.format ?? "document"
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH
  let scanner: Scanner | undefined
  let input = "input"
  return {
    name: "json-validate",
    version: VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: validateCapabilities,
    options: { format, maxDepth },
    init: (context) =>
      Effect.gen(function*() {
        yield* checkDepth(maxDepth)
        if (!["document", "sequence", "ndjson"].includes(format)) {
          return yield* Effect.fail(new StreamSweepUsageError({ reason: "Format", detail: `unknown format ${format} (use document, sequence or ndjson)` }))
        }
        input = context.input
        scanner = new Scanner({ mode: modeOf(format), maxDepth })
        return {}
      }),
    process: (chunk, data) =>
      Effect.suspend(() => {
        const s = scanner!
        if (chunk.start !== s.pos) return outOfOrder("json-validate", s.pos, chunk.start)
        return s.write(data) ? Effect.succeed(undefined) : Effect.fail(fromScanFailure(input, s.failure!))
      }),
    finalize: () =>
      Effect.suspend(() => {
        const s = scanner!
        if (!s.end()) return Effect.fail(fromScanFailure(input, s.failure!))
        // No `input` in results: they describe the data, whatever the source was called.
        const report: Omit<ValidationReport, "input"> = { valid: true, format, bytes: s.pos, values: s.values, maxDepth: s.maxDepthSeen, lines: s.line }
        return Effect.succeed({ result: report as unknown as JsonValue })
      }),
  }
}

/** Options of {@link jsonIndex}: those of `inspect` (budgets, `format`, `indexPath`). */
export type JsonIndexOptions = InspectOptions

/**
 * `json-index`: gathers the forensic metadata of `inspect` while the pipeline runs, and
 * writes the sidecar index (`indexPath`) as it goes (`<indexPath>.partial`, renamed in
 * `finalize`, removed on failure).
 *
 * - `process` fails with `JsonSyntaxError` (3) on invalid JSON (ill-formed UTF-8 is reported, not fatal).
 * - `finalize` returns the `JsonMetadata` without `input` as `result`; fails with `IoError` (4) if the index cannot be written.
 * - Not resumable (its statistics are not checkpointed): the engine replays completed chunks through it.
 */
export const jsonIndex = (options: JsonIndexOptions = {}): ChunkProcessor => {
  let inspector: Inspector | undefined
  let index: IndexWriter | undefined
  let committed = false
  let input = "input"
  const recorded: { [k: string]: JsonValue } = {}
  for (const [k, v] of Object.entries(options)) if (v !== undefined) recorded[k] = v as JsonValue
  return {
    name: "json-index",
    version: VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: indexCapabilities,
    options: recorded,
    init: (context) =>
      Effect.gen(function*() {
        const limits = yield* resolveLimits(options)
        input = context.input
        index = yield* openIndex(options.indexPath)
        inspector = new Inspector(options.format ?? "auto", limits, index)
        return {}
      }),
    process: (chunk, data) =>
      Effect.suspend(() => {
        const ins = inspector!
        if (chunk.start !== ins.scanner.pos) return outOfOrder("json-index", ins.scanner.pos, chunk.start)
        return ins.write(data, 0, data.length) ? Effect.succeed(undefined) : Effect.fail(fromScanFailure(input, ins.scanner.failure!))
      }),
    finalize: () =>
      Effect.gen(function*() {
        const ins = inspector!
        if (!ins.scanner.end()) return yield* Effect.fail(fromScanFailure(input, ins.scanner.failure!))
        if (index !== undefined) {
          yield* commitIndex(index)
          committed = true
        }
        const { input: _input, ...metadata } = metadataOf(input, ins, options.indexPath ?? null)
        return { result: metadata as unknown as JsonValue }
      }),
    close: () => Effect.sync(() => { if (index !== undefined && !committed) index.abort() })
  }
}

/** `json-validate` as a factory (for registries and configuration by name). */
export const jsonValidateFactory: ProcessorFactory<JsonValidateOptions> = {
  name: "json-validate",
  apiVersion: PROCESSOR_API_VERSION,
  description: "Streaming RFC 8259 validation (strict UTF-8, nesting limit); fails at the first invalid byte",
  capabilities: validateCapabilities,
  make: jsonValidate
}

/** `json-index` as a factory. */
export const jsonIndexFactory: ProcessorFactory<JsonIndexOptions> = {
  name: "json-index",
  apiVersion: PROCESSOR_API_VERSION,
  description: "Bounded JSON metadata (depth, types, keys, paths, largest tokens, anomalies) and a sidecar index of top-level elements",
  capabilities: indexCapabilities,
  make: jsonIndex
}
