import { onTestFinished } from "vitest"
import type { TelemetryEvent } from "@cage/core"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"

/** A fresh temp directory, removed when the current test finishes. */
export const tempDir = (): string => {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "cage-audit-"))
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Synthetic telemetry of one run: `chunks` chunks of `bytes` bytes, each taking
 * `durationOf(i)` ms. Deterministic, so anomaly tests do not depend on the machine's speed.
 */
export const syntheticRun = (runId: string, chunks: number, bytes: number, durationOf: (i: number) => number, t0 = Date.parse("2026-01-01T00:00:00Z")): Array<TelemetryEvent> => {
  const events: Array<TelemetryEvent> = [{
    type: "run_start", runId, at: t0, input: "/data/in.bin", output: "/data/out.cage", pipeline: ["agcm-encrypt"],
    totalBytes: chunks * bytes, totalChunks: chunks, chunkBytes: bytes, resumedFrom: 0
  }]
  let t = t0
  let total = 0
  for (let i = 0; i < chunks; i++) {
    events.push({ type: "chunk_start", runId, at: t, chunk: i, bytes })
    t += durationOf(i)
    total += durationOf(i)
    events.push({ type: "chunk_complete", runId, at: t, chunk: i, bytes, outputBytes: bytes + 16, durationMs: durationOf(i) })
  }
  events.push({ type: "run_complete", runId, at: t, ok: true, bytes: chunks * bytes, outputBytes: chunks * bytes, chunks, durationMs: total })
  return events
}

/** Steady durations around 10 ms with a small deterministic wobble, and slow chunks. */
export const durations = (slow: ReadonlyArray<number>, slowMs = 80) => (i: number) => (slow.includes(i) ? slowMs : 10 + ((i * 7) % 5) / 10)
