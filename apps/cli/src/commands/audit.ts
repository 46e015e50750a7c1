/**
 * `cage audit summary LOG` and `cage audit report LOG -o report.html`. The audit trail
 * other commands write is wired in `../AuditTrail.ts`.
 *
 * @module
 */
import { formatSummary, readLogs, renderReport, summarize } from "@cage/audit"
import { ChunkOutput } from "@cage/core"
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { note, printJson } from "../Io.js"

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

