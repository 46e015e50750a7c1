/**
 * Forensic metadata of a JSON input in bounded memory: depth, counts by type, key
 * statistics (exact, then a Misra-Gries heavy-hitters sketch), key paths with array indices
 * collapsed, the largest tokens and anomalies, plus an optional sidecar index of the
 * top-level elements written to disk as it goes.
 *
 * @module
 */
import { type ChunkInput, fromSystemError, type IoError } from "@cage/core"
import * as Effect from "effect/Effect"
import { fromScanFailure, type JsonSyntaxError, StreamSweepUsageError } from "./Error.js"
import { feed, withFile } from "./internal/feed.js"
import { type AnomalyList, IndexWriter, type InspectFormat, type InspectLimits, Inspector, type Token } from "./internal/inspector.js"
import { KIND_NAMES } from "./internal/scanner.js"
import { DEFAULT_MAX_DEPTH } from "./Validate.js"

export type { Token }

/** Options of {@link inspect}; every budget has a default. */
export interface InspectOptions {
  /**
   * Layout (default `"auto"`: a top-level array's items are the elements, else each
   * top-level value). `"document"`: exactly one value, which is the one element.
   */
  readonly format?: InspectFormat
  /** Nesting limit (default 1024): deeper fails with `DepthLimit`. */
  readonly maxDepth?: number
  /** Distinct keys counted exactly before switching to the sketch (default 10,000). */
  readonly exactKeyLimit?: number
  /** Counters of the heavy-hitters sketch (default 1,000). */
  readonly sketchCapacity?: number
  /** Distinct collapsed key paths kept (default 10,000); later new paths are not counted. */
  readonly pathLimit?: number
  /** Keys and paths listed in the result (default 20 and 50). */
  readonly topKeys?: number
  readonly topPaths?: number
  /** Largest strings and numbers listed (default 5 each). */
  readonly largestTokens?: number
  /** Nesting above which containers are reported as deep (default 64). */
  readonly deepThreshold?: number
  /** Token size above which it is reported as huge, in bytes (default 1 MiB). */
  readonly hugeTokenBytes?: number
  /** Items kept per anomaly list (default 100); the count covers all. */
  readonly anomalyLimit?: number
  /** Keys remembered across open objects for duplicate detection (default 65,536). */
  readonly duplicateKeyBudget?: number
  /** Sidecar index path: one `start end` line (bytes, end exclusive) per top-level element. */
  readonly indexPath?: string
  /** Read size in bytes (default 1 MiB). */
  readonly readBytes?: number
}

/** Forensic metadata. JSON-able. */
export interface JsonMetadata {
  readonly input: string
  readonly format: "array" | "document" | "ndjson" | "sequence"
  /** Bytes read. */
  readonly bytes: number
  readonly lines: number
  /** False when ill-formed UTF-8 was found (the syntax was otherwise valid). */
  readonly validUtf8: boolean
  readonly topLevelElements: number
  /** Deepest nesting (containers open at once). */
  readonly maxDepth: number
  /** Values by type. */
  readonly counts: { readonly [K in (typeof KIND_NAMES)[number]]: number }
  readonly keys: {
    readonly total: number
    /** Exact when `exact`, else a lower bound. */
    readonly distinct: number
    readonly exact: boolean
    /** Counts are exact when `exact`; else lower bounds, each at most `maxUndercount` below the truth. */
    readonly maxUndercount: number
    readonly top: ReadonlyArray<{ readonly key: string; readonly count: number }>
  }
  readonly paths: {
    readonly distinct: number
    /** False when `pathLimit` was reached (later new paths were not counted). */
    readonly exact: boolean
    readonly top: ReadonlyArray<{ readonly path: string; readonly count: number }>
  }
  readonly largestStrings: ReadonlyArray<Token>
  readonly largestNumbers: ReadonlyArray<Token>
  readonly anomalies: {
    readonly deepNesting: AnomalyList<{ offset: number; depth: number; path: string }> & { readonly threshold: number }
    readonly hugeTokens: AnomalyList<{ offset: number; bytes: number; kind: string; path: string }> & { readonly thresholdBytes: number }
    readonly duplicateKeys: AnomalyList<{ offset: number; key: string; path: string }> & { readonly complete: boolean }
    readonly invalidUtf8: AnomalyList<number>
  }
  /** The sidecar index written, if any. */
  readonly index: string | null
}

/** @internal */
export const resolveLimits = (o: InspectOptions): Effect.Effect<InspectLimits, StreamSweepUsageError> => {
  const limits: InspectLimits = {
    maxDepth: o.maxDepth ?? DEFAULT_MAX_DEPTH,
    exactKeyLimit: o.exactKeyLimit ?? 10_000,
    sketchCapacity: o.sketchCapacity ?? 1_000,
    pathLimit: o.pathLimit ?? 10_000,
    topKeys: o.topKeys ?? 20,
    topPaths: o.topPaths ?? 50,
    largestTokens: o.largestTokens ?? 5,
    deepThreshold: o.deepThreshold ?? 64,
    hugeTokenBytes: o.hugeTokenBytes ?? 1 << 20,
    anomalyLimit: o.anomalyLimit ?? 100,
    duplicateKeyBudget: o.duplicateKeyBudget ?? 65_536,
    previewBytes: 48
  }
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isSafeInteger(v) || v < (k === "maxDepth" || k === "sketchCapacity" ? 1 : 0)) {
      return Effect.fail(new StreamSweepUsageError({ reason: "Option", detail: `${k} must be a non-negative integer, got ${v}` }))
    }
  }
  if (o.format !== undefined && !["auto", "document", "array", "ndjson", "sequence"].includes(o.format)) {
    return Effect.fail(new StreamSweepUsageError({ reason: "Format", detail: `unknown format ${o.format} (use auto, document, array, ndjson or sequence)` }))
  }
  return Effect.succeed(limits)
}

/** @internal Builds the metadata from a finished inspector. */
export const metadataOf = (input: string, ins: Inspector, index: string | null): JsonMetadata => {
  const s = ins.scanner
  const counts = Object.fromEntries(KIND_NAMES.map((k, i) => [k, ins.counts[i]])) as JsonMetadata["counts"]
  return {
    input,
    format: ins.elementDepth === 1 ? "array" : ins.format === "ndjson" || ins.format === "document" ? ins.format : "sequence",
    bytes: s.pos,
    lines: s.line,
    validUtf8: ins.badUtf8.count === 0,
    topLevelElements: ins.elements,
    maxDepth: s.maxDepthSeen,
    counts,
    keys: { total: ins.keysTotal, distinct: ins.distinctKeys, exact: ins.keysExact, maxUndercount: ins.sketchError, top: ins.topKeys() },
    paths: { distinct: ins.distinctPaths, exact: ins.pathsExact, top: ins.topPaths() },
    largestStrings: ins.largestStrings,
    largestNumbers: ins.largestNumbers,
    anomalies: {
      deepNesting: { ...ins.deepNesting, threshold: ins.limits.deepThreshold },
      hugeTokens: { ...ins.hugeTokens, thresholdBytes: ins.limits.hugeTokenBytes },
      duplicateKeys: { ...ins.duplicateKeys, complete: ins.duplicateCheckComplete },
      invalidUtf8: ins.badUtf8
    },
    index
  }
}

/** @internal Opens the sidecar index writer (`<path>.partial`, renamed on success). */
export const openIndex = (path: string | undefined): Effect.Effect<IndexWriter | undefined, IoError> =>
  path === undefined
    ? Effect.succeed(undefined)
    : Effect.try({ try: () => new IndexWriter(path), catch: (e) => fromSystemError("open", `${path}.partial`, e) })

/** @internal */
export const commitIndex = (w: IndexWriter): Effect.Effect<void, IoError> =>
  Effect.try({ try: () => w.commit(), catch: (e) => fromSystemError("write", w.path, e) })

/**
 * Gathers {@link JsonMetadata} in one pass. Ill-formed UTF-8 is reported (offsets) rather
 * than fatal; any other syntax error fails.
 *
 * @throws JsonSyntaxError (3), StreamSweepUsageError (2) for a bad option, IoError (4) for the input or the index file.
 */
export const inspect = (
  input: ChunkInput.ChunkInput,
  options: InspectOptions = {}
): Effect.Effect<JsonMetadata, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  Effect.gen(function*() {
    const limits = yield* resolveLimits(options)
    return yield* Effect.acquireUseRelease(
      openIndex(options.indexPath),
      (index) =>
        Effect.gen(function*() {
          const ins = new Inspector(options.format ?? "auto", limits, index)
          yield* feed(input, (buf, n) => ins.write(buf, 0, n), options.readBytes)
          const s = ins.scanner
          if (s.failure === undefined) s.end()
          if (s.failure !== undefined) return yield* Effect.fail(fromScanFailure(input.description, s.failure))
          if (index !== undefined) yield* commitIndex(index)
          return metadataOf(input.description, ins, options.indexPath ?? null)
        }),
      // Removes a half-written index after a failure (a committed one is already renamed).
      (index, exit) => Effect.sync(() => { if (exit._tag === "Failure") index?.abort() })
    )
  })

/** {@link inspect} over the file at `path`. What `cage json inspect FILE` runs. */
export const inspectFile = (
  path: string,
  options: InspectOptions = {}
): Effect.Effect<JsonMetadata, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  withFile(path, (input) => inspect(input, options))

const table = (title: string, rows: ReadonlyArray<ReadonlyArray<string | number>>): string => {
  if (rows.length === 0) return `${title}: none\n`
  const cells = rows.map((r) => r.map(String))
  const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)))
  return `${title}\n${cells.map((r) => "  " + r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]))).join("  ")).join("\n")}\n`
}

/** Renders metadata as plain-text tables (what `cage json inspect FILE` prints without `--json`). */
export const formatMetadata = (m: JsonMetadata): string => {
  const a = m.anomalies
  const out = [
    table("summary", [
      ["input", m.input], ["format", m.format], ["bytes", m.bytes], ["lines", m.lines],
      ["top-level elements", m.topLevelElements], ["max depth", m.maxDepth], ["valid UTF-8", m.validUtf8 ? "yes" : "no"],
      ["index", m.index ?? "-"]
    ]),
    table("values", Object.entries(m.counts)),
    table(`keys (${m.keys.total} total, ${m.keys.exact ? "" : "at least "}${m.keys.distinct} distinct${m.keys.exact ? "" : `, counts within ${m.keys.maxUndercount}`})`,
      m.keys.top.map((k) => [JSON.stringify(k.key), k.count])),
    table(`key paths (${m.paths.distinct} distinct${m.paths.exact ? "" : ", limit reached"})`, m.paths.top.map((p) => [p.path, p.count])),
    table("largest strings", m.largestStrings.map((t) => [t.bytes, `@${t.offset}`, t.path, t.preview])),
    table("largest numbers", m.largestNumbers.map((t) => [t.bytes, `@${t.offset}`, t.path, t.preview])),
    table("anomalies", [
      [`nesting deeper than ${a.deepNesting.threshold}`, a.deepNesting.count, a.deepNesting.items.slice(0, 3).map((x) => `${x.path}@${x.offset}`).join(" ")],
      [`tokens over ${a.hugeTokens.thresholdBytes} bytes`, a.hugeTokens.count, a.hugeTokens.items.slice(0, 3).map((x) => `${x.path}@${x.offset}`).join(" ")],
      [`duplicate keys${a.duplicateKeys.complete ? "" : " (budget reached)"}`, a.duplicateKeys.count, a.duplicateKeys.items.slice(0, 3).map((x) => `${x.path}.${x.key}@${x.offset}`).join(" ")],
      ["invalid UTF-8", a.invalidUtf8.count, a.invalidUtf8.items.slice(0, 5).map((o) => `@${o}`).join(" ")]
    ])
  ]
  return out.join("\n")
}
