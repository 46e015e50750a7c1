/**
 * @cage/audit: an audit trail for Cage runs. JSON Lines events (Schema), anomaly detection
 * on chunk throughput, text summaries and a self-contained HTML report. See README.md.
 *
 * @module
 */
export * from "./Error.js"
export * as AuditEvents from "./Event.js"
export { AUDIT_VERSION, AuditEvent, type AuditEventOf } from "./Event.js"
export { fingerprint } from "./Fingerprint.js"
export { type Anomaly, type AnomalyOptions, makeDetector, medianMad, percentile } from "./Anomaly.js"
export { type AuditWriter, consume, layer, makeTranslator, makeWriter, now, record, type RunContext, type WriterOptions } from "./Log.js"
export { type AuditSummary, chunkSpan, formatSummary, type LogContents, readLogs, summarize, table, type ThroughputStats } from "./Summary.js"
export { renderReport, type ReportOptions } from "./Report.js"
