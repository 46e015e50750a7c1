/**
 * Reading audit logs and summarising them: totals, chunk throughput percentiles, anomalies,
 * failures, backup and verify outcomes.
 *
 * @module
 */
import { fromSystemError, type IoError } from "@cage/core"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as readline from "node:readline"
import { percentile } from "./Anomaly.js"
import { AuditLogInvalid } from "./Error.js"
import { AuditEventJson, type AuditEvent, type AuditEventOf } from "./Event.js"

/** Events read from one or more logs, in file order. */
export interface LogContents {
  readonly files: ReadonlyArray<string>
  readonly events: ReadonlyArray<AuditEvent>
  /** Lines that did not match the Schema (`path:line`), at most 100 listed. */
  readonly skipped: ReadonlyArray<string>
  readonly skippedCount: number
}

const decode = Schema.decodeUnknownOption(AuditEventJson)

/**
 * Reads JSON Lines audit logs (pass rotated files oldest first: `LOG.2`, `LOG.1`, `LOG`).
 * Lines that do not match the Schema are skipped and counted; a file with lines but no
 * valid event fails with `AuditLogInvalid`. Missing files fail with `IoError`.
 */
export const readLogs = (paths: ReadonlyArray<string>): Effect.Effect<LogContents, IoError | AuditLogInvalid> =>
  Effect.gen(function*() {
    const events: Array<AuditEvent> = []
    const skipped: Array<string> = []
    let skippedCount = 0
    for (const path of paths) {
      const r = yield* Effect.tryPromise({
        try: async () => {
          const rl = readline.createInterface({ input: fs.createReadStream(path), crlfDelay: Infinity })
          let lines = 0
          let valid = 0
          let firstBad = ""
          for await (const line of rl) {
            lines++
            if (line.trim() === "") continue
            const e = decode(line)
            if (e._tag === "Some") {
              events.push(e.value)
              valid++
            } else {
              skippedCount++
              if (skipped.length < 100) skipped.push(`${path}:${lines}`)
              if (!firstBad) firstBad = `line ${lines}`
            }
          }
          return { lines, valid, firstBad }
        },
        catch: (e) => fromSystemError("read", path, e)
      })
      if (r.valid === 0 && r.lines > 0 && r.firstBad) {
        return yield* Effect.fail(new AuditLogInvalid({ path, lines: r.lines, detail: `first bad ${r.firstBad}` }))
      }
    }
    return { files: paths, events, skipped, skippedCount }
  })

/** Percentiles of chunk throughput, MB/s (10^6 B/s). */
export interface ThroughputStats {
  readonly samples: number
  readonly min: number | null
  readonly p50: number | null
  readonly p90: number | null
  readonly p99: number | null
  readonly max: number | null
}

/** A summary of audit events. Bytes, ms and MB/s. */
export interface AuditSummary {
  readonly files: ReadonlyArray<string>
  readonly events: number
  readonly skippedLines: number
  readonly runs: { readonly total: number; readonly ok: number; readonly failed: number; readonly unfinished: number; readonly resumed: number }
  readonly byOperation: ReadonlyArray<{ readonly operation: string; readonly runs: number; readonly bytes: number; readonly durationMs: number }>
  readonly bytes: number
  readonly chunks: number
  readonly durationMs: number
  /** Total bytes over total run time, MB/s. */
  readonly throughputMBps: number | null
  readonly chunkThroughput: ThroughputStats
  readonly anomalies: ReadonlyArray<AuditEventOf<"chunk_anomaly">>
  readonly failures: ReadonlyArray<AuditEventOf<"chunk_failed"> | AuditEventOf<"run_complete">>
  readonly backups: { readonly ok: number; readonly failed: number }
  readonly verifies: { readonly ok: number; readonly damaged: number; readonly damagedChunks: number }
}

const round = (n: number | undefined | null, digits = 1) => (n === undefined || n === null ? null : Math.round(n * 10 ** digits) / 10 ** digits)

/** Summarises events (pure). */
export const summarize = (contents: LogContents): AuditSummary => {
  const starts = new Map<string, AuditEventOf<"run_start">>()
  const ends = new Map<string, AuditEventOf<"run_complete">>()
  const throughput: Array<number> = []
  const anomalies: Array<AuditEventOf<"chunk_anomaly">> = []
  const failures: Array<AuditEventOf<"chunk_failed"> | AuditEventOf<"run_complete">> = []
  const backups = { ok: 0, failed: 0 }
  const verifies = { ok: 0, damaged: 0, damagedChunks: 0 }
  for (const e of contents.events) {
    switch (e.type) {
      case "run_start":
        starts.set(e.runId, e)
        break
      case "run_complete":
        ends.set(e.runId, e)
        if (!e.ok) failures.push(e)
        break
      case "chunk":
        if (e.throughputMBps !== null && e.bytes > 0) throughput.push(e.throughputMBps)
        break
      case "chunk_anomaly":
        anomalies.push(e)
        break
      case "chunk_failed":
        failures.push(e)
        break
      case "backup":
        backups[e.ok ? "ok" : "failed"]++
        break
      case "verify":
        verifies[e.ok ? "ok" : "damaged"]++
        verifies.damagedChunks += e.damagedChunks.length
        break
    }
  }
  const ops = new Map<string, { operation: string; runs: number; bytes: number; durationMs: number }>()
  let bytes = 0
  let chunks = 0
  let durationMs = 0
  for (const [id, s] of starts) {
    const end = ends.get(id)
    const op = ops.get(s.operation) ?? { operation: s.operation, runs: 0, bytes: 0, durationMs: 0 }
    op.runs++
    if (end) {
      op.bytes += end.bytes
      op.durationMs += end.durationMs
      bytes += end.bytes
      chunks += end.ok ? end.chunks : 0
      durationMs += end.durationMs
    }
    ops.set(s.operation, op)
  }
  const ended = [...starts.keys()].filter((id) => ends.has(id))
  return {
    files: contents.files,
    events: contents.events.length,
    skippedLines: contents.skippedCount,
    runs: {
      total: starts.size,
      ok: ended.filter((id) => ends.get(id)!.ok).length,
      failed: ended.filter((id) => !ends.get(id)!.ok).length,
      unfinished: starts.size - ended.length,
      resumed: [...starts.values()].filter((s) => s.resumedFrom > 0).length
    },
    byOperation: [...ops.values()].sort((a, b) => a.operation.localeCompare(b.operation)),
    bytes,
    chunks,
    durationMs,
    throughputMBps: durationMs > 0 ? round(bytes / durationMs / 1000) : null,
    chunkThroughput: {
      samples: throughput.length,
      min: round(percentile(throughput, 0)),
      p50: round(percentile(throughput, 50)),
      p90: round(percentile(throughput, 90)),
      p99: round(percentile(throughput, 99)),
      max: round(percentile(throughput, 100))
    },
    anomalies,
    failures,
    backups,
    verifies
  }
}

/** Formats rows as an aligned text table (first row is the header). */
export const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)))
  const line = (r: ReadonlyArray<string>) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ").trimEnd()
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n")
}

/** `k`, or `k-m` when the anomaly covers a segment of chunks. */
export const chunkSpan = (a: { readonly chunk: number; readonly span: number }) => (a.span > 1 ? `${a.chunk}-${a.chunk + a.span - 1}` : String(a.chunk))

const fmt = (n: number | null, unit = "") => (n === null ? "-" : `${n.toLocaleString("en-US", { maximumFractionDigits: 1 })}${unit}`)

/** The summary as text tables (what `cage audit summary` prints). */
export const formatSummary = (s: AuditSummary): string => {
  const parts: Array<string> = []
  parts.push(table([
    ["runs", "ok", "failed", "unfinished", "resumed", "bytes", "chunks", "time (ms)", "MB/s"],
    [String(s.runs.total), String(s.runs.ok), String(s.runs.failed), String(s.runs.unfinished), String(s.runs.resumed), fmt(s.bytes), fmt(s.chunks), fmt(s.durationMs), fmt(s.throughputMBps)]
  ]))
  if (s.byOperation.length > 0) {
    parts.push(table([["operation", "runs", "bytes", "time (ms)"], ...s.byOperation.map((o) => [o.operation, String(o.runs), fmt(o.bytes), fmt(o.durationMs)])]))
  }
  const t = s.chunkThroughput
  parts.push(table([["chunk MB/s", "samples", "min", "p50", "p90", "p99", "max"], ["", String(t.samples), fmt(t.min), fmt(t.p50), fmt(t.p90), fmt(t.p99), fmt(t.max)]]))
  parts.push(s.anomalies.length === 0 ? "anomalies: none" : table([
    ["anomaly", "run", "chunks", "MB/s", "median", "score"],
    ...s.anomalies.slice(0, 50).map((a) => [a.direction, a.runId.slice(0, 8), chunkSpan(a), fmt(a.throughputMBps), fmt(a.medianMBps), a.score.toFixed(1)])
  ]) + (s.anomalies.length > 50 ? `\n… and ${s.anomalies.length - 50} more` : ""))
  if (s.failures.length > 0) {
    parts.push(table([["failure", "run", "chunk", "error"], ...s.failures.slice(0, 20).map((f) => [f.type, f.runId.slice(0, 8), f.type === "chunk_failed" ? String(f.chunk) : "-", (f.error ?? "").slice(0, 80)])]))
  }
  if (s.backups.ok + s.backups.failed + s.verifies.ok + s.verifies.damaged > 0) {
    parts.push(table([["outcomes", "ok", "failed/damaged", "damaged chunks"], ["backup", String(s.backups.ok), String(s.backups.failed), "-"], ["verify", String(s.verifies.ok), String(s.verifies.damaged), String(s.verifies.damagedChunks)]]))
  }
  if (s.skippedLines > 0) parts.push(`skipped ${s.skippedLines} line(s) that are not audit events`)
  return parts.join("\n\n") + "\n"
}
