/**
 * The audit log: JSON Lines, append-only, mode 0600, with size-based rotation, and the
 * consumers that turn core telemetry into audit events.
 *
 * Rotation: before a line would take the file past `maxBytes`, `LOG.(k-1)` becomes `LOG.k`
 * (the oldest beyond `maxFiles` is deleted), `LOG` becomes `LOG.1`, and a new `LOG` starts.
 * A single line larger than `maxBytes` still goes into a file of its own.
 *
 * @module
 */
import { Telemetry, type TelemetryEvent } from "@cage/core"
import { Effect, type Layer, Schema, Stream } from "effect"
import * as fs from "node:fs"
import { type AnomalyOptions, makeDetector } from "./Anomaly.js"
import { AuditUsageError } from "./Error.js"
import { AUDIT_VERSION, AuditEvent, type AuditEvent as Event } from "./Event.js"

/** Options of {@link makeWriter}. */
export interface WriterOptions {
  /** Rotate before the file would exceed this many bytes. Default 10 MiB. */
  readonly maxBytes?: number
  /** Rotated files kept (`LOG.1` … `LOG.n`). Default 5. */
  readonly maxFiles?: number
}

/** Appends validated events to a JSON Lines file. */
export interface AuditWriter {
  readonly path: string
  /** Validates (Schema) and appends one event; a write error is thrown (IoError-like errno). */
  readonly write: (event: Event) => void
  readonly close: () => void
}

const encode = Schema.encodeSync(AuditEvent)

/**
 * Opens (creating with mode 0600) the log at `path`. Writes are synchronous appends, so
 * the order of lines is the order of events and a crash loses at most the current line.
 *
 * @throws AuditUsageError for a non-positive `maxBytes` or negative `maxFiles`.
 */
export const makeWriter = (path: string, options: WriterOptions = {}): AuditWriter => {
  const maxBytes = options.maxBytes ?? 10 << 20
  const maxFiles = options.maxFiles ?? 5
  if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0)) throw new AuditUsageError({ reason: "Option", detail: `maxBytes must be a positive integer, got ${maxBytes}` })
  if (!(Number.isSafeInteger(maxFiles) && maxFiles >= 0)) throw new AuditUsageError({ reason: "Option", detail: `maxFiles must be a whole number, got ${maxFiles}` })
  let fd = fs.openSync(path, "a", 0o600)
  let size = fs.fstatSync(fd).size
  const rotate = () => {
    fs.closeSync(fd)
    fs.rmSync(`${path}.${maxFiles}`, { force: true })
    for (let k = maxFiles - 1; k >= 1; k--) {
      if (fs.existsSync(`${path}.${k}`)) fs.renameSync(`${path}.${k}`, `${path}.${k + 1}`)
    }
    if (maxFiles >= 1) fs.renameSync(path, `${path}.1`)
    else fs.rmSync(path, { force: true })
    fd = fs.openSync(path, "a", 0o600)
    size = 0
  }
  return {
    path,
    write: (event) => {
      if (fd < 0) throw new Error(`internal error: audit log ${path} written after close`)
      const line = Buffer.from(`${JSON.stringify(encode(event))}\n`, "utf8")
      if (size > 0 && size + line.length > maxBytes) rotate()
      fs.writeSync(fd, line)
      size += line.length
    },
    close: () => {
      if (fd >= 0) fs.closeSync(fd)
      fd = -1
    }
  }
}

/** What the audit consumer knows about a run that telemetry does not carry. */
export interface RunContext {
  /** `"encrypt"`, `"decrypt"`, `"backup"`, … */
  readonly operation: string
  readonly strategy?: string | undefined
  /** Recipient fingerprints (see `fingerprint`), never recipients in clear. */
  readonly recipients?: ReadonlyArray<string> | undefined
  /** Anomaly detector tuning. */
  readonly anomaly?: AnomalyOptions | undefined
}

const iso = (ms: number) => new Date(ms).toISOString()
const mbps = (bytes: number, ms: number) => (ms > 0 ? bytes / ms / 1000 : null)

/**
 * Turns telemetry into audit events, calling `emit` for each (in order). A chunk anomaly is
 * emitted during the run, as soon as its measurement is complete: when the next segment's
 * first chunk event (or the run's end or failure) arrives, since the engine measures
 * segments of chunks (see `span`). `chunk_start` is dropped (its information is
 * in the chunk event).
 */
export const makeTranslator = (context: RunContext, emit: (event: Event) => void) => {
  const detectors = new Map<string, ReturnType<typeof makeDetector>>()
  /**
   * The engine times a whole segment and reports each of its chunks with the same time and
   * duration: one measurement, counted once by the detector (else a window of 16 samples
   * would be one segment). `pending` holds the run's current group until it ends.
   */
  const groups = new Map<string, { at: number; durationMs: number; first: number; bytes: number; span: number }>()
  const flush = (runId: string) => {
    const g = groups.get(runId)
    groups.delete(runId)
    if (!g) return
    const t = mbps(g.bytes, g.durationMs * g.span)
    // Empty chunks and sub-resolution durations carry no throughput information.
    if (t === null || g.bytes === 0) return
    const a = detectors.get(runId)?.observe(t)
    if (a) {
      emit({
        v: AUDIT_VERSION, at: iso(g.at), runId, type: "chunk_anomaly", chunk: g.first, throughputMBps: t, medianMBps: a.median, madMBps: a.mad,
        score: a.score, direction: a.direction, span: g.span
      })
    }
  }
  return (e: TelemetryEvent): void => {
    const common = { v: AUDIT_VERSION, at: iso(e.at), runId: e.runId } as const
    switch (e.type) {
      case "run_start":
        detectors.set(e.runId, makeDetector(context.anomaly))
        emit({
          ...common, type: "run_start", operation: context.operation, strategy: context.strategy ?? null, input: e.input, output: e.output,
          pipeline: [...e.pipeline], totalBytes: e.totalBytes, totalChunks: e.totalChunks, chunkBytes: e.chunkBytes, resumedFrom: e.resumedFrom,
          recipients: [...(context.recipients ?? [])], ...(e.stage ? { stage: e.stage } : {})
        })
        return
      case "chunk_start":
        return
      case "chunk_complete": {
        emit({ ...common, type: "chunk", chunk: e.chunk, bytes: e.bytes, outputBytes: e.outputBytes, durationMs: e.durationMs, throughputMBps: mbps(e.bytes, e.durationMs) })
        const g = groups.get(e.runId)
        if (g && g.at === e.at && g.durationMs === e.durationMs && e.chunk === g.first + g.span) {
          groups.set(e.runId, { ...g, bytes: g.bytes + e.bytes, span: g.span + 1 })
          return
        }
        flush(e.runId)
        groups.set(e.runId, { at: e.at, durationMs: e.durationMs, first: e.chunk, bytes: e.bytes, span: 1 })
        return
      }
      case "chunk_failed":
        flush(e.runId)
        emit({ ...common, type: "chunk_failed", chunk: e.chunk, error: e.error })
        return
      case "run_complete":
        flush(e.runId)
        detectors.delete(e.runId)
        emit({
          ...common, type: "run_complete", ok: e.ok, bytes: e.bytes, outputBytes: e.outputBytes, chunks: e.chunks, durationMs: e.durationMs,
          throughputMBps: mbps(e.bytes, e.durationMs), error: e.error ?? null
        })
    }
  }
}

/**
 * A layer providing core's `Telemetry` that writes every run's audit events to `writer`
 * as they happen. Close the writer yourself after the run.
 */
export const layer = (writer: AuditWriter, context: RunContext): Layer.Layer<never> =>
  Telemetry.layerCallback(makeTranslator(context, writer.write))

/**
 * Drains a telemetry stream (e.g. `TelemetryEvents.events` from `Telemetry.layerPubSub`)
 * into `writer`. Runs until the stream ends or the fiber is interrupted; fork it before
 * the run.
 */
export const consume = (events: Stream.Stream<TelemetryEvent>, writer: AuditWriter, context: RunContext): Effect.Effect<void> => {
  const translate = makeTranslator(context, writer.write)
  return Stream.runForEach(events, (e) => Effect.sync(() => translate(e)))
}

/** Appends one backup or verify outcome (or any event) with the current time. */
export const record = (writer: AuditWriter, event: Event): void => writer.write(event)

/** The current time as the audit `at` field. */
export const now = (): string => new Date().toISOString()
