/**
 * `cage audit summary LOG` and `cage audit report LOG -o report.html`, plus the audit
 * plumbing other commands use (`openAudit`): where the log is (`--audit-log`, else
 * `[audit] log` in cage.toml) and its rotation size (`[audit] max_bytes`).
 *
 * @module
 */
import { type AuditWriter, formatSummary, layer as auditLayer, makeWriter, readLogs, renderReport, type RunContext, summarize } from "@cage/audit"
import { ChunkOutput, fromSystemError } from "@cage/core"
import { Effect, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { loadSettings, type Settings } from "../Config.js"
import { note, printJson } from "../Io.js"

/** `--audit-log FILE`, shared with the backup commands. */
export const auditLogFlag = Flag.String("audit-log").pipe(Flag.withDescription("Append audit events (JSON Lines) to FILE (default: [audit] log in cage.toml)"), Flag.optional)

/**
 * Opens the audit writer when a log is configured; `undefined` otherwise. The caller closes it.
 * Fails with `IoError` when the log cannot be opened.
 */
export const openAudit = (flag: Option.Option<string>, settings: Settings) =>
  Effect.gen(function*() {
    const path = Option.getOrUndefined(flag) ?? settings.auditLog.value
    if (path === undefined) return undefined
    return yield* Effect.try({ try: () => makeWriter(path, { maxBytes: settings.auditMaxBytes.value }), catch: (e) => fromSystemError("open audit log", path, e) })
  })

/** Provides core telemetry to `effect` so the run is audited into `writer` (no-op without one). */
export const audited = <A, E, R>(writer: AuditWriter | undefined, context: RunContext, effect: Effect.Effect<A, E, R>) =>
  writer ? effect.pipe(Effect.provide(auditLayer(writer, context) as Layer.Layer<never>)) : effect

/** The log and, with `--rotated`, its rotations `LOG.N … LOG.1` first (oldest first). */
const logFiles = (log: string, rotated: boolean) => {
  if (!rotated) return [log]
  const older: Array<string> = []
  for (let k = 1; fs.existsSync(`${log}.${k}`); k++) older.unshift(`${log}.${k}`)
  return [...older, log]
}

const log = Argument.String("log").pipe(Argument.withDescription("Audit log (JSON Lines)"))
const rotated = Flag.Boolean("rotated").pipe(Flag.withDescription("Also read the rotated files LOG.1, LOG.2, … (oldest first)"), Flag.withDefault(false))

const summaryCommand = Command.make("summary", {
  log,
  rotated,
  json: Flag.Boolean("json").pipe(Flag.withDescription("The summary as JSON on stdout"), Flag.withDefault(false))
}, (f) =>
  Effect.gen(function*() {
    const contents = yield* readLogs(logFiles(f.log, f.rotated))
    const s = summarize(contents)
    if (f.json) yield* printJson(s)
    else yield* Effect.sync(() => process.stdout.write(formatSummary(s)))
  })
).pipe(Command.withDescription("Totals, chunk throughput percentiles and anomalies of an audit log, as tables"))

const reportCommand = Command.make("report", {
  log,
  rotated,
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("HTML file to write (default report.html; never replaced without --force)"), Flag.withDefault("report.html")),
  force: Flag.Boolean("force").pipe(Flag.withDescription("Replace an existing output file"), Flag.withDefault(false)),
  title: Flag.String("title").pipe(Flag.withDescription("Page title"), Flag.optional),
  quiet: Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDefault(false))
}, (f) =>
  Effect.gen(function*() {
    const contents = yield* readLogs(logFiles(f.log, f.rotated))
    const html = renderReport(contents, summarize(contents), Option.isSome(f.title) ? { title: f.title.value } : {})
    // Staged and published like every output: an existing report.html is never replaced unasked.
    const sink = ChunkOutput.toFile(f.output, { overwrite: f.force, mode: 0o644 })
    yield* sink.open()
    yield* sink.write([Buffer.from(html, "utf8")]).pipe(Effect.andThen(sink.commit()), Effect.onError(() => sink.abort({ keepPartial: false })))
    yield* note(f.quiet, `wrote ${f.output} (${contents.events.length} events)`)
  })
).pipe(Command.withDescription("A self-contained HTML report with a per-chunk throughput chart marking anomalies"))

/** `cage audit …` */
export const auditCommand = Command.make("audit").pipe(
  Command.withDescription("Read audit logs: summaries and HTML reports"),
  Command.withSubcommands([summaryCommand, reportCommand])
)

void loadSettings
