/**
 * `cage backup create|resume|verify|restore|list|prune|recover`: encrypted generations in
 * a backup directory (see @cage/backup). Key options as for `cage encrypt` (`--key FILE`,
 * `--passphrase-file FILE`, or a terminal prompt); verify, list and prune need no key.
 *
 * Settings from cage.toml: `[backup] dir`, `retention`, `manifest_threshold`; `[audit] log`.
 *
 * @module
 */
import { AUDIT_VERSION, type AuditWriter, now, record, table } from "@cage/audit"
import {
  agcmCipher,
  create,
  type Generation,
  list,
  parsePolicy,
  parseRange,
  prune,
  recover,
  restore,
  resume,
  verifyReport,
  BackupDamaged,
  type BackupUsageError
} from "@cage/backup"
import { Size } from "@cage/core"
import { Effect, Option } from "effect"
import * as ProgressBar from "../ProgressBar.js"
import { Argument, Command, Flag } from "effect/cli"
import * as nodePath from "node:path"
import { loadSettings, type Settings } from "../Config.js"
import { usage } from "../Errors.js"
import { audited, auditLogFlag, openAudit } from "../AuditTrail.js"
import { commonFlags } from "../Flags.js"
import { note, printJson, resolveLimitRate, setInterruptNote } from "../Io.js"
import { keyMaterial, wipe } from "../Keys.js"

const file = Argument.String("file").pipe(Argument.withDescription("The source file (as given to backup create)"))
const dirFlag = Flag.String("dir").pipe(Flag.withDescription("Backup directory (default: [backup] dir in cage.toml, else ./.cage-backups)"), Flag.optional)
const generationFlag = Flag.Int("generation").pipe(Flag.withAlias("g"), Flag.withDescription("Generation number (default: the newest complete one)"), Flag.optional)
const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const quiet = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No progress bar or notes"), Flag.withDefault(false))
const workers = Flag.Int("workers").pipe(Flag.withDescription("Worker threads for cipher and hashing (default: available cores)"), Flag.optional)

const backupDir = (flag: Option.Option<string>, settings: Settings) => Option.getOrUndefined(flag) ?? settings.backupDir.value ?? ".cage-backups"

/** Writes a `backup` outcome to the audit log, if any. */
const auditOutcome = (writer: AuditWriter | undefined, o: { operation: string; source: string; generation: number | null; ok: boolean; bytes: number | null; durationMs: number; error: string | null }) =>
  Effect.sync(() => writer && record(writer, { v: AUDIT_VERSION, at: now(), type: "backup", ...o }))

/** Runs `body` with the audit writer open, records the outcome, closes the writer. */
const withAudit = <A, E>(
  f: { auditLog: Option.Option<string> },
  settings: Settings,
  operation: string,
  source: string,
  body: (writer: AuditWriter | undefined) => Effect.Effect<A, E>,
  outcome: (a: A) => { generation: number | null; bytes: number | null }
) =>
  Effect.gen(function*() {
    const writer = yield* openAudit(f.auditLog, settings)
    const started = Date.now()
    return yield* body(writer).pipe(
      Effect.tap((a) => auditOutcome(writer, { operation, source: nodePath.resolve(source), ...outcome(a), ok: true, durationMs: Date.now() - started, error: null })),
      Effect.tapError((e) => auditOutcome(writer, { operation, source: nodePath.resolve(source), generation: null, bytes: null, ok: false, durationMs: Date.now() - started, error: String((e as { message?: unknown }).message ?? e) })),
      Effect.ensuring(Effect.sync(() => writer?.close()))
    )
  })

const keyFlags = { key: commonFlags.key, passphraseFile: commonFlags.passphraseFile }

const createFlags = {
  ...keyFlags,
  dir: dirFlag,
  chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("Plaintext bytes per chunk (AGCM: power of two, 16KiB..4MiB; default 64KiB)"), Flag.optional),
  manifest: Flag.Boolean("manifest").pipe(Flag.withDescription("Write per-chunk digests whatever the size"), Flag.withDefault(false)),
  manifestThreshold: Flag.String("manifest-threshold").pipe(Flag.withDescription("Per-chunk digests from this source size up (default 0: every source; or [backup] manifest_threshold)"), Flag.optional),
  workers,
  limitRate: commonFlags.limitRate,
  auditLog: auditLogFlag,
  json,
  quiet,
  file
}

type CreateFlags = {
  limitRate: Option.Option<string>
  key: Option.Option<string>
  passphraseFile: Option.Option<string>
  dir: Option.Option<string>
  chunkSize: Option.Option<string>
  manifest: boolean
  manifestThreshold: Option.Option<string>
  workers: Option.Option<number>
  auditLog: Option.Option<string>
  json: boolean
  quiet: boolean
  file: string
}

const runCreate = (mode: "create" | "resume") => (f: CreateFlags) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const chunkSize = Option.isSome(f.chunkSize) ? Size.parse(f.chunkSize.value) : settings.chunkSize.value
    if (Option.isSome(f.chunkSize) && chunkSize === undefined) return yield* usage("Option", `--chunk-size: "${f.chunkSize.value}" is not a size`)
    const threshold = Option.isSome(f.manifestThreshold) ? Size.parse(f.manifestThreshold.value) : settings.manifestThreshold.value
    if (threshold === undefined) return yield* usage("Option", `--manifest-threshold: "${Option.getOrElse(f.manifestThreshold, () => "")}" is not a size`)
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, mode === "create")
    yield* setInterruptNote(`run \`cage backup resume ${f.file}\` (same key and --dir) to complete the generation`)
    const cipher = agcmCipher(key, { ...(chunkSize !== undefined ? { chunkSize } : {}), ...(w !== undefined ? { workers: w } : {}) })
    const options = {
      source: f.file, dir, cipher, manifestThreshold: threshold, limitRate, ...(f.manifest ? { chunkManifest: true } : {}),
      ...(w !== undefined ? { hashWorkers: w } : {}), progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: `backup ${mode}` }),
      hashProgress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "manifest" })
    }
    const r = yield* withAudit(f, settings, mode, f.file, (writer) =>
      audited(writer, { operation: `backup-${mode}`, strategy: "native" }, mode === "create" ? create(options) : resume(options)),
      (r) => ({ generation: r.generation.generation, bytes: r.summary.outputBytes })
    ).pipe(Effect.ensuring(wipe(key)))
    if (f.json) yield* printJson({ operation: `backup-${mode}`, generation: r.generation, summary: r.summary })
    else {
      const g = r.generation
      yield* note(f.quiet, `${mode === "create" ? "created" : "resumed and completed"} generation ${g.generation} of ${g.source}: ${nodePath.join(dir, g.file)} (${Size.format(g.plainBytes)} → ${Size.format(g.cipherBytes ?? 0)}, ${r.summary.totalChunks} chunks${g.chunked ? ", per-chunk manifest" : ""})`)
    }
  })

const createCommand = Command.make("create", createFlags, runCreate("create")).pipe(
  Command.withDescription("Back up FILE as a new encrypted generation (AGCM) with a manifest")
)
const resumeCommand = Command.make("resume", createFlags, runCreate("resume")).pipe(
  Command.withDescription("Complete an interrupted backup of FILE from its checkpoint (same key)")
)

const verifyCommand = Command.make("verify", {
  ...keyFlags,
  dir: dirFlag,
  generation: generationFlag,
  deep: Flag.Boolean("deep").pipe(Flag.withDescription("Also decrypt every chunk and check plaintext digests (needs the key)"), Flag.withDefault(false)),
  workers,
  auditLog: auditLogFlag,
  json,
  quiet,
  file
}, (f) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const key = f.deep ? yield* keyMaterial(f, false) : undefined
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const writer = yield* openAudit(f.auditLog, settings)
    const report = yield* verifyReport({
      dir, source: f.file, deep: f.deep, ...(Option.isSome(f.generation) ? { generation: f.generation.value } : {}),
      ...(key ? { cipher: agcmCipher(key, w !== undefined ? { workers: w } : {}) } : {}), ...(w !== undefined ? { hashWorkers: w } : {})
    }).pipe(
      Effect.tap((r) => Effect.sync(() => writer && record(writer, {
        v: AUDIT_VERSION, at: now(), type: "verify", source: r.source, generation: r.generation, ok: r.ok, deep: r.deep, bytes: r.bytes, durationMs: r.durationMs,
        damagedChunks: r.damage.flatMap((d) => (d.chunk === undefined ? [] : [d.chunk])), damage: r.damage.slice(0, 100).map((d) => `${d.kind}${d.chunk === undefined ? "" : ` ${d.chunk}`} (bytes ${d.start}..${d.end}): ${d.detail}`)
      }))),
      Effect.ensuring(key ? wipe(key) : Effect.void),
      Effect.ensuring(Effect.sync(() => writer?.close()))
    )
    if (f.json) yield* printJson(report)
    else if (report.ok) {
      yield* note(f.quiet, `generation ${report.generation} of ${report.source} verifies: ${report.chunks} chunks, ${Size.format(report.bytes)}${report.deep ? ", decrypted and checked" : ""} in ${report.durationMs} ms`)
    } else {
      for (const d of report.damage) {
        yield* Effect.sync(() => process.stdout.write(`damaged ${d.kind}${d.chunk === undefined ? "" : ` ${d.chunk}`}: bytes ${d.start}..${d.end} of ${report.file}: ${d.detail}\n`))
      }
    }
    if (!report.ok) return yield* Effect.fail(new BackupDamaged({ file: report.file, generation: report.generation, damage: report.damage }))
  })
).pipe(Command.withDescription("Re-read a backup and name every damaged chunk (exit 3 when damaged)"))

const restoreCommand = Command.make("restore", {
  ...keyFlags,
  dir: dirFlag,
  generation: generationFlag,
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file (default: the original path; never overwritten without --force)"), Flag.optional),
  range: Flag.String("range").pipe(Flag.withDescription("Only plaintext bytes START:END (END exclusive; units allowed; START: means to the end)"), Flag.optional),
  force: Flag.Boolean("force").pipe(Flag.withDescription("Replace an existing output file"), Flag.withDefault(false)),
  limitRate: commonFlags.limitRate,
  workers,
  auditLog: auditLogFlag,
  json,
  quiet,
  file
}, (f) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const range = Option.isSome(f.range) ? yield* parseRange(f.range.value) : undefined
    const output = Option.getOrElse(f.output, () => f.file)
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, false)
    const r = yield* withAudit(f, settings, "restore", f.file, (writer) =>
      audited(writer, { operation: "backup-restore", strategy: "native" }, restore({
        dir, source: f.file, cipher: agcmCipher(key, w !== undefined ? { workers: w } : {}), output, overwrite: f.force,
        ...(Option.isSome(f.generation) ? { generation: f.generation.value } : {}), ...(range ? { range } : {}),
        progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "restore" }), limitRate
      })),
      (r) => ({ generation: r.generation, bytes: r.bytes })
    ).pipe(Effect.ensuring(wipe(key)))
    if (f.json) yield* printJson({ operation: "backup-restore", ...r })
    else yield* note(f.quiet, `restored generation ${r.generation} of ${f.file} → ${r.output} (${Size.format(r.bytes)}, ${r.chunks} chunks)`)
  })
).pipe(Command.withDescription("Decrypt a generation (or a byte range of it) to a file"))

const row = (g: Generation) => [
  String(g.generation), g.status, g.createdAt.replace("T", " ").slice(0, 19), Size.format(g.plainBytes), g.cipherBytes === null ? "-" : Size.format(g.cipherBytes), g.chunked ? "chunks" : "root", g.file
]

const listCommand = Command.make("list", {
  dir: dirFlag,
  json,
  file: Argument.String("file").pipe(Argument.withDescription("Only this source"), Argument.optional)
}, (f) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const gens = yield* list({ dir: backupDir(f.dir, settings), ...(Option.isSome(f.file) ? { source: f.file.value } : {}) })
    if (f.json) return yield* printJson(gens)
    const bySource = new Map<string, Array<Generation>>()
    for (const g of gens) bySource.set(g.source, [...(bySource.get(g.source) ?? []), g])
    if (bySource.size === 0) return yield* Effect.sync(() => process.stdout.write("no backups\n"))
    for (const [source, gs] of bySource) {
      yield* Effect.sync(() => process.stdout.write(`${source}\n${table([["gen", "status", "created (UTC)", "size", "backup", "manifest", "file"], ...gs.map(row)])}\n\n`))
    }
  })
).pipe(Command.withDescription("List generations (all sources, or FILE's)"))

const pruneCommand = Command.make("prune", {
  dir: dirFlag,
  policy: Flag.String("policy").pipe(Flag.withDescription("keep_all | keep_last:N | keep_days:D | keep_last_and_days:N,D | keep_hourly/daily/weekly/monthly/yearly:N, several joined by + (default keep_last:3, or [backup] retention)"), Flag.optional),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Show what would be deleted; delete nothing"), Flag.withDefault(false)),
  auditLog: auditLogFlag,
  json,
  quiet,
  file: Argument.String("file").pipe(Argument.withDescription("Only this source"), Argument.optional)
}, (f) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const policyText = Option.getOrElse(f.policy, () => settings.retention.value)
    const policy = yield* Effect.try({ try: () => parsePolicy(policyText), catch: (e) => e as BackupUsageError })
    const source = Option.getOrElse(f.file, () => "*")
    const r = yield* withAudit(f, settings, f.dryRun ? "prune-dry-run" : "prune", source, () =>
      prune({ dir: backupDir(f.dir, settings), policy, dryRun: f.dryRun, ...(Option.isSome(f.file) ? { source: f.file.value } : {}) }),
      (r) => ({ generation: null, bytes: r.deleted.reduce((s, g) => s + (g.cipherBytes ?? 0), 0) })
    )
    if (f.json) return yield* printJson(r)
    const verb = f.dryRun ? "would delete" : "deleted"
    for (const g of r.deleted) yield* note(f.quiet, `${verb} generation ${g.generation} of ${g.source} (${g.file})`)
    for (const g of r.damaged) yield* note(f.quiet, `warning: generation ${g.generation} of ${g.source} does not verify`)
    yield* note(f.quiet, `${policyText}: ${verb} ${r.deleted.length}, kept ${r.kept.length}; newest verified generation kept: ${r.protectedGenerations.map((g) => `${nodePath.basename(g.source)}#${g.generation}`).join(", ") || "none"}`)
  })
).pipe(Command.withDescription("Delete generations outside the retention policy (never the newest that verifies)"))

const recoverCommand = Command.make("recover", { dir: dirFlag, json, quiet }, (f) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const r = yield* recover({ dir: backupDir(f.dir, settings) })
    if (f.json) return yield* printJson(r)
    yield* note(f.quiet, `rebuilt the registry: ${r.generations} generations (${r.fromManifests} from manifests, ${r.fromBackup} partial from .bak)${r.corruptMovedTo ? `; the corrupt registry is kept as ${r.corruptMovedTo}` : ""}`)
  })
).pipe(Command.withDescription("Rebuild a corrupt registry from the manifests and the previous good registry"))

/** `cage backup …` */
export const backupCommand = Command.make("backup").pipe(
  Command.withDescription("Encrypted backup generations: create, verify, restore, retention"),
  Command.withSubcommands([createCommand, resumeCommand, verifyCommand, restoreCommand, listCommand, pruneCommand, recoverCommand])
)
