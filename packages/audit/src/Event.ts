/**
 * The audit event Schema: one JSON object per line (JSON Lines), `v: 1`.
 *
 * What is logged: run and chunk events from the engine (operation, pipeline processor
 * names, strategy, input/output paths, byte counts, durations in ms, throughput in MB/s
 * where MB = 10^6 bytes), chunk failures (the error message), throughput anomalies, backup
 * and verify outcomes (source path, generation, damaged chunk indices), and recipients as
 * `sha256:<hex>` fingerprints. What is never logged: keys, passphrases, identities,
 * recipients in clear, plaintext or ciphertext bytes.
 *
 * @module
 */
import { Schema } from "effect"

/** Event format version. */
export const AUDIT_VERSION = 1

const base = {
  v: Schema.Literal(AUDIT_VERSION),
  /** ISO 8601 UTC time of the event. */
  at: Schema.String
}
const nullableNumber = Schema.NullOr(Schema.Number)

export const RunStart = Schema.Struct({
  ...base,
  type: Schema.Literal("run_start"),
  runId: Schema.String,
  /** What the run did: `"encrypt"`, `"decrypt"`, `"backup"`, `"restore"`, `"verify"`, … */
  operation: Schema.String,
  /** Execution strategy (e.g. `"native"`, `"age-binary"`), or null. */
  strategy: Schema.NullOr(Schema.String),
  input: Schema.String,
  output: Schema.NullOr(Schema.String),
  pipeline: Schema.Array(Schema.String),
  totalBytes: nullableNumber,
  totalChunks: nullableNumber,
  chunkBytes: Schema.Number,
  resumedFrom: Schema.Number,
  /** Recipient fingerprints `sha256:<64 hex>`. */
  recipients: Schema.Array(Schema.String),
  /**
   * In a run cut into stages (gzip, then a cipher), which stage this run is (`index` from 0
   * to `of - 1`; each stage has its own `runId`). Absent for a one-stage run.
   */
  stage: Schema.optional(Schema.Struct({ index: Schema.Number, of: Schema.Number }))
})

export const Chunk = Schema.Struct({
  ...base,
  type: Schema.Literal("chunk"),
  runId: Schema.String,
  chunk: Schema.Number,
  bytes: Schema.Number,
  outputBytes: Schema.Number,
  durationMs: Schema.Number,
  /** MB/s (10^6 bytes per second); null when the duration was below the clock's resolution. */
  throughputMBps: nullableNumber
})

export const ChunkFailed = Schema.Struct({
  ...base,
  type: Schema.Literal("chunk_failed"),
  runId: Schema.String,
  chunk: Schema.Number,
  error: Schema.String
})

export const ChunkAnomaly = Schema.Struct({
  ...base,
  type: Schema.Literal("chunk_anomaly"),
  runId: Schema.String,
  chunk: Schema.Number,
  throughputMBps: Schema.Number,
  /** Median throughput of the preceding window, MB/s. */
  medianMBps: Schema.Number,
  /** Median absolute deviation of the window, MB/s. */
  madMBps: Schema.Number,
  /** Robust z-score 0.6745 × (x − median) / MAD. */
  score: Schema.Number,
  direction: Schema.Literals(["slow", "fast"]),
  /**
   * Chunks measured together with this one (the engine times a segment of consecutive
   * chunks as a whole): the anomaly covers chunks `chunk .. chunk + span - 1`.
   */
  span: Schema.Number
})

export const RunComplete = Schema.Struct({
  ...base,
  type: Schema.Literal("run_complete"),
  runId: Schema.String,
  ok: Schema.Boolean,
  /** Input bytes processed. */
  bytes: Schema.Number,
  /** Output bytes written (absent in logs written before it was recorded). */
  outputBytes: Schema.optional(Schema.Number),
  chunks: Schema.Number,
  durationMs: Schema.Number,
  throughputMBps: nullableNumber,
  error: Schema.NullOr(Schema.String)
})

export const BackupOutcome = Schema.Struct({
  ...base,
  type: Schema.Literal("backup"),
  /** `"create"`, `"resume"`, `"restore"`, `"prune"`. */
  operation: Schema.String,
  source: Schema.String,
  generation: nullableNumber,
  ok: Schema.Boolean,
  bytes: nullableNumber,
  durationMs: nullableNumber,
  error: Schema.NullOr(Schema.String)
})

export const VerifyOutcome = Schema.Struct({
  ...base,
  type: Schema.Literal("verify"),
  /** The verified source; for a whole chunk store, the store's directory (and `generation` null). */
  source: Schema.String,
  generation: Schema.NullOr(Schema.Number),
  ok: Schema.Boolean,
  deep: Schema.Boolean,
  bytes: Schema.Number,
  durationMs: Schema.Number,
  /** Indices of damaged chunks (empty when ok or when damage could not be located). */
  damagedChunks: Schema.Array(Schema.Number),
  /** Damage descriptions (kind and byte range), at most 100. */
  damage: Schema.Array(Schema.String)
})

/** Any audit event. */
export const AuditEvent = Schema.Union([RunStart, Chunk, ChunkFailed, ChunkAnomaly, RunComplete, BackupOutcome, VerifyOutcome])
export type AuditEvent = typeof AuditEvent.Type

/** An event of one `type`. */
export type AuditEventOf<T extends AuditEvent["type"]> = Extract<AuditEvent, { readonly type: T }>

export const AuditEventJson = Schema.fromJsonString(AuditEvent)
