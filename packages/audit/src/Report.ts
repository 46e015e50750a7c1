/**
 * The HTML audit report: one self-contained page (inline CSS and SVG, no script, no
 * external resource) with the summary tables and, per run, a chart of chunk throughput
 * (MB/s) against chunk index, with the run's median and every anomaly marked in red.
 *
 * @module
 */
import type { AuditEvent, AuditEventOf } from "./Event.js"
import { type AuditSummary, chunkSpan, type LogContents } from "./Summary.js"

/** Options of {@link renderReport}. */
export interface ReportOptions {
  readonly title?: string
  /** Most runs charted (the most recent). Default 20. */
  readonly maxRuns?: number
  /** Most points drawn per chart (chunks are averaged into buckets beyond it). Default 2000. */
  readonly maxPoints?: number
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)
const num = (n: number | null | undefined, digits = 1) => (n === null || n === undefined ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits }))

interface RunData {
  readonly start: AuditEventOf<"run_start"> | undefined
  readonly end: AuditEventOf<"run_complete"> | undefined
  readonly chunks: Array<AuditEventOf<"chunk">>
  readonly anomalies: Array<AuditEventOf<"chunk_anomaly">>
}

const groupRuns = (events: ReadonlyArray<AuditEvent>): Array<[string, RunData]> => {
  const runs = new Map<string, RunData>()
  const get = (id: string) => {
    let r = runs.get(id)
    if (!r) runs.set(id, (r = { start: undefined, end: undefined, chunks: [], anomalies: [] }))
    return r
  }
  for (const e of events) {
    if (e.type === "run_start") (get(e.runId) as { start: unknown }).start = e
    else if (e.type === "run_complete") (get(e.runId) as { end: unknown }).end = e
    else if (e.type === "chunk") get(e.runId).chunks.push(e)
    else if (e.type === "chunk_anomaly") get(e.runId).anomalies.push(e)
  }
  return [...runs.entries()]
}

const W = 900
const H = 260
const PAD = { l: 60, r: 16, t: 16, b: 36 }

/** One run's throughput chart as SVG. */
const chart = (id: string, run: RunData, maxPoints: number): string => {
  const pts = run.chunks.filter((c) => c.throughputMBps !== null && c.bytes > 0).sort((a, b) => a.chunk - b.chunk)
  if (pts.length === 0) return `<p class="muted">No chunk throughput samples for run ${esc(id.slice(0, 8))}.</p>`
  const maxChunk = Math.max(1, ...pts.map((p) => p.chunk), ...run.anomalies.map((a) => a.chunk))
  const maxY = Math.max(...pts.map((p) => p.throughputMBps!), ...run.anomalies.map((a) => a.throughputMBps)) * 1.1 || 1
  const x = (c: number) => PAD.l + (c / maxChunk) * (W - PAD.l - PAD.r)
  const y = (v: number) => H - PAD.b - (v / maxY) * (H - PAD.t - PAD.b)
  // Average into buckets so a million-chunk run stays a light page.
  const bucket = Math.max(1, Math.ceil(pts.length / maxPoints))
  const line: Array<string> = []
  for (let i = 0; i < pts.length; i += bucket) {
    const group = pts.slice(i, i + bucket)
    const avg = group.reduce((s, p) => s + p.throughputMBps!, 0) / group.length
    line.push(`${x(group[0].chunk).toFixed(1)},${y(avg).toFixed(1)}`)
  }
  const sorted = pts.map((p) => p.throughputMBps!).sort((a, b) => a - b)
  const median = sorted[sorted.length >> 1]
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = maxY * f
    return `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/><text x="${PAD.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${num(v, 0)}</text>`
  }).join("")
  const xt = [0, 0.5, 1].map((f) => {
    const c = Math.round(maxChunk * f)
    return `<text x="${x(c).toFixed(1)}" y="${H - PAD.b + 16}" text-anchor="middle">${c}</text>`
  }).join("")
  const marks = run.anomalies.map((a) =>
    `<circle class="anomaly" cx="${x(a.chunk + (a.span - 1) / 2).toFixed(1)}" cy="${y(a.throughputMBps).toFixed(1)}" r="5"><title>chunk${a.span > 1 ? "s" : ""} ${chunkSpan(a)}: ${num(a.throughputMBps)} MB/s (${a.direction}, score ${a.score.toFixed(1)})</title></circle>`
  ).join("")
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="chunk throughput of run ${esc(id)}">
<rect x="0" y="0" width="${W}" height="${H}" class="bg"/>${ticks}${xt}
<text x="${(W / 2).toFixed(0)}" y="${H - 4}" text-anchor="middle">chunk index</text>
<text x="14" y="${(H / 2).toFixed(0)}" transform="rotate(-90 14 ${(H / 2).toFixed(0)})" text-anchor="middle">MB/s</text>
<line class="median" x1="${PAD.l}" x2="${W - PAD.r}" y1="${y(median).toFixed(1)}" y2="${y(median).toFixed(1)}"/>
<polyline class="series" points="${line.join(" ")}"/>${marks}
</svg>`
}

const tableHtml = (rows: ReadonlyArray<ReadonlyArray<string>>) =>
  `<table><thead><tr>${rows[0].map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.slice(1).map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`

/** Renders the report page (a complete HTML document). */
export const renderReport = (contents: LogContents, summary: AuditSummary, options: ReportOptions = {}): string => {
  const title = options.title ?? "Cage audit report"
  const runs = groupRuns(contents.events).slice(-(options.maxRuns ?? 20))
  const s = summary
  const t = s.chunkThroughput
  const sections = runs.map(([id, r]) => {
    const head = r.start
      ? `${esc(r.start.operation)} · ${esc(r.start.input)} · ${esc(r.start.pipeline.join(" → "))}${r.start.resumedFrom > 0 ? ` · resumed at chunk ${r.start.resumedFrom}` : ""}`
      : "run"
    const tail = r.end ? `${r.end.ok ? "ok" : `failed: ${esc(r.end.error ?? "")}`} · ${num(r.end.bytes, 0)} bytes · ${num(r.end.durationMs, 0)} ms · ${num(r.end.throughputMBps)} MB/s` : "unfinished"
    return `<section class="run"><h3>Run ${esc(id.slice(0, 8))}</h3><p>${head}<br>${tail} · ${r.anomalies.length} anomal${r.anomalies.length === 1 ? "y" : "ies"}</p>${chart(id, r, options.maxPoints ?? 2000)}</section>`
  }).join("\n")
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f6f8fa}.muted{color:#57606a}
svg text{font:11px system-ui,sans-serif;fill:#57606a}.bg{fill:#fbfcfd}.grid{stroke:#e5e9ee}
.series{fill:none;stroke:#0969da;stroke-width:1.5}.median{stroke:#8c959f;stroke-dasharray:4 4}
.anomaly{fill:#cf222e;stroke:#fff;stroke-width:1.5}.legend span{margin-right:16px}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;background:#cf222e;vertical-align:middle}
.ln{display:inline-block;width:18px;height:2px;background:#0969da;vertical-align:middle}
</style></head><body>
<h1>${esc(title)}</h1>
<p class="muted">${esc(s.files.join(", "))} · ${s.events} events${s.skippedLines > 0 ? ` · ${s.skippedLines} lines skipped` : ""} · generated ${esc(new Date().toISOString())}</p>
<h2>Totals</h2>
${tableHtml([["runs", "ok", "failed", "unfinished", "resumed", "bytes", "time (ms)", "MB/s"], [String(s.runs.total), String(s.runs.ok), String(s.runs.failed), String(s.runs.unfinished), String(s.runs.resumed), num(s.bytes, 0), num(s.durationMs, 0), num(s.throughputMBps)]])}
<h2>Chunk throughput (MB/s)</h2>
${tableHtml([["samples", "min", "p50", "p90", "p99", "max", "anomalies"], [String(t.samples), num(t.min), num(t.p50), num(t.p90), num(t.p99), num(t.max), String(s.anomalies.length)]])}
<p class="legend"><span><i class="ln"></i> throughput per chunk</span><span><i class="dot"></i> anomaly (robust z-score beyond threshold)</span><span class="muted">dashed: median</span></p>
${sections || "<p class=\"muted\">No runs in this log.</p>"}
${s.anomalies.length > 0 ? `<h2>Anomalies</h2>${tableHtml([["run", "chunks", "MB/s", "median", "score", "kind"], ...s.anomalies.slice(0, 200).map((a) => [a.runId.slice(0, 8), chunkSpan(a), num(a.throughputMBps), num(a.medianMBps), a.score.toFixed(1), a.direction])])}` : ""}
${s.backups.ok + s.backups.failed + s.verifies.ok + s.verifies.damaged > 0 ? `<h2>Backups and verification</h2>${tableHtml([["outcome", "ok", "failed / damaged", "damaged chunks"], ["backup", String(s.backups.ok), String(s.backups.failed), "–"], ["verify", String(s.verifies.ok), String(s.verifies.damaged), String(s.verifies.damagedChunks)]])}` : ""}
</body></html>
`
}
